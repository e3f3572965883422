#!/usr/bin/env bash
# The kernel really runs: `nox -s validate_sage2 -- --image IMG`, with NO GPU flag, through a real
# Docker engine whose GPU is offered only by CDI (the H200 machine; ../shared/tools/gpu-docker.sh).
#
#   bash tests/gpu/docker_h200.sh wheels [DIR]        # HERE (build machine): download the cp312 wheels
#                                                     # the GPU machine may lack into DIR (.gpu/whl)
#   bash tests/gpu/docker_h200.sh run [OUTDIR]        # THERE: everything below; OUTDIR defaults to $OUT
#
# What `run` does, in one command (about 3-4 minutes):
#   1. starts dockerd with CDI (gpu-docker.sh start BUNDLE);
#   2. builds SageAttention 2.2.0 from the vendored source for TORCH_CUDA_ARCH_LIST=9.0 (~90 s),
#      unless SAGE_WHEEL names a prebuilt wheel (e.g. from tests/gpu/kernels_h200.sh);
#   3. makes an image from the machine's own Python and torch (tar | docker import): /usr, the
#      torch venv, /etc/ld.so.cache, a passwd with user comfy, a 1777 /tmp, the wheel installed in
#      the venv, the vendored ComfyUI at /app/ComfyUI and the modules its attention path imports
#      (einops, psutil, PIL: the machine's, else carried wheels, else - PIL only - a marked stand-in);
#   4. runs `nox --no-venv -s validate_sage2 -- --image IMG` (no --gpus: auto must find CDI) and
#      times it; expects a pass with the GPU and ComfyUI checks run;
#   5. commits a broken image (sageattn returns q) and runs the same: it must fail in the probe's
#      numerics AND in the ComfyUI rows;
#   6. writes OUTDIR/summary.md (+ the reports, logs, environment); exits 0 only if all held.
#
# Inputs (paths relative to the repo root; each has a fallback):
#   BUNDLE=.gpu/docker.tar.xz            the engine bundle (gpu-docker.sh bundle)
#   GPU_DOCKER=.gpu/gpu-docker.sh        else ../shared/tools/gpu-docker.sh
#   WHEELS=.gpu/whl                      carried wheels (host side: nox, python-on-whales...; image side)
#   COMFYUI_TAR=.gpu/ComfyUI-a125cd84.tar.gz      else ../shared/vendor/...
#   SAGE_TAR=.gpu/SageAttention-d1a57a5.tar.gz    else ../shared/vendor/...
#   SAGE_WHEEL=path.whl                  skip the build
#   PYTHON=/opt/torch/.venv/bin/python   the machine's Python with torch (image and host side)
#   EXTRA_EXCLUDES="usr/lib/jvm ..."     more tar excludes for the image root (a dry run elsewhere)
set -u -o pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"

pick() {  # first existing path
    local p
    for p in "$@"; do [ -e "$p" ] && { echo "$p"; return 0; }; done
    return 1
}

# A wheel is a zip: unpacked as is, it is what `pip install --no-deps --target` gives these
# wheels (no scripts needed), without needing pip in the machine's venv.
unwheel() { "$py" -m zipfile -e "$1" "$2"; }

HOST_MODULES="nox argcomplete attrs colorlog dependency_groups humanize packaging python_on_whales pydantic
pydantic_core annotated_types typing_inspection typing_extensions rich tomlkit yaml invoke httpx httpcore h11 anyio
sniffio certifi idna"  # python -m comfyimg imports the whole CLI (invoke, httpx) since the stage layout
HOST_WHEELS="nox argcomplete attrs colorlog dependency-groups humanize packaging python-on-whales pydantic
pydantic-core annotated-types typing-inspection typing-extensions rich tomlkit pyyaml invoke httpx httpcore h11 anyio
sniffio certifi idna"
IMAGE_WHEELS="einops psutil"  # pillow is 8 MB: carried only if it fits (see `wheels`)

wheels() {
    local dir=${1:-.gpu/whl}
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        -d "$dir" $HOST_WHEELS $IMAGE_WHEELS
    ls -la "$dir"
    du -ch "$dir"/*.whl | tail -1
}

run() {
    local out=${1:-${OUT:?set OUT or pass OUTDIR}}
    mkdir -p "$out"
    exec > >(tee "$out/run.log") 2>&1
    local t_start; t_start=$(date +%s)
    local py=${PYTHON:-/opt/torch/.venv/bin/python}
    [ -x "$py" ] || py=$(command -v python3)
    local bundle gpudocker comfytar sagetar wheeldir
    bundle=$(pick "${BUNDLE:-.gpu/docker.tar.xz}") || { echo "no engine bundle (BUNDLE)"; return 2; }
    gpudocker=$(pick "${GPU_DOCKER:-.gpu/gpu-docker.sh}" ../shared/tools/gpu-docker.sh) || { echo "no gpu-docker.sh"; return 2; }
    comfytar=$(pick "${COMFYUI_TAR:-.gpu/ComfyUI-a125cd84.tar.gz}" ../shared/vendor/ComfyUI-a125cd84.tar.gz) \
        || { echo "no ComfyUI tarball"; return 2; }
    wheeldir=${WHEELS:-.gpu/whl}
    local work=/tmp/comfyimg-h200
    rm -rf "$work" && mkdir -p "$work/deps" "$work/stage"

    echo "== machine"; date -u; nvidia-smi -L; "$py" -c 'import sys, torch; print(sys.executable, sys.version.split()[0], "torch", torch.__version__, torch.version.cuda)'

    echo "== engine"
    local exports
    exports=$(bash "$gpudocker" start "$bundle" | tee /dev/stderr | tail -1) || { echo "engine did not start"; return 1; }
    eval "$exports"
    trap 'kill "$(cat /tmp/dockerd.pid 2>/dev/null)" 2>/dev/null' EXIT
    docker info --format 'CDI spec dirs {{json .CDISpecDirs}}, runtimes {{range $k, $v := .Runtimes}}{{$k}} {{end}}'

    echo "== host-side modules (nox, python-on-whales, ...)"
    local w missing=""
    for w in "$wheeldir"/*.whl; do
        [ -e "$w" ] && unwheel "$w" "$work/deps"
    done
    export PYTHONPATH="$work/deps:$repo/src"
    for m in $HOST_MODULES; do "$py" -c "import $m" 2>/dev/null || missing="$missing $m"; done
    [ -z "$missing" ] || { echo "missing on this machine and not carried:$missing (bash tests/gpu/docker_h200.sh wheels)"; return 2; }

    echo "== SageAttention 2.2.0 for sm90"
    local wheel=${SAGE_WHEEL:-}
    local t_build; t_build=$(date +%s)
    if [ -z "$wheel" ]; then
        sagetar=$(pick "${SAGE_TAR:-.gpu/SageAttention-d1a57a5.tar.gz}" ../shared/vendor/SageAttention-d1a57a5.tar.gz) \
            || { echo "no SageAttention tarball"; return 2; }
        mkdir -p "$work/sa" && tar -C "$work/sa" -xzf "$sagetar"
        (cd "$work"/sa/*/ && TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=12 "$py" setup.py -q bdist_wheel >"$out/sage-build.log" 2>&1) \
            || { tail -30 "$out/sage-build.log"; return 1; }
        wheel=$(ls "$work"/sa/*/dist/*.whl)
    fi
    echo "wheel: $wheel ($(du -h "$wheel" | cut -f1)), build $(( $(date +%s) - t_build )) s"

    echo "== image root"
    # docker import refuses an archive that names a path twice, so what the proof adds lives in
    # its own folder (/opt/comfyimg-site, put on sys.path by one .pth file in the venv), never in
    # a folder the machine's part of the root already holds.
    local venv site base stage=$work/stage extra=/opt/comfyimg-site img=local/comfyimg-h200:good bad=local/comfyimg-h200:broken
    venv=$("$py" -c 'import sys; print(sys.prefix)')
    base=$("$py" -c 'import sys; print(sys.base_prefix)')
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    local pth=$work/pth  # apart from the stage: its tmp/ must stay empty (the venv may live under /tmp)
    mkdir -p "$stage/etc" "$stage/tmp" "$stage/app" "$stage$extra" "$pth$site"
    echo "$extra" >"$pth$site/comfyimg-proof.pth"
    chmod 1777 "$stage/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\ncomfy:x:1000:1000:comfy:/home/comfy:/usr/sbin/nologin\n' >"$stage/etc/passwd"
    printf 'root:x:0:\ncomfy:x:1000:\n' >"$stage/etc/group"
    unwheel "$wheel" "$stage$extra"
    tar -C "$stage/app" -xzf "$comfytar" && mv "$stage"/app/ComfyUI* "$stage/app/ComfyUI.tmp" && mv "$stage/app/ComfyUI.tmp" "$stage/app/ComfyUI"
    local mod origin
    : >"$out/image-modules.txt"
    for mod in einops psutil PIL; do
        if "$py" -c "import $mod" 2>/dev/null; then origin="the machine's ($("$py" -c "import $mod; print($mod.__file__)"))"
        else
            w=$(ls "$wheeldir"/"$( [ $mod = PIL ] && echo pillow || echo $mod )"-*.whl 2>/dev/null | head -1)
            if [ -n "$w" ]; then
                unwheel "$w" "$stage$extra"
                origin="carried wheel $(basename "$w")"
            elif [ $mod = PIL ]; then
                # ComfyUI's attention import chain reaches comfy/ldm/util.py, which imports PIL for a
                # text-to-image debug helper only; the attention path never calls it. Marked as such.
                mkdir -p "$stage$extra/PIL"
                for sub in __init__ Image ImageDraw ImageFont; do
                    echo '# comfyimg H200 proof: stand-in, Pillow is not on this machine (attention never uses it)' \
                        >"$stage$extra/PIL/$sub.py"
                done
                origin="STAND-IN (no Pillow on the machine, 8 MB wheel not carried; the attention path does not use it)"
            else
                echo "image module $mod: not on the machine and no wheel in $wheeldir"; return 2
            fi
        fi
        echo "$mod: $origin" | tee -a "$out/image-modules.txt"
    done
    chmod -R a+rX "$stage/app" "$stage$extra"  # the probe runs as comfy
    local parts=(usr etc/ld.so.cache "${venv#/}")
    for p in bin sbin lib lib64 lib32; do [ -e "/$p" ] && parts+=("$p"); done
    [ "$base" = /usr ] || parts+=("${base#/}")
    local t_img; t_img=$(date +%s)
    tar -C / --exclude='usr/local/cuda*' --exclude=usr/local/nvidia --exclude=usr/share/doc --exclude=usr/src \
        --exclude='__pycache__' $(for e in ${EXTRA_EXCLUDES:-}; do printf -- '--exclude=%s ' "$e"; done) \
        -cf - "${parts[@]}" -C "$stage" etc tmp app "${extra#/}" -C "$pth" "${site#/}/comfyimg-proof.pth" 2>"$out/tar.err" \
        | docker import --change "ENV PATH=$venv/bin:/usr/local/bin:/usr/bin:/bin" --change 'WORKDIR /app/ComfyUI' \
            - "$img" >/dev/null || { tail "$out/tar.err"; return 1; }
    echo "image $img: $(docker image inspect "$img" --format '{{.Size}}' | awk '{printf "%.1f GB", $1/1e9}'), $(( $(date +%s) - t_img )) s"

    echo "== broken image: sageattn returns q"
    docker rm -f comfyimg-h200-break >/dev/null 2>&1
    docker run --name comfyimg-h200-break --network none --user 0 --entrypoint /bin/sh "$img" -c \
        "printf '\n\ndef sageattn(q, k, v, *args, **kwargs):  # comfyimg H200 proof: deliberately broken\n    return q\n' >> $extra/sageattention/__init__.py" \
        && docker commit comfyimg-h200-break "$bad" >/dev/null && docker rm comfyimg-h200-break >/dev/null \
        || { echo "could not make the broken image"; return 1; }

    export CI=1 PATH="$venv/bin:$PATH"  # nox's session.run("python") is this Python, with PYTHONPATH
    local case rc t0 t1
    for case in good broken; do
        echo "== nox -s validate_sage2 -- --image local/comfyimg-h200:$case   (no GPU flag)"
        rm -rf "$repo/reports"
        t0=$(date +%s.%N)
        "$py" -m nox --no-venv -s validate_sage2 -- --image "local/comfyimg-h200:$case" >"$out/$case.log" 2>&1
        rc=$?
        t1=$(date +%s.%N)
        tail -n 40 "$out/$case.log"
        mkdir -p "$out/$case" && cp -r "$repo/reports/." "$out/$case/" 2>/dev/null
        echo "$case rc=$rc wall=$("$py" -c "print(round($t1 - $t0, 1))") s" | tee -a "$out/timing.txt"
        echo "$rc" >"$out/$case/rc"
    done
    docker ps -a --filter name=comfyimg-validate --format '{{.Names}}' >"$out/leftover-containers.txt"

    "$py" "$repo/tests/gpu/docker_h200_expect.py" "$out" "$(basename "$wheel")" "$(( $(date +%s) - t_start ))"
}

case ${1:-} in
    wheels) shift; wheels "$@" ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 wheels [DIR] | run [OUTDIR]" >&2; exit 2 ;;
esac
