#!/usr/bin/env bash
# Does a SageAttention 2.2.0 built from the thu-ml v2.2.0 TAG compute attention on sm90?
#
# dispatch.py reads the tag's sageattention/sm90_compile.py and finds that the name core.py
# calls for sm90 is rebound by `@torch.library.register_fake` to the fake implementation
# (d1a57a5 renamed it `..._fake_impl`), so no kernel would run. This script checks that on
# the H200: it builds the tag and d1a57a5 side by side for TORCH_CUDA_ARCH_LIST=9.0, and runs
# the project's own sage2 probe (standalone, stdlib + torch) against each with --require-gpu.
#
#   HERE:  cp ../shared/vendor/SageAttention-{v2.2.0,d1a57a5}.tar.gz .gpu/
#   THERE: run(command="bash tests/gpu/tag_sm90_h200.sh", carry=[".gpu"])
# Output: $OUT/summary.txt, the probes' JSON and the build logs.
set -u -o pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-/tmp/tag-sm90-out}; mkdir -p "$out"
py=${PYTHON:-/opt/torch/.venv/bin/python}; [ -x "$py" ] || py=$(command -v python3)
work=/tmp/tag-sm90; rm -rf "$work"; mkdir -p "$work"
"$py" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))' | tee "$out/machine.txt"

build() {  # NAME TARBALL
    local name=$1 tarball=$2
    mkdir -p "$work/$name" && tar -C "$work/$name" -xzf "$tarball"
    local src; src=$(ls -d "$work/$name"/*/)
    (cd "$src" && TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=8 "$py" setup.py bdist_wheel) > "$out/build-$name.log" 2>&1
    "$py" -m zipfile -e "$src"/dist/*.whl "$work/$name/site"
    echo "$name: built $(basename "$src"/dist/*.whl)"
}
t0=$(date +%s)
build tag "$repo/.gpu/SageAttention-v2.2.0.tar.gz" & build main "$repo/.gpu/SageAttention-d1a57a5.tar.gz" & wait
echo "builds: $(( $(date +%s) - t0 )) s" | tee -a "$out/summary.txt"

for name in tag main; do
    PYTHONPATH="$work/$name/site:$repo/src/comfyimg/validate" "$py" -m probes.sage2 --require-gpu \
        > "$out/probe-$name.json" 2> "$out/probe-$name.err"
    code=$?
    "$py" - "$out/probe-$name.json" "$name" "$code" >> "$out/summary.txt" <<'PY'
import json, sys
path, name, code = sys.argv[1:]
try:
    r = json.loads(open(path).read())
except Exception as exc:
    print(f"{name}: exit {code}, no JSON ({exc})"); raise SystemExit
bad = [f"{c['name']}: {c.get('detail', '')[:160]}" for c in r.get("checks", []) if c.get("status") == "fail"]
print(f"{name}: exit {code}, status {r.get('status')}, {len(r.get('checks', []))} checks, failed: {bad or 'none'}")
PY
done
# The direct numbers: cosine against fp32 SDPA for one call, and whether the output was written.
for name in tag main; do
    PYTHONPATH="$work/$name/site" "$py" - "$name" >> "$out/summary.txt" 2>&1 <<'PY'
import sys, torch, torch.nn.functional as F
from sageattention import sageattn
torch.manual_seed(0)
q, k, v = (torch.randn(1, 24, 4096, 128, device="cuda", dtype=torch.float16) for _ in range(3))
ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
o = sageattn(q, k.clone(), v, tensor_layout="HND")
cos = F.cosine_similarity(o.float().flatten(), ref.flatten(), dim=0).item()
print(f"{sys.argv[1]}: sageattn vs fp32 SDPA cosine {cos:.5f}, finite {bool(torch.isfinite(o).all())}")
PY
done
cat "$out/summary.txt"
