#!/usr/bin/env bash
# Build the local images that engine tests build the project's Dockerfiles on,
# without pulling anything from a public registry:
#
#   local/debian-py:bookworm   debootstrap'd Debian 12 + python3 (3.11), venv,
#                              pip, tini and passwd (useradd), via `docker import`.
#                              Skipped when the image already exists.
#   local/debian-py:bookworm-arm64
#                              the same packages for linux/arm64, for the engine test that
#                              builds core-cpu-arm64 under emulation. On an x86-64 machine
#                              debootstrap's second stage (dpkg and every maintainer script
#                              under qemu) took 12 min on the 2-core build machine, so the
#                              packages are only unpacked (debootstrap --foreign, then each
#                              .deb), and the three things the images rely on are done by
#                              hand: /etc/passwd and /etc/group from base-passwd, the shadow
#                              files (pwconv, grpconv) and ld.so.cache (ldconfig), each run
#                              once under qemu (tools/engine/arm64.sh registers it). About
#                              40 s. dpkg's database does not list the packages as
#                              installed: a stand-in, never a base for apt-get.
#                              Skipped when the image exists.
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
#   ARM64_BASE_IMAGE     name of the arm64 base (default local/debian-py:bookworm-arm64)
#   FORCE=1              rebuild every image
set -euo pipefail

HERE=$(dirname "$(readlink -f "$0")")
ROOT=$(readlink -f "$HERE/../..")
CACHE_DIR=${ENGINE_CACHE_DIR:-/var/cache/comfyimg-engine}
BASE_IMAGE=local/debian-py:bookworm
ARM64_BASE_IMAGE=${ARM64_BASE_IMAGE:-local/debian-py:bookworm-arm64}
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

# ---------------------------------------------------------------- base images
# base_image ARCH IMAGE: debootstrap Debian for ARCH (amd64, arm64) and import it as IMAGE.
base_image() {
    local arch=$1 image=$2 t0=$SECONDS rootfs
    if [ -z "${FORCE:-}" ] && docker image inspect "$image" >/dev/null 2>&1; then
        log "$image exists; skipping debootstrap"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    command -v debootstrap >/dev/null || die "debootstrap missing; run tools/engine/install.sh"
    if [ "$arch" = arm64 ] && [ "$(uname -m)" != aarch64 ] && ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        die "no qemu-aarch64 binfmt_misc handler: run tools/engine/arm64.sh (or tools/bootstrap.sh --arm64)"
    fi
    MIRROR=$(debian_mirror_uri) || die "no Debian mirror URI in apt sources; set MIRROR_URI"
    rootfs=$(mktemp -d /var/tmp/debian-py-"$arch".XXXXXX)
    cleanup_dirs+=("$rootfs")
    local foreign=()
    [ "$arch" = arm64 ] && [ "$(uname -m)" != aarch64 ] && foreign=(--foreign)
    log "debootstrap ${foreign[*]} --arch=$arch --variant=minbase --include=$INCLUDE $SUITE (mirror $MIRROR)"
    debootstrap "${foreign[@]}" --arch="$arch" --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$MIRROR" \
        >"$CACHE_DIR/debootstrap-$arch.log" 2>&1 || {
        tail -n 30 "$CACHE_DIR/debootstrap-$arch.log" >&2
        die "debootstrap failed (log: $CACHE_DIR/debootstrap-$arch.log)"; }
    if [ ${#foreign[@]} -gt 0 ]; then  # unpack the rest, then what the maintainer scripts would have done
        local deb
        for deb in "$rootfs"/var/cache/apt/archives/*.deb; do
            dpkg-deb --fsys-tarfile "$deb" | tar -C "$rootfs" -x --keep-directory-symlink \
                || die "cannot unpack $(basename "$deb")"
        done
        [ -e "$rootfs/etc/passwd" ] || cp "$rootfs/usr/share/base-passwd/passwd.master" "$rootfs/etc/passwd"
        [ -e "$rootfs/etc/group" ] || cp "$rootfs/usr/share/base-passwd/group.master" "$rootfs/etc/group"
        chroot "$rootfs" /sbin/ldconfig && chroot "$rootfs" /usr/sbin/pwconv && chroot "$rootfs" /usr/sbin/grpconv \
            || die "ldconfig/pwconv/grpconv failed under emulation"
        rm -rf "$rootfs/debootstrap"
        # Python's byte code does not depend on the CPU: the host's Python, if it is the same
        # version, compiles the standard library as python3.11's postinst (py3compile) would, so
        # that every emulated `python` does not compile it again.
        local pyver
        pyver=$(basename "$(readlink "$rootfs/usr/bin/python3")")
        if [ "$(python3 -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')" = "$pyver" ]; then
            python3 -m compileall -q -j 0 -s "$rootfs" -p / "$rootfs/usr/lib/$pyver" "$rootfs/usr/lib/python3/dist-packages" \
                >/dev/null || log "note: compileall reported errors (files it cannot compile are skipped)"
        fi
        # The first stage leaves /proc a symlink to the host's; BuildKit's runc mounts proc only
        # on a directory ("must be mounted on ordinary directory").
        if [ -L "$rootfs/proc" ]; then rm "$rootfs/proc" && mkdir -m 0555 "$rootfs/proc"; fi
    fi
    # Slim the tree: package caches and lists are useless in an image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" --numeric-owner -c . | docker import --platform "linux/$arch" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$image" >/dev/null
    rm -rf --one-file-system "$rootfs"
    log "imported $image ($arch) in $((SECONDS - t0))s"
}

base_image amd64 "$BASE_IMAGE"
base_image arm64 "$ARM64_BASE_IMAGE"

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
