"""The one CLI layer: a command defined once answers the same through invoke and
``python -m comfyimg``; only cli.py prints; each error class carries its exit code."""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import importlib.util
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from comfyimg import cli, errors
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel
from tests.lib.pinfile import BAKE_COMPLETE_CUDA, PROFILE_CUDA, pin_toml
from tests.lib.project import REPO

PACKAGE = REPO / "src" / "comfyimg"
SHARED = list(cli.INVOKE_COMMANDS)


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
    arguments = {a.names[0]: a for a in task.get_arguments()}  # the long flag
    positional = {command.flag(f, s) for f, s in command.fields() if s.positional}  # invoke verify IMAGE
    assert {a.name for a in task.get_arguments() if a.positional} == positional
    assert set(arguments) == set(command.long_flags()) | positional
    for f, spec in command.fields():
        flag = command.flag(f, spec)
        assert arguments[flag].help == spec.help
        assert (arguments[flag].kind is list) == isinstance(f.default, tuple)
        assert (arguments[flag].kind is bool) == isinstance(f.default, bool)
    parsed = command.parser().parse_args([])
    assert set(vars(parsed)) == set(command.long_flags()) | positional | {"root"}
    assert cli.COMMANDS[command.name] is command


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
    (["check", "--", "x"], r"^error: check takes nothing after --: x"),
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


# --------------------------------------------------------------------------- one letter, one meaning (issue 28)


@pytest.mark.parametrize(("args", "long_flag"), [
    (["bump", "-d"], "--dry-run"),  # invoke's --debug: the bump used to run and write wheels.toml
    (["bump", "-r", "v9"], "--release"),  # invoke's --search-root: the newest release was taken
    (["bump", "-p"], "--pre"),  # invoke's --pty
    (["bump", "-v"], "--verify"),  # not invoke's either: exit 1 "No idea what '-v' is!"
    (["bump", "--name", "sageattention", "-d"], "--dry-run"),
    (["bake", "-p"], "--push or --print"),
    (["check", "-d"], "long only: --json"),
])
def test_a_letter_invoke_owns_after_a_task_name_is_refused_naming_the_long_flag(tmp_path, project_factory,
                                                                                 args, long_flag):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2)
    project = project_factory(PROFILE_CUDA + pin_toml("sageattention", "2.2.0", wheel), BAKE_COMPLETE_CUDA)
    before = project.snapshot()
    letter = next(a for a in args if re.fullmatch(r"-\w", a))
    for r in (project.invoke(*args), _module(project, *args)):
        assert_failed_cleanly(r, 2, stderr=rf"^error: {letter} is not an option of {args[0]}\b.*"
                                           rf"{re.escape(long_flag)}", before=before, after=project.snapshot())
    # Before the task name a letter stays invoke's own: -d is --debug there, and the task runs.
    r = project.invoke("-d", "render")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_task_letters_and_long_flags_still_work(project_factory):
    project = project_factory(None, BAKE_COMPLETE_CUDA)
    r = project.invoke("bump", "-n", "", "--dry-run")  # -n is --name: an empty name is bad input
    assert_failed_cleanly(r, 2, stderr="the pin names given are empty")


# --------------------------------------------------------------------------- python -m comfyimg, complete


def test_python_m_help_lists_every_command_with_its_summary_and_exits_0(project_factory):
    project = project_factory(None, BAKE_COMPLETE_CUDA)
    r = _module(project, "--help")
    assert r.returncode == 0, r.stderr
    for command in cli.COMMANDS.values():
        assert re.search(rf"^  {command.name} +{re.escape(command.summary)}$", r.stdout, re.M), r.stdout
        sub = _module(project, command.name, "--help")
        assert sub.returncode == 0 and command.summary in " ".join(sub.stdout.split()), sub.stdout + sub.stderr
    version = _module(project, "--version")
    assert version.returncode == 0 and version.stdout.strip() == f"comfyimg {importlib.metadata.version('comfyimg')}"


def test_the_console_script_is_the_same_main():
    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "comfyimg"]
    assert script.load() is cli.main
    r = subprocess.run([str(Path(sys.executable).parent / "comfyimg"), "--help"], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0 and "bump" in r.stdout, r.stderr


def test_bump_and_bake_run_through_python_m(tmp_path, project_factory):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2)
    project = project_factory(PROFILE_CUDA + pin_toml("sageattention", "2.2.0", wheel), BAKE_COMPLETE_CUDA)
    before = project.snapshot()
    # The pin has no source: bump says so (bad input) the same way through both front ends.
    via_invoke, via_module = project.invoke("bump", "--dry-run"), _module(project, "bump", "--dry-run")
    assert via_invoke.returncode == via_module.returncode, via_module.stderr
    assert via_module.stderr.removeprefix("error: ") == via_invoke.stderr.removeprefix("error: ")
    # Two bake modes at once: refused before anything runs, by the same request check.
    assert_failed_cleanly(_module(project, "bake", "--push", "--print"), 2, stderr="choose one of --load, --push, --print")
    assert project.snapshot() == before


def test_quiet_hides_progress_lines_and_keeps_the_result(monkeypatch):
    said = []
    monkeypatch.setattr(cli, "err", lambda: type("C", (), {"print": staticmethod(said.append)}))
    cli.progress("rendered generated/x")
    monkeypatch.setattr(cli, "_QUIET", [True])
    cli.progress("rendered generated/y")
    assert said == ["rendered generated/x"]


def test_a_bad_option_value_is_one_line_and_exit_2_from_both_front_ends():
    assert cli.SMOKE.main(["--image", "x", "--gpus", "bogus"]) == 2
    with pytest.raises(errors.BadInput, match=r"smoke --gpus 'bogus': expected one of auto, all, cdi, none"):
        cli.SMOKE.request_from({"image": "x", "gpus": "bogus"})
    with pytest.raises(errors.BadInput, match=r"--timeout must be between 0 and 86400 seconds"):
        cli.SMOKE.request_from({"image": "x", "timeout": "-1"})
    request = cli.BUMP.request_from({"name": ["a,b"], "dry-run": True}, ["c"])
    assert request == cli.BumpRequest(name=("a,b", "c"), dry_run=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.release = "v1"  # type: ignore[misc]


def test_the_nox_sessions_show_only_flags_their_command_defines():
    """noxfile.py runs `python -m comfyimg validate|smoke` (the same definitions); the usage its
    docstrings show must name flags those commands have (nox imports no comfyimg to generate it)."""
    source = (REPO / "noxfile.py").read_text()
    tree = ast.parse(source)
    sessions = {n.name: ast.get_docstring(n) or "" for n in tree.body if isinstance(n, ast.FunctionDef)}
    for session, command in (("validate_sage2", cli.VALIDATE), ("validate_sage3", cli.VALIDATE), ("smoke", cli.SMOKE)):
        shown = set(re.findall(r"--([a-z][\w-]*)", sessions[session].split("-- ", 1)[-1]))
        assert shown and shown <= set(command.long_flags()), (session, shown - set(command.long_flags()))
