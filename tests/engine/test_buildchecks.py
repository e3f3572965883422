"""`invoke check` runs bake's build checks (`--call check`) on every target: a Dockerfile
warning fails it; an engine whose BuildKit cannot lint makes it say the checks were NOT run;
without docker it says they were skipped. Never a silent pass."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.lib.pinfile import profile, wheel
from tests.lib.project import Project, make_project

pytestmark = pytest.mark.engine

BAKE = '''group "all" {
  targets = ["core-cpu"]
}

target "core-cpu" {
  context    = "ctx"
  dockerfile = "Dockerfile"
}
'''
PINS = profile("cpu", torch="2.9.0", torch_index="cpu") + "\n" + wheel(
    "helper", "0.1.0", "https://example.invalid/helper-0.1.0-py3-none-any.whl", sha256="a" * 64,
    targets=["core-cpu"])


def _project(tmp_path: Path) -> Project:
    root = make_project(tmp_path / "p", PINS, BAKE)
    (root / "ctx").mkdir()
    (root / "ctx" / "Dockerfile").write_text("FROM scratch as base\nCOPY a /a\n")  # FromAsCasing warning
    (root / "ctx" / "a").write_text("a\n")
    project = Project(root)
    assert project.invoke("render").returncode == 0
    return project


def test_a_dockerfile_warning_is_never_a_silent_pass(tmp_path):
    project = _project(tmp_path)
    r = project.invoke("check", "--json")
    data = json.loads(r.stdout)["build_checks"]
    assert data["status"] != "passed", data
    if data["status"] == "failed":  # an engine whose BuildKit lints: the warning fails check
        assert r.returncode == 1
        assert any(w.startswith("FromAsCasing - ") for w in data["warnings"]), data
    else:  # this engine's BuildKit cannot lint: said so, in words, and not counted as run
        assert data["status"] == "skipped" and "NOT run" in data["detail"], data
        human = project.invoke("check")
        assert human.returncode == 0 and "warning: build checks NOT run" in human.stderr, human.stderr


def test_without_docker_the_checks_are_skipped_and_said_so(tmp_path):
    project = _project(tmp_path)
    bare = tmp_path / "bin"
    bare.mkdir()
    os.symlink(sys.executable, bare / "python3")
    assert shutil.which("docker", path=str(bare)) is None
    r = project.run(sys.executable, "-m", "invoke", "check", env={"PATH": str(bare)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning: build checks skipped" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
