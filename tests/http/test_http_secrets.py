"""Credentials in an index URL (``user:password@host``) reach no output and no pin (issue 27,
item 2): the bump table, its errors, the new pin URL and the generated requirements carry none
of them, and wheels.toml keeps the user's own source line as they wrote it."""

from __future__ import annotations

import pytest

from comfyimg.pins import load as pins_mod
from tests.http.test_http_bump_index import NEW, _populate, index_wheels, wheels_toml  # noqa: F401
from tests.lib.bumpproject import BumpProject
from tests.lib.index import FakeIndex
from tests.lib.project import make_project

PASSWORD = "s3cret-index-pw"
BAKE_HCL = 'target "complete-cu130" {}\ntarget "complete-cpu" {}\n'


@pytest.fixture
def index(index_wheels):  # noqa: F811
    with FakeIndex() as fake:
        _populate(fake, index_wheels)
        yield fake


def test_index_credentials_reach_no_output_and_no_pin(tmp_path, index, fake_github):
    text = wheels_toml(index).replace(f'index = "{index.simple}"', f'index = "{index.simple.replace("://", f"://bob:{PASSWORD}@", 1)}"')
    assert PASSWORD in text
    project = BumpProject(make_project(tmp_path / "project", text, BAKE_HCL), fake_github)
    project.render()
    r = project.bump()
    assert r.returncode == 0, r.stdout + r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    pins = {p.key: p for p in pins_mod.load(project.pins).wheels}
    assert pins["sageattention"].filename == NEW
    assert pins["sageattention"].url.startswith(index.url + "/files/")  # no user:password@ in the pin
    toml = project.pins.read_text()
    assert toml.count(PASSWORD) == text.count(PASSWORD)  # the user's own source lines, kept verbatim
    for path in (project.root / "generated").rglob("*"):
        if path.is_file():
            assert PASSWORD not in path.read_text(), path
