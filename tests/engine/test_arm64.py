"""The image family on arm64 (issue 32): a profile built for x86-64 and aarch64 gets per-platform
targets (``<name>-arm64``), each with its platform's pins, requirements file and labels; and the
engine here builds one for linux/arm64 under emulation (qemu-user-static + binfmt_misc)."""

from __future__ import annotations

import json

import pytest

from tests.lib.engine import PROFILES
from tests.lib.pinfile import profile, wheel

pytestmark = pytest.mark.engine

X86 = "sageattention-2.2.0-2130.129-cp311-cp311-linux_x86_64.whl"
ARM = "sageattention-2.2.0-2130.129-cp311-cp311-manylinux_2_34_aarch64.whl"
ARM_SM90 = "sageattention-2.2.0+cu129.torch2.13.0.sm90-cp311-cp311-linux_aarch64.whl"
BOTH = ["linux_x86_64", "linux_aarch64"]


def _two_platforms() -> str:
    pins = [(X86, None, None, "1"), (ARM, None, "linux_aarch64", "2"), (ARM_SM90, "sm90", "linux_aarch64", "3")]
    return (profile("cuda", python="cp311", torch="2.13.0", torch_index="cu128", cuda="12.9",
                    archs=["sm90", "sm121"], platforms=BOTH)
            + "\n" + profile("cpu", python="cp311", torch="2.13.0", torch_index="cpu", platforms=BOTH)
            + "".join("\n" + wheel("sageattention", f.split("-")[1], f"https://example.invalid/{f}", sha256=h * 64,
                                   arch=arch, platform=platform, targets=["complete-cuda"], extra="serves = []\n")
                      for f, arch, platform, h in pins))


def test_print_shows_every_target_for_both_platforms(engine_project):
    project = engine_project("arm64-print", _two_platforms())
    proc = project.invoke("bake", "--print", "-t", "all", "--label", project.label)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)["target"]
    arm = {"runtime-cuda-arm64", "core-cuda-arm64", "complete-cuda-arm64", "complete-cuda-sm90-arm64",
           "runtime-cpu-arm64", "core-cpu-arm64"}
    assert set(plan) == {"runtime-cuda", "core-cuda", "complete-cuda", "runtime-cpu", "core-cpu"} | arm
    for name, spec in plan.items():
        assert spec["platforms"] == ["linux/arm64" if name in arm else "linux/amd64"], name
    # Each stage builds on its own platform's parent.
    assert plan["core-cuda-arm64"]["contexts"]["runtime"] == "target:runtime-cuda-arm64"
    assert plan["core-cpu-arm64"]["contexts"]["runtime"] == "target:runtime-cpu-arm64"
    assert plan["complete-cuda-arm64"]["contexts"]["core"] == "target:core-cuda-arm64"
    assert plan["complete-cuda-sm90-arm64"]["contexts"]["core"] == "target:core-cuda-arm64"
    assert plan["complete-cuda-arm64"]["tags"] == [f"comfyui:cuda-arm64-{project.label}"]
    assert plan["complete-cuda-sm90-arm64"]["tags"] == [f"comfyui:cuda-sm90-arm64-{project.label}"]
    # Requirements and labels: each image its own platform's pins.
    for name, url_file, platform in (("complete-cuda", X86, "linux_x86_64"), ("complete-cuda-arm64", ARM, "linux_aarch64"),
                                     ("complete-cuda-sm90-arm64", ARM_SM90, "linux_aarch64")):
        spec = plan[name]
        assert spec["args"]["WHEELS_REQUIREMENTS"] == f"{name}.txt"
        req = (project.root / "generated" / "requirements" / f"{name}.txt").read_text()
        pinned = [ln for ln in req.splitlines() if ln.startswith("sageattention @")]
        assert pinned == [f"sageattention @ https://example.invalid/{url_file} --hash=sha256:"
                          f"{ {X86: '1', ARM: '2', ARM_SM90: '3'}[url_file] * 64}"], req
        assert spec["labels"]["io.comfyimg.pins.platform"] == platform
        labelled = json.loads(spec["labels"]["io.comfyimg.pins"])
        assert [p["sha256"] for p in labelled] == [{X86: "1", ARM: "2", ARM_SM90: "3"}[url_file] * 64]
    bake_vars = json.loads((project.root / "generated" / "wheels.bake.json").read_text())["variable"]
    assert bake_vars["CUDA_OTHER_PLATFORMS"]["default"] == ["arm64"]
    assert bake_vars["CUDA_ARCH_PLATFORM_TARGETS"]["default"] == ["sm90-arm64"]
    assert bake_vars["CUDA_ARCH_TARGETS"]["default"] == []  # no x86-64 per-arch pin


def test_a_single_platform_profile_has_no_arm64_targets(engine_project):
    project = engine_project("arm64-none", PROFILES + "\n" + wheel(
        "sageattention", "2.2.0", f"https://example.invalid/{X86}", sha256="1" * 64, targets=["complete-cuda"],
        extra="serves = []\n"))
    proc = project.invoke("bake", "--print", "-t", "all", "--label", project.label)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)["target"]
    assert not [t for t in plan if t.endswith("-arm64")]
    assert {spec["platforms"][0] for spec in plan.values()} == {"linux/amd64"}
