"""Each helper of tests/lib, by its own small real test (issue 26, item 5): the project factory,
the static server, the package index, the engine helpers' wheels and wheels.toml, the docker CLI
wrapper and the fresh-engine handle. (basepins, bumpproject, pinfile, github, assertions:
test_helpers.py; cudawheels, wheels, the vendored files: test_lib.py; the index's PEP 503/691
pages: tests/http/test_index_server.py.)"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.request
import zipfile

import pytest

from comfyimg.pins.load import loads
from tests.lib.dockercli import docker
from tests.lib.engine import (
    Bake,
    WheelPin,
    free_port,
    line_of,
    make_wheel,
    sage2_files,
    wheel_name,
    wheels_toml,
)
from tests.lib.engines import Engine
from tests.lib.index import FakeIndex, IndexFile, normalize
from tests.lib.project import REPO, Project, make_project
from tests.lib.server import serve


def test_make_project_copies_the_real_tasks_and_writes_the_given_files(tmp_path):
    root = make_project(tmp_path / "p", "# pins\n", 'target "x" {}\n', copy=("services",))
    project = Project(root)
    assert (root / "tasks.py").read_bytes() == (REPO / "tasks.py").read_bytes()
    assert (root / "docker-bake.hcl").read_text() == 'target "x" {}\n'
    assert project.pins.read_text() == "# pins\n" and (root / "services").is_dir()
    snap = project.snapshot()
    assert snap["wheels.toml"] == b"# pins\n" and "tasks.py" in snap
    (root / "new.txt").write_text("x")
    assert project.snapshot() != snap  # a change is seen
    make_project(root, None)  # emptied first; None: no wheels.toml
    assert not project.pins.exists() and not (root / "new.txt").exists()


def test_project_run_passes_env_and_removes_a_variable_given_none(tmp_path):
    project = Project(make_project(tmp_path / "p", None))
    r = project.run("sh", "-c", 'echo "$CI|${HOME-unset}|$EXTRA"', env={"HOME": None, "EXTRA": "e"})
    assert r.returncode == 0 and r.stdout.strip() == "1|unset|e"
    r = project.invoke("--list")
    assert r.returncode == 0 and "bump" in r.stdout, r.stderr


def test_the_static_server_serves_bytes_and_records_each_path(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a b.whl").write_bytes(b"\x00wheel")
    server = serve(tmp_path / "site")
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{server.url}/a%20b.whl", timeout=10) as resp:
            assert resp.read() == b"\x00wheel"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/nope", timeout=10)
        assert missing.value.code == 404
        assert server.requests == ["/a b.whl", "/nope"]
    finally:
        server.stop()


def test_the_index_serves_files_announces_hashes_and_logs_requests():
    good = IndexFile("pkg_x-1.0-py3-none-any.whl", b"bytes")
    lying = IndexFile("pkg_x-1.1-py3-none-any.whl", b"other", sha256="0" * 64)
    with FakeIndex() as index:
        index.add(normalize("Pkg_X"), good, lying)
        with urllib.request.urlopen(f"{index.url}/simple/pkg-x/", timeout=10) as resp:
            page = resp.read().decode()
        assert f"#sha256={good.real_sha256()}" in page and f"#sha256={'0' * 64}" in page
        with urllib.request.urlopen(index.file_url(good.name), timeout=10) as resp:
            assert resp.read() == b"bytes"
        assert [s.path for s in index.log] == ["/simple/pkg-x/", f"/files/{good.name}"]


def test_free_port_is_a_port_nothing_listens_on():
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free: binding it works


def test_the_engine_wheels_and_wheels_toml_are_what_they_say(tmp_path):
    path = make_wheel(tmp_path, "sageattention", "2.2.0", sage2_files("2.2.0"))
    assert path.name == wheel_name("sageattention", "2.2.0")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        assert "sageattention/_version.py" in names and "sageattention/_qattn_sm90.py" in names
        assert b"FAKE_VERSION = '2.2.0'" in zf.read("sageattention/_version.py")
    pin = WheelPin("sageattention", "2.2.0", f"http://127.0.0.1:9/{path.name}", "a" * 64, ("sageattention",))
    text = wheels_toml([pin])
    loaded = loads(text, "wheels.toml")
    assert [(w.name, w.version, w.sha256) for w in loaded.wheels] == [("sageattention", "2.2.0", "a" * 64)]
    assert line_of(text, 'name = "sageattention"') == text.splitlines().index('name = "sageattention"') + 1


def test_bake_reads_the_steps_and_which_were_cached():
    log = "#5 [complete-cuda 1/2] FROM base\n#5 CACHED\n#6 [complete-cuda 2/2] RUN pip install\n#6 DONE 1.0s\n"
    bake = Bake(subprocess.CompletedProcess(["invoke"], 0, log, ""))
    assert bake.code == 0 and bake.steps() == {"[complete-cuda 1/2] FROM base": True,
                                               "[complete-cuda 2/2] RUN pip install": False}


def test_the_docker_wrapper_runs_the_cli_under_its_limit(tmp_path):
    if shutil.which("docker") is None:
        pytest.fail("no docker CLI: tools/bootstrap.sh --engine installs it")
    r = docker("version", "--format", "{{json .Client.Version}}")
    assert r.returncode == 0 and json.loads(r.stdout)
    assert docker("no-such-command").returncode != 0
    with pytest.raises(subprocess.TimeoutExpired):
        docker("events", timeout=0.5)  # streams until stopped: the limit ends it


def test_a_fresh_engine_handle_points_the_docker_cli_at_its_own_socket(tmp_path):
    engine = Engine(host=f"unix://{tmp_path}/none.sock", root=tmp_path, pid=0)
    assert engine.env == {"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    r = engine.docker("version", "--format", "{{.Server.Version}}", timeout=30)
    assert r.returncode != 0 and "none.sock" in r.stderr  # its own socket, not the shared engine


def test_the_readme_names_every_helper_and_each_has_tests_of_its_own():
    lib = REPO / "tests" / "lib"
    helpers = sorted(p.stem for p in lib.glob("*.py") if p.stem != "__init__" and not p.stem.startswith("test_"))
    readme = (REPO / "README.md").read_text()
    assert [h for h in helpers if f"`{h}.py`" not in readme] == []
    tested = "".join(p.read_text() for p in lib.glob("test_*.py"))
    assert [h for h in helpers if f"from tests.lib.{h} import" not in tested] == []
