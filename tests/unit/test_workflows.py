"""The GitHub Actions workflows and Dependabot config: linted, pinned, least-privileged, and
calling only the project's own commands with options those commands really have."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.lib.project import INVOKE, REPO

GITHUB = REPO / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert path, f"{name} is not installed (pip install -e '.[test]')"
    return str(path)


def _load(path: Path) -> dict:
    # YAML 1.1 reads the key `on` as True; give it its name back.
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data


def test_the_workflows_exist():
    assert {p.stem for p in WORKFLOWS} == {"build", "bump", "validate-gpu", "weekly"}


# --------------------------------------------------------------------------- linters


def _copy_github(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(GITHUB, root / ".github")
    return root


def _actionlint(root: Path) -> subprocess.CompletedProcess[str]:
    github = root / ".github"
    return subprocess.run([_tool("actionlint"), "-no-color", "-config-file", str(github / "actionlint.yaml"),
                           *map(str, sorted((github / "workflows").glob("*.yml")))],
                          cwd=root, capture_output=True, text=True, timeout=120)


def test_actionlint_passes():
    proc = _actionlint(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    root = _copy_github(tmp_path)
    build = root / ".github" / "workflows" / "build.yml"
    build.write_text(build.read_text().replace("needs: check", "needs: no-such-job", 1))
    proc = _actionlint(root)
    assert proc.returncode == 1 and "no-such-job" in proc.stdout, proc.stdout + proc.stderr


def _zizmor(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool("zizmor"), "--offline", "--no-progress", "--format", "plain",
                           str(root / ".github")], capture_output=True, text=True, timeout=120)


def test_zizmor_passes_offline():
    proc = _zizmor(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No findings" in proc.stdout, proc.stdout


def test_zizmor_catches_an_unpinned_action(tmp_path):
    root = _copy_github(tmp_path)
    build = root / ".github" / "workflows" / "build.yml"
    text = build.read_text()
    build.write_text(re.sub(r"actions/checkout@[0-9a-f]{40} # v[\d.]+", "actions/checkout@v5", text, count=1))
    proc = _zizmor(root)
    assert proc.returncode != 0 and "unpinned-uses" in proc.stdout, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- pins and permissions


def _uses_lines() -> list[tuple[str, int, str]]:
    found = []
    for path in WORKFLOWS:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if m := re.match(r"^\s*(?:-\s+)?uses:\s*(.+)$", line):
                found.append((path.name, n, m[1].strip()))
    return found


def test_every_action_is_pinned_by_full_commit_sha_with_its_version():
    uses = _uses_lines()
    assert uses
    for name, line, ref in uses:
        if ref.startswith(("$/", "./")):  # this repository's own reusable workflow
            continue
        assert PINNED.match(ref), f"{name}:{line}: {ref!r} is not pinned as OWNER/REPO@<40 hex> # vX.Y.Z"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_least_privilege(path):
    wf = _load(path)
    top = wf.get("permissions")
    assert top is not None, f"{path.name}: no top-level permissions (the default token can write)"
    assert top in ({}, {"contents": "read"}), f"{path.name}: top-level permissions {top}"
    for job_id, job in wf["jobs"].items():
        perms = job.get("permissions", {})
        assert perms != "write-all" and isinstance(perms, dict), f"{path.name}: {job_id}: {perms}"
        writes = {k for k, v in perms.items() if v == "write"}
        allowed = {"build.yml": {"push": {"packages"}},
                   "bump.yml": {"bump": {"contents"}, "validate": {"packages"}, "pull-request": {"pull-requests"}},
                   "validate-gpu.yml": {"image": {"packages"}, "validate": {"packages"}}}
        assert writes <= allowed.get(path.name, {}).get(job_id, set()), f"{path.name}: {job_id} writes {writes}"


def test_checkouts_do_not_keep_the_token():
    for path in WORKFLOWS:
        for job in _load(path)["jobs"].values():
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, path.name


def test_the_gpu_jobs_run_per_arch_on_the_mapped_runners_and_keep_their_reports():
    wf = _load(GITHUB / "workflows" / "validate-gpu.yml")
    assert {"workflow_call", "workflow_dispatch"} <= set(wf["on"])
    assert "pull_request" not in wf["on"] and "pull_request_target" not in wf["on"]
    job = wf["jobs"]["validate"]
    assert job["runs-on"] == "${{ matrix.runner }}"
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert job["needs"] == ["plan", "image"], "every arch validates the one pushed digest"
    runs = [s.get("run", "") for s in job["steps"]]
    assert all("--attest" in r for r in runs if "bin/nox" in r), runs
    upload = next(s for s in job["steps"] if "upload-artifact" in str(s.get("uses")))
    assert upload["if"] == "always()" and "reports/*.junit.xml" in upload["with"]["path"]
    plan = " ".join(s.get("run", "") for s in wf["jobs"]["plan"]["steps"])
    assert "invoke audit --json" in plan and "tools/gpu_fleet.py plan" in plan and ".github/gpu-runners.json" in plan
    verify = " ".join(s.get("run", "") for s in wf["jobs"]["verify"]["steps"])
    assert "invoke verify" in verify and "GITHUB_STEP_SUMMARY" in verify and "--require measured" in verify
    bump = _load(GITHUB / "workflows" / "bump.yml")
    assert bump["jobs"]["validate"]["uses"].endswith(".github/workflows/validate-gpu.yml")
    assert bump["jobs"]["pull-request"]["needs"] == ["bump", "validate"], "the PR waits for the GPU gate"


def test_dependabot_watches_the_actions_and_the_python_dependencies():
    config = yaml.safe_load((GITHUB / "dependabot.yml").read_text())
    assert config["version"] == 2
    ecosystems = {u["package-ecosystem"]: u for u in config["updates"]}
    assert set(ecosystems) == {"github-actions", "uv"}
    assert all(u["directory"] == "/" and u["schedule"]["interval"] for u in ecosystems.values())


# --------------------------------------------------------------------------- the project's commands


def _commands() -> list[tuple[str, list[str]]]:
    """(workflow, argv) for every invoke / nox command in a ``run:`` block."""
    found = []
    for path in WORKFLOWS:
        for job in _load(path)["jobs"].values():
            for step in job.get("steps", []):
                script = step.get("run", "").replace("\\\n", " ")
                for line in script.splitlines():
                    words = shlex.split(line, comments=True)
                    for i, word in enumerate(words):
                        if word.endswith(("bin/invoke", "bin/nox")):
                            argv = []
                            for w in words[i + 1:]:
                                if w in ("|", ">", ">>", "&&", ";", "||"):
                                    break
                                argv.append(w)
                            found.append((path.name, [Path(word).name, *argv]))
    return found


@cache
def _invoke_help(task: str) -> str:
    proc = subprocess.run([*INVOKE, "--help", task], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"invoke has no task {task!r}: {proc.stderr}"
    return proc.stdout


@cache
def _nox_sessions() -> set[str]:
    proc = subprocess.run([_tool("nox"), "--list", "--no-color"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return {m[1] for m in re.finditer(r"^[*-] (\S+)", proc.stdout, re.M)}


def test_workflows_call_the_projects_own_commands():
    commands = _commands()
    called = {(wf, argv[0], argv[1] if argv[0] == "invoke" else "") for wf, argv in commands}
    assert {("build.yml", "invoke", "check"), ("build.yml", "invoke", "bake"), ("bump.yml", "invoke", "bump"),
            ("validate-gpu.yml", "invoke", "bake"), ("validate-gpu.yml", "nox", ""),
            ("validate-gpu.yml", "invoke", "verify"), ("validate-gpu.yml", "invoke", "audit")} <= called, called
    for wf, argv in commands:
        if argv[0] == "invoke":
            text = _invoke_help(argv[1])
            for flag in (w.split("=")[0] for w in argv[2:] if w.startswith("--")):
                assert re.search(rf"(^|[\s,]){re.escape(flag)}(\b|=)", text, re.M), \
                    f"{wf}: invoke {argv[1]} has no option {flag}"
        else:
            sessions = argv[argv.index("-s") + 1: argv.index("--") if "--" in argv else None]
            assert set(sessions) <= _nox_sessions(), (wf, argv)
            if wf == "validate-gpu.yml":
                assert sessions in (["validate_sage2"], ["validate_sage3"], ["smoke"]), argv
                assert argv[argv.index("--") + 1:] == ["--image", "$IMAGE", *(["--require-gpu"] if sessions != ["smoke"]
                                                                              else []), "--attest"], argv


def test_the_lock_is_tested_on_every_pull_request_and_the_newest_versions_weekly():
    commands = _commands()
    nox_runs = {(wf, " ".join(argv[argv.index("-s") + 1:])) for wf, argv in commands if argv[0] == "nox"}
    assert ("build.yml", "lint check tests") in nox_runs, nox_runs
    assert ("weekly.yml", "tests_latest") in nox_runs, nox_runs
    weekly = _load(GITHUB / "workflows" / "weekly.yml")
    assert "schedule" in weekly["on"] and weekly["permissions"] == {"contents": "read"}
