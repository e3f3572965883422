#!/usr/bin/env bash
# `nox -s smoke` on the H200, through a real Docker engine whose GPU is offered only by CDI:
# an image made from the machine's own Python and torch (tar | docker import, as
# tests/gpu/docker_h200.sh does) with ComfyUI a125cd84, its missing PyPI wheels, SageAttention
# 2.2.0 built here for sm90, and the project's own entrypoint (services/comfy/core/entrypoint.sh)
# as ENTRYPOINT with the compose command as CMD. Then the same image with a broken sageattn
# (returns q) must FAIL the smoke. NOT the bake-built image: see the report of issue 20.
#
# More than 64 MiB must travel, so two device calls made back to back (/tmp survives while warm):
#   HERE:   bash tests/gpu/smoke_h200.sh pack        # fills .gpu/a (ComfyUI's wheels, ~52 MB) and
#                                                    # .gpu/b (engine bundle, host wheels, tarballs)
#   THERE:  run(command="bash tests/gpu/smoke_h200.sh stage", carry=[".gpu/a"], timeout_s=120)
#           run(command="bash tests/gpu/smoke_h200.sh run", carry=[".gpu/b"], timeout_s=600)
# `run` writes $OUT/smoke-h200/ (reports, logs, summary.md) and exits 0 only if the good image
# passed and the broken one failed naming the divergence.
set -u -o pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
STAGE=/tmp/comfyimg-stage
PLAT="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64
--platform manylinux_2_17_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_27_x86_64
--platform manylinux_2_28_x86_64"
COMFY_WHEELS="av comfyui-frontend-package==1.27.10 sqlalchemy alembic mako greenlet torchsde trampoline spandrel
pydantic-settings python-dotenv soundfile"
HOST_WHEELS="nox argcomplete attrs colorlog dependency-groups humanize packaging python-on-whales pydantic
pydantic-core annotated-types typing-inspection typing-extensions rich markdown-it-py mdurl pygments tomlkit
httpx httpcore h11 anyio sniffio certifi idna invoke"

pack() {
    mkdir -p .gpu/a/cw .gpu/b/hw
    # shellcheck disable=SC2086
    python3 -m pip download -q $PLAT -d .gpu/a/cw $COMFY_WHEELS
    # shellcheck disable=SC2086
    python3 -m pip download -q $PLAT -d .gpu/b/hw $HOST_WHEELS
    cp ../shared/vendor/ComfyUI-a125cd84.tar.gz ../shared/vendor/SageAttention-d1a57a5.tar.gz .gpu/b/
    cp ../shared/tools/gpu-docker.sh .gpu/b/
    if [ ! -f .gpu/b/docker.tar.xz ]; then  # gpu-docker.sh's bundle, stripped and xz -9e: ~42 MB instead of 57
        local tmp; tmp=$(mktemp -d)
        bash .gpu/b/gpu-docker.sh bundle "$tmp/plain.tar.xz" >/dev/null && tar -C "$tmp" -xJf "$tmp/plain.tar.xz" \
            && strip "$tmp"/bin/* 2>/dev/null; tar -C "$tmp" -cf - bin | xz -9e -T2 >.gpu/b/docker.tar.xz.part \
            && mv .gpu/b/docker.tar.xz.part .gpu/b/docker.tar.xz
        rm -rf "$tmp"
    fi
    du -sh .gpu/a .gpu/b
}

stage() {
    rm -rf "$STAGE" && mkdir -p "$STAGE" && cp -r .gpu/a/cw "$STAGE/" && date +%s >"$STAGE/at"
    ls "$STAGE/cw" | wc -l
}

run() {
    local out=${OUT:?the device tool sets OUT}/smoke-h200
    mkdir -p "$out"
    exec > >(tee "$out/run.log") 2>&1
    [ -d "$STAGE/cw" ] || { echo "FAIL: $STAGE/cw missing: the machine went cold between the two calls; run stage again"; return 2; }
    local t0; t0=$(date +%s)
    local py=/opt/torch/.venv/bin/python; [ -x "$py" ] || py=$(command -v python3)
    local work=/tmp/comfyimg-smoke-h200; rm -rf "$work"; mkdir -p "$work/deps"
    echo "== machine"; date -u; nvidia-smi -L; "$py" -c 'import torch; print("torch", torch.__version__)'
    echo "== engine"
    eval "$(bash .gpu/b/gpu-docker.sh start .gpu/b/docker.tar.xz | tail -1)" || { echo "FAIL: engine"; return 1; }
    trap 'kill "$(cat /tmp/dockerd.pid 2>/dev/null)" 2>/dev/null' EXIT
    local w; for w in .gpu/b/hw/*.whl; do "$py" -m zipfile -e "$w" "$work/deps"; done
    export PYTHONPATH="$work/deps:$repo/src"
    echo "== SageAttention 2.2.0 (d1a57a5) for sm90"
    mkdir -p "$work/sa" && tar -C "$work/sa" -xzf .gpu/b/SageAttention-d1a57a5.tar.gz
    (cd "$work"/sa/*/ && TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=14 "$py" setup.py -q bdist_wheel >"$out/sage-build.log" 2>&1) \
        || { tail -30 "$out/sage-build.log"; return 1; }
    local wheel; wheel=$(ls "$work"/sa/*/dist/*.whl); echo "wheel $(basename "$wheel")"
    echo "== image: the machine's root + ComfyUI + its wheels + the project's entrypoint"
    local venv site base stage=$work/stage extra=/opt/comfyimg-site img=local/comfyimg-smoke:good bad=local/comfyimg-smoke:broken
    venv=$("$py" -c 'import sys; print(sys.prefix)'); base=$("$py" -c 'import sys; print(sys.base_prefix)')
    site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    local pth=$work/pth; mkdir -p "$stage/etc" "$stage/tmp" "$stage/app" "$stage/home/comfy" "$stage$extra" "$stage/opt/comfyimg-entry" "$pth$site"
    echo "$extra" >"$pth$site/comfyimg-proof.pth"
    chmod 1777 "$stage/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\ncomfy:x:1000:1000:comfy:/home/comfy:/usr/sbin/nologin\n' >"$stage/etc/passwd"
    printf 'root:x:0:\ncomfy:x:1000:\n' >"$stage/etc/group"
    "$py" -m zipfile -e "$wheel" "$stage$extra"
    for w in "$STAGE"/cw/*.whl; do "$py" -m zipfile -e "$w" "$stage$extra"; done
    tar -C "$stage/app" -xzf .gpu/b/ComfyUI-a125cd84.tar.gz && mv "$stage"/app/ComfyUI* "$stage/app/ComfyUI.tmp" && mv "$stage/app/ComfyUI.tmp" "$stage/app/ComfyUI"
    # apart from /usr: docker import refuses an archive that names a file twice
    install -m 0755 services/comfy/core/entrypoint.sh "$stage/opt/comfyimg-entry/comfy-entrypoint"
    chown 1000:1000 "$stage/home/comfy"; chmod -R a+rX "$stage/app" "$stage$extra"
    local parts=(usr etc/ld.so.cache "${venv#/}")
    for p in bin sbin lib lib64 lib32; do [ -e "/$p" ] && parts+=("$p"); done
    [ "$base" = /usr ] || parts+=("${base#/}")
    tar -C / --exclude='usr/local/cuda*' --exclude=usr/local/nvidia --exclude=usr/share/doc --exclude=usr/src \
        --exclude='__pycache__' -cf - "${parts[@]}" \
        -C "$stage" etc tmp app home opt/comfyimg-entry "${extra#/}" -C "$pth" "${site#/}/comfyimg-proof.pth" 2>"$out/tar.err" \
      | docker import --change "ENV PATH=$venv/bin:/usr/local/bin:/usr/bin:/bin" --change 'WORKDIR /app/ComfyUI' \
          --change 'ENTRYPOINT ["/opt/comfyimg-entry/comfy-entrypoint"]' \
          --change 'CMD ["python", "main.py", "--listen", "0.0.0.0"]' - "$img" >/dev/null \
      || { tail "$out/tar.err"; return 1; }
    echo "image $img: $(docker image inspect "$img" --format '{{.Size}}' | awk '{printf "%.1f GB", $1/1e9}')"
    docker rm -f comfyimg-smoke-break >/dev/null 2>&1
    docker run --name comfyimg-smoke-break --network none --user 0 --entrypoint /bin/sh "$img" -c \
        "printf '\n\ndef sageattn(q, k, v, *args, **kwargs):  # comfyimg smoke: deliberately broken\n    return q\n' >> $extra/sageattention/__init__.py" \
        && docker commit --change 'ENTRYPOINT ["/opt/comfyimg-entry/comfy-entrypoint"]' \
             --change 'CMD ["python", "main.py", "--listen", "0.0.0.0"]' --change 'USER 0' \
             --change 'WORKDIR /app/ComfyUI' comfyimg-smoke-break "$bad" >/dev/null \
        && docker rm comfyimg-smoke-break >/dev/null \
        || { echo "FAIL: could not make the broken image"; return 1; }
    # `docker run --entrypoint /bin/sh` above would otherwise be committed as the image's start-up
    [ "$(docker image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$bad")" = \
      "$(docker image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$img")" ] \
        || { echo "FAIL: the broken image does not start as the good one"; return 1; }
    export CI=1 PATH="$venv/bin:$PATH"
    local case rc
    for case in good broken; do
        echo "== nox -s smoke -- --image local/comfyimg-smoke:$case   (no GPU flag: auto finds CDI)"
        rm -rf reports; local t1; t1=$(date +%s.%N)
        "$py" -m nox --no-venv -s smoke -- --image "local/comfyimg-smoke:$case" --timeout 240 >"$out/$case.log" 2>&1
        rc=$?
        echo "$case rc=$rc wall=$("$py" -c "import time; print(round(time.time() - $t1, 1))") s" | tee -a "$out/timing.txt"
        tail -n 30 "$out/$case.log"
        mkdir -p "$out/$case" && cp -r reports/. "$out/$case/" 2>/dev/null; echo "$rc" >"$out/$case/rc"
    done
    docker ps -a --format '{{.Names}}' | grep comfyimg-smoke >"$out/leftover-containers.txt"
    "$py" - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1]); lines = []; ok = True
for case, want in (("good", 0), ("broken", 1)):
    rc = int((out / case / "rc").read_text()); rep = out / case / "smoke.json"
    data = json.loads(rep.read_text()) if rep.exists() else {}
    res = data.get("result", {})
    held = rc == want and bool(data) and (want == 0 or "agree" in res.get("reason", ""))
    ok &= held
    lines.append(f"- {case}: exit {rc} (expected {want}) {'OK' if held else 'NOT AS EXPECTED'}: {res.get('reason', 'no report')[:400]}")
    lines.append(f"  timing {json.dumps(res.get('bench'))}")
left = (out / "leftover-containers.txt").read_text().split()
ok &= not left
lines.append(f"- leftover containers: {left or 'none'}")
lines.append(f"RESULT: {'OK' if ok else 'NOT OK'}")
(out / "summary.md").write_text("\n".join(lines) + "\n"); print("\n".join(lines)); sys.exit(0 if ok else 1)
PY
}

case ${1:-} in
    pack|stage|run) "$1" ;;
    *) echo "usage: $0 pack | stage | run" >&2; exit 2 ;;
esac
