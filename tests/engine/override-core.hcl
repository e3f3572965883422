# Test-only bake override: build the REAL core Dockerfile
# (services/comfy/core/dockerfile.comfy.core, target core-cpu) on
# local/debian-py:bookworm (built by tools/engine/base-image.sh) with nothing
# but loopback servers:
#
#   TORCH_INDEX_BASE=http://127.0.0.1:<port> COMFYUI_REF=v0.0.1-test \
#   TEST_PIP_INDEX_URL=http://127.0.0.1:<port>/cpu/ \
#   TEST_COMFYUI_REPO=http://127.0.0.1:<port>/ComfyUI.git \
#   invoke bake -t core-cpu --file tests/engine/override-core.hcl --allow network.host
#
# * network = "host": dockerd runs with --bridge=none, and RUN steps must
#   reach the test's PEP 503 index on 127.0.0.1.
# * runtime = docker-image://local/debian-py:bookworm replaces
#   target:runtime-cpu (ubuntu:24.04 cannot be pulled here), so runtime-cpu is
#   not built at all.
# * TORCH_VERSION / TORCH_INDEX_URL are NOT overridden: they come from the
#   test project's wheels.toml (profile cpu) and the real TORCH_INDEX_BASE
#   bake variable, set through the environment.
# * COMFYUI_REPO = a fake ComfyUI git repo served over dumb HTTP; COMFYUI_REF
#   is the real bake variable (environment).
# * PIP_INDEX_URL = the same loopback index (containers cannot trust the
#   host's PyPI proxy CA, so PyPI itself is never reachable from a build).

variable "TEST_PIP_INDEX_URL" {
  default = "http://127.0.0.1:9/simple/"
}

variable "TEST_COMFYUI_REPO" {
  default = "http://127.0.0.1:9/ComfyUI.git"
}

variable "TEST_RUNTIME_IMAGE" {
  default = "local/debian-py:bookworm"
}

target "core-cpu" {
  network = "host"
  contexts = {
    runtime = "docker-image://${TEST_RUNTIME_IMAGE}"
  }
  args = {
    COMFYUI_REPO  = TEST_COMFYUI_REPO
    PIP_INDEX_URL = TEST_PIP_INDEX_URL
  }
}
