"""The image family on arm64 (issue 32): a profile built for x86-64 and aarch64 gets per-platform
targets (``<name>-arm64``), each with its platform's pins, requirements file and labels; and the
engine here builds one for linux/arm64 under emulation (qemu-user-static + binfmt_misc)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.test_core import OVERRIDE_CORE, TAG, _fake_comfyui, _write_index
from tests.lib.engine import PROFILES, docker, make_engine_project, require_engine
from tests.lib.pinfile import profile, wheel
from tests.lib.project import REPO
from tests.lib.server import serve
from tests.lib.wheels import build_wheel

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
    for name, url_file, wheel_platform in (("complete-cuda", X86, "linux_x86_64"),
                                           ("complete-cuda-arm64", ARM, "linux_aarch64"),
                                           ("complete-cuda-sm90-arm64", ARM_SM90, "linux_aarch64")):
        spec = plan[name]
        assert spec["args"]["WHEELS_REQUIREMENTS"] == f"{name}.txt"
        req = (project.root / "generated" / "requirements" / f"{name}.txt").read_text()
        pinned = [ln for ln in req.splitlines() if ln.startswith("sageattention @")]
        assert pinned == [f"sageattention @ https://example.invalid/{url_file} --hash=sha256:"
                          f"{ {X86: '1', ARM: '2', ARM_SM90: '3'}[url_file] * 64}"], req
        assert spec["labels"]["io.comfyimg.pins.platform"] == wheel_platform
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


# --------------------------------------------------------------------------- an arm64 build, emulated

ARM64_BASE = "local/debian-py:bookworm-arm64"
OVERRIDE_ARM64 = "tests/engine/override-core-arm64.hcl"
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def arm64_problem() -> str | None:
    """Why this machine cannot build linux/arm64 images (None: it can)."""
    if platform.machine() != "aarch64":
        if not BINFMT.exists() or "enabled" not in BINFMT.read_text():
            return "no qemu-aarch64 binfmt_misc handler: run tools/engine/arm64.sh (tools/bootstrap.sh --arm64)"
        if "F" not in next((ln for ln in BINFMT.read_text().splitlines() if ln.startswith("flags:")), ""):
            return "the qemu-aarch64 handler lacks the F flag: run tools/engine/arm64.sh"
    if docker("image", "inspect", ARM64_BASE).returncode != 0:
        return f"{ARM64_BASE} missing: run tools/engine/base-image.sh (tools/bootstrap.sh --test-images)"
    return None


@dataclass
class Arm64Core:
    project: object
    image: str
    output: str
    seconds: float


@pytest.fixture(scope="module")
def arm64_core(tmp_path_factory):
    """``invoke bake -t core-cpu-arm64``: the real core Dockerfile for linux/arm64 on the arm64 base,
    every RUN step under qemu. Torch is a stand-in wheel (pure Python, ``torch`` 2.13.0): PyPI's
    aarch64 torch is the CUDA build, whose nvidia-cudnn-cu13 the registry here does not have, and
    the torch index (its aarch64 CPU build) is unreachable. The chain is what this proves."""
    require_engine()
    problem = arm64_problem()
    assert problem is None, problem
    tmp = tmp_path_factory.mktemp("arm64")
    root = tmp / "srv"
    root.mkdir()
    fakes = tmp / "fakes"
    torch = "2.13.0"
    wheels = [
        build_wheel(fakes, "torch", torch, files={"torch/__init__.py": f"__version__ = '{torch}'\n"}),
        build_wheel(fakes, "torchvision", "0.28.0", requires=[f"torch=={torch}"],
                    files={"torchvision/__init__.py": "__version__ = '0.28.0'\n"}),
        build_wheel(fakes, "torchaudio", torch, files={"torchaudio/__init__.py": f"__version__ = '{torch}'\n"}),
        build_wheel(fakes, "comfy-test-dep", "1.0", files={"comfy_test_dep/__init__.py": ""}),
    ]
    _write_index(root, wheels)
    _fake_comfyui(root)
    server = serve(root)
    text = (profile("cuda", python="cp311", torch=torch, torch_index="cu128", cuda="12.9")
            + "\n" + profile("cpu", python="cp311", torch=torch, torch_index="cpu", platforms=BOTH))
    project = make_engine_project("core-arm64", text)
    for rel in (OVERRIDE_CORE, OVERRIDE_ARM64):
        shutil.copy(REPO / rel, project.root / rel)
    image = f"comfyui-core:cpu-arm64-{project.label}"
    env = {"TORCH_INDEX_BASE": server.url, "COMFYUI_REF": TAG, "TEST_PIP_INDEX_URL": f"{server.url}/cpu/",
           "TEST_COMFYUI_REPO": f"{server.url}/ComfyUI.git", "TEST_RUNTIME_IMAGE_ARM64": ARM64_BASE}
    started = time.monotonic()
    try:
        proc = project.invoke("bake", "-t", "core-cpu-arm64", "--file", OVERRIDE_CORE, "--file", OVERRIDE_ARM64,
                              "--allow", "network.host", "--label", project.label, env=env, timeout=900)
        output = proc.stdout + "\n" + proc.stderr
        assert proc.returncode == 0, f"invoke bake -t core-cpu-arm64 failed:\n{output[-6000:]}"
        yield Arm64Core(project, image, output, time.monotonic() - started)
    finally:
        server.stop()
        docker("image", "rm", "--force", image)
        if not os.environ.get("KEEP_TEST_PROJECTS"):
            shutil.rmtree(project.root, ignore_errors=True)


def test_core_cpu_arm64_builds_under_emulation_and_runs_aarch64(arm64_core):
    inspect = docker("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", arm64_core.image)
    assert inspect.stdout.strip() == "linux/arm64", inspect.stdout + inspect.stderr
    proc = docker("run", "--rm", "--network", "none", "--platform", "linux/arm64", arm64_core.image,
                  "python", "-c", "import platform; print(platform.machine())", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "aarch64", proc.stdout
    # Through the real entrypoint, as the unprivileged user, in the venv the Dockerfile made.
    who = docker("run", "--rm", "--network", "none", "--platform", "linux/arm64", arm64_core.image,
                 "python", "-c", "import os, sys, torch; print(os.getuid(), sys.prefix, torch.__version__)", timeout=300)
    assert who.stdout.strip().splitlines()[-1] == "1000 /app/.venv 2.13.0", who.stdout + who.stderr
    record = arm64_core.project.record()
    assert arm64_core.image in record["targets"]["core-cpu-arm64"]["tags"]
    assert "[runtime-cpu-arm64" not in arm64_core.output  # the runtime came from the arm64 base image
    print(f"core-cpu-arm64 built under emulation in {arm64_core.seconds:.0f} s")


def test_the_arm64_script_is_idempotent_and_leaves_an_f_flag_handler():
    """tools/engine/arm64.sh, run again on a machine where it ran (bootstrap --test-images): it
    changes nothing, says where the handler points, and the handler can serve containers (F)."""
    import subprocess

    proc = subprocess.run(["bash", str(REPO / "tools/engine/arm64.sh")], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "arm64 emulation ready" in proc.stderr and "registered" not in proc.stderr, proc.stderr
    flags = next(ln for ln in BINFMT.read_text().splitlines() if ln.startswith("flags:"))
    assert "F" in flags and BINFMT.read_text().startswith("enabled")
