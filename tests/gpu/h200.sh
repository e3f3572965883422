#!/usr/bin/env bash
# The whole H200 proof in one command on the GPU machine (the device tool's `run`):
#   1. tests/gpu/kernels_h200.sh: SageAttention built for 9.0 and 8.0, both audited, the sage2 probe
#      run on the GPU with the expectations the host derives from each audit (issue 10);
#   2. tests/gpu/docker_h200.sh: the sm90 wheel from step 1 in an image with the vendored ComfyUI,
#      `nox -s validate_sage2 -- --image IMG` with no GPU flag through a CDI-only engine, then the
#      same with a broken sageattn (issue 11).
#   3. the gpu-marked probe cases, `python -m pytest -m gpu tests/probes` (tests/probes/test_probes_gpu.py:
#      PyPI 1.0.6 and fake installs on the GPU, the bench gate), with pytest and the 1.0.6 wheel from
#      .gpu/test-whl; without them the step says "not run" (never a pass).
# Each step's results are packed into one archive under $OUT as soon as the step ends (the device
# tool brings back at most 8 files), so a later step that runs out of time loses nothing earlier.
#
# HERE, once:   bash tests/gpu/docker_h200.sh wheels .gpu/whl; bash ../shared/tools/gpu-docker.sh bundle;
#               cp ../shared/vendor/*.tar.gz ../shared/tools/gpu-docker.sh .gpu/
#               python3 -m pip download -q --no-deps --only-binary=:all: -d .gpu/test-whl \
#                   sageattention==1.0.6   (step 3; the GPU machine has pytest)
# THERE:        run(command="bash tests/gpu/h200.sh", carry=[".gpu"], timeout_s=600)
#               STEPS="docker pytest" bash tests/gpu/h200.sh   runs only those steps (docker then builds
#               its own sm90 wheel); the default is all three.
set -u -o pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
out=${OUT:?the device tool sets OUT}
res=/tmp/comfyimg-h200-results
rm -rf "$res" && mkdir -p "$res"
pack() { tar -C "$res" --exclude='*.whl' -czf "$out/$1.tar.gz" "$1"; }

{ git -C "$repo" log -1 --format="commit %H %s" 2>/dev/null || cat .gpu/commit.txt; } | tee "$res/commit.txt"
steps=" ${STEPS:-kernels docker pytest} "
want() { [[ $steps == *" $1 "* ]]; }
if want kernels; then
OUT=$res/kernels bash tests/gpu/kernels_h200.sh run .gpu/SageAttention-d1a57a5.tar.gz .gpu/whl
echo "kernels_h200.sh exit $?" | tee "$res/kernels/exit.txt"
pack kernels
fi

if want docker; then
wheel=$(ls "$res"/kernels/wheels/sm90/*.whl 2>/dev/null | head -1)
SAGE_WHEEL=$wheel bash tests/gpu/docker_h200.sh run "$res/docker"
echo "docker_h200.sh exit $?" | tee "$res/docker/exit.txt"
pack docker
fi
cat "$res"/kernels/summary.md "$res"/docker/summary.md 2>/dev/null

# 3. the gpu-marked probe cases (the machine's Python has torch and triton; pytest comes carried)
want pytest || exit 0
mkdir -p "$res/pytest-gpu"
py=/opt/torch/.venv/bin/python3
[ -x "$py" ] || py=python3
if ls .gpu/test-whl/sageattention-1.0.6-*.whl >/dev/null 2>&1; then  # pytest: the machine's, unless carried here
    site=$(mktemp -d)
    for w in .gpu/test-whl/*.whl; do
        case $w in *sageattention-*) ;; *) "$py" -m zipfile -e "$w" "$site" ;; esac
    done
    SAGE106_WHEEL=$(ls .gpu/test-whl/sageattention-1.0.6-*.whl 2>/dev/null | head -1) PYTHONPATH=$site \
        "$py" -m pytest -m gpu tests/probes -p no:cacheprovider -rA --junitxml="$res/pytest-gpu/junit.xml" \
        >"$res/pytest-gpu/log.txt" 2>&1
    echo "pytest -m gpu exit $?" | tee "$res/pytest-gpu/exit.txt"
    tail -n 30 "$res/pytest-gpu/log.txt"
else
    echo "pytest -m gpu: not run (no sageattention 1.0.6 wheel in .gpu/test-whl)" | tee "$res/pytest-gpu/exit.txt"
fi
pack pytest-gpu
