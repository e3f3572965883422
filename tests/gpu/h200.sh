#!/usr/bin/env bash
# The whole H200 proof in one command on the GPU machine (the device tool's `run`):
#   1. tests/gpu/kernels_h200.sh: SageAttention built for 9.0 and 8.0, both audited, the sage2 probe
#      run on the GPU with the expectations the host derives from each audit (issue 10);
#   2. tests/gpu/docker_h200.sh: the sm90 wheel from step 1 in an image with the vendored ComfyUI,
#      `nox -s validate_sage2 -- --image IMG` with no GPU flag through a CDI-only engine, then the
#      same with a broken sageattn (issue 11).
# Each step's results are packed into one archive under $OUT as soon as the step ends (the device
# tool brings back at most 8 files), so a later step that runs out of time loses nothing earlier.
#
# HERE, once:   bash tests/gpu/docker_h200.sh wheels .gpu/whl; bash ../shared/tools/gpu-docker.sh bundle;
#               cp ../shared/vendor/*.tar.gz ../shared/tools/gpu-docker.sh .gpu/
# THERE:        run(command="bash tests/gpu/h200.sh", carry=[".gpu"], timeout_s=600)
set -u -o pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
out=${OUT:?the device tool sets OUT}
res=/tmp/comfyimg-h200-results
rm -rf "$res" && mkdir -p "$res"
pack() { tar -C "$res" --exclude='*.whl' -czf "$out/$1.tar.gz" "$1"; }

{ git -C "$repo" log -1 --format="commit %H %s" 2>/dev/null || cat .gpu/commit.txt; } | tee "$res/commit.txt"
OUT=$res/kernels bash tests/gpu/kernels_h200.sh run .gpu/SageAttention-d1a57a5.tar.gz .gpu/whl
echo "kernels_h200.sh exit $?" | tee "$res/kernels/exit.txt"
pack kernels

wheel=$(ls "$res"/kernels/wheels/sm90/*.whl 2>/dev/null | head -1)
SAGE_WHEEL=$wheel bash tests/gpu/docker_h200.sh run "$res/docker"
echo "docker_h200.sh exit $?" | tee "$res/docker/exit.txt"
pack docker
cat "$res"/kernels/summary.md "$res"/docker/summary.md 2>/dev/null
