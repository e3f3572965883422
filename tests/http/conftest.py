"""Fixtures for the HTTP tests: a fake GitHub (API on 127.0.0.1, storage on 127.0.0.2) with
the standard releases of :mod:`tests.lib.bumpproject`, and a throw-away project (tasks.py,
wheels.toml, docker-bake.hcl) to run ``invoke bump`` in."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib.bumpproject import BAKE_HCL, BumpProject, build_wheel_dir, populate, wheels_toml
from tests.lib.github import FakeGitHub
from tests.lib.project import make_project


@pytest.fixture(scope="session")
def wheel_dir(tmp_path_factory) -> Path:
    """Every wheel the fake releases serve, built once per session."""
    return build_wheel_dir(tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def fake_github():
    with FakeGitHub() as fake:
        yield fake


@pytest.fixture
def github(fake_github, wheel_dir) -> FakeGitHub:
    populate(fake_github, wheel_dir)
    return fake_github


@pytest.fixture
def project(tmp_path, github) -> BumpProject:
    proj = BumpProject(make_project(tmp_path / "project", wheels_toml(), BAKE_HCL), github)
    proj.render()
    return proj
