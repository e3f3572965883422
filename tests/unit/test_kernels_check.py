"""`invoke check` and `invoke audit` (no --wheel) against recorded kernel coverage in wheels.toml."""

from __future__ import annotations

import json
import re

import pytest

from comfyimg.audit import coverage
from comfyimg.audit.report import DOC
from comfyimg.pins import load as pins
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.cudawheels import FULL_SAGE2, SEED_SAGE2, sage2_wheel, sage3_wheel
from tests.lib.pinfile import BAKE_COMPLETE_CUDA as BAKE
from tests.lib.pinfile import PROFILE_CUDA as PROFILE
from tests.lib.pinfile import pin_toml, recorded


def make(project_factory, text):
    project = project_factory(None, bake_hcl=BAKE)
    project.pins.write_text(text)
    assert project.invoke("render").returncode == 0
    return project


def test_recorded_coverage_that_misses_a_served_arch_fails_check(tmp_path, project_factory):
    seed = sage2_wheel(tmp_path, SEED_SAGE2)
    project = project_factory(None, bake_hcl=BAKE)
    text = recorded(PROFILE + pin_toml("sageattention", "2.2.0", seed), project.pins, seed)
    assert "# sageattention: a comment that must survive" in text
    project.pins.write_text(text)
    r = project.invoke("check")
    assert_failed_cleanly(r, 2)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("coverage_from"))
    # One line: the image, the arch, the pin, the module, and the edit that fixes it.
    refusals = [ln for ln in r.stderr.splitlines() if ": coverage: " in ln]
    assert len(refusals) == 1 and re.fullmatch(
        rf"wheels\.toml:{line}: coverage: complete-cuda on sm120 \(RTX 50xx\): sageattention 2\.2\.0 cannot run: "
        r".*sageattention\._qattn_sm89 carries only sm_89, sm_100a.*; fix: serves = "
        r'\["sm80", "sm86", "sm89", "sm90"\] in its \[\[wheel\]\] \(wheels\.toml:\d+\), or move it to a wheel '
        r"built for sm120", refusals[0]), r.stderr
    # Serving fewer GPUs, declared on the pin, makes the same record pass.
    project.pins.write_text(text.replace('provides = ["sageattention"]',
                                         'provides = ["sageattention"]\nserves = ["sm80", "sm86", "sm89", "sm90"]'))
    assert project.invoke("render").returncode == 0
    ok = project.invoke("check")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_coverage_covering_every_served_arch_passes_and_sage3_serves_only_blackwell(tmp_path, project_factory):
    full, sage3 = sage2_wheel(tmp_path, FULL_SAGE2), sage3_wheel(tmp_path, "r_120a_121a")
    project = project_factory(None, bake_hcl=BAKE)
    text = PROFILE + pin_toml("sageattention", "2.2.0", full) + pin_toml("sageattn3", "1.0.0", sage3)
    project.pins.write_text(recorded(text, project.pins, full, sage3))
    assert project.invoke("render").returncode == 0
    r = project.invoke("check")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stdout + r.stderr
    loaded = pins.load(project.pins)
    assert coverage.serves(loaded, loaded.wheels[1]) == ("sm120",)  # not sm80: sageattn3 serves Blackwell only
    doc = (project.root / DOC).read_text()
    assert "| complete-cuda | sageattention | sm80, sm86, sm89, sm90, sm120 | recorded |" in doc
    assert "| complete-cuda | sageattn3 | sm120 | recorded | NO | NO | NO | NO | NO | NO | yes | yes |" in doc
    audit = project.invoke("audit", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    report = json.loads(audit.stdout)["pins"]
    assert report["sageattn3"]["archs"]["sm120"]["runnable"] is True
    assert report["sageattention"]["archs"]["sm120"]["by"] == "ptx-jit"
    table = project.invoke("audit")
    assert "sageattention._qattn_sm89" in table.stdout and "JIT compute_80" in table.stdout


def test_coverage_read_from_another_wheel_is_bad_input(tmp_path, project_factory):
    full = sage2_wheel(tmp_path, FULL_SAGE2)
    project = project_factory(None, bake_hcl=BAKE)
    text = recorded(PROFILE + pin_toml("sageattention", "2.2.0", full), project.pins, full)
    project.pins.write_text(re.sub(r'^sha256 = "[0-9a-f]+"', f'sha256 = "{"c" * 64}"', text, flags=re.M))
    r = project.invoke("check")
    assert r.returncode == 2 and "coverage was read from another wheel" in r.stderr, r.stdout + r.stderr
    assert "invoke bump --release v9 --verify --name sageattention" in r.stderr


def test_no_recorded_coverage_is_a_warning_with_the_command_that_records_it(tmp_path, project_factory):
    full = sage2_wheel(tmp_path, FULL_SAGE2)
    project = make(project_factory, PROFILE + pin_toml("sageattention", "2.2.0", full))
    r = project.invoke("check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("warning: wheels.toml:11: coverage: sageattention has no recorded kernel coverage for sm80, sm86, "
            "sm89, sm90, sm120; builds of complete-cuda refuse it. Record it with: "
            "invoke bump --release v9 --verify --name sageattention") in r.stderr


@pytest.mark.parametrize(("extra", "message"), [
    ('coverage = []', r"wheels\.toml:\d+: coverage_from: missing; coverage needs it"),
    ('coverage_from = { tool = "cuobjdump 13.5", sha256 = "xyz" }\ncoverage = []',
     r"coverage_from\.sha256: 'xyz' is not 64 lowercase hex"),
    (f'coverage_from = {{ tool = "t", sha256 = "{"a" * 64}" }}\ncoverage = [{{ module = "m", sass = ["compute_80"] }}]',
     r"coverage\[0\]\.sass: 'compute_80' is PTX; expected sm_XY"),
    (f'coverage_from = {{ tool = "t", sha256 = "{"a" * 64}" }}\ncoverage = [{{ module = "m", sass = ["sm80"] }}]',
     r"coverage\[0\]\.sass: 'sm80' is not a CUDA target"),
    ('serves = ["ampere"]', r"serves: 'ampere' is not a GPU arch"),
])
def test_bad_coverage_fields_name_file_line_and_field(tmp_path, project_factory, extra, message):
    full = sage2_wheel(tmp_path, FULL_SAGE2)
    project = project_factory(None, bake_hcl=BAKE)
    project.pins.write_text(PROFILE + pin_toml("sageattention", "2.2.0", full, extra=extra))
    r = project.invoke("check")
    assert_failed_cleanly(r, 2, stderr=message)


def test_the_host_passes_the_probe_what_each_served_gpu_needs_from_the_coverage(tmp_path, project_factory):
    from comfyimg import render
    from comfyimg.validate import containers as validate
    from tests.lib.cudawheels import PER_ARCH_SAGE2

    per_arch = sage2_wheel(tmp_path, PER_ARCH_SAGE2["sm90"], version="2.2.0+cu129.torch2.9.0.sm90",
                           filename="sageattention-2.2.0+cu129.torch2.9.0.sm90-cp312-cp312-linux_x86_64.whl")
    fat = sage2_wheel(tmp_path, FULL_SAGE2)
    project = project_factory(None, bake_hcl=BAKE)
    text = (PROFILE + pin_toml("sageattention", "2.2.0", fat)
            + pin_toml("sageattention", "2.2.0+cu129.torch2.9.0.sm90", per_arch, extra='arch = "sm90"\n')
            .replace(per_arch.name, per_arch.name.replace("+", "%2B")))
    project.pins.write_text(recorded(text, project.pins, fat, per_arch))
    loaded = pins.load(project.pins)
    # The per-arch image: it serves sm90 only, and sm90 needs its _qattn_sm90 and _fused kernels.
    assert coverage.probe_args(loaded, "sageattention", render.pins_for(loaded, "complete-cuda-sm90")) == [
        "--serves", "sm90", "--needs", "sm90=sageattention._qattn_sm90,sageattention._fused"]
    fat_args = validate.expectations(project.root, validate.PROBES["sage2"], "complete-cuda")
    assert fat_args[:2] == ["--serves", "sm80,sm86,sm89,sm90,sm120"]
    assert "sm86=" in fat_args and "sm120=sageattention._qattn_sm89,sageattention._fused" in fat_args
    assert validate.expectations(project.root, validate.PROBES["sage2"], None) == []  # --image alone


def test_audit_of_a_wheel_defaults_to_the_archs_its_pins_serve(tmp_path, project_factory):
    seed = sage2_wheel(tmp_path, SEED_SAGE2)
    project = make(project_factory, PROFILE + pin_toml("sageattention", "2.2.0", seed))
    r = project.invoke("audit", "--wheel", str(seed), "--json")
    assert r.returncode == 1, r.stdout + r.stderr  # sm120 is served and cannot run it
    assert list(json.loads(r.stdout)["archs"]) == ["sm80", "sm86", "sm89", "sm90", "sm120"]
    other = sage3_wheel(tmp_path, "r_120a_121a")
    r = project.invoke("audit", "--wheel", str(other))
    assert r.returncode == 2 and "no pin of sageattn3 in wheels.toml serves a GPU arch; name the archs with --arch" \
        in r.stderr, r.stdout + r.stderr


def test_a_per_arch_pin_that_misses_its_arch_is_refused_naming_its_image_and_the_fix(tmp_path, project_factory):
    from tests.lib.cudawheels import PER_ARCH_SAGE2

    name = "sageattention-2.2.0+cu129.torch2.9.0.sm90-cp312-cp312-linux_x86_64.whl"
    wrong = sage2_wheel(tmp_path, PER_ARCH_SAGE2["sm89"], version="2.2.0+cu129.torch2.9.0.sm90", filename=name)
    project = project_factory(None, bake_hcl=BAKE)
    text = (PROFILE + pin_toml("sageattention", "2.2.0+cu129.torch2.9.0.sm90", wrong, extra='arch = "sm90"\n')
            .replace(name, name.replace("+", "%2B")))
    project.pins.write_text(recorded(text, project.pins, wrong))
    errors, _ = coverage.problems(pins.load(project.pins))
    assert len(errors) == 1 and re.fullmatch(
        r"wheels\.toml:\d+: coverage: complete-cuda-sm90 on sm90 \(H100 / H200\): sageattention\[sm90\] "
        r"2\.2\.0\+cu129\.torch2\.9\.0\.sm90 cannot run: .*sageattention\._qattn_sm90 is not in the wheel.*; "
        r"fix: move it to a wheel built for sm90, or remove the pin \(wheels\.toml:\d+\)", errors[0]), errors
