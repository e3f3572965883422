"""Validation (issue 5) at engine level, without a GPU: the sage2 probe run inside the
images built by ``invoke bake`` (session fixtures in conftest.py).

No GPU here: the install checks (version, isolated import, exports, extension modules)
must pass and the GPU checks be skipped; ``--require-gpu`` turns that skip into a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.lib.assertions import assert_failed_cleanly
from tests.lib.project import REPO

pytestmark = pytest.mark.engine

INSTALL_CHECKS = {"version", "import-isolated", "import", "exports", "extension:sageattention._qattn_sm80",
                  "extension:sageattention._qattn_sm89", "extension:sageattention._qattn_sm90",
                  "extension:sageattention._fused"}


def validate(project, *args: str, env: dict[str, str] | None = None, comfyui: bool = False,
             ) -> subprocess.CompletedProcess[str]:
    """The real CLI. The stand-in image has no ComfyUI (its checks run on the host:
    tests/probes), so they are turned off unless asked for; no host GPU unless injected."""
    extra = [] if comfyui else ["--comfyui", "none"]
    return project.run(sys.executable, "-m", "comfyimg", "validate", "sage2", "--root", str(project.root), *args,
                       *extra, env={"COMFYIMG_HOST_GPU": "0", **(env or {})}, timeout=300)


def report(project) -> dict:
    return json.loads((project.root / "reports" / "sage2.json").read_text())


def statuses(rep: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in rep["result"]["checks"]}


def test_install_checks_pass_and_gpu_checks_skip(main_image, tmp_path):
    project = main_image.project
    summary = tmp_path / "step-summary.md"
    summary.write_text("# earlier step\n")
    proc = validate(project, env={"GITHUB_STEP_SUMMARY": str(summary)})  # image: the build record
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = report(project)
    assert rep["passed"] is True and rep["exit_code"] == 0
    assert rep["image"] == project.record()["targets"]["complete-cuda"]["image_id"]
    got = statuses(rep)
    assert {name: got.get(name) for name in INSTALL_CHECKS} == dict.fromkeys(INSTALL_CHECKS, "pass"), got
    assert got["gpu"] == "skip"
    assert rep["result"]["gpu_checks"] == "skipped"
    assert rep["result"]["package"] == {"name": "sageattention", "expected": "2.2.0", "installed": "2.2.0"}
    # The GPU choice is in the table and every report, and says GPU checks did not run.
    assert rep["gpu"]["mode"] == "auto" and rep["gpu"]["access"] == "none" and rep["gpu"]["container_gpu"] is None
    assert "CDI" in rep["gpu"]["why"] and "nvidia runtime" in rep["gpu"]["why"]
    assert "GPU: none · host GPU: none · container saw: none · GPU checks NOT run" in proc.stdout
    assert "GPU checks NOT run: this host has no NVIDIA GPU" in rep["result"]["reason"]
    assert got["scratch"] == "pass" and got["comfyui"] == "skip"

    junit = ET.parse(project.root / "reports" / "sage2.junit.xml").getroot()
    assert junit.tag == "testsuite" and junit.get("name") == "validate_sage2"
    assert junit.get("failures") == "0" and int(junit.get("skipped")) >= 1
    assert {c.get("name") for c in junit.iter("testcase")} >= INSTALL_CHECKS | {"gpu"}
    props = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert props["gpu.mode"] == "auto" and props["gpu.access"] == "none"

    md = summary.read_text()
    assert md.startswith("# earlier step\n"), "the step summary is appended to, not replaced"
    assert "### validate_sage2: ✅ pass" in md and "| exports | pass |" in md
    assert "GPU: none · host GPU: none" in md


def test_the_comfyui_checks_are_rows_of_the_session_and_a_missing_comfyui_fails_clearly(main_image):
    """By default validate also runs probes/comfyui.py against /app/ComfyUI. The stand-in
    holds a stub there, which must be a clear failure in its own row, never a traceback."""
    project = main_image.project
    proc = validate(project, "--image", main_image.image, comfyui=True)
    assert_failed_cleanly(proc, 1)
    rep = report(project)
    got = statuses(rep)
    assert {name: got.get(name) for name in INSTALL_CHECKS} == dict.fromkeys(INSTALL_CHECKS, "pass"), got
    assert got["comfyui:import"] == "fail"
    assert "comfyui: comfyui:import: /app/ComfyUI is not a ComfyUI checkout" in rep["result"]["reason"]
    assert rep["result"]["comfyui"]["status"] == "fail"


def test_through_the_real_nox_session(main_image):
    """``nox -s validate_sage2 -- --image IMAGE --root PROJECT`` (the noxfile's own session)."""
    project = main_image.project
    proc = project.run(sys.executable, "-m", "nox", "-f", str(REPO / "noxfile.py"), "-s", "validate_sage2", "--",
                       "--image", main_image.image, "--root", str(project.root), "--comfyui", "none",
                       "--gpus", "none", timeout=600, env={"COMFYIMG_HOST_GPU": "0"})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Session validate_sage2 was successful" in proc.stderr
    rep = report(project)
    assert rep["passed"] is True and rep["image"] == main_image.image
    assert statuses(rep)["gpu"] == "skip"
    assert rep["gpu"]["mode"] == "none"  # the flag passed through nox


def test_require_gpu_turns_the_skip_into_a_failure(main_image):
    project = main_image.project
    proc = validate(project, "--image", main_image.image, "--require-gpu")
    assert_failed_cleanly(proc, 1)
    rep = report(project)
    assert rep["passed"] is False and rep["result"]["status"] == "fail"
    assert statuses(rep)["gpu"] == "fail"


def test_wrong_expected_version_fails(main_image):
    project = main_image.project
    proc = validate(project, "--image", main_image.image, "--expect-version", "9.9.9")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = report(project)
    assert statuses(rep)["version"] == "fail"
    assert "installed 2.2.0, expected 9.9.9" in rep["result"]["reason"]


def test_an_image_built_with_another_version_fails(main_image, bumped_image):
    """The bumped image (sageattention 2.2.1) judged against main's wheels.toml (2.2.0)."""
    project = main_image.project
    proc = validate(project, "--image", bumped_image.image)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = report(project)
    assert statuses(rep)["version"] == "fail"
    assert "installed 2.2.1, expected 2.2.0" in rep["result"]["reason"]
    # ...while its own record validates it.
    assert validate(bumped_image.project).returncode == 0


def test_a_wheel_whose_import_kills_the_interpreter_fails(crash_image):
    project = crash_image.project
    proc = validate(project)  # the crash project's own build record
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = report(project)
    assert rep["passed"] is False and rep["result"]["status"] == "fail"
    assert statuses(rep)["import-isolated"] == "fail"
    assert "killed the interpreter with SIGSEGV" in rep["result"]["reason"]
    assert "FAIL" in proc.stdout


def test_a_missing_image_is_a_clear_error(main_image):
    project = main_image.project
    missing = "local/comfyimg-no-such-image:nope"
    proc = validate(project, "--image", missing)
    assert_failed_cleanly(proc, (1, 2))
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and missing in lines[0] and "not found" in lines[0], proc.stderr


def test_probe_container_can_load_compiled_code_from_its_cache(main_image):
    """Triton compiles kernel launchers into TRITON_CACHE_DIR (the probe's scratch tmpfs) and
    dlopen()s them. Under the probe's exact container options (read-only root), a shared
    library copied there must load; Docker's default tmpfs is noexec and would refuse it
    ("failed to map segment from shared object"), failing every Triton kernel on a GPU."""
    import dataclasses

    from tests.lib.dockercli import docker

    from comfyimg.validate import containers as validate_mod

    code = ("import ctypes, glob, os, shutil\n"
            "cache = os.environ['TRITON_CACHE_DIR']; os.makedirs(cache)\n"
            "src = sorted(glob.glob('/usr/lib/x86_64-linux-gnu/libz.so.1*'))[0]\n"
            "dst = shutil.copy(src, os.path.join(cache, 'launcher.so'))\n"
            "try:\n"
            "    ctypes.CDLL(dst); print('loaded', dst)\n"
            "except OSError as exc:\n"
            "    print('refused', exc)\n")
    options = validate_mod.container_options("comfy")
    loaded = docker("run", "--rm", *options.args(), main_image.image, "-c", code, timeout=120).stdout.strip()
    assert loaded == f"loaded {validate_mod.SCRATCH}/triton/launcher.so"
    # The same load under Docker's default (noexec) tmpfs is refused: the test can tell.
    noexec = dataclasses.replace(options, tmpfs=(validate_mod.SCRATCH,))
    refused = docker("run", "--rm", *noexec.args(), main_image.image, "-c", code, timeout=120).stdout
    assert "failed to map segment from shared object" in refused, refused
