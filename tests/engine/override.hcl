# Test-only bake override: build the REAL complete Dockerfile on the stand-in
# core image (tests/engine/standin, built by tools/engine/base-image.sh)
# without any network but loopback.
#
#   TEST_WHEELS_CONTEXT=<dir with complete-cuda.txt> \
#   TEST_PIP_INDEX_URL=http://127.0.0.1:<port>/simple/ \
#   docker buildx bake -f docker-bake.hcl -f generated/wheels.bake.json \
#       -f tests/engine/override.hcl --allow network.host complete-cuda
#
# * network = "host": dockerd runs with --bridge=none, and RUN steps must
#   reach the test's wheel server on 127.0.0.1.
# * core = docker-image://local/core-standin:test replaces target:core-cuda
#   (the CUDA/Ubuntu bases cannot be pulled here), so runtime-cuda and
#   core-cuda are not built at all.
# * wheels = TEST_WHEELS_CONTEXT: a scratch folder with a hash-pinned
#   requirements file that names a wheel served from 127.0.0.1 (defaults to
#   the real generated/requirements).
# * Extra PyPI deps of the complete stage (services/comfy/complete/
#   requirements.txt) are served from the SAME loopback server: the override
#   sets PIP_INDEX_URL to TEST_PIP_INDEX_URL. That list is empty today, so
#   nothing is fetched; if a pin is ever added there, the test must put that
#   wheel (downloaded on the host) in its loopback index - we chose this over
#   swapping in an empty extras file so the real extras file stays under test.
#   Containers cannot trust the host's PyPI proxy CA, so PyPI itself is never
#   reachable from a build here.

variable "TEST_WHEELS_CONTEXT" {
  default = "generated/requirements"
}

variable "TEST_PIP_INDEX_URL" {
  default = "http://127.0.0.1:9/simple/"
}

variable "TEST_CORE_IMAGE" {
  default = "local/core-standin:test"
}

target "complete-cuda" {
  network = "host"
  contexts = {
    core   = "docker-image://${TEST_CORE_IMAGE}"
    wheels = TEST_WHEELS_CONTEXT
  }
  args = {
    PIP_INDEX_URL = TEST_PIP_INDEX_URL
  }
}
