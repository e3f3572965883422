"""Shared fixtures: a throw-away copy of the project to run the real tasks against."""

from __future__ import annotations

import pytest

from tests.lib.project import INVOKE, REPO, Project, make_project

__all__ = ["INVOKE", "REPO", "Project", "project_factory"]


@pytest.fixture
def project_factory(tmp_path):
    def factory(wheels_toml, bake_hcl=None, name="project"):
        return Project(make_project(tmp_path / name, wheels_toml, bake_hcl))
    return factory


# --------------------------------------------------------------------------- only gpu-marked tests skip
# A test that skips for any reason but "no GPU here" hides a setup bug or a missing fixture (issue
# 17: a fresh clone runs every test). So a skipped test that is not marked ``gpu``, and any xfail
# that is not strict, fails the run, each named with its reason.

_BAD_OUTCOMES: list[str] = []
_STRICT_XFAIL: set[str] = set()


def pytest_collection_modifyitems(config, items):
    strict_default = config.getini("xfail_strict")
    for item in items:
        marks = list(item.iter_markers("xfail"))
        if marks and all(m.kwargs.get("strict", strict_default) for m in marks):
            _STRICT_XFAIL.add(item.nodeid)


def pytest_runtest_logreport(report):
    if report.skipped and hasattr(report, "wasxfail"):
        if report.nodeid not in _STRICT_XFAIL:
            _BAD_OUTCOMES.append(f"{report.nodeid}: xfail that is not strict ({report.wasxfail or 'no reason'})")
    elif report.passed and hasattr(report, "wasxfail") and report.when == "call":
        _BAD_OUTCOMES.append(f"{report.nodeid}: XPASS of a non-strict xfail ({report.wasxfail or 'no reason'})")
    elif report.skipped and "gpu" not in report.keywords:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _BAD_OUTCOMES.append(f"{report.nodeid}: skipped but not marked gpu ({reason})")


def pytest_terminal_summary(terminalreporter):
    if _BAD_OUTCOMES:
        terminalreporter.section("only gpu-marked tests may skip", sep="=", red=True, bold=True)
        for line in _BAD_OUTCOMES:
            terminalreporter.line(line, red=True)


def pytest_sessionfinish(session, exitstatus):
    if _BAD_OUTCOMES and session.exitstatus == 0:
        session.exitstatus = 1
