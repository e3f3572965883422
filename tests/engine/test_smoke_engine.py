"""`python -m comfyimg.smoke` against the real engine, on the real complete image built on the
stand-in core (no ComfyUI there, no GPU here): the model builder fails, the smoke fails with
that one reason, writes its reports, and leaves no container behind. The render itself runs
only on the GPU machine (tests/gpu/smoke_h200.sh)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.engine


def test_an_image_that_cannot_build_the_model_fails_cleanly(main_image, tmp_path):
    (tmp_path / "compose").mkdir()
    shutil.copy(REPO / "compose" / "complete-cuda.yml", tmp_path / "compose")
    proc = main_image.project.run(sys.executable, "-m", "comfyimg.smoke", "--image", main_image.image,
                                  "--gpus", "none", "--timeout", "120", "--root", str(tmp_path),
                                  env={"COMFYIMG_HOST_GPU": "0"}, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = json.loads((tmp_path / "reports" / "smoke.json").read_text())
    assert rep["passed"] is False
    assert rep["result"]["reason"].startswith("model built: ")
    assert {c["status"] for c in rep["result"]["checks"][1:]} == {"skip"}
    left = subprocess.run(["docker", "ps", "-a", "--filter", "name=comfyimg-smoke", "--format", "{{.Names}}"],
                          capture_output=True, text=True, timeout=60).stdout.split()
    assert left == []
