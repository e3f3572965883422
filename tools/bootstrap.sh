#!/usr/bin/env bash
# Set up this checkout on a fresh machine.
#
#   bash tools/bootstrap.sh            # .venv with comfyimg, invoke, nox, test deps
#   bash tools/bootstrap.sh --engine   # also: Docker engine + buildx, started without a bridge,
#                                      # and the local test base images (root, Debian)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

log() { printf '[bootstrap] %s\n' "$*" >&2; }

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
log "installing comfyimg and its test dependencies into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if [ "${1:-}" = "--engine" ]; then
    log "installing and starting the Docker engine"
    bash tools/engine/install.sh
    bash tools/engine/start.sh
    log "building the local test base images"
    bash tools/engine/base-image.sh
fi
log "done: .venv/bin/invoke --list, .venv/bin/nox --list"
