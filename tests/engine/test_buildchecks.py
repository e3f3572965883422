"""`invoke check` runs bake's build checks (`--call check`) on every target: a Dockerfile
warning fails it, the project's own Dockerfiles pass, and a target linked to another through a
``target:`` named context is checked too; without docker it says they were skipped. The
engine must be able to lint (Docker Engine >= 28, as tools/engine/install.sh installs it)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest

from tests.lib.engine import BASE, docker
from tests.lib.pinfile import profile, wheel
from tests.lib.project import REPO, Project, make_project

pytestmark = pytest.mark.engine

# "runtime-cpu" is linked into "core-cpu" as a target: context, like the real bake file's stages.
BAKE = '''group "all" {
  targets = ["runtime-cpu", "core-cpu"]
}

target "runtime-cpu" {
  context    = "ctx"
  dockerfile = "Dockerfile.runtime"
}

target "core-cpu" {
  context    = "ctx"
  dockerfile = "Dockerfile"
  contexts   = { runtime = "target:runtime-cpu" }
}
'''
PINS = profile("cpu", torch="2.9.0", torch_index="cpu") + "\n" + wheel(
    "helper", "0.1.0", "https://example.invalid/helper-0.1.0-py3-none-any.whl", sha256="a" * 64,
    targets=["core-cpu"])
CLEAN = "FROM runtime AS base\nCOPY a /b\n"
LINTS = (28, 0)  # the first dockerd whose built-in BuildKit was checked to run Dockerfile checks


@pytest.fixture(autouse=True)
def _engine_lints(request):
    """Fail first, naming the version, on an engine that cannot lint (a setup bug, not a skip)."""
    if request.node.name.startswith("test_without_docker"):
        return
    version = docker("version", "--format", "{{.Server.Version}}", timeout=30).stdout.strip()
    numbers = tuple(int(n) for n in version.split("+")[0].split(".")[:2] if n.isdigit())
    if numbers < LINTS:
        pytest.fail(f"build checks need Docker Engine >= {'.'.join(map(str, LINTS))} (tools/engine/install.sh "
                    f"installs it; restart the engine after upgrading); this engine is {version!r}", pytrace=False)


def _project(tmp_path: Path, core_dockerfile: str, runtime_dockerfile: str = "FROM scratch\nCOPY a /a\n") -> Project:
    root = make_project(tmp_path / "p", PINS, BAKE)
    (root / "ctx").mkdir()
    (root / "ctx" / "Dockerfile.runtime").write_text(runtime_dockerfile)
    (root / "ctx" / "Dockerfile").write_text(core_dockerfile)
    (root / "ctx" / "a").write_text("a\n")
    project = Project(root)
    assert project.invoke("render").returncode == 0
    return project


def _checks(result) -> dict:
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)["build_checks"]


def test_a_dockerfile_warning_fails_check_naming_it(tmp_path):
    project = _project(tmp_path, "FROM runtime as base\nCOPY a /b\n")  # FromAsCasing, in the linked target
    r = project.invoke("check", "--json")
    data = _checks(r)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert data["status"] == "failed", data
    assert [w.split(" - ")[0] for w in data["warnings"]] == ["FromAsCasing"], data
    assert data["detail"] == "build checks: 1 warning(s) in 2 target(s)", data
    assert set(data["targets"]) == {"runtime-cpu", "core-cpu"} and "failed: 1 warning(s)" in data["targets"].values(), data
    human = project.invoke("check")
    assert human.returncode == 1
    assert "error: build check: FromAsCasing - " in human.stderr, human.stderr


def test_a_clean_dockerfile_linked_through_a_target_context_passes(tmp_path):
    r = _project(tmp_path, CLEAN).invoke("check", "--json")
    data = _checks(r)
    assert (r.returncode, data) == (0, {"status": "passed", "detail": "build checks passed on 2 target(s)",
                                         "warnings": [], "targets": {"runtime-cpu": "passed", "core-cpu": "passed"}}), \
        r.stderr


def test_a_base_image_out_of_reach_is_said_not_checked_and_the_rest_passes(tmp_path):
    """Like the public CUDA and Ubuntu bases on a machine that cannot reach their registry."""
    project = _project(tmp_path, CLEAN, "FROM 127.0.0.1:9/nowhere/base:1\nCOPY a /a\n")
    r = project.invoke("check", "--json")
    data = _checks(r)
    assert r.returncode == 0, r.stderr
    assert data["status"] == "skipped" and data["warnings"] == [], data
    assert data["detail"].startswith("build checks passed on 1 target(s) but were NOT run on runtime-cpu: "
                                     "a base image cannot be resolved (127.0.0.1:9/nowhere/base:1: "), data
    # Each target says its own: the one that passed, the one not run (issue 28: "skipped" hid it).
    assert data["targets"]["core-cpu"] == "passed", data
    assert data["targets"]["runtime-cpu"].startswith("not run: a base image cannot be resolved (127.0.0.1:9/"), data
    human = project.invoke("check")
    assert human.returncode == 0
    assert "warning: build checks passed on 1 target(s) but were NOT run on runtime-cpu" in human.stderr


def test_the_projects_own_dockerfiles_pass_the_build_checks(tmp_path):
    """The real docker-bake.hcl, services/ and wheels.toml: every target of the "all" group is
    checked (its base images are the local ones: the public bases cannot be pulled here)."""
    root = make_project(tmp_path / "real", (REPO / "wheels.toml").read_text(encoding="utf-8"),
                        copy=("services",))
    project = Project(root)
    assert project.invoke("render").returncode == 0
    r = project.invoke("check", "--json", env={"CUDA_BASE_IMAGE": BASE, "CPU_BASE_IMAGE": BASE})
    data = _checks(r)
    # 7: runtime, core and complete-cuda, runtime-cpu and core-cpu for x86-64 and arm64 (profiles.cpu.platforms)
    assert data == {"status": "passed", "detail": "build checks passed on 7 target(s)", "warnings": [],
                    "targets": dict.fromkeys(data["targets"], "passed")}, data
    assert len(data["targets"]) == 7, data
    assert r.returncode == 0, r.stderr


def test_without_docker_the_checks_are_skipped_and_said_so(tmp_path):
    project = _project(tmp_path, CLEAN)
    bare = tmp_path / "bin"
    bare.mkdir()
    os.symlink(sys.executable, bare / "python3")
    assert shutil.which("docker", path=str(bare)) is None
    r = project.run(sys.executable, "-m", "invoke", "check", env={"PATH": str(bare)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning: build checks skipped" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_check_run_past_the_docker_timeout_is_stopped_and_says_so(tmp_path):
    """A base image on a registry that accepts the connection and never answers: the check run
    is stopped at COMFYIMG_DOCKER_TIMEOUT (here 3 s), with one line naming the setting."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        project = _project(tmp_path, CLEAN, f"FROM 127.0.0.1:{port}/silent/base:1\nCOPY a /a\n")
        started = time.monotonic()
        r = project.invoke("check", "--json", env={"COMFYIMG_DOCKER_TIMEOUT": "3"})
        took = time.monotonic() - started
    data = _checks(r)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert data["status"] == "failed" and data["detail"] == "build checks: no answer within 3 s (COMFYIMG_DOCKER_TIMEOUT)"
    assert took < 30, took
