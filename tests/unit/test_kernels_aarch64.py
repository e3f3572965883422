"""aarch64 wheels (GH200, GB200, DGX Spark): their compiled modules are aarch64 ELFs carrying the
same fatbins. The reader lists them with the same cuobjdump and judges them with the same rules;
an ELF of the wrong machine inside a wheel is a mislabelled wheel, refused.

No aarch64 compiler is on the build machine (the PyPI nvcc is an x86-64 host package and its host
compiler is the machine's x86-64 gcc), so each aarch64 object is a minimal aarch64 ELF the test
writes around a real nvcc fatbin (tests/lib/cudawheels.aarch64_so)."""

from __future__ import annotations

import json
import subprocess

import pytest

from comfyimg.kernels import dispatch, elf
from comfyimg.kernels import rules as kernels
from comfyimg.kernels.cuobjdump import cuobjdump, read_module
from comfyimg.kernels.read import read_wheel, wheel_machine
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.cudawheels import PER_ARCH_SAGE2, aarch64_so, objects_dir, sage2_wheel

FIXTURES = ["r_90a", "r_100a", "r_121a", "r_120a_121a", "r_80_ptx80", "r_ptx90", "r_100f", "r_120f"]


@pytest.mark.parametrize("name", FIXTURES)
def test_an_aarch64_elf_lists_the_same_targets_as_the_x86_64_object(tmp_path, name):
    arm = tmp_path / f"{name}.so"
    arm.write_bytes(aarch64_so(name))
    x86 = objects_dir() / f"{name}.so"
    assert elf.read(arm, "arm").machine == "aarch64" and elf.read(x86, "x86").machine == "x86_64"
    got = read_module(arm, "m", "arm", "aarch64")
    assert got == read_module(x86, "m", "x86", "x86_64")
    assert got.sass or got.ptx  # a real fatbin, not an empty listing


def test_the_aarch64_elf_is_one_the_system_tools_call_aarch64(tmp_path):
    arm = tmp_path / "m.so"
    arm.write_bytes(aarch64_so("r_90a"))
    proc = subprocess.run(["readelf", "-h", "-S", str(arm)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "AArch64" in proc.stdout and ".nv_fatbin" in proc.stdout
    tool, _ = cuobjdump()
    dump = subprocess.run([tool, "--dump-elf-symbols", str(arm)], capture_output=True, text=True, timeout=60)
    assert "arch = sm_90a" in dump.stdout


@pytest.mark.parametrize(("filename", "machine"), [
    ("sageattention-2.2.0-290.129-cp312-cp312-linux_aarch64.whl", "aarch64"),
    ("sageattention-2.2.0+cu130torch2.11-cp312-cp312-manylinux_2_34_aarch64.whl", "aarch64"),
    ("x-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", "aarch64"),
    ("sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl", "x86_64"),
    ("sageattention-1.0.6-py3-none-any.whl", None),
    ("not-a-wheel.zip", None),
])
def test_the_machine_a_wheel_name_promises(filename, machine):
    assert wheel_machine(filename) == machine


# GH200 (sm90), GB200 (sm100), DGX Spark / GB10 (sm121): what an aarch64 wheel runs on.
def test_an_aarch64_per_arch_wheel_for_gh200_runs_on_sm90_only(tmp_path):
    wheel = sage2_wheel(tmp_path, PER_ARCH_SAGE2["sm90"], aarch64=True)
    found = read_wheel(wheel)
    assert {m.name for m in found.modules} == {"sageattention._qattn_sm80", "sageattention._qattn_sm89",
                                               "sageattention._qattn_sm90", "sageattention._fused"}
    v = kernels.judge_all(found.modules, ["sm90", "sm100", "sm121"], kernels.rules_for("sageattention", "2.2.0"))
    assert v["sm90"].runnable and v["sm90"].by == "sass"
    assert not v["sm121"].runnable and not v["sm100"].runnable


def test_an_aarch64_wheel_of_main_with_sm_121a_runs_on_dgx_spark(tmp_path):
    modules = {"_qattn_sm80": "r_121a", "_qattn_sm89": "r_121a", "_fused": "r_121a", "_qattn_sm90": "r_90a"}
    wheel = sage2_wheel(tmp_path, modules, source="d1a57a5", aarch64=True)
    found = read_wheel(wheel)
    how = found.dispatch.get("sageattention")
    v = kernels.judge_all(found.modules, ["sm90", "sm100", "sm121"], dispatch.rules("sageattention", "2.2.0", how))
    assert v["sm121"].runnable and v["sm121"].by == "sass", v["sm121"]
    assert not v["sm90"].runnable and "sageattention._fused" in v["sm90"].why  # _fused has sm_121a only
    assert not v["sm100"].runnable and "sm100" in v["sm100"].why  # main has no sm100 branch


@pytest.fixture
def project(project_factory):
    return project_factory(None)


def test_audit_reads_an_aarch64_wheel(tmp_path, project):
    wheel = sage2_wheel(tmp_path, PER_ARCH_SAGE2["sm90"], aarch64=True)
    r = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm90", "--arch", "sm121", "--json")
    assert r.returncode == 1, r.stdout + r.stderr  # sm121 cannot run it
    obj = json.loads(r.stdout)
    assert obj["wheel"].endswith("linux_aarch64.whl")
    assert obj["archs"]["sm90"]["runnable"] is True and obj["archs"]["sm121"]["runnable"] is False
    assert {m["module"]: m["sass"] for m in obj["modules"]}["sageattention._qattn_sm90"] == ["sm_90a"]


def test_an_x86_64_module_in_an_aarch64_wheel_is_refused(tmp_path, project):
    wheel = sage2_wheel(tmp_path, PER_ARCH_SAGE2["sm90"],
                        filename="sageattention-2.2.0-290.129-cp312-cp312-linux_aarch64.whl")
    r = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm90")
    assert_failed_cleanly(r, 2, stderr="an ELF for x86_64 in a wheel whose platform tag says aarch64")


# --------------------------------------------------------------------------- coverage per platform

X86_NAME = "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"
ARM_NAME = "sageattention-2.2.0-290.129-cp312-cp312-linux_aarch64.whl"


def _recorded_two_platforms(tmp_path):
    """An x86-64 pin (sm90 and sm120 kernels) and an aarch64 pin (sm90 and sm121 kernels), both
    recorded from their wheels as bump records them; the profile serves sm90, sm120 and sm121."""
    from tests.lib.cudawheels import FULL_SAGE2
    from tests.lib.pinfile import profile, recorded, wheel
    from tests.lib.wheels import sha256_file

    x86 = sage2_wheel(tmp_path / "x86", FULL_SAGE2, filename=X86_NAME)
    arm = sage2_wheel(tmp_path / "arm", {"_qattn_sm80": "r_121a", "_qattn_sm89": "r_121a", "_qattn_sm90": "r_90a",
                                         "_fused": "r_90a"}, source="d1a57a5", aarch64=True, filename=ARM_NAME)
    text = profile("cuda", torch="2.9.0", torch_index="cu128", cuda="12.9", archs=["sm90", "sm120", "sm121"],
                   platforms=["linux_x86_64", "linux_aarch64"])
    for w, platform in ((x86, None), (arm, "linux_aarch64")):
        text += "\n" + wheel("sageattention", "2.2.0", f"https://example.invalid/{w.name}", sha256=sha256_file(w),
                             targets=["complete-cuda"], platform=platform)
    path = tmp_path / "wheels.toml"
    return recorded(text, path, x86, arm)


def test_the_coverage_doc_has_arm64_rows_named_for_arm64_machines(tmp_path):
    from pathlib import Path

    from comfyimg.audit import report
    from comfyimg.pins import load as pins

    loaded = pins.loads(_recorded_two_platforms(tmp_path), Path("wheels.toml"))
    doc = report.markdown(loaded)
    head = "| image | pin | serves | coverage | sm90 (GH200) | sm100 (GB200) | sm121 (GB10 / DGX Spark) |"
    assert head in doc
    # _fused carries sm_90a only: GH200 runs it; on GB10 main's dispatch needs _fused too, which lacks sm_121a.
    assert "| complete-cuda-arm64 | sageattention[linux_aarch64] | sm90, sm120, sm121 | recorded | yes | NO | NO |" in doc
    x86_row = next(ln for ln in doc.splitlines() if ln.startswith("| complete-cuda | sageattention |"))
    assert "GH200" not in x86_row
    section = doc.split("## sageattention[linux_aarch64] 2.2.0", 1)[1]
    assert "- sm90 (GH200): yes:" in section and "- sm121 (GB10 / DGX Spark): NO:" in section
    assert "H100" not in section


def test_audit_says_per_platform_which_gpus_run_each_pin(tmp_path, project_factory):
    project = project_factory(_recorded_two_platforms(tmp_path), 'target "complete-cuda" {}\n')
    r = project.invoke("audit", "--json")
    assert r.returncode == 1, r.stdout + r.stderr  # each pin fails an arch it serves
    data = json.loads(r.stdout)
    assert data["pins"]["sageattention[linux_aarch64]"]["platform"] == "linux_aarch64"
    assert data["pins"]["sageattention"]["platform"] == "linux_x86_64"
    images = {(i["image"], i["pin"]): i for i in data["images"]}
    arm = images[("complete-cuda-arm64", "sageattention[linux_aarch64]")]
    assert arm["platform"] == "linux_aarch64" and arm["runs_on"] == ["sm90"] and arm["gpus"] == ["sm90 (GH200)"]
    x86 = images[("complete-cuda", "sageattention")]
    assert x86["gpus"] == ["sm90 (H100 / H200)", "sm120 (RTX 50xx)"]
    text = project.invoke("audit")
    # Runs on, per image: the arm64 image is named, and its GPUs are the arm64 machines.
    assert "complete-cuda-arm64: sageattention[linux_aarch64] 2.2.0 runs on sm90 (GH200)" in text.stdout, text.stdout
    assert "GB10 / DGX Spark" in text.stdout
    x86 = next(ln for ln in text.stdout.splitlines() if ln.startswith("complete-cuda: sageattention 2.2.0 runs on"))
    assert "sm90 (H100 / H200)" in x86 and "GH200" not in x86


def test_audit_of_an_aarch64_wheel_names_the_arm64_machines(tmp_path, project):
    wheel = sage2_wheel(tmp_path, PER_ARCH_SAGE2["sm90"], aarch64=True)
    r = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm90", "--arch", "sm100", "--arch", "sm121")
    assert r.returncode == 1
    assert "sm90 (GH200): runnable" in r.stdout and "sm100 (GB200): NOT runnable" in r.stdout
    assert "sm121 (GB10 / DGX Spark): NOT runnable" in r.stdout
