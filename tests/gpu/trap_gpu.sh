#!/usr/bin/env bash
# Does the code the audit calls "compiled out" trap on a real GPU, and does the code it passes
# run? (issue 29). The GPUs here are sm90 (H100/H200), which run only sm_90 SASS or PTX, so
# tests/fixtures/cuda-trap/trap.cu is built with its guard moved (FP8_FROM; __brkpt() below it
# where the FP8 MMA should be, as the committed fixtures have it below 8.9):
#   g_90       sm_90,       MMA from 9.0:  the MMA is there            -> runs;
#   g_90_f100  sm_90,       MMA from 10.0: compiled out in sm_90 SASS  -> traps;
#   g_ptx80    compute_80,  MMA from 9.0:  compiled out in the PTX     -> traps (JIT for sm90);
#   g_80       sm_80,       MMA from 9.0:  no code sm90 can run        -> no kernel image.
#
# THERE (the GPU machine; nvcc on PATH or in /usr/local/cuda/bin):
#     run(command="bash tests/gpu/trap_gpu.sh run")
#   builds with that nvcc, for each of sm_80 / sm_80+sm_90 / compute_80 PTX: a launcher (trap.cu
#   plus a main that launches qk_fp8_attn once and reports cudaDeviceSynchronize's error) and
#   the same code as a -cudart none shared object; runs each launcher on the GPU. Writes under
#   $OUT (default reports/trap-gpu): environment.txt, launch-NAME.txt, NAME.so, results.json.
# HERE (the build machine), on what came back:
#     .venv/bin/python tests/gpu/trap_check.py DIR
#   audits each object in a wheel whose dispatch sends sm90 to it (the project's own reader) and
#   checks that the audit refuses exactly the builds that trapped on the GPU.
# Not run on a GPU yet (2026-12-07: no GPU machine could be started); the HERE half was run on
# the same four builds made on the build machine (docs/reference/wheels-toml.md says what it gave).
set -u -o pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
src=$repo/tests/fixtures/cuda-trap/trap.cu

run() {
    local out=${OUT:-$repo/reports/trap-gpu} nvcc
    nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$out"
    { nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
      "$nvcc" --version | tail -2; } 2>&1 | tee "$out/environment.txt"
    cat > "$work/launch.cu" <<'EOF'
#include <cstdio>
#include "trap.cu"
int main() {
  float* out; uint32_t *a, *b;
  cudaMalloc(&out, 32 * 4 * sizeof(float));
  cudaMalloc(&a, 32 * 4 * sizeof(uint32_t));
  cudaMalloc(&b, 32 * 2 * sizeof(uint32_t));
  cudaMemset(a, 0, 32 * 4 * sizeof(uint32_t));
  cudaMemset(b, 0, 32 * 2 * sizeof(uint32_t));
  qk_fp8_attn<<<1, 32>>>(out, a, b);
  cudaError_t launch = cudaGetLastError();
  cudaError_t sync = cudaDeviceSynchronize();
  printf("launch=%s sync=%s\n", cudaGetErrorName(launch), cudaGetErrorName(sync));
  return sync == cudaSuccess && launch == cudaSuccess ? 0 : 1;
}
EOF
    cp "$src" "$work/trap.cu"
    local name flags rc first=1
    printf '{' > "$out/results.json"
    for name in g_90 g_90_f100 g_ptx80 g_80; do
        case $name in
            g_90) flags="-DFP8_FROM=900 -gencode arch=compute_90,code=sm_90" ;;
            g_90_f100) flags="-DFP8_FROM=1000 -gencode arch=compute_90,code=sm_90" ;;
            g_ptx80) flags="-DFP8_FROM=900 -gencode arch=compute_80,code=compute_80" ;;
            g_80) flags="-DFP8_FROM=900 -gencode arch=compute_80,code=sm_80" ;;
        esac
        # shellcheck disable=SC2086 # the flags are meant to split
        "$nvcc" $flags -I"$work" "$work/launch.cu" -o "$work/$name" || return 1
        # shellcheck disable=SC2086
        "$nvcc" -shared -Xcompiler -fPIC -cudart none $flags "$work/trap.cu" -o "$out/$name.so" || return 1
        timeout 60 "$work/$name" > "$out/launch-$name.txt" 2>&1
        rc=$?
        echo "$name: exit $rc: $(cat "$out/launch-$name.txt")"
        [ $first = 1 ] || printf ',' >> "$out/results.json"
        first=0
        printf '"%s": {"exit": %d, "output": "%s"}' "$name" "$rc" "$(tr -d '"\n' < "$out/launch-$name.txt")" >> "$out/results.json"
    done
    printf '}\n' >> "$out/results.json"
    cat "$out/results.json"
}

case ${1:-} in
    run) run ;;
    *) echo "usage: bash tests/gpu/trap_gpu.sh run" >&2; exit 2 ;;
esac
