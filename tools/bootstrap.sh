#!/usr/bin/env bash
# Set up this checkout on a fresh machine, from the lock (uv.lock).
#
#   bash tools/bootstrap.sh                 # .venv: comfyimg + the locked tools and test deps
#   bash tools/bootstrap.sh --engine        # also: Docker engine + buildx (Debian, root), started
#                                           # without a bridge network
#   bash tools/bootstrap.sh --engine --arm64
#                                           # also: qemu-user-static + its binfmt_misc handler,
#                                           # so the engine builds linux/arm64 images (emulated)
#   bash tools/bootstrap.sh --engine --test-images
#                                           # also: the local base + stand-in core images the
#                                           # engine tests build on (and --arm64: the arm64
#                                           # base image needs it)
#
# uv itself is installed into .venv at the version and hashes uv.lock records, then
# `uv sync --locked` installs exactly the locked set (it fails, and changes nothing,
# when pyproject.toml and uv.lock disagree).
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

log() { printf '[bootstrap] %s\n' "$*" >&2; }

engine=0 images=0 arm64=0
for arg in "$@"; do
    case $arg in
        --engine) engine=1 ;;
        --test-images) images=1 arm64=1 ;;
        --arm64) arm64=1 ;;
        *) printf 'usage: %s [--engine] [--arm64] [--test-images]\n' "$0" >&2; exit 2 ;;
    esac
done

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
log "installing uv (the version and hashes in uv.lock)"
.venv/bin/python tools/uv_requirement.py > .venv/uv-requirement.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps \
    -r .venv/uv-requirement.txt
# The platform's certificate store: some machines reach PyPI through a proxy with its own CA.
export UV_SYSTEM_CERTS=1
log "installing the locked set into .venv (uv sync --locked)"
.venv/bin/uv sync --locked --quiet

if [ "$engine" = 1 ]; then
    log "installing the Docker engine"
    bash tools/engine/install.sh
fi
if [ "$arm64" = 1 ]; then
    log "arm64 emulation (qemu-user-static, binfmt_misc)"
    bash tools/engine/arm64.sh
fi
if [ "$engine" = 1 ]; then
    log "starting the Docker engine"
    bash tools/engine/start.sh
fi
if [ "$images" = 1 ]; then
    log "building the local test base images"
    bash tools/engine/base-image.sh
fi
log "done: .venv/bin/invoke --list, .venv/bin/nox --list"
