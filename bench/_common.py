"""Shared setup for the bump benchmarks: a project dir and the fake GitHub on loopback."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
import subprocess
import sys
import time
from pathlib import Path

from tests.lib.github import AUTO, FakeAsset, FakeGitHub, FakeRelease
from tests.lib.pinfile import profile, wheel
from tests.lib.project import REPO
from tests.lib.project import make_project as _make_project
from tests.lib.wheels import build_wheel

__all__ = ["AUTO", "FakeAsset", "FakeGitHub", "FakeRelease", "build_wheel", "make_project",
           "run_invoke", "REPO", "wheel", "workspace"]

PROFILE = profile("cu130", torch="2.13.0", torch_index="cu130", cuda="13.0",
                  archs=["sm80", "sm86", "sm89", "sm90", "sm120"])


@contextmanager
def workspace() -> Iterator[tuple[Path, FakeGitHub]]:
    """A temporary directory and the fake GitHub on loopback, for one benchmark run."""
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub() as fake:
        yield Path(tmp), fake


def make_project(root: Path, wheels: str) -> Path:
    return _make_project(root, PROFILE + wheels, 'target "complete-cu130" {}\n')


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
