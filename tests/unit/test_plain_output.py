"""Plain output off a terminal or under CI: no box drawing; ``invoke check --json``."""

from __future__ import annotations

import io
import json
import re

from comfyimg import output as console

BOX = re.compile("[\u2500-\u257f]")  # the Box Drawing block: ─ │ ┏ ━ ╇ …


def _render(plain: bool, monkeypatch) -> str:
    """A table as ``invoke bake`` prints it, through the project's console."""
    from rich.table import Table

    monkeypatch.setattr(console, "plain", lambda: plain)
    table = Table("target", "tags", title="bake")
    table.add_row("complete-cuda", "comfyui:cuda-dev")
    buf = io.StringIO()
    con = console._Console(file=buf, width=100, force_terminal=not plain, no_color=True)
    con.print(table)
    return buf.getvalue()


def test_plain_tables_have_no_box_drawing(monkeypatch):
    text = _render(True, monkeypatch)
    assert "complete-cuda" in text and "comfyui:cuda-dev" in text
    assert not BOX.search(text), text
    assert BOX.search(_render(False, monkeypatch)), "a terminal gets the boxed table"


def test_ci_or_no_tty_means_plain(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert console.plain()
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert console.plain()


def _seed_project(project_factory):
    from tests.lib.project import REPO

    project = project_factory((REPO / "wheels.toml").read_text())
    import shutil

    shutil.copytree(REPO / "generated", project.root / "generated")
    doc = "docs/reference/gpu-coverage.md"  # rendered from wheels.toml too
    if (REPO / doc).exists():
        (project.root / doc).parent.mkdir(parents=True)
        shutil.copy(REPO / doc, project.root / doc)
    return project


def test_check_json(project_factory):
    project = _seed_project(project_factory)
    r = project.invoke("check", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["current"] is True and report["drift"] == [] and report["wheels"] >= 2
    assert {u["pin"] for u in report["unhashed"]} >= {"sageattention", "sageattn3"}  # the seed pins
    # sageattn3 serves no GPU in the seed (its build runs on none): no coverage is needed for it
    assert set(report["coverage_unrecorded"]) == {"sageattention"}

    (project.root / "generated" / "requirements" / "complete-cuda.txt").write_text("stale\n")
    drift = project.invoke("check", "--json")
    assert drift.returncode == 1
    report = json.loads(drift.stdout)
    assert report["current"] is False and report["drift"] == ["generated/requirements/complete-cuda.txt"]

