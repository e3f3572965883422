# Image family: runtime-* -> core-* -> complete-cuda(-<arch>), each also as
# <name>-arm64 where the profile names linux_aarch64 among its platforms.
#
# Always invoke with the generated variables file:
#
#   docker buildx bake -f docker-bake.hcl -f generated/wheels.bake.json [TARGET|GROUP]
#
# generated/wheels.bake.json (written from wheels.toml by `invoke render`)
# defines CUDA_TORCH_VERSION, CUDA_TORCH_INDEX, CPU_TORCH_VERSION,
# CPU_TORCH_INDEX, CUDA_PLATFORM, CPU_PLATFORM (the first platform of each
# profile, e.g. "linux/amd64"), CUDA_OTHER_PLATFORMS, CPU_OTHER_PLATFORMS (the
# others, e.g. ["arm64"]), CUDA_ARCH_TARGETS and CUDA_ARCH_PLATFORM_TARGETS
# (e.g. ["sm90-arm64"]). They are deliberately NOT declared
# here: wheels.toml is the single source of truth, and bake fails loudly
# ("variable ... does not exist") if the generated file is left out.
#
# Stages are linked only through named contexts (contexts = { runtime =
# "target:..." }): bake builds the parent target first, no depends_on needed.
#
# One platform per target: the targets without a suffix build the profile's
# first platform, the -arm64 (-amd64) targets each other one, so every image
# carries one platform's pins (its requirements file, io.comfyimg.pins and
# io.comfyimg.pins.platform labels) and loads into any engine (the docker
# driver on the classic image store cannot build or load a multi-platform
# image). docs/user-guides/images.md says why, and how to join the two tags
# into one multi-platform tag after a push.

# Registry/namespace prefix for tags, e.g. "registry.example/acme/" (may be empty).
variable "REGISTRY" {
  default = ""
}

# Label appended to every tag: <image>:<flavour>-<IMAGE_LABEL>.
variable "IMAGE_LABEL" {
  default = "dev"
}

variable "CUDA_BASE_IMAGE" {
  default = "nvidia/cuda:12.9.1-base-ubuntu24.04"
}

variable "CPU_BASE_IMAGE" {
  default = "ubuntu:24.04"
}

# ComfyUI git ref: a release tag or commit, never a branch. `invoke render` sets all three
# from [comfyui] in wheels.toml (generated/wheels.bake.json): COMFYUI_REF is the recorded
# commit, or the tag until `invoke bump --comfyui` records the commit. The core images (and
# the complete images built on them) carry io.comfyimg.comfyui.ref (what was checked out),
# .tag and .commit labels.
variable "COMFYUI_REF" {
  default = "v0.38.1"
}

variable "COMFYUI_TAG" {
  default = "v0.38.1"
}

variable "COMFYUI_COMMIT" {
  default = ""
}

# Torch wheel indexes live at ${TORCH_INDEX_BASE}/<index> (cu128, cpu, ...).
variable "TORCH_INDEX_BASE" {
  default = "https://download.pytorch.org/whl"
}

# OCI labels (org.opencontainers.image.*) on every image. `invoke bake` fills these
# from the environment or git (IMAGE_SOURCE: GITHUB_SERVER_URL/GITHUB_REPOSITORY or
# the origin remote's web address, never a path; IMAGE_REVISION: GITHUB_SHA or HEAD; IMAGE_CREATED: now) and adds
# io.comfyimg.pins, the pins each image installs. Labels are image config, not
# layers: they never invalidate the build cache.
variable "IMAGE_SOURCE" {
  default = ""
}

variable "IMAGE_REVISION" {
  default = ""
}

variable "IMAGE_CREATED" {
  default = ""
}

target "_labels" {
  labels = {
    "org.opencontainers.image.source"   = IMAGE_SOURCE
    "org.opencontainers.image.revision" = IMAGE_REVISION
    "org.opencontainers.image.version"  = IMAGE_LABEL
    "org.opencontainers.image.created"  = IMAGE_CREATED
  }
}

function "tag" {
  params = [image, flavour]
  result = "${REGISTRY == "" ? "" : "${trimsuffix(REGISTRY, "/")}/"}${image}:${flavour}-${IMAGE_LABEL}"
}

function "torch_index_url" {
  params = [index]
  result = "${trimsuffix(TORCH_INDEX_BASE, "/")}/${index}"
}

group "default" {
  targets = ["complete-cuda"]
}

group "cuda" {
  targets = concat(["runtime-cuda", "core-cuda", "complete-cuda"], [for arch in CUDA_ARCH_TARGETS : "complete-cuda-${arch}"],
    [for p in CUDA_OTHER_PLATFORMS : "complete-cuda-${p}"], [for v in CUDA_ARCH_PLATFORM_TARGETS : "complete-cuda-${v}"])
}

group "cpu" {
  targets = concat(["runtime-cpu", "core-cpu"], [for p in CPU_OTHER_PLATFORMS : "core-cpu-${p}"])
}

group "all" {
  targets = ["cuda", "cpu"]
}

# ---------------------------------------------------------------- runtime

target "runtime-cuda" {
  inherits   = ["_labels"]
  context    = "services/runtime"
  dockerfile = "dockerfile.cuda.runtime"
  args = {
    BASE_IMAGE = CUDA_BASE_IMAGE
  }
  platforms = [CUDA_PLATFORM]
  tags      = [tag("comfyui-runtime", "cuda")]
}

target "runtime-cuda-platform" {
  name      = "runtime-cuda-${p}"
  matrix    = {
    p = CUDA_OTHER_PLATFORMS
  }
  inherits  = ["runtime-cuda"]
  platforms = ["linux/${p}"]
  tags      = [tag("comfyui-runtime", "cuda-${p}")]
}

target "runtime-cpu" {
  inherits   = ["_labels"]
  context    = "services/runtime"
  dockerfile = "dockerfile.cpu.runtime"
  args = {
    BASE_IMAGE = CPU_BASE_IMAGE
  }
  platforms = [CPU_PLATFORM]
  tags      = [tag("comfyui-runtime", "cpu")]
}

target "runtime-cpu-platform" {
  name      = "runtime-cpu-${p}"
  matrix    = {
    p = CPU_OTHER_PLATFORMS
  }
  inherits  = ["runtime-cpu"]
  platforms = ["linux/${p}"]
  tags      = [tag("comfyui-runtime", "cpu-${p}")]
}

# ------------------------------------------------------------------- core

target "_core" {
  inherits   = ["_labels"]
  context    = "services/comfy/core"
  dockerfile = "dockerfile.comfy.core"
  args = {
    COMFYUI_REF = COMFYUI_REF
  }
  labels = {
    "io.comfyimg.comfyui.ref"    = COMFYUI_REF
    "io.comfyimg.comfyui.tag"    = COMFYUI_TAG
    "io.comfyimg.comfyui.commit" = COMFYUI_COMMIT
  }
}

target "core-cuda" {
  inherits = ["_core"]
  contexts = {
    runtime = "target:runtime-cuda"
  }
  args = {
    TORCH_VERSION   = CUDA_TORCH_VERSION
    TORCH_INDEX_URL = torch_index_url(CUDA_TORCH_INDEX)
  }
  platforms = [CUDA_PLATFORM]
  tags      = [tag("comfyui-core", "cuda")]
}

target "core-cuda-platform" {
  name     = "core-cuda-${p}"
  matrix   = {
    p = CUDA_OTHER_PLATFORMS
  }
  inherits = ["core-cuda"]
  contexts = {
    runtime = "target:runtime-cuda-${p}"
  }
  platforms = ["linux/${p}"]
  tags      = [tag("comfyui-core", "cuda-${p}")]
}

target "core-cpu" {
  inherits = ["_core"]
  contexts = {
    runtime = "target:runtime-cpu"
  }
  args = {
    TORCH_VERSION   = CPU_TORCH_VERSION
    TORCH_INDEX_URL = torch_index_url(CPU_TORCH_INDEX)
  }
  platforms = [CPU_PLATFORM]
  tags      = [tag("comfyui-core", "cpu")]
}

target "core-cpu-platform" {
  name     = "core-cpu-${p}"
  matrix   = {
    p = CPU_OTHER_PLATFORMS
  }
  inherits = ["core-cpu"]
  contexts = {
    runtime = "target:runtime-cpu-${p}"
  }
  platforms = ["linux/${p}"]
  tags      = [tag("comfyui-core", "cpu-${p}")]
}

# --------------------------------------------------------------- complete

target "complete-cuda" {
  inherits   = ["_labels"]
  context    = "services/comfy/complete"
  dockerfile = "dockerfile.comfy.cuda.complete"
  contexts = {
    core   = "target:core-cuda"
    wheels = "generated/requirements"
  }
  args = {
    WHEELS_REQUIREMENTS = "complete-cuda.txt"
  }
  platforms = [CUDA_PLATFORM]
  tags      = [tag("comfyui", "cuda")]
}

# One image per GPU architecture listed in CUDA_ARCH_TARGETS (from the
# generated file; an empty list yields no targets), each installing
# generated/requirements/complete-cuda-<arch>.txt.
target "complete-cuda-arch" {
  name     = "complete-cuda-${arch}"
  matrix   = {
    arch = CUDA_ARCH_TARGETS
  }
  inherits = ["complete-cuda"]
  args = {
    WHEELS_REQUIREMENTS = "complete-cuda-${arch}.txt"
  }
  tags = [tag("comfyui", "cuda-${arch}")]
}

# complete-cuda (and each per-arch image) for every other platform of the cuda
# profile, e.g. complete-cuda-arm64 and complete-cuda-sm90-arm64, each
# installing generated/requirements/<its name>.txt: that platform's pins.
target "complete-cuda-platform" {
  name     = "complete-cuda-${p}"
  matrix   = {
    p = CUDA_OTHER_PLATFORMS
  }
  inherits = ["complete-cuda"]
  contexts = {
    core   = "target:core-cuda-${p}"
    wheels = "generated/requirements"
  }
  args = {
    WHEELS_REQUIREMENTS = "complete-cuda-${p}.txt"
  }
  platforms = ["linux/${p}"]
  tags      = [tag("comfyui", "cuda-${p}")]
}

target "complete-cuda-arch-platform" {
  name     = "complete-cuda-${v}"
  matrix   = {
    v = CUDA_ARCH_PLATFORM_TARGETS
  }
  inherits = ["complete-cuda"]
  contexts = {
    core   = "target:core-cuda-${element(split("-", v), 1)}"
    wheels = "generated/requirements"
  }
  args = {
    WHEELS_REQUIREMENTS = "complete-cuda-${v}.txt"
  }
  platforms = ["linux/${element(split("-", v), 1)}"]
  tags      = [tag("comfyui", "cuda-${v}")]
}
