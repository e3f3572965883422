"""``invoke bump --comfyui`` for real (a subprocess) against the fake GitHub on loopback: the
[comfyui] pin moves to the newest release and records the commit its tag points at; render
writes COMFYUI_REF (the commit, else the tag) into the bake variables."""

from __future__ import annotations

import json
import re

import pytest

from comfyimg.pins import comfyui as comfyui_pin
from comfyimg.pins import load as pins_mod
from tests.lib.bumpproject import BumpProject, assert_unchanged
from tests.lib.github import FakeRelease
from tests.lib.pinfile import profile, wheel
from tests.lib.project import make_project

REPO = "comfyanonymous/ComfyUI"
A, B, C = "a" * 40, "0123456789abcdef0123456789abcdef01234567", "c" * 40
BAKE_HCL = 'target "core-cpu" {}\n'


def toml(commit: str | None = None, release: str = "v0.3.66") -> str:
    line = f'commit = "{commit}"\n' if commit else ""
    return (profile("cpu", torch="2.9.0", torch_index="cpu") + "\n"
            + "# ComfyUI: checked out by the core images.\n[comfyui]\n"
            + f'github = "{REPO}"   # upstream\nrelease = "{release}"\n{line}\n'
            + wheel("helper", "0.1.0", "https://example.invalid/helper-0.1.0-py3-none-any.whl",
                    sha256="b" * 64, targets=["core-cpu"]))


@pytest.fixture
def project(tmp_path, fake_github) -> BumpProject:
    fake_github.add_release(REPO, FakeRelease("v0.4.0-rc1", [], prerelease=True, commit=C))
    fake_github.add_release(REPO, FakeRelease("v0.3.70", [], commit=B))
    fake_github.add_release(REPO, FakeRelease("v0.3.66", [], commit=A))
    proj = BumpProject(make_project(tmp_path / "project", toml(), BAKE_HCL), fake_github)
    proj.render()
    return proj


def bake_vars(project) -> dict[str, str]:
    data = json.loads((project.root / "generated/wheels.bake.json").read_text())
    return {k: v["default"] for k, v in data["variable"].items() if k.startswith("COMFYUI")}


def test_until_the_commit_is_recorded_the_bake_uses_the_tag(project):
    assert bake_vars(project) == {"COMFYUI_REF": "v0.3.66", "COMFYUI_TAG": "v0.3.66", "COMFYUI_COMMIT": ""}


def test_bump_comfyui_moves_to_the_newest_release_and_records_its_commit(project):
    r = project.bump("--comfyui")
    assert r.returncode == 0, r.stdout + r.stderr
    text = project.pins.read_text()
    assert "# upstream" in text and "# ComfyUI: checked out by the core images." in text
    pin = pins_mod.load(project.pins).comfyui
    assert pin == comfyui_pin.ComfyUI(REPO, "v0.3.70", B, pin.line)  # not the prerelease
    assert bake_vars(project) == {"COMFYUI_REF": B, "COMFYUI_TAG": "v0.3.70", "COMFYUI_COMMIT": B}
    assert any(e.path == f"/repos/{REPO}/commits/v0.3.70" for e in project.fake.requests("api"))
    before = project.snapshot()
    r = project.bump("--comfyui")
    assert r.returncode == 0 and "up to date" in r.stdout, r.stdout + r.stderr
    assert project.snapshot() == before


def test_release_records_the_commit_of_the_tag_it_names(project):
    r = project.bump("--comfyui", "--release", "v0.3.66", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["comfyui"]["new"] == {"release": "v0.3.66", "commit": A}
    assert bake_vars(project)["COMFYUI_REF"] == A


def test_pre_takes_the_prerelease(project):
    r = project.bump("--comfyui", "--pre", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'+commit = "{C}"' in r.stdout and '+release = "v0.4.0-rc1"' in r.stdout


def test_a_tag_without_a_commit_fails_and_writes_nothing(project):
    project.fake.repos[REPO][1].commit = None  # v0.3.70
    before = project.snapshot()
    r = project.bump("--comfyui")
    assert_unchanged(project, before, r, 1)
    assert "commit of v0.3.70 in comfyanonymous/ComfyUI: HTTP 422" in r.stderr


def test_no_comfyui_table_is_bad_input(tmp_path, fake_github):
    text = re.sub(r"# ComfyUI.*?\n\n", "", toml(), flags=re.S)
    proj = BumpProject(make_project(tmp_path / "p", text, BAKE_HCL), fake_github)
    r = proj.bump("--comfyui")
    assert r.returncode == 2 and "no [comfyui] table" in r.stderr, r.stderr
    assert fake_github.requests() == []


@pytest.mark.parametrize(("edit", "field"), [
    (('release = "v0.3.66"', 'release = "v0.3.66"\ncommit = "abc"'), "comfyui.commit"),
    (('release = "v0.3.66"', 'release = "v 0.3"'), "comfyui.release"),
    ((f'github = "{REPO}"', 'github = "ComfyUI"'), "comfyui.github"),
    ((f'github = "{REPO}"', f'github = "{REPO}"\nbranch = "master"'), "comfyui.branch"),
])
def test_malformed_comfyui_names_line_and_field(project, edit, field):
    project.pins.write_text(project.pins.read_text().replace(*edit))
    line = next(n for n, ln in enumerate(project.pins.read_text().splitlines(), 1) if ln.startswith(field.split(".")[1]))
    r = project.invoke("check")
    assert r.returncode == 2, r.stdout + r.stderr
    assert re.search(rf"^wheels\.toml:{line}: {re.escape(field)}: \S", r.stderr, re.M), r.stderr


def test_label_check():
    L = comfyui_pin
    pin = L.ComfyUI(REPO, "v0.3.70", B, 1)
    ok = {L.LABEL_TAG: "v0.3.70", L.LABEL_COMMIT: B, L.LABEL_REF: B}
    assert L.label_check(ok, pin)["status"] == "pass"
    assert L.label_check({**ok, L.LABEL_COMMIT: A}, pin)["status"] == "fail"
    assert L.label_check({**ok, L.LABEL_REF: "v0.3.70"}, pin)["status"] == "fail"  # built from the tag
    assert L.label_check({L.LABEL_TAG: "v0.3.66", L.LABEL_COMMIT: "", L.LABEL_REF: "v0.3.66"}, pin)["status"] == "fail"
    assert L.label_check({}, pin)["status"] == "skip"
    tag_only = L.ComfyUI(REPO, "v0.3.66", None, 1)
    assert L.label_check({L.LABEL_TAG: "v0.3.66", L.LABEL_COMMIT: "", L.LABEL_REF: "v0.3.66"},
                         tag_only)["status"] == "pass"


def test_the_commit_goes_inside_comfyui_and_the_not_recorded_note_goes(project):
    """A new ``commit =`` lands right after ``[comfyui]``'s last key, not below the comments that
    introduce the next ``[[wheel]]``; the comment saying it is not recorded yet is removed."""
    text = toml().replace("# ComfyUI: checked out by the core images.\n", (
        "# ComfyUI: checked out by the core images.\n"
        "# The commit it points at is not recorded yet (no GitHub here):\n"
        "# until it is, the images build from the tag.\n"
        "# Record it with: invoke bump --comfyui --release v0.3.66\n")).replace(
        "[[wheel]]", "# helper: a pure-Python pin\n# (its comment block)\n[[wheel]]")
    project.pins.write_text(text)
    project.render()
    r = project.bump("--comfyui")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = project.pins.read_text().splitlines()
    at = lines.index("[comfyui]")
    assert lines[at + 1:at + 4] == [f'github = "{REPO}"   # upstream', 'release = "v0.3.70"', f'commit = "{B}"']
    assert lines[at - 1] == "# ComfyUI: checked out by the core images."  # the rest of the comment stays
    assert "not recorded yet" not in "\n".join(lines) and "Record it with" not in "\n".join(lines)
    assert lines[lines.index("[[wheel]]") - 2:lines.index("[[wheel]]")] == [
        "# helper: a pure-Python pin", "# (its comment block)"]
