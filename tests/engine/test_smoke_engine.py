"""`python -m comfyimg smoke` against the real engine, on the real complete image built on the
stand-in core (no ComfyUI there, no GPU here): the model builder fails, the smoke fails with
that one reason, writes its reports, and leaves no container behind. The render itself runs
only on the GPU machine (tests/gpu/fullpath_h200.sh)."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from tests.lib.engine import docker
from tests.lib.project import REPO

pytestmark = pytest.mark.engine


def test_an_image_that_cannot_build_the_model_fails_cleanly(main_image, tmp_path):
    (tmp_path / "compose").mkdir()
    shutil.copy(REPO / "compose" / "complete-cuda.yml", tmp_path / "compose")
    proc = main_image.project.run(sys.executable, "-m", "comfyimg", "smoke", "--image", main_image.image,
                                  "--gpus", "none", "--timeout", "120", "--root", str(tmp_path),
                                  env={"COMFYIMG_HOST_GPU": "0"}, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = json.loads((tmp_path / "reports" / "smoke.json").read_text())
    assert rep["passed"] is False
    assert rep["result"]["reason"].startswith("model built: ")
    assert {c["status"] for c in rep["result"]["checks"][1:]} == {"skip"}
    left = docker("ps", "-a", "--filter", "name=comfyimg-smoke", "--format", "{{.Names}}", timeout=60).stdout.split()
    assert left == []


def test_a_server_that_dies_at_start_is_a_crash_with_its_log_and_no_container_left(main_image, tmp_path):
    """The production start (entrypoint, PUID/PGID, the compose command on 127.0.0.1) of the image
    built on the stand-in core, whose main.py prints its arguments and exits: the smoke sees the
    container end before it answered, keeps its log, removes it."""
    import time

    from comfyimg.validate import smoke

    started = time.monotonic()
    r = smoke.render(main_image.image, REPO, True, smoke.comfyui_sandbox("comfy", "", ()), 2,
                     time.monotonic() + 60, tmp_path)
    assert r.booted_s is None and r.problem and r.problem.startswith("the container exited (")
    assert "stand-in ComfyUI" in r.log  # the image's main.py ran, through its entrypoint, with:
    assert "'--listen', '127.0.0.1', '--port'" in r.log and "'--use-sage-attention']" in r.log
    assert time.monotonic() - started < 30
    left = docker("ps", "-a", "--filter", "name=comfyimg-smoke", "--format", "{{.Names}}", timeout=60).stdout.split()
    assert left == []
    passed, verdict = smoke.judge({"status": "pass"}, r, r, 2)
    assert not passed and "sage: booted: the container exited" in verdict["reason"]
