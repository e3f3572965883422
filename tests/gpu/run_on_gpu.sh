#!/usr/bin/env bash
# Prove the SageAttention probes on a real GPU. Anyone with an NVIDIA GPU and a
# Python that has CUDA torch (and triton, which PyPI sageattention 1.0.6 needs)
# can re-run it:
#
#   tests/gpu/run_on_gpu.sh [OUTDIR]          # default OUTDIR: reports/gpu
#
#   PYTHON=python3                 interpreter to use
#   SAGE106_WHEEL=path.whl         sageattention-1.0.6 wheel (default: .whl/sageattention-1.0.6-*.whl
#                                  in the repo root, else `pip install sageattention==1.0.6`)
#
# What it checks (each probe's stdout JSON goes to OUTDIR/<case>.json, stderr to
# OUTDIR/<case>.stderr, one line per case to OUTDIR/summary.jsonl, a table with
# the numerics and timings to OUTDIR/summary.md):
#   1. the sage2 probe against real PyPI sageattention 1.0.6 (its export list,
#      no compiled extensions, no dispatch table) -> pass, with timings at 4608
#      and 16384 tokens;
#   2. fake sageattention 2.2.0 installs (tests/gpu/make_fakes.py): a correct
#      one -> pass; sageattn returning torch.empty_like(q), returning q, and
#      raising AssertionError("SM90 kernel is not available") -> fail, each with
#      the right reason;
#   3. no GPU (CUDA_VISIBLE_DEVICES=) -> pass with GPU checks skipped, and fail
#      with --require-gpu;
#   4. the sage3 probe on a non-Blackwell GPU -> skip with the reason, and fail
#      on a broken or missing install.
# Exits 0 only if every expectation is met.
set -u -o pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$repo/reports/gpu}
py=${PYTHON:-python3}
probes=$repo/src/comfyimg/probes
expect=$repo/tests/gpu/expect.py
export PYTHONUNBUFFERED=1

mkdir -p "$out"
: >"$out/summary.jsonl"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== environment"
"$py" - <<'EOF' 2>&1 | tee "$out/environment.txt"
import importlib.metadata as md, platform, torch
def v(n):
    try:
        return md.version(n)
    except md.PackageNotFoundError:
        return None
print("python", platform.python_version(), "| torch", torch.__version__, "| cuda", torch.version.cuda,
      "| triton", v("triton"))
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", torch.cuda.get_device_name(0), "sm%d%d" % torch.cuda.get_device_capability(0),
          "| %.1f GiB" % (p.total_memory / 2**30), "| devices", torch.cuda.device_count())
else:
    print("gpu: none visible")
EOF

echo "== installing sageattention 1.0.6 into a private --target dir"
sa106=$work/sa106
wheel=${SAGE106_WHEEL:-$(ls "$repo"/.whl/sageattention-1.0.6-*.whl 2>/dev/null | head -n1)}
if [ -n "$wheel" ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --target "$sa106" "$wheel"
else
    "$py" -m pip install -q --no-deps --target "$sa106" sageattention==1.0.6
fi || { echo "cannot install sageattention 1.0.6 (set SAGE106_WHEEL)"; exit 2; }

"$py" "$repo/tests/gpu/make_fakes.py" "$work/fakes" >/dev/null || exit 2
fakes=$work/fakes
mkdir -p "$work/empty"

failures=0
# case NAME PYTHONPATH WANT_RC WANT_STATUS REASON_REGEX GPU_CHECKS(ran|skipped|-) -- COMMAND...
case_() {
    local name=$1 pp=$2 want_rc=$3 want_status=$4 reason_re=$5 gpu_checks=$6
    shift 7
    echo "== $name: $*"
    env PYTHONPATH="$pp" "$@" >"$out/$name.json" 2>"$out/$name.stderr"
    local rc=$?
    local extra=()
    [ "$gpu_checks" != "-" ] && extra=(--gpu-checks "$gpu_checks")
    "$py" "$expect" check --name "$name" --json "$out/$name.json" --rc "$rc" --want-rc "$want_rc" \
        --want-status "$want_status" --reason-re "$reason_re" "${extra[@]}" --summary "$out/summary.jsonl" \
        || { failures=$((failures + 1)); tail -n 20 "$out/$name.stderr"; }
}

S2=$probes/sage2.py
S3=$probes/sage3.py
PYPI106=(--expect-version 1.0.6 --exports sageattn,sageattn_varlen --extensions "" --no-dispatch-check)

# 1. real PyPI 1.0.6 on the GPU, with timings
case_ sage2-pypi-1.0.6 "$sa106" 0 pass '' ran -- \
    "$py" "$S2" "${PYPI106[@]}" --require-gpu --bench-seq-len 4608,16384
# the same package checked against the 2.2.0 expectations must fail
case_ sage2-pypi-1.0.6-vs-2.2.0-defaults "$sa106" 1 fail 'installed 1\.0\.6, expected 2\.2\.0.*missing' - -- \
    "$py" "$S2" --expect-version 2.2.0 --skip-bench
# 2. fake 2.2.0 installs
case_ sage2-fake-good "$fakes/good" 0 pass '' ran -- \
    "$py" "$S2" --expect-version 2.2.0 --require-gpu --skip-bench
case_ sage2-fake-empty-like "$fakes/empty" 1 fail 'numerics:.*(NaN|sentinel)' ran -- \
    "$py" "$S2" --expect-version 2.2.0 --require-gpu --skip-bench
case_ sage2-fake-returns-q "$fakes/returns_q" 1 fail 'numerics:.*output is the input tensor q' ran -- \
    "$py" "$S2" --expect-version 2.2.0 --require-gpu --skip-bench
case_ sage2-fake-no-sm90 "$fakes/no_sm90" 1 fail '_qattn_sm90' ran -- \
    "$py" "$S2" --expect-version 2.2.0 --require-gpu --skip-bench
# the same broken build with only the checks an import-only test would do: the call still catches it
case_ sage2-fake-no-sm90-call-only "$fakes/no_sm90" 1 fail 'numerics:.*SM90 kernel is not available' ran -- \
    "$py" "$S2" --expect-version 2.2.0 --require-gpu --skip-bench --no-dispatch-check \
    --extensions sageattention._qattn_sm80,sageattention._qattn_sm89,sageattention._fused
# 3. no GPU visible
case_ sage2-pypi-1.0.6-no-gpu "$sa106" 0 pass 'gpu: skipped' skipped -- \
    env CUDA_VISIBLE_DEVICES= "$py" "$S2" "${PYPI106[@]}"
case_ sage2-pypi-1.0.6-no-gpu-require "$sa106" 1 fail 'require-gpu' skipped -- \
    env CUDA_VISIBLE_DEVICES= "$py" "$S2" "${PYPI106[@]}" --require-gpu
# 4. sage3 on a non-Blackwell GPU
case_ sage3-fake-good "$fakes/sage3_good" 3 skip 'sm(90|80|86|89|100)' skipped -- \
    "$py" "$S3" --expect-version 1.0.0
case_ sage3-fake-no-fp4quant "$fakes/sage3_no_fp4quant" 1 fail 'fp4quant_cuda' - -- \
    "$py" "$S3" --expect-version 1.0.0
case_ sage3-not-installed "$work/empty" 1 fail 'not installed' - -- \
    "$py" "$S3" --expect-version 1.0.0

echo "== summary"
"$py" "$expect" summarize "$out" || true
if [ "$failures" -ne 0 ]; then
    echo "run_on_gpu.sh: $failures expectation(s) NOT met (see $out)"
    exit 1
fi
echo "run_on_gpu.sh: all expectations met (results in $out)"
