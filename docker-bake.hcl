# Image family: runtime-* -> core-* -> complete-cuda(-<arch>).
#
# Always invoke with the generated variables file:
#
#   docker buildx bake -f docker-bake.hcl -f generated/wheels.bake.json [TARGET|GROUP]
#
# generated/wheels.bake.json (written from wheels.toml by `invoke render`)
# defines CUDA_TORCH_VERSION, CUDA_TORCH_INDEX, CPU_TORCH_VERSION,
# CPU_TORCH_INDEX and CUDA_ARCH_TARGETS. They are deliberately NOT declared
# here: wheels.toml is the single source of truth, and bake fails loudly
# ("variable ... does not exist") if the generated file is left out.
#
# Stages are linked only through named contexts (contexts = { runtime =
# "target:..." }): bake builds the parent target first, no depends_on needed.

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
  targets = concat(["runtime-cuda", "core-cuda", "complete-cuda"], [for arch in CUDA_ARCH_TARGETS : "complete-cuda-${arch}"])
}

group "cpu" {
  targets = ["runtime-cpu", "core-cpu"]
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
  tags = [tag("comfyui-runtime", "cuda")]
}

target "runtime-cpu" {
  inherits   = ["_labels"]
  context    = "services/runtime"
  dockerfile = "dockerfile.cpu.runtime"
  args = {
    BASE_IMAGE = CPU_BASE_IMAGE
  }
  tags = [tag("comfyui-runtime", "cpu")]
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
  tags = [tag("comfyui-core", "cuda")]
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
  tags = [tag("comfyui-core", "cpu")]
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
  tags = [tag("comfyui", "cuda")]
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
