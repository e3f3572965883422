"""Shared setup for the bump benchmarks: a project dir and the fake GitHub on loopback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.http.fakegithub import AUTO, FakeAsset, FakeGitHub, FakeRelease  # noqa: E402
from tests.wheelfactory import build_wheel  # noqa: E402

__all__ = ["AUTO", "FakeAsset", "FakeGitHub", "FakeRelease", "build_wheel", "make_project",
           "run_invoke", "REPO"]

PROFILE = """\
[profiles.cu130]
python = "cp312"
platform = "linux_x86_64"
torch = "2.13.0"
torch_index = "cu130"
cuda = "13.0"
archs = ["sm80", "sm86", "sm89", "sm90", "sm120"]
"""


def make_project(root: Path, wheels: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "tasks.py", root / "tasks.py")
    (root / "docker-bake.hcl").write_text('target "complete-cu130" {}\n')
    (root / "wheels.toml").write_text(PROFILE + wheels)
    return root


def run_invoke(root: Path, fake: FakeGitHub, *args: str, time_v: bool = False
               ) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "CI": "1", "GITHUB_API_URL": fake.api_url, "GITHUB_TOKEN": "ghp_benchFAKE",
           "COMFYIMG_HTTP_BACKOFF": "0.01", "NO_PROXY": "*"}
    cmd = [sys.executable, "-m", "invoke", *args]
    if time_v:
        cmd = ["/usr/bin/time", "-v", *cmd]
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=root, env=env, text=True, capture_output=True, check=False)
    return time.perf_counter() - start, r
