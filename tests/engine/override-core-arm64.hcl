# Test-only bake override: build the REAL core Dockerfile for linux/arm64
# (target core-cpu-arm64, made by docker-bake.hcl's core-cpu-platform matrix when
# profiles.cpu.platforms names linux_aarch64) on local/debian-py:bookworm-arm64
# (tools/engine/base-image.sh), under emulation (tools/engine/arm64.sh), with
# nothing but loopback servers. Used with override-core.hcl, whose variables and
# loopback settings it shares:
#
#   invoke bake -t core-cpu-arm64 --file tests/engine/override-core.hcl \
#       --file tests/engine/override-core-arm64.hcl --allow network.host
#
# * runtime = docker-image://local/debian-py:bookworm-arm64 replaces
#   target:runtime-cpu-arm64 (ubuntu:24.04 cannot be pulled here).
# * network = "host", COMFYUI_REPO, PIP_INDEX_URL: as in override-core.hcl.

variable "TEST_RUNTIME_IMAGE_ARM64" {
  default = "local/debian-py:bookworm-arm64"
}

target "core-cpu-platform" {
  name    = "core-cpu-${p}"
  matrix  = {
    p = CPU_OTHER_PLATFORMS
  }
  network = "host"
  contexts = {
    runtime = "docker-image://${TEST_RUNTIME_IMAGE_ARM64}"
  }
  args = {
    COMFYUI_REPO  = TEST_COMFYUI_REPO
    PIP_INDEX_URL = TEST_PIP_INDEX_URL
  }
}
