#!/usr/bin/env bash
# Issue 31 item 2 on a GPU machine in ONE device call, when the three-call image path
# (fullpath_h200.sh) does not fit the device time left: build SageAttention 2.2.0 (d1a57a5) for
# sm90 from the carried source, then run the project's own sage2 probe on the machine's torch
# (outside any image), long-sequence rows and the 32k-token benchmark included.
#   HERE:  (fullpath_h200.sh pack fills .gpu/<pack>/fb with the source tarball)
#   THERE: run(command="COMFYIMG_GPU_PACK=$PWD/.gpu/<pack> bash tests/gpu/longseq_direct.sh",
#              carry=[".gpu/<pack>/fb"], timeout_s=...)
# Writes $OUT/longseq/{build.log,sage2.json,sage2.err,machine.txt}.
set -u -o pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
PACK=${COMFYIMG_GPU_PACK:?the pack folder (.gpu/NAME)}
out=${OUT:?the device tool sets OUT}/longseq
mkdir -p "$out"
py=/opt/torch/.venv/bin/python; [ -x "$py" ] || py=$(command -v python3)
work=/tmp/comfyimg-longseq; rm -rf "$work"; mkdir -p "$work/sa" "$work/site"
{ date -u; nvidia-smi -L; "$py" -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'; } >"$out/machine.txt" 2>&1
t0=$(date +%s)
tar -C "$work/sa" -xzf "$PACK/fb/SageAttention-d1a57a5.tar.gz" || exit 1
(cd "$work"/sa/*/ && TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 "$py" setup.py -q bdist_wheel >"$out/build.log" 2>&1) \
    || { tail -30 "$out/build.log"; exit 1; }
echo "built in $(( $(date +%s) - t0 )) s" | tee -a "$out/machine.txt"
"$py" -m zipfile -e "$work"/sa/*/dist/*.whl "$work/site"
cd "$repo/src/comfyimg/validate" || exit 1
t1=$(date +%s)
PYTHONPATH="$work/site" timeout "${COMFYIMG_LONGSEQ_TIMEOUT:-360}" "$py" -m probes.sage2 --require-gpu \
    --expect-version 2.2.0 --bench-seq-len 4608,32760 >"$out/sage2.json" 2>"$out/sage2.err"
rc=$?
echo "probe rc $rc in $(( $(date +%s) - t1 )) s" | tee -a "$out/machine.txt"
tail -5 "$out/sage2.err"
exit $rc
