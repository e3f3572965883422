#!/usr/bin/env bash
# Why the validation container's /tmp must be an exec tmpfs (src/comfyimg/validate/containers.py,
# container_options): run the sage2 probe against PyPI sageattention 1.0.6 (pure Triton)
# with TRITON_CACHE_DIR on a noexec tmpfs and on an exec one. Needs root (mount), an
# NVIDIA GPU, CUDA torch + triton, and the 1.0.6 wheel in .whl/ (or SAGE106_WHEEL).
#
#   bench/gpu_triton_tmpfs.sh [OUTDIR]        # default OUTDIR: reports/gpu-tmpfs
set -u -o pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/reports/gpu-tmpfs}
py=${PYTHON:-python3}
wheel=${SAGE106_WHEEL:-$(ls "$repo"/.whl/sageattention-1.0.6-*.whl 2>/dev/null | head -n1)}
work=$(mktemp -d)
trap 'umount "$work/noexec" "$work/exec" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$out" "$work/noexec" "$work/exec"
"$py" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$wheel" || exit 2
mount -t tmpfs -o noexec,mode=1777 tmpfs "$work/noexec" || { echo "cannot mount a tmpfs here"; exit 2; }
mount -t tmpfs -o exec,mode=1777 tmpfs "$work/exec" || exit 2
rc_all=0
for mode in noexec exec; do
    PYTHONPATH=$work/site:$repo/src/comfyimg/validate TRITON_CACHE_DIR=$work/$mode/triton "$py" -m probes.sage2 \
        --expect-version 1.0.6 --exports sageattn,sageattn_varlen --extensions '' --no-dispatch-check \
        --require-gpu --skip-bench >"$out/$mode.json" 2>"$out/$mode.stderr"
    rc=$?
    "$py" - "$out/$mode.json" "$mode" "$rc" <<'PY'
import json, sys
path, mode, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
j = json.load(open(path))
bad = [c for c in j["checks"] if c["status"] == "fail"]
print(f"TRITON_CACHE_DIR on a {mode} tmpfs: exit {rc}, status {j['status']}, "
      f"{len(bad)} failed check(s)" + (f"; first: {bad[0]['name']}: {str(bad[0]['detail'])[:200]}" if bad else ""))
PY
done
