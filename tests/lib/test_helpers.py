"""Tests of the shared helpers in tests/lib that tests/lib/test_lib.py does not cover."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from comfyimg.pins.load import loads
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.basepins import BASE, BASE_LINES, edit, sub
from tests.lib.bumpproject import ARCHS, BAKE_HCL, wheels_toml
from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel
from tests.lib.github import FakeAsset, FakeGitHub, FakeRelease, asset_sha256
from tests.lib.pinfile import PROFILE_CUDA, pin_toml, recorded
from tests.lib.wheels import sha256_file


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_clean_failure_passes():
    r = _run("import sys; print('error: wheels.toml:3: bad', file=sys.stderr); sys.exit(2)")
    assert_failed_cleanly(r, 2, message=r"wheels.toml:3: bad", before={"a": b"1"}, after={"a": b"1"}, hidden=["tok"])
    assert_failed_cleanly(r, (1, 2), stderr=r"^error: wheels\.toml:3: bad$")


@pytest.mark.parametrize(("code", "kwargs", "why"), [
    ("import sys; sys.exit(1)", {"code": 2}, "exit code"),
    ("1/0", {"code": 1}, "traceback"),
    ("import sys; sys.exit(2)", {"code": 2, "message": "named field"}, "message"),
    ("import sys; sys.exit(2)", {"code": 2, "before": {"a": b"1"}, "after": {"a": b"2"}}, "files changed"),
    ("import sys; print('ghp_secret'); sys.exit(2)", {"code": 2, "hidden": ["ghp_secret"]}, "secret"),
    ("import sys; print('wheels.toml:3: bad'); sys.exit(2)", {"code": 2, "stderr": "wheels.toml:3"}, "stdout, not stderr"),
    ("import sys; sys.exit(2)", {"code": (0, 1)}, "none of the codes"),
])
def test_each_way_of_failing_uncleanly_is_caught(code, kwargs, why):
    r = _run(code)
    with pytest.raises(AssertionError):
        assert_failed_cleanly(r, **kwargs)


def test_asset_sha256_is_the_sha256_of_the_served_bytes():
    with FakeGitHub() as fake:
        fake.add_release("o/r", FakeRelease("v1", [FakeAsset("x.whl", data=b"abc")]))
        assert asset_sha256(fake, "x.whl") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        with pytest.raises(KeyError):
            asset_sha256(fake, "missing.whl")


def test_basepins_edits_replace_or_drop_numbered_lines():
    assert BASE.splitlines() == BASE_LINES and BASE_LINES[17] == 'name = "sageattention"'
    changed = edit({**sub(18, "sageattention", "other"), 1: None})
    assert changed.splitlines() == [BASE_LINES[i] if i != 17 else 'name = "other"' for i in range(1, len(BASE_LINES))]
    with pytest.raises(AssertionError):
        sub(18, "not on that line", "x")


def test_the_bump_projects_wheels_toml_is_valid_and_holds_each_kind_of_pin():
    targets = {line.split('"')[1] for line in BAKE_HCL.splitlines()}
    pins = loads(wheels_toml(), Path("wheels.toml"), bake_targets=targets)
    assert [p.key for p in pins.wheels] == ["sageattention", "sageattn3", *(f"sageattention[{a}]" for a in ARCHS),
                                             "helper"]
    assert [p.sha256 for p in pins.wheels if p.sha256] == ["a" * 64]  # only the source-less helper is hashed


def test_pin_toml_pins_a_wheel_on_disk_and_recorded_records_its_kernels(tmp_path):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2)
    text = PROFILE_CUDA + pin_toml("sageattention", "2.2.0", wheel, extra='serves = ["sm90"]\n')
    pin = loads(text, tmp_path / "wheels.toml").wheels[0]
    assert (pin.sha256, pin.serves, pin.coverage) == (sha256_file(wheel), ("sm90",), None)
    with_coverage = recorded(text, tmp_path / "wheels.toml", wheel)
    assert "# sageattention: a comment that must survive" in with_coverage
    coverage = loads(with_coverage, tmp_path / "wheels.toml").wheels[0].coverage
    assert coverage is not None and coverage.sha256 == sha256_file(wheel)
