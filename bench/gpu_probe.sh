#!/usr/bin/env bash
# Time the installed SageAttention against torch SDPA over a sweep of sequence
# lengths, using the validation probe's own benchmark (CUDA events; batch 1,
# 24 heads, head dim 128, fp16, HND). The probe's correctness checks run first;
# the timings are reported, never enforced.
#
#   bench/gpu_probe.sh [PROBE ARGS...]
#
#   PYTHON=python3                     interpreter (needs CUDA torch; triton for PyPI 1.0.6)
#   SEQ_LENS=1024,4096,4608,8192,16384 lengths to time
#   OUTDIR=reports/bench               where <probe>-<timestamp>.json goes
#   PROBE=sage2                        sage2 or sage3
#
# Example, PyPI sageattention 1.0.6 installed with pip --target /tmp/site:
#   PYTHONPATH=/tmp/site bench/gpu_probe.sh --expect-version 1.0.6 \
#       --exports sageattn,sageattn_varlen --extensions '' --no-dispatch-check
#
# For the pass/fail proof of the probes themselves, run `python -m pytest -m gpu tests/probes` (tests/probes/test_probes_gpu.py).
set -u -o pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
probe=${PROBE:-sage2}
seq_lens=${SEQ_LENS:-1024,4096,4608,8192,16384}
outdir=${OUTDIR:-$repo/reports/bench}
mkdir -p "$outdir"
json=$outdir/$probe-$(date -u +%Y%m%dT%H%M%SZ).json

PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$repo/src/comfyimg/validate "$py" -m "probes.$probe" --require-gpu --bench-seq-len "$seq_lens" "$@" >"$json"
rc=$?
"$py" - "$json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
dev = d.get("device") or {}
env = d.get("environment", {})
print(f"{d['probe']}: {d['status']} ({d['reason'][:200]})")
print(f"package {d['package']['name']} {d['package']['installed']} | {dev.get('name')} {dev.get('sm')} | "
      f"torch {env.get('torch')} | triton {env.get('triton')}")
b = d.get("bench")
if b:
    k = b["kernel"]
    print(f"timing: {b['timing']}")
    print(f"| B×H×N×D (fp16, HND) | SDPA ms | {k} ms | speedup vs SDPA |")
    print("|---|---|---|---|")
    for r in b["results"]:
        shape = f"{r['batch']}×{r['heads']}×{r['seq_len']}×{r['head_dim']}"
        if "error" in r:
            print(f"| {shape} | error: {r['error']} | | |")
        else:
            print(f"| {shape} | {r['sdpa_ms']} | {r[k + '_ms']} | {r['speedup_vs_sdpa']} |")
print(f"json: {sys.argv[1]}")
EOF
exit $rc
