"""The one CLI layer: a command defined once answers the same through invoke and
``python -m comfyimg``; only cli.py prints; each error class carries its exit code."""

from __future__ import annotations

import ast
import importlib.util
import json
import signal
import subprocess
import sys

import pytest

from comfyimg import cli, errors
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel
from tests.lib.pinfile import BAKE_COMPLETE_CUDA, PROFILE_CUDA, pin_toml
from tests.lib.project import REPO

PACKAGE = REPO / "src" / "comfyimg"
SHARED = [cli.CHECK, cli.RENDER, cli.AUDIT]


def _tasks():
    spec = importlib.util.spec_from_file_location("comfyimg_tasks_under_test", REPO / "tasks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("command", SHARED, ids=[c.name for c in SHARED])
def test_a_shared_command_is_defined_once_for_invoke_and_python_m(command):
    task = getattr(_tasks(), command.name)
    assert task.body.__doc__.splitlines()[0] == command.summary  # invoke --list shows the same line
    arguments = {a.name: a for a in task.get_arguments()}
    assert set(arguments) == {o.name for o in command.options}
    for option in command.options:
        assert arguments[option.name].help == option.help
        assert (arguments[option.name].kind is list) == option.many
        assert (arguments[option.name].kind is bool) == option.flag
    parsed = command.parser().parse_args([])
    assert set(vars(parsed)) == {o.name for o in command.options} | {"root"}
    assert cli.COMMANDS[command.name] == command.main


def _module(project, *args: str) -> subprocess.CompletedProcess[str]:
    return project.run(sys.executable, "-m", "comfyimg", *args)


def test_audit_answers_the_same_through_invoke_and_python_m(tmp_path, project_factory):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2)
    project = project_factory(PROFILE_CUDA + pin_toml("sageattention", "2.2.0", wheel), BAKE_COMPLETE_CUDA)
    args = ["audit", "--wheel", str(wheel), "--arch", "sm90", "--arch", "sm120", "--json"]
    via_invoke, via_module = project.invoke(*args), _module(project, *args)
    assert via_invoke.returncode == via_module.returncode == 1, via_module.stdout + via_module.stderr
    assert json.loads(via_module.stdout) == json.loads(via_invoke.stdout)
    assert set(json.loads(via_module.stdout)["archs"]) == {"sm90", "sm120"}
    # No --wheel: every pin, from its recorded coverage (python -m audit used to require --wheel).
    assert _module(project, "audit").returncode == project.invoke("audit").returncode


def test_render_and_check_answer_the_same_through_invoke_and_python_m(tmp_path, project_factory):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2)
    text = PROFILE_CUDA + pin_toml("sageattention", "2.2.0", wheel)
    by_module = project_factory(text, BAKE_COMPLETE_CUDA, name="module")
    by_invoke = project_factory(text, BAKE_COMPLETE_CUDA, name="invoke")
    assert _module(by_module, "render").returncode == by_invoke.invoke("render").returncode == 0
    assert by_module.snapshot() == by_invoke.snapshot()
    drifted = by_module.root / "generated" / "wheels.bake.json"
    drifted.write_text("{}\n")
    r = _module(by_module, "check", "--json")
    assert_failed_cleanly(r, 1)
    assert json.loads(r.stdout)["drift"] == ["generated/wheels.bake.json"]


@pytest.mark.parametrize(("args", "stderr"), [
    (["audit", "--wheel", "missing.whl", "--arch", "sm90"], r"^error: .*missing\.whl"),
    (["audit", "--bogus"], r"unrecognized arguments: --bogus"),
    (["check", "--json", "extra"], r"unrecognized arguments: extra"),
    (["nosuch"], r"^usage: python -m comfyimg \{"),
])
def test_python_m_bad_input_is_exit_2_in_one_line(project_factory, args, stderr):
    project = project_factory(None, BAKE_COMPLETE_CUDA)
    before = project.snapshot()
    assert_failed_cleanly(_module(project, *args), 2, stderr=stderr, before=before, after=project.snapshot())


def test_each_error_class_carries_its_exit_code():
    assert (errors.BadInput("x").exit_code, errors.WorkFailed("x").exit_code, errors.UserError("x").exit_code) == (2, 1, 1)
    assert errors.Stopped(signal.SIGTERM).exit_code == 143 and errors.Stopped(signal.SIGHUP).exit_code == 129
    assert cli.failure(KeyboardInterrupt(), ("smoke", "its containers were"))[1] == errors.INTERRUPTED == 130
    assert cli.failure(errors.Stopped(signal.SIGHUP), ("validate sage2", "its probe container was")) == (
        "terminated: validate sage2 stopped by SIGHUP; its probe container was removed", 129)
    assert cli.failure(ValueError("a bug")) is None  # a bug keeps its traceback


def _calls(tree: ast.AST) -> list[str]:
    """The printing calls of a module: print(), console.print/print_json, err(), out(), sys.stdout.write."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("print", "err", "out"):
            found.append(f"{f.id}()")
        elif isinstance(f, ast.Attribute) and f.attr == "write" and isinstance(f.value, ast.Attribute) \
                and f.value.attr in ("stdout", "stderr"):
            found.append(f"sys.{f.value.attr}.write()")
    return found


def test_only_cli_prints():
    """Besides cli.py, only output.py (the consoles and the download progress) writes to the
    terminal; the probes print their JSON inside the image."""
    printing = set()
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE))
        if rel.startswith("validate/probes/") or rel in ("cli.py", "output.py"):
            continue
        if _calls(ast.parse(path.read_text(), rel)):
            printing.add(rel)
    assert printing == set()


def test_exit_codes_are_not_written_as_numbers_outside_errors():
    """130, 129 and 143 come from errors (INTERRUPTED, Stopped.exit_code); 1 and 2 from the classes."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE))
        if rel.startswith("validate/probes/") or rel == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value in (129, 130, 143):
                found.append(f"{rel}:{node.lineno}")
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) and node.value.value in (1, 2) \
                    and rel in ("cli.py",):
                found.append(f"{rel}:{node.lineno}")
    assert found == []
