"""The probes on a real GPU (marked ``gpu``): the expectations that tests/gpu/run_on_gpu.sh
checked on the H100 and H200, as pytest cases with the CPU tests' assertion helper
(runner.assert_probe). Written for a Hopper GPU (sm90).

Without a CUDA GPU every case here is SKIPPED with the reason (never counted as a pass); the
CPU variants of the same assertions are test_probes_cpu.py, which CI runs. On a GPU machine:

    python -m pytest -m gpu tests/probes          # SAGE106_WHEEL=sageattention-1.0.6-py3-none-any.whl

PyPI's sageattention 1.0.6 (a pure-Python wheel over Triton) is taken from SAGE106_WHEEL, else
.whl/ or .gpu/whl/ in the repository; on a GPU machine without it those cases FAIL, saying so.
"""
from __future__ import annotations

import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests.lib.project import REPO
from tests.probes.runner import PYPI_106, SAGE2, SAGE3, assert_probe, run_probe

pytestmark = pytest.mark.gpu

V106 = ("--expect-version", "1.0.6", *PYPI_106)
STRICT = ("--expect-version", "2.2.0", "--require-gpu", "--skip-bench")

# id: (probe, install, args, status, exit code, reason regex, gpu_checks, GPU visible)
CASES = {
    # real PyPI 1.0.6 on the GPU, with timings; the same package against the 2.2.0 defaults fails
    "sage2-pypi-1.0.6": (SAGE2, "pypi-1.0.6", (*V106, "--require-gpu", "--bench-seq-len", "4608,16384"),
                         "pass", 0, "", "ran", True),
    "sage2-pypi-1.0.6-vs-2.2.0-defaults": (SAGE2, "pypi-1.0.6", ("--expect-version", "2.2.0", "--skip-bench"),
                                           "fail", 1, r"installed 1\.0\.6, expected 2\.2\.0.*missing", None, True),
    # fake 2.2.0 installs: a correct one passes; each broken one fails for its reason
    "sage2-fake-good": (SAGE2, "good", STRICT, "pass", 0, "", "ran", True),
    "sage2-fake-empty-like": (SAGE2, "empty", STRICT, "fail", 1, r"numerics:.*(NaN|sentinel)", "ran", True),
    "sage2-fake-returns-q": (SAGE2, "returns_q", STRICT, "fail", 1, r"numerics:.*output is the input tensor q",
                             "ran", True),
    "sage2-fake-no-sm90": (SAGE2, "no_sm90", STRICT, "fail", 1, r"_qattn_sm90", "ran", True),
    # the same broken build with only what an import-only test would check: the call still catches it
    "sage2-fake-no-sm90-call-only": (SAGE2, "no_sm90", (*STRICT, "--no-dispatch-check", "--extensions",
                                                        "sageattention._qattn_sm80,sageattention._qattn_sm89,"
                                                        "sageattention._fused"),
                                     "fail", 1, r"numerics:.*SM90 kernel is not available", "ran", True),
    # the GPU hidden
    "sage2-pypi-1.0.6-no-gpu": (SAGE2, "pypi-1.0.6", V106, "pass", 0, "gpu: skipped", "skipped", False),
    "sage2-pypi-1.0.6-no-gpu-require": (SAGE2, "pypi-1.0.6", (*V106, "--require-gpu"), "fail", 1, "require-gpu",
                                        "skipped", False),
    # sage3 on a GPU that is not sm120/sm121
    "sage3-fake-good": (SAGE3, "sage3_good", ("--expect-version", "1.0.0"), "skip", 3, r"sm(90|80|86|89|100)",
                        "skipped", True),
    "sage3-fake-no-fp4quant": (SAGE3, "sage3_no_fp4quant", ("--expect-version", "1.0.0"), "fail", 1,
                               "fp4quant_cuda", None, True),
    "sage3-not-installed": (SAGE3, "nothing", ("--expect-version", "1.0.0"), "fail", 1, "not installed", None, True),
}


@pytest.fixture(scope="session")
def gpu() -> str:
    """The GPU torch sees here; the test is skipped (with the reason) when there is none."""
    try:
        import torch
    except ImportError as exc:
        pytest.skip(f"no GPU run: torch cannot be imported ({exc})")
    if torch.version.cuda is None or not torch.cuda.is_available():
        pytest.skip(f"no CUDA GPU visible to torch {torch.__version__}: the gpu-marked probe cases need one "
                    "(python -m pytest -m gpu tests/probes on a GPU machine)")
    return f"{torch.cuda.get_device_name(0)} sm{''.join(map(str, torch.cuda.get_device_capability(0)))}"


@pytest.fixture(scope="session")
def pypi_106(tmp_path_factory) -> Path:
    """PyPI's sageattention 1.0.6, unpacked as ``pip install --target`` would (a pure wheel)."""
    found = [os.environ.get("SAGE106_WHEEL", "")]
    for folder in (REPO / ".whl", REPO / ".gpu" / "whl"):
        found += sorted(str(p) for p in folder.glob("sageattention-1.0.6-*.whl"))
    wheel = next((Path(p) for p in found if p and Path(p).is_file()), None)
    if wheel is None:
        pytest.fail("sageattention 1.0.6 is not here: set SAGE106_WHEEL, or put the wheel in .whl/ or .gpu/whl/",
                    pytrace=False)
    target = tmp_path_factory.mktemp("sa106")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


@pytest.mark.parametrize("case", list(CASES))
def test_probe_on_the_gpu(gpu, fake_root, request, case):
    probe, install, args, status, code, reason, gpu_checks, visible = CASES[case]
    root = request.getfixturevalue("pypi_106") if install == "pypi-1.0.6" else fake_root / install
    r = run_probe(probe, root, *args, gpu=visible)
    assert_probe(r, status, code, reason=reason or None, gpu_checks=gpu_checks)
    if visible and gpu_checks == "ran":
        assert r.json["device"]["sm"] in gpu, (gpu, r.json["device"])


def test_the_bench_waits_for_its_gate_on_the_gpu(gpu, fake_root, tmp_path):
    """validate runs the ComfyUI probe beside this one: the timing starts only once the gate exists."""
    gate = tmp_path / "comfyui-ended"
    opened = threading.Timer(3.0, gate.touch)
    opened.start()
    started = time.monotonic()
    try:
        r = run_probe(SAGE2, fake_root / "good", "--expect-version", "2.2.0", "--require-gpu",
                      "--bench-seq-len", "4096", "--bench-after", str(gate), gpu=True)
    finally:
        opened.cancel()
    assert_probe(r, "pass", 0, gpu_checks="ran")
    assert r.check("bench")["status"] == "pass" and r.json["bench"]["results"][0]["seq_len"] == 4096
    assert "bench: waited" in r.stderr and time.monotonic() - started >= 3.0
