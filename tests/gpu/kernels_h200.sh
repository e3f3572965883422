#!/usr/bin/env bash
# Kernel coverage, proven on the H200 (sm90): build SageAttention 2.2.0 from the vendored source
# twice, for TORCH_CUDA_ARCH_LIST=9.0 and 8.0 (in parallel), audit both wheels with the project's
# own reader (python -m comfyimg audit: NVIDIA's cuobjdump + the package table), then run the
# sage2 probe on the GPU at hand (no Docker) with the expectations the host derives from each
# wheel's audit for a pin that serves sm90:
#   - the sm90 build passes;
#   - the sm80 build fails, naming the missing sm90 kernel (sageattention._qattn_sm90).
#
# HERE (the build machine), once:  bash tests/gpu/kernels_h200.sh prepare [DIR]   (default .gpu/kernels)
#     copies ../shared/vendor/SageAttention-d1a57a5.tar.gz and downloads the project's runtime
#     dependencies as wheels (packaging, tomlkit, rich, markdown-it-py, mdurl, pygments,
#     nvidia-cuda-cuobjdump) into DIR. DIR must be ignored by git (.gpu/ is: add it to
#     .git/info/exclude) and named in `carry`.
# THERE (the GPU machine):  bash tests/gpu/kernels_h200.sh run .gpu/kernels/SageAttention-d1a57a5.tar.gz .gpu/kernels/wheels
#     PYTHON (default python3, else /opt/torch/.venv/bin/python if only that has torch 2.11+cu130;
#     nvcc 13.0 on PATH) builds, audits and probes.
#     Writes under $OUT (default reports/kernels-h200): build-sm{90,80}.log, audit-sm{90,80}.json,
#     probe-sm{90,80}.json (+ .stderr), expectations.txt, summary.json, summary.md, and the two
#     wheels under wheels/sm{90,80}/.
# Exits 0 only if every expectation is met.
set -u -o pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)

prepare() {
    local dir=${1:-$repo/.gpu/kernels}
    mkdir -p "$dir/wheels"
    cp "$repo/../shared/vendor/SageAttention-d1a57a5.tar.gz" "$dir/"
    "$repo/.venv/bin/python" -m pip download -q --no-deps -d "$dir/wheels" \
        packaging tomlkit rich markdown-it-py mdurl pygments nvidia-cuda-cuobjdump
    ls -la "$dir" "$dir/wheels"
    du -sh "$dir"
}

run() {
    local tarball=$1 wheels=$2
    local py=${PYTHON:-python3} out=${OUT:-$repo/reports/kernels-h200}
    if [ -z "${PYTHON:-}" ] && ! python3 -c 'import torch' 2>/dev/null && [ -x /opt/torch/.venv/bin/python ]; then
        py=/opt/torch/.venv/bin/python  # where the GPU machine keeps torch when python3 lacks it
    fi
    work=$(mktemp -d)  # global: the EXIT trap runs after this function returns
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$out"
    export PYTHONUNBUFFERED=1

    echo "== environment" | tee "$out/environment.txt"
    { "$py" -c 'import platform, torch; print("python", platform.python_version(), "torch", torch.__version__,
"cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name(0), "sm%d%d" % torch.cuda.get_device_capability(0))'
      nvcc --version | tail -2; command -v cuobjdump; } 2>&1 | tee -a "$out/environment.txt"

    echo "== the project's dependencies, from the carried wheels"
    "$py" -m pip install -q --no-index --no-deps --target "$work/deps" "$wheels"/*.whl || return 1
    local host_pp="$work/deps:$repo/src"

    echo "== building SageAttention for 9.0 and 8.0, side by side"
    local arch pids=() started=$SECONDS
    for arch in 90 80; do
        mkdir -p "$work/src$arch"
        tar -xzf "$tarball" -C "$work/src$arch"
        ( cd "$work/src$arch"/SageAttention-* &&
          TORCH_CUDA_ARCH_LIST="${arch:0:1}.${arch:1}" MAX_JOBS=10 "$py" setup.py bdist_wheel ) \
            >"$out/build-sm$arch.log" 2>&1 &
        pids+=($!)
    done
    local failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    echo "builds took $((SECONDS - started)) s" | tee -a "$out/environment.txt"
    [ "$failed" = 0 ] || { echo "a build failed: see $out/build-sm*.log" >&2; return 1; }

    for arch in 90 80; do
        local wheel; wheel=$(ls "$work/src$arch"/SageAttention-*/dist/*.whl)
        # Kept for tests/gpu/h200.sh, which builds the Docker proof's image from the sm90 one.
        mkdir -p "$out/wheels/sm$arch" && cp "$wheel" "$out/wheels/sm$arch/"
        echo "== audit of the $arch build: $(basename "$wheel")"
        PYTHONPATH=$host_pp "$py" -m comfyimg audit --wheel "$wheel" --root "$repo" --json \
            --arch sm80 --arch sm86 --arch sm89 --arch sm90 --arch sm120 >"$out/audit-sm$arch.json" \
            2>"$out/audit-sm$arch.stderr"
        echo "audit exit $?" >>"$out/audit-sm$arch.stderr"
        # The host's expectations for a pin that serves sm90 (this GPU): what sm90 needs.
        local needs
        needs=$("$py" -c 'import json, sys; a = json.load(open(sys.argv[1]))["archs"]["sm90"]
print("sm90=" + ",".join(a["needs"]))' "$out/audit-sm$arch.json") || return 1
        echo "sm$arch build: --serves sm90 --needs $needs" >>"$out/expectations.txt"
        "$py" -m pip install -q --no-index --no-deps --target "$work/site$arch" "$wheel" || return 1
        echo "== sage2 probe on this GPU, sm$arch build"
        PYTHONPATH=$work/site$arch:$repo/src/comfyimg/validate "$py" -m probes.sage2 --expect-version 2.2.0 \
            --serves sm90 --needs "$needs" --require-gpu >"$out/probe-sm$arch.json" 2>"$out/probe-sm$arch.stderr"
        echo "probe exit $?" >>"$out/probe-sm$arch.stderr"
    done

    echo "== verdict"
    "$py" - "$out" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError) as exc:  # a crash left no JSON: every expectation on it fails
        print(f"{name}: no JSON ({exc})")
        return {"status": "crash", "reason": str(exc), "checks": [], "gpu_checks": None,
                "archs": {a: {"runnable": None, "by": None, "why": "no audit", "missing": []}
                          for a in ("sm80", "sm86", "sm89", "sm90", "sm120")}}
results, ok = {}, True
def expect(what, cond):
    global ok
    results[what] = bool(cond)
    ok &= bool(cond)
    print(("PASS " if cond else "FAIL ") + what)
a90, a80 = load("audit-sm90.json"), load("audit-sm80.json")
expect("audit sm90 build: sm90 runnable by SASS", a90["archs"]["sm90"]["runnable"] and a90["archs"]["sm90"]["by"] == "sass")
expect("audit sm90 build: sm80 and sm120 not runnable",
       not a90["archs"]["sm80"]["runnable"] and not a90["archs"]["sm120"]["runnable"])
expect("audit sm80 build: sm80 runnable", a80["archs"]["sm80"]["runnable"])
m = {x["module"] for x in a80["archs"]["sm90"]["missing"]}
expect("audit sm80 build: sm90 not runnable, sageattention._qattn_sm90 missing",
       not a80["archs"]["sm90"]["runnable"] and "sageattention._qattn_sm90" in m)
p90, p80 = load("probe-sm90.json"), load("probe-sm80.json")
expect("probe sm90 build passes on the H200", p90["status"] == "pass" and p90["gpu_checks"] == "ran")
failed = [c for c in p80["checks"] if c["status"] == "fail"]
expect("probe sm80 build fails", p80["status"] == "fail")
expect("probe sm80 build names the missing sm90 kernel",
       any("_qattn_sm90" in c["detail"] for c in failed))
summary = {"ok": ok, "expectations": results,
           "probe_sm90": {"status": p90["status"], "reason": p90["reason"]},
           "probe_sm80": {"status": p80["status"], "reason": p80["reason"],
                          "failed": [{"name": c["name"], "detail": c["detail"]} for c in failed]},
           "audit_sm90": {a: v["why"] for a, v in a90["archs"].items()},
           "audit_sm80": {a: v["why"] for a, v in a80["archs"].items()}}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
lines = ["| expectation | result |", "|---|---|"] + [f"| {k} | {'pass' if v else 'FAIL'} |" for k, v in results.items()]
(out / "summary.md").write_text("\n".join(lines) + "\n")
sys.exit(0 if ok else 1)
EOF
}

case ${1:-} in
    prepare) shift; prepare "$@" ;;
    run) [ $# -eq 3 ] || { echo "usage: $0 run TARBALL WHEELDIR" >&2; exit 2; }; shift; run "$@" ;;
    *) echo "usage: $0 prepare [DIR] | run TARBALL WHEELDIR" >&2; exit 2 ;;
esac
