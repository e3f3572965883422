#!/usr/bin/env bash
# Issue 20's whole path on the H200, through the project's own commands (tests/gpu/fullpath.py):
# loopback GitHub -> `invoke bump --verify` -> `invoke bake -t complete-cuda` (the real complete
# Dockerfile, buildx, on a GPU-capable stand-in core) -> `nox -s validate_sage2` -> `nox -s smoke`
# on that image -> the same image with a broken sageattn must fail smoke.
#
# The stand-in core is what `docker import` can make of the machine (no base image can be pulled
# there): its Python 3.12 and torch 2.11+cu130 (a venv at /app/.venv that reaches the machine's
# torch through a .pth file, with pip), ComfyUI a125cd84 at /app/ComfyUI with its data dirs, the
# wheels ComfyUI lacks there, user comfy 1000:1000, a 1777 /tmp, and the project's entrypoint
# behind tini as ENTRYPOINT with the core's CMD. The complete stage on top is the project's own.
#
# More than 64 MiB must travel, so three device calls made back to back (/tmp there survives
# while the machine is warm, 30 s):
#   HERE:   bash tests/gpu/fullpath_h200.sh pack      # fills .gpu/fa .gpu/fb .gpu/fc (git-ignored)
#   THERE:  run(command="bash tests/gpu/fullpath_h200.sh stage-a", carry=[".gpu/fa"], timeout_s=120)
#           run(command="bash tests/gpu/fullpath_h200.sh stage-b", carry=[".gpu/fb"], timeout_s=300)
#           run(command="bash tests/gpu/fullpath_h200.sh run", carry=[".gpu/fc"], timeout_s=600)
# stage-b also builds SageAttention 2.2.0 (d1a57a5) for sm90 from source (~90 s).
# `run` writes $OUT/fullpath-h200/ (steps.json, summary.md, every step's log and report).
# `run` also starts Debian's docker-registry (carried in .gpu/fc, from the build machine's
# /usr/bin/docker-registry) on 127.0.0.1: the image is pushed there, validated and smoked with
# --attest, and `invoke verify` must answer sm90 `measured` (tests/gpu/fullpath.py, step 6).
# COMFYIMG_FULLPATH_REGISTRY=0 skips that (the run as before issue 30). The push of the
# stand-in image (the machine's Python and torch, several GB) adds its own minutes: its time is
# in summary.md (2b-push). Evidence: unpack $OUT/fullpath-h200.tar.gz into
# docs/evidence/h200/<date>/fullpath-attest/ (verify.json and 6-verify*.log hold the answer).
# Knobs (environment): COMFYIMG_GPU_PACK (the packs' folder, default .gpu; absolute, or relative to the
# repository), COMFYIMG_SHARED (the vendor and tools folder pack reads, default ../shared),
# COMFYIMG_SMOKE_MODEL (the good image's smoke: sdxl, flux, wan or all; default sdxl),
# COMFYIMG_SMOKE_BROKEN=0 (skip the broken image's smoke). Issue 31's speed proof is meant to run
#   COMFYIMG_GPU_PACK=$PWD/.gpu/speed-pack COMFYIMG_SMOKE_MODEL=all COMFYIMG_SMOKE_BROKEN=0 \
#     COMFYIMG_FULLPATH_REGISTRY=0 bash .gpu/speed-src/tests/gpu/fullpath_h200.sh run
# from a copy of the tree in .gpu/speed-src, carrying .gpu/speed-src and .gpu/speed-pack/fc.
set -u -o pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
STAGE=/tmp/comfyimg-fullpath-stage
PACK=${COMFYIMG_GPU_PACK:-.gpu}
SHARED=${COMFYIMG_SHARED:-../shared}
PLAT="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64
--platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_27_x86_64
--platform manylinux_2_28_x86_64"
COMFY_WHEELS="av comfyui-frontend-package==1.27.10 sqlalchemy alembic mako greenlet torchsde trampoline spandrel
pydantic-settings python-dotenv soundfile"
HOST_WHEELS="nox argcomplete attrs colorlog dependency-groups humanize packaging python-on-whales pydantic
pydantic-core annotated-types typing-inspection typing-extensions rich markdown-it-py mdurl pygments tomlkit
httpx httpcore h11 anyio sniffio certifi idna invoke nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm pip"

pack() {
    rm -rf "$PACK"/fa "$PACK"/fb "$PACK"/fc && mkdir -p "$PACK"/fa/cw "$PACK"/fb/hw "$PACK"/fc
    # shellcheck disable=SC2086
    python3 -m pip download -q $PLAT -d "$PACK"/fa/cw $COMFY_WHEELS
    # shellcheck disable=SC2086
    python3 -m pip download -q $PLAT -d "$PACK"/fb/hw $HOST_WHEELS
    cp "$SHARED"/vendor/ComfyUI-a125cd84.tar.gz "$SHARED"/vendor/SageAttention-d1a57a5.tar.gz "$PACK"/fb/
    local tmp; tmp=$(mktemp -d)
    dpkg -x "${ENGINE_CACHE_DIR:-/var/cache/comfyimg-engine}"/debs/docker-buildx_*.deb "$tmp/x"
    xz -9e -T2 -c "$tmp/x/usr/libexec/docker/cli-plugins/docker-buildx" >"$PACK"/fb/docker-buildx.xz
    # gpu-docker.sh's engine bundle, stripped and xz -9e: ~42 MB instead of 57
    bash "$SHARED"/tools/gpu-docker.sh bundle "$tmp/plain.tar.xz" >/dev/null && tar -C "$tmp" -xJf "$tmp/plain.tar.xz" \
        && strip "$tmp"/bin/* 2>/dev/null; tar -C "$tmp" -cf - bin | xz -9e -T2 >"$PACK"/fc/docker.tar.xz
    cp "$SHARED"/tools/gpu-docker.sh "$PACK"/fc/
    xz -9e -T2 -c "$(command -v docker-registry || echo /usr/bin/docker-registry)" >"$PACK"/fc/docker-registry.xz
    rm -rf "$tmp"
    du -sh "$PACK"/fa "$PACK"/fb "$PACK"/fc
}

stage_a() {
    rm -rf "$STAGE" && mkdir -p "$STAGE" && cp -r "$PACK"/fa/cw "$STAGE/" && date +%s >"$STAGE/a"
    ls "$STAGE/cw" | wc -l
}

stage_b() {
    [ -f "$STAGE/a" ] || { echo "FAIL: $STAGE/a missing: the machine went cold after stage-a"; return 2; }
    cp -r "$PACK"/fb/. "$STAGE/" || return 1
    local py=/opt/torch/.venv/bin/python; [ -x "$py" ] || py=$(command -v python3)
    local work=$STAGE/sa t0; t0=$(date +%s)
    rm -rf "$work" && mkdir -p "$work" && tar -C "$work" -xzf "$STAGE/SageAttention-d1a57a5.tar.gz"
    (cd "$work"/*/ && TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=14 "$py" setup.py -q bdist_wheel >"$STAGE/sage-build.log" 2>&1) \
        || { tail -30 "$STAGE/sage-build.log"; return 1; }
    cp "$work"/*/dist/*.whl "$STAGE/" && ls -la "$STAGE"/*.whl
    echo "built in $(( $(date +%s) - t0 )) s"; date +%s >"$STAGE/b"
}

core_image() {  # core_image IMG WORK: the stand-in core (see the header)
    local img=$1 work=$2 py=$3 out=$4
    local venv site base stage=$work/stage extra=/opt/comfyimg-site
    venv=$("$py" -c 'import sys; print(sys.prefix)'); base=$("$py" -c 'import sys; print(sys.base_prefix)')
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    local pyver; pyver=$("$py" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')
    local pth=$work/pth; rm -rf "$stage" "$pth"
    mkdir -p "$stage/etc" "$stage/tmp" "$stage/app" "$stage/home/comfy" "$stage$extra" "$stage/opt/comfyimg-entry" "$pth$site"
    echo "$extra" >"$pth$site/comfyimg-proof.pth"
    chmod 1777 "$stage/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\ncomfy:x:1000:1000:comfy:/home/comfy:/usr/sbin/nologin\n' >"$stage/etc/passwd"
    printf 'root:x:0:\ncomfy:x:1000:\n' >"$stage/etc/group"
    local w; for w in "$STAGE"/cw/*.whl; do "$py" -m zipfile -e "$w" "$stage$extra"; done
    tar -C "$stage/app" -xzf "$STAGE/ComfyUI-a125cd84.tar.gz" && mv "$stage"/app/ComfyUI* "$stage/app/ComfyUI.tmp" \
        && mv "$stage/app/ComfyUI.tmp" "$stage/app/ComfyUI" || return 1
    (cd "$stage/app/ComfyUI" && mkdir -p models output input user custom_nodes temp \
        && chown -R 1000:0 models output input user custom_nodes temp && chmod -R u+rwX,g+rwX models output input user custom_nodes temp)
    # /app/.venv as core makes it, on the machine's Python: torch through a .pth, pip from its wheel.
    "$base/bin/$pyver" -m venv --without-pip "$stage/app/.venv" || return 1
    local vsite="$stage/app/.venv/lib/$pyver/site-packages"
    printf '%s\n%s\n' "$site" "$extra" >"$vsite/comfyimg-standin.pth"
    "$py" -m zipfile -e "$(ls "$STAGE"/hw/pip-*.whl)" "$vsite"
    printf '#!/bin/sh\nexec /app/.venv/bin/python -m pip "$@"\n' >"$stage/app/.venv/bin/pip" && chmod 0755 "$stage/app/.venv/bin/pip"
    install -m 0755 services/comfy/core/entrypoint.sh "$stage/opt/comfyimg-entry/comfy-entrypoint"
    install -m 0755 /tmp/dk/bin/docker-init "$stage/opt/comfyimg-entry/tini"  # the bundle's tini-static
    chown 1000:1000 "$stage/home/comfy"; chmod -R a+rX "$stage/app" "$stage$extra"
    local parts=(usr etc/ld.so.cache "${venv#/}")
    for p in bin sbin lib lib64 lib32; do [ -e "/$p" ] && parts+=("$p"); done
    [ "$base" = /usr ] || parts+=("${base#/}")
    tar -C / --exclude='usr/local/cuda*' --exclude=usr/local/nvidia --exclude=usr/share/doc --exclude=usr/src \
        --exclude='__pycache__' -cf - "${parts[@]}" \
        -C "$stage" etc tmp app home opt/comfyimg-entry "${extra#/}" -C "$pth" "${site#/}/comfyimg-proof.pth" 2>"$out/tar.err" \
      | docker import --change 'ENV VIRTUAL_ENV=/app/.venv' --change 'ENV PATH=/app/.venv/bin:/usr/local/bin:/usr/bin:/bin' \
          --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' --change 'ENV PIP_NO_CACHE_DIR=1' \
          --change 'WORKDIR /app/ComfyUI' \
          --change 'ENTRYPOINT ["/opt/comfyimg-entry/tini", "--", "/opt/comfyimg-entry/comfy-entrypoint"]' \
          --change 'CMD ["python", "main.py", "--listen", "0.0.0.0"]' - "$img" >/dev/null \
      || { tail "$out/tar.err"; return 1; }
    docker run --rm --network none --entrypoint /bin/sh "$img" -c \
        'command -v pip; pip --version; pip freeze | grep -iE "^(torch|torchvision|torchaudio)=="; python -c "import torch, triton; print(torch.__version__, triton.__version__)"' \
        || { echo "FAIL: the stand-in core has no working /app/.venv"; return 1; }
}

registry_start() {  # registry_start WORK OUT: docker-registry on 127.0.0.1:<free port>; sets REGISTRY_HOST
    local work=$1 out=$2 port
    xz -dc "$PACK"/fc/docker-registry.xz >"$work/docker-registry" && chmod 0755 "$work/docker-registry" || return 1
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%s\n  secret: fullpath-only\n' \
        "$work/registry-data" "$port" >"$work/registry.yml"
    setsid "$work/docker-registry" serve "$work/registry.yml" >"$out/registry.log" 2>&1 &
    echo $! >"$work/registry.pid"
    REGISTRY_HOST=127.0.0.1:$port
    local i; for i in $(seq 50); do
        python3 -c "import urllib.request as u; u.urlopen('http://$REGISTRY_HOST/v2/', timeout=1)" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "FAIL: docker-registry did not answer on $REGISTRY_HOST"; tail "$out/registry.log"; return 1
}

run() {
    local out=${OUT:?the device tool sets OUT}/fullpath-h200
    mkdir -p "$out"
    exec > >(tee "$out/run.log") 2>&1
    [ -f "$STAGE/b" ] || { echo "FAIL: $STAGE/b missing: the machine went cold; run stage-a and stage-b again"; return 2; }
    local t0; t0=$(date +%s)
    local py=/opt/torch/.venv/bin/python; [ -x "$py" ] || py=$(command -v python3)
    local work=/tmp/comfyimg-fullpath; rm -rf "$work"; mkdir -p "$work/deps"
    echo "== machine"; date -u; nvidia-smi -L; "$py" -c 'import torch; print("torch", torch.__version__)'
    echo "== engine + buildx"
    eval "$(bash "$PACK"/fc/gpu-docker.sh start "$PACK"/fc/docker.tar.xz | tail -1)" || { echo "FAIL: engine"; return 1; }
    trap 'kill "$(cat /tmp/dockerd.pid 2>/dev/null)" 2>/dev/null' EXIT
    export DOCKER_CONFIG=$work/docker-config; mkdir -p "$DOCKER_CONFIG/cli-plugins"
    xz -dc "$STAGE/docker-buildx.xz" >"$DOCKER_CONFIG/cli-plugins/docker-buildx" && chmod 0755 "$DOCKER_CONFIG/cli-plugins/docker-buildx"
    docker buildx version || return 1
    local w; for w in "$STAGE"/hw/*.whl; do case $w in */pip-*) ;; *) "$py" -m zipfile -e "$w" "$work/deps" ;; esac; done
    chmod 0755 "$work"/deps/nvidia/*/bin/*  # zipfile -e drops the mode: cuobjdump from its wheel
    export PYTHONPATH="$work/deps"
    echo "== stand-in core (machine root + ComfyUI a125cd84)"
    local t1; t1=$(date +%s)
    core_image local/core-gpu-standin:h200 "$work" "$py" "$out" || return 1
    echo "core image in $(( $(date +%s) - t1 )) s"
    local registry=()
    if [ "${COMFYIMG_FULLPATH_REGISTRY:-1}" != 0 ]; then
        echo "== loopback registry (docker-registry, distribution 2.8: no referrers API)"
        registry_start "$work" "$out" || return 1
        registry=(--registry "$REGISTRY_HOST")
        trap 'kill "$(cat /tmp/dockerd.pid 2>/dev/null)" "$(cat "$work/registry.pid" 2>/dev/null)" 2>/dev/null' EXIT
    fi
    echo "== the project's commands"
    local wheel; wheel=$(ls "$STAGE"/sageattention-*.whl | head -1)
    "$py" tests/gpu/fullpath.py --wheel "$wheel" --core-image local/core-gpu-standin:h200 --out "$out" \
        --work "$work" --arch sm90 --python cp312 --torch "$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')" \
        --torch-index cu130 --cuda 13.0 --label h200 --require-gpu --smoke "${registry[@]}" \
        --smoke-model "${COMFYIMG_SMOKE_MODEL:-sdxl}" $([ "${COMFYIMG_SMOKE_BROKEN:-1}" = 0 ] && echo --no-smoke-broken)
    local rc=$?
    docker ps -a --format '{{.Names}}' >"$out/leftover-containers.txt"
    echo "whole run $(( $(date +%s) - t0 )) s, rc $rc; leftover containers: $(wc -l <"$out/leftover-containers.txt")"
    # the device tool returns a handful of files: one archive of everything, plus the summary
    tar -C "$out/.." -czf "$OUT/fullpath-h200.tar.gz" fullpath-h200 && cp "$out/summary.md" "$OUT/summary.md" 2>/dev/null
    find "$out" -mindepth 1 -delete
    return $rc
}

case ${1:-} in
    pack) pack ;;
    stage-a) stage_a ;;
    stage-b) stage_b ;;
    run) run ;;
    *) echo "usage: $0 pack | stage-a | stage-b | run" >&2; exit 2 ;;
esac
