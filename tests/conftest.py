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
