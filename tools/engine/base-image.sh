#!/usr/bin/env bash
# Build the local images that engine tests build the project's Dockerfiles on,
# without pulling anything from a public registry:
#
#   local/debian-py:bookworm   debootstrap'd Debian 12 + python3 (3.11), venv,
#                              pip, tini and passwd (useradd), via `docker import`.
#                              Skipped when the image already exists.
#   local/core-standin:test    tests/engine/standin/Dockerfile on top of it: the
#                              same contract as the real core image (venv at
#                              /app/.venv with REAL CPU torch, user comfy, the
#                              real core entrypoint, /app/ComfyUI data dirs).
#                              Skipped when the image carries a label with the
#                              hash of its inputs (or rebuilt from cache).
#
#   tools/engine/base-image.sh     # needs root (debootstrap) and a running engine
#
# Containers cannot trust the host's PyPI proxy CA, so torch and its runtime
# deps are downloaded ON THE HOST with pip (cp311 manylinux wheels) and served
# to the build from a loopback HTTP server (127.0.0.1 only), the build running
# with --network host. The server is stopped on exit.
#
# Environment:
#   ENGINE_CACHE_DIR     cache for wheels and rootfs tarball (default /var/cache/comfyimg-engine)
#   STANDIN_TORCH        torch version for the stand-in (default 2.13.0)
#   MIRROR_URI           Debian mirror (default: read from the machine's apt sources)
#   FORCE=1              rebuild both images
set -euo pipefail

HERE=$(dirname "$(readlink -f "$0")")
ROOT=$(readlink -f "$HERE/../..")
CACHE_DIR=${ENGINE_CACHE_DIR:-/var/cache/comfyimg-engine}
BASE_IMAGE=local/debian-py:bookworm
STANDIN_IMAGE=local/core-standin:test
STANDIN_DIR=$ROOT/tests/engine/standin
TORCH_VERSION=${STANDIN_TORCH:-2.13.0}
SUITE=bookworm
INCLUDE=python3,python3-venv,python3-pip,tini,passwd

log() { printf '[engine/base-image] %s\n' "$*" >&2; }
die() { printf '[engine/base-image] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=tools/engine/_mirror.sh
. "$HERE/_mirror.sh"

mkdir -p "$CACHE_DIR"
docker info >/dev/null 2>&1 || die "no Docker engine answering; run tools/engine/start.sh"

cleanup_pids=()
cleanup_dirs=()
cleanup() {
    local p d
    for p in "${cleanup_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    for d in "${cleanup_dirs[@]}"; do rm -rf --one-file-system "$d"; done
}
trap cleanup EXIT

# ---------------------------------------------------------------- base image
t0=$SECONDS
if [ -z "${FORCE:-}" ] && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE exists; skipping debootstrap"
else
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    command -v debootstrap >/dev/null || die "debootstrap missing; run tools/engine/install.sh"
    MIRROR=$(debian_mirror_uri) || die "no Debian mirror URI in apt sources; set MIRROR_URI"
    ROOTFS=$(mktemp -d /var/tmp/debian-py.XXXXXX)
    cleanup_dirs+=("$ROOTFS")
    log "debootstrap --variant=minbase --include=$INCLUDE $SUITE (mirror $MIRROR)"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$CACHE_DIR/debootstrap.log" 2>&1 || {
        tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE_DIR/debootstrap.log)"; }
    # Slim the tree: package caches and lists are useless in an image.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
        "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* \
        "$ROOTFS"/usr/share/locale/*
    tar -C "$ROOTFS" --numeric-owner -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE" >/dev/null
    log "imported $BASE_IMAGE in $((SECONDS - t0))s"
fi

# ---------------------------------------------------------- stand-in "core"
t1=$SECONDS
# The inputs of the stand-in: its own folder, the real entrypoint, the torch version.
inputs_hash=$(
    {
        printf 'torch=%s\n' "$TORCH_VERSION"
        docker image inspect -f '{{.Id}}' "$BASE_IMAGE"
        find "$STANDIN_DIR" "$ROOT/services/comfy/core/entrypoint.sh" -type f -print0 | sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
)
have_hash=$(docker image inspect -f '{{ index .Config.Labels "comfyimg.standin.inputs" }}' "$STANDIN_IMAGE" 2>/dev/null || true)
if [ -z "${FORCE:-}" ] && [ "$have_hash" = "$inputs_hash" ]; then
    log "$STANDIN_IMAGE is up to date ($inputs_hash); skipping"
    exit 0
fi

WHEELS=$CACHE_DIR/standin-wheels/torch-$TORCH_VERSION-numpy
if [ ! -f "$WHEELS/.complete" ]; then
    log "downloading torch==$TORCH_VERSION (cpu) + runtime deps for cp311 into $WHEELS"
    mkdir -p "$WHEELS"
    # The CPU wheel may already lie on the machine (pip's find-links); pip
    # takes it from there or from the index the host is configured with.
    python3 -m pip download --quiet --dest "$WHEELS" \
        --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any \
        "torch==$TORCH_VERSION" numpy
    ls "$WHEELS"/torch-"$TORCH_VERSION"*cpu*.whl >/dev/null 2>&1 \
        || ls "$WHEELS"/torch-"$TORCH_VERSION"*.whl >/dev/null \
        || die "no torch $TORCH_VERSION wheel downloaded"
    touch "$WHEELS/.complete"
fi

# Loopback wheel server (directory listing works with pip --find-links).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$WHEELS" "$port" >"$CACHE_DIR/standin-http.log" 2>&1 &
cleanup_pids+=("$!")
for _ in $(seq 50); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/', timeout=1)" 2>/dev/null && break
    sleep 0.1
done

log "building $STANDIN_IMAGE (wheels from http://127.0.0.1:$port/)"
docker buildx build --builder default --load --network host \
    --build-context "core-src=$ROOT/services/comfy/core" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    --build-arg "TORCH_VERSION=$TORCH_VERSION" \
    --build-arg "WHEEL_URL=http://127.0.0.1:$port/" \
    --label "comfyimg.standin.inputs=$inputs_hash" \
    -t "$STANDIN_IMAGE" -f "$STANDIN_DIR/Dockerfile" "$STANDIN_DIR"
log "built $STANDIN_IMAGE in $((SECONDS - t1))s"
docker run --rm --network none --entrypoint /app/.venv/bin/python "$STANDIN_IMAGE" \
    -c 'import sys, torch; print("stand-in:", sys.version.split()[0], "torch", torch.__version__)'
