"""The toolchain is the locked one, and the code uses third-party packages through their
public API only; the two uses with no public API each live in one adapter, tested here so
that an upstream change fails loudly, naming the version."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import sys
import time
import tomllib

import invoke
import pytest
import python_on_whales

from comfyimg.engine import docker as dockerclient
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.cli import SHORT_FLAGS, task_class
from tests.lib.project import REPO

SOURCES = [*sorted((REPO / "src").rglob("*.py")), REPO / "tasks.py", REPO / "noxfile.py"]
STDLIB = set(sys.stdlib_module_names)


def _locked() -> dict[str, set[str]]:
    """name -> locked versions (a package may be locked twice, split by Python version)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions: dict[str, set[str]] = {}
    for p in lock["package"]:
        versions.setdefault(p["name"], set()).add(p["version"])
    return versions


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.lock
def test_every_installed_package_of_the_lock_is_at_its_locked_version():
    locked = _locked()
    installed = {_norm(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    core = ["tomlkit", "invoke", "nox", "python-on-whales", "httpx", "rich", "packaging", "pytest", "uv"]
    assert all(name in installed for name in core), [n for n in core if n not in installed]
    wrong = {n: (installed[_norm(n)], v) for n, v in locked.items()
             if _norm(n) in installed and n != "comfyimg" and installed[_norm(n)] not in v}
    assert not wrong, f"installed ≠ uv.lock (installed, locked): {wrong}; run tools/bootstrap.sh"


def test_the_lock_is_for_this_pyproject():
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    (me,) = [p for p in lock["package"] if p["name"] == "comfyimg"]
    declared = {re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0] for d in project["project"]["dependencies"]}
    assert declared == {d["name"] for d in me["dependencies"]}


def _third_party_roots(tree: ast.Module) -> dict[str, str]:
    """Local name -> top-level module, for every import of a package that is not ours."""
    roots: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("comfyimg"):
                    roots[(alias.asname or alias.name).split(".")[0]] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and not node.module.startswith(("comfyimg", "tests", "bench")):
            for alias in node.names:
                roots[alias.asname or alias.name] = node.module
    return roots


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_private_name_of_another_package_is_imported_or_reached():
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        roots = _third_party_roots(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                    and not node.module.startswith("comfyimg"):
                found += [f"{path.name}:{node.lineno}: from {node.module} import {a.name}"
                          for a in node.names if _private(a.name) or any(map(_private, node.module.split(".")))]
            if isinstance(node, ast.Attribute) and _private(node.attr):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in roots:
                    found.append(f"{path.name}:{node.lineno}: {base.id}….{node.attr}")
    assert not found, found


def test_the_names_the_issue_named_are_gone():
    banned = {r"\._insert_after\b": "tomlkit", r"\.value\.body\b": "tomlkit Container.body",
              r"PassthroughEnv": "nox", r"client_config": "python_on_whales.client_config",
              r"def render_str": "rich Console.render_str override", r"_value2member_map_": "enum",
              r"getattr\(c, \"remainder\"": "invoke 2 fallback"}
    hits = [f"{p.relative_to(REPO)}: {why}" for p in SOURCES for pat, why in banned.items()
            if re.search(pat, p.read_text())]
    assert not hits, hits


def test_python_on_whales_is_imported_by_the_one_docker_client_only():
    users = [p.name for p in SOURCES if re.search(r"python_on_whales", p.read_text())]
    assert users == ["docker.py"], users


def test_the_docker_client_runs_and_streams_and_stops_its_child():
    version = importlib.metadata.version("python-on-whales")
    assert "docker_cmd" in dir(python_on_whales.DockerClient), f"python-on-whales {version}: no docker_cmd"
    assert dockerclient.run(["sh", "-c", "echo ok"]).strip() == "ok"
    lines = list(dockerclient.stream(["sh", "-c", "echo out; echo err >&2"]))
    assert sorted(lines) == [("stderr", b"err\n"), ("stdout", b"out\n")], (version, lines)
    stopped: list[int] = []
    child = dockerclient.stream(["sh", "-c", "echo up; exec sleep 600"], stopped=stopped.append)
    assert next(child) == ("stdout", b"up\n")
    child.close()  # the caller stopped reading (Ctrl-C, SIGTERM): the child is stopped, and said so
    assert len(stopped) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(stopped[0], 0)


def test_invoke_short_flag_adapter_gives_exactly_the_fixed_short_flags():
    """invoke has no public per-argument short flag; cli.task_class extends Task.arg_opts."""
    version = importlib.metadata.version("invoke")
    assert "arg_opts" in vars(invoke.Task), f"invoke {version}: Task.arg_opts is gone; fix comfyimg/cli.py"

    def sample(c, name=None, target=None, release=None, push=False):
        pass

    task = task_class()(sample)
    names = {a.name: set(a.names) for a in task.get_arguments()}
    assert names["name"] == {"name", "n"} and names["target"] == {"target", "t"}, (version, names)
    assert names["release"] == {"release"} and names["push"] == {"push"}, (version, names)
    assert set(SHORT_FLAGS.values()) == {"n", "t", "f"}  # -f: bake's --file (issue 21)


def test_a_docker_command_that_hangs_ends_in_one_line_within_its_limit(monkeypatch):
    started = time.monotonic()
    with pytest.raises(WorkFailed, match=r"`sh -c 'sleep 30'` did not finish within 0.5 s \(COMFYIMG_DOCKER_TIMEOUT\)"):
        dockerclient.run(["sh", "-c", "sleep 30"], timeout=0.5)
    assert time.monotonic() - started < 5
    monkeypatch.setenv("COMFYIMG_DOCKER_TIMEOUT", "1")
    with pytest.raises(WorkFailed, match="within 1 s"):
        dockerclient.run(["sh", "-c", "sleep 30"])
    for bad in ("0", "nan", "1e9", "soon"):
        monkeypatch.setenv("COMFYIMG_DOCKER_TIMEOUT", bad)
        with pytest.raises(BadInput, match=rf"COMFYIMG_DOCKER_TIMEOUT='{bad}' is out of range"):
            dockerclient.run(["true"])


def test_a_failed_docker_command_is_a_docker_exception_with_its_output():
    with pytest.raises(dockerclient.DockerException) as caught:
        dockerclient.run(["sh", "-c", "echo out; echo 'ERROR: no such thing' >&2; exit 3"])
    assert caught.value.return_code == 3
    assert dockerclient.error_line(caught.value) == "ERROR: no such thing"


def test_docker_command_lines_may_hold_paths(tmp_path):
    (tmp_path / "f").write_text("x")
    assert dockerclient.run(["cat", tmp_path / "f"]) == "x"
    with pytest.raises(dockerclient.DockerException):
        dockerclient.run(["cat", tmp_path / "missing"])
