#!/usr/bin/env bash
# Set up this checkout on a fresh machine.
#
#   bash tools/bootstrap.sh                 # .venv with comfyimg, invoke, nox and the test deps
#   bash tools/bootstrap.sh --engine        # also: Docker engine + buildx (Debian, root), started
#                                           # without a bridge network
#   bash tools/bootstrap.sh --engine --test-images
#                                           # also: the local base + stand-in core images the
#                                           # engine tests build on
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

log() { printf '[bootstrap] %s\n' "$*" >&2; }

engine=0 images=0
for arg in "$@"; do
    case $arg in
        --engine) engine=1 ;;
        --test-images) images=1 ;;
        *) printf 'usage: %s [--engine] [--test-images]\n' "$0" >&2; exit 2 ;;
    esac
done

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
log "installing comfyimg and its test dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if [ "$engine" = 1 ]; then
    log "installing and starting the Docker engine"
    bash tools/engine/install.sh
    bash tools/engine/start.sh
fi
if [ "$images" = 1 ]; then
    log "building the local test base images"
    bash tools/engine/base-image.sh
fi
log "done: .venv/bin/invoke --list, .venv/bin/nox --list"
