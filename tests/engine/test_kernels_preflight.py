"""`invoke bake` refuses, before building, a pin whose recorded kernel coverage misses an arch it
serves, and one with no coverage recorded (as it refuses a pin with no sha256)."""

from __future__ import annotations

import json
import re

import pytest

from comfyimg.audit import record
from comfyimg.kernels.read import read_wheel
from comfyimg.pins import edit as pinedit
from comfyimg.pins import load as pins
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel, trap_wheel
from tests.lib.engine import WheelPin, wheels_toml
from tests.lib.wheels import sha256_file

pytestmark = pytest.mark.engine


def _pin(served, wheel, serves=("sm80", "sm90")):
    sage3 = served.pin("sage3")
    seedlike = WheelPin("sageattention", "2.2.0", f"{served.server.url}/{wheel.name}", sha256_file(wheel),
                        ("sageattention",), serves=serves)
    return wheels_toml([sage3, seedlike])


def _assert_refused(project, result, message):
    assert_failed_cleanly(result.proc, 2, stderr=message)
    assert not re.search(r"^#\d+ ", result.output, re.M), "nothing may be built"
    assert not (project.root / "build" / "bake-record.json").exists()


def test_preflight_refuses_recorded_coverage_that_misses_a_served_arch(served, engine_project, tmp_path):
    # cp311 like the stand-in core; sm80 runs, sm90 has no _qattn_sm90.
    wheel = sage2_wheel(tmp_path, {k: v for k, v in SEED_SAGE2.items() if k != "_qattn_sm90"},
                        filename="sageattention-2.2.0-cp311-cp311-linux_x86_64.whl")
    text = pinedit.dumps_with_changes(_pin(served, wheel), {1: record.record_fields(read_wheel(wheel))})
    project = engine_project("uncovered", text)
    result = project.bake(pip_index=f"{served.server.url}/simple/")
    _assert_refused(project, result, r"wheels\.toml:\d+: coverage: complete-cuda on sm90 \(H100 / H200\): "
                                     r"sageattention 2\.2\.0 cannot run: sageattention\._qattn_sm90 is not in the wheel; "
                                     r"fix: serves = \[\"sm80\"\] in its \[\[wheel\]\] \(wheels\.toml:\d+\), or move it "
                                     r"to a wheel built for sm90$")


def test_bake_records_missing_coverage_of_a_hashed_pin_then_judges_it(served, engine_project, tmp_path):
    """One command: bake downloads the hashed pin, verifies it, records its coverage into wheels.toml,
    and then judges it: this wheel misses sm90, so the build is refused after the recording."""
    wheel = sage2_wheel(served.server.root, {k: v for k, v in SEED_SAGE2.items() if k != "_qattn_sm90"},
                        filename="sageattention-2.2.0+nosm90-cp311-cp311-linux_x86_64.whl")  # served, downloaded
    project = engine_project("unrecorded", _pin(served, wheel))
    result = project.bake(pip_index=f"{served.server.url}/simple/")
    assert "recorded the kernel coverage of sageattention" in result.proc.stderr, result.proc.stderr
    _assert_refused(project, result, r"wheels\.toml:\d+: coverage: complete-cuda on sm90 .*: sageattention 2\.2\.0 cannot run")
    pin = next(p for p in pins.load(project.pins).wheels if p.name == "sageattention")
    assert pin.coverage is not None and pin.coverage.sha256 == sha256_file(wheel)
    assert "sageattention._qattn_sm90" not in {m.name for m in pin.coverage.modules}


def test_bake_records_a_kernel_compiled_out_for_a_served_arch_and_refuses_it(served, engine_project, tmp_path):
    """Issue 29: the preflight records what the disassembly found with the coverage, and judges by
    it: this wheel's _qattn_sm89 is sm_80 SASS whose FP8 kernel is a breakpoint, so sm89 is refused."""
    wheel = trap_wheel(served.server.root, "t_80", filename="sageattention-2.2.0+trap80-cp311-cp311-linux_x86_64.whl")
    project = engine_project("compiled-out", _pin(served, wheel, serves=("sm89",)))
    result = project.bake(pip_index=f"{served.server.url}/simple/")
    assert "recorded the kernel coverage of sageattention" in result.proc.stderr, result.proc.stderr
    _assert_refused(project, result, r"wheels\.toml:\d+: coverage: complete-cuda on sm89 \(L4 / RTX 40xx\): "
                                     r"sageattention 2\.2\.0 cannot run: .*compiled out for sm89: "
                                     r"sageattention\._qattn_sm89's kernel qk_fp8_attn, built for sm_80, holds BPT\.TRAP")
    text = project.pins.read_text()
    assert 'code = [{target = "sm_80", kernels = 1, named = true, trapped = ["qk_fp8_attn"]' in text, text


def test_bake_never_trusts_bytes_without_a_sha256(served, engine_project, tmp_path):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2, filename="sageattention-2.2.0-cp311-cp311-linux_x86_64.whl")
    text = _pin(served, wheel).replace(f'sha256 = "{sha256_file(wheel)}"\n', "")
    project = engine_project("unhashed", text)
    before = project.pins.read_text()
    result = project.bake(pip_index=f"{served.server.url}/simple/")
    _assert_refused(project, result, r"wheels\.toml:\d+: sha256: sageattention in complete-cuda has no hash")
    assert project.pins.read_text() == before
    assert "recorded the kernel coverage" not in result.proc.stderr


def test_a_covered_pin_builds_and_the_summary_says_where_it_runs(served, engine_project):
    """Coverage that runs on every served arch: the image is built, its summary lists per image
    the GPUs that run the package, and the image carries the same as io.comfyimg.runs-on."""
    from tests.lib.cudawheels import FULL_SAGE2
    from tests.lib.dockercli import docker

    wheel = sage2_wheel(served.server.root, FULL_SAGE2, filename="sageattention-2.2.0-1-cp311-cp311-linux_x86_64.whl")
    text = pinedit.dumps_with_changes(_pin(served, wheel), {1: record.record_fields(read_wheel(wheel))})
    project = engine_project("covered", text)
    result = project.bake(pip_index=f"{served.server.url}/simple/")
    assert result.code == 0, result.output[-3000:]
    assert "complete-cuda: sageattention 2.2.0 runs on sm80 (A100), sm90 (H100 / H200)" in result.proc.stdout
    inspect = docker("image", "inspect", "--format", '{{index .Config.Labels "io.comfyimg.runs-on"}}', project.tag)
    assert inspect.returncode == 0, inspect.stderr
    label = json.loads(inspect.stdout)
    assert label["sageattention"] == {"runs_on": ["sm80", "sm90"], "falls_back": []}
