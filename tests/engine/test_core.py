"""``invoke bake -t core-cpu`` against a real engine: the REAL core Dockerfile.

``services/comfy/core/dockerfile.comfy.core`` is built once per session through the real
``docker-bake.hcl`` target ``core-cpu`` (override: tests/engine/override-core.hcl) on
``local/debian-py:bookworm`` standing in for the runtime image, with everything served
from 127.0.0.1:

* a PEP 503 index (``<server>/cpu/``) holding the host's CPU torch 2.13.0 wheel and its
  runtime deps (the download cache of tools/engine/base-image.sh, or a fresh
  ``pip download`` on the host), tiny fake ``torchvision`` (0.28.0 pins torch==2.13.0;
  a decoy 0.29.0 pins torch==2.14.0, which is not served) and ``torchaudio`` 2.13.0
  wheels, and a fake ComfyUI requirement ``comfy-test-dep``.  TORCH_VERSION and the
  index name come from the test project's wheels.toml (profile ``cpu``: torch 2.13.0,
  torch_index ``cpu``), TORCH_INDEX_BASE from the environment; PIP_INDEX_URL (the
  Dockerfile's mirror arg) is the same index;
* a fake ComfyUI git repo over dumb HTTP with a tag ``v0.0.1-test`` and a later commit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lib.project import REPO
from tests.lib.server import StaticServer, serve
from tests.lib.wheels import build_wheel

from tests.lib.engine import BASE, EngineProject, docker, make_engine_project, require_engine, wheels_toml

pytestmark = pytest.mark.engine

TORCH = "2.13.0"
TAG = "v0.0.1-test"
OVERRIDE_CORE = "tests/engine/override-core.hcl"
DATA_DIRS = ("models", "output", "input", "user", "custom_nodes", "temp")
# Folders the real ComfyUI ships inside its data dirs (each with a placeholder file).
SHIPPED_DIRS = ("models/checkpoints", "models/loras", "input/3d")


# --------------------------------------------------------------------------- torch wheels


def _torch_wheels() -> Path:
    """A folder with the CPU torch wheel and its runtime deps (cp311 manylinux)."""
    cache = Path(os.environ.get("ENGINE_CACHE_DIR", "/var/cache/comfyimg-engine")) / "standin-wheels"
    for name in (f"torch-{TORCH}-numpy", f"torch-{TORCH}"):  # tools/engine/base-image.sh's cache
        if (cache / name / ".complete").exists() and list((cache / name).glob(f"torch-{TORCH}*.whl")):
            return cache / name
    dest = REPO / "build" / "engine-wheels" / f"torch-{TORCH}"
    if not (dest / ".complete").exists():
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["python3", "-m", "pip", "download", "--quiet", "--dest", str(dest), "--only-binary=:all:",
             "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311",
             "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
             "--platform", "manylinux2014_x86_64", "--platform", "any", f"torch=={TORCH}"],
            text=True, capture_output=True, timeout=600, check=False)
        assert proc.returncode == 0, f"pip download torch=={TORCH} failed:\n{proc.stderr[-3000:]}"
        (dest / ".complete").touch()
    return dest


def _project_name(filename: str) -> str:
    return re.sub(r"[-_.]+", "-", filename.split("-", 1)[0]).lower()


# --------------------------------------------------------------------------- loopback server


def _write_index(root: Path, wheels: list[Path]) -> None:
    """PEP 503 simple index at root/cpu/<project>/ linking root/files/<wheel> (symlinks)."""
    files = root / "files"
    files.mkdir(parents=True)
    projects: dict[str, list[str]] = {}
    for wheel in wheels:
        (files / wheel.name).symlink_to(wheel.resolve())
        projects.setdefault(_project_name(wheel.name), []).append(wheel.name)
    index = root / "cpu"
    index.mkdir()
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (index / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    for project, names in projects.items():
        (index / project).mkdir()
        anchors = "".join(f'<a href="../../files/{urllib.parse.quote(n)}">{n}</a>\n' for n in sorted(names))
        (index / project / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{anchors}</body></html>\n")


# --------------------------------------------------------------------------- fake ComfyUI

GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid"}


def _git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, text=True,
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def _fake_comfyui(root: Path) -> Path:
    """root/ComfyUI.git: bare repo for dumb HTTP; tag TAG, then one more commit on main."""
    work = root.parent / "comfyui-work"
    work.mkdir()
    _git(work, "init", "-q", "-b", "main")
    (work / "main.py").write_text('COMFY_TEST_REF = "tag"\nprint("fake ComfyUI", COMFY_TEST_REF)\n')
    # Like the real one: the torch trio (held by the constraints) plus one plain dependency.
    (work / "requirements.txt").write_text("torch\ntorchvision\ntorchaudio\ncomfy-test-dep==1.0\n")
    for shipped in SHIPPED_DIRS:
        (work / shipped).mkdir(parents=True)
        (work / shipped / "put_files_here").write_text("")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "release")
    _git(work, "tag", TAG)
    (work / "main.py").write_text('COMFY_TEST_REF = "later"\nprint("fake ComfyUI", COMFY_TEST_REF)\n')
    (work / "LATER_ONLY.txt").write_text("after the tag\n")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "after the release")
    bare = root / "ComfyUI.git"
    _git(root, "clone", "-q", "--bare", str(work), str(bare))
    _git(bare, "update-server-info")
    return bare


# --------------------------------------------------------------------------- the build


@dataclass
class CoreBuild:
    project: EngineProject
    image: str
    server: StaticServer
    output: str
    seconds: float


def _run_in(image: str, *args: str, env: dict[str, str] | None = None, entrypoint: str | None = None,
            ) -> subprocess.CompletedProcess[str]:
    opts = [f"--env={k}={v}" for k, v in (env or {}).items()]
    if entrypoint:
        opts.append(f"--entrypoint={entrypoint}")
    return docker("run", "--rm", "--network", "none", *opts, image, *args, timeout=120)


@pytest.fixture(scope="session")
def core_image(tmp_path_factory) -> CoreBuild:
    require_engine()
    tmp = tmp_path_factory.mktemp("core")
    root = tmp / "srv"
    root.mkdir()
    fakes = tmp / "fakes"
    extra = [
        build_wheel(fakes, "torchvision", "0.28.0", requires=[f"torch=={TORCH}"],
                    files={"torchvision/__init__.py": "__version__ = '0.28.0'\n"}),
        # The resolver must skip this one: it wants a torch the index does not have.
        build_wheel(fakes, "torchvision", "0.29.0", requires=["torch==2.14.0"],
                    files={"torchvision/__init__.py": "__version__ = '0.29.0'\n"}),
        build_wheel(fakes, "torchaudio", TORCH, files={"torchaudio/__init__.py": f"__version__ = '{TORCH}'\n"}),
        build_wheel(fakes, "comfy-test-dep", "1.0", files={"comfy_test_dep/__init__.py": ""}),
    ]
    _write_index(root, sorted(_torch_wheels().glob("*.whl")) + extra)
    _fake_comfyui(root)
    server = serve(root)

    project = make_engine_project("core", wheels_toml([]))
    shutil.copy(REPO / OVERRIDE_CORE, project.root / OVERRIDE_CORE)
    image = f"comfyui-core:cpu-{project.label}"
    env = {"TORCH_INDEX_BASE": server.url, "COMFYUI_REF": TAG,
           "TEST_PIP_INDEX_URL": f"{server.url}/cpu/", "TEST_COMFYUI_REPO": f"{server.url}/ComfyUI.git",
           "TEST_RUNTIME_IMAGE": BASE}
    started = time.monotonic()
    try:
        proc = project.invoke("bake", "-t", "core-cpu", "--file", OVERRIDE_CORE, "--allow", "network.host",
                              "--label", project.label, env=env)
        seconds = time.monotonic() - started
        output = proc.stdout + "\n" + proc.stderr
        assert proc.returncode == 0, f"invoke bake -t core-cpu failed:\n{output[-6000:]}"
        yield CoreBuild(project, image, server, output, seconds)
    finally:
        server.stop()
        docker("image", "rm", "--force", image)
        if not os.environ.get("KEEP_TEST_PROJECTS"):
            shutil.rmtree(project.root, ignore_errors=True)


# --------------------------------------------------------------------------- tests


def test_build_used_the_real_bake_target_and_loopback_sources(core_image):
    record = core_image.project.record()
    assert core_image.image in record["targets"]["core-cpu"]["tags"]
    assert docker("image", "inspect", core_image.image).returncode == 0
    # Only core-cpu was built: the runtime context came from the local base image.
    assert "[runtime-cpu" not in core_image.output
    fetched = core_image.server.requests
    assert any(p.startswith(f"/files/torch-{TORCH}") and p.endswith(".whl") for p in fetched), fetched
    assert "/cpu/torch/" in fetched and "/cpu/comfy-test-dep/" in fetched, fetched
    assert any(p.startswith("/ComfyUI.git/") for p in fetched), fetched


CHECK = textwrap.dedent('''\
    import importlib.metadata as md, json, os, pwd, sys, sysconfig
    import torch

    def writable(d):
        probe = os.path.join(d, ".write-probe")
        try:
            with open(probe, "w"):
                pass
        except OSError:
            return False
        os.remove(probe)
        return True

    site = sysconfig.get_paths()["purelib"]
    print(json.dumps({
        "uid": os.getuid(), "gid": os.getgid(), "prefix": sys.prefix, "site": site,
        "comfy": list(pwd.getpwnam("comfy")[2:4]),
        "torch": torch.__version__,
        "dists": {n: md.version(n) for n in ("torch", "torchvision", "torchaudio", "comfy-test-dep")},
        "main": open("/app/ComfyUI/main.py").read(),
        "later_only": os.path.exists("/app/ComfyUI/LATER_ONLY.txt"),
        "git_dir": os.path.exists("/app/ComfyUI/.git"),
        "data": {d: writable(os.path.join("/app/ComfyUI", d)) for d in sys.argv[1:]},
        "home": writable(os.environ["HOME"]),
        "site_writable": {p: writable(p) for p in (site, os.path.join(site, "torch"), "/app/.venv/bin")},
    }))
''')


@pytest.fixture(scope="session")
def inside(core_image) -> dict:
    """What the default user (comfy, through the real entrypoint) sees in the image."""
    proc = _run_in(core_image.image, "python", "-c", CHECK, *DATA_DIRS, *SHIPPED_DIRS)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_venv_holds_the_pinned_torch_from_the_index(inside):
    assert inside["prefix"] == "/app/.venv"
    assert inside["site"].startswith("/app/.venv/lib/python3.11/")
    assert inside["torch"].split("+")[0] == TORCH and inside["torch"] in (TORCH, f"{TORCH}+cpu")
    assert inside["dists"] == {"torch": inside["torch"], "torchvision": "0.28.0", "torchaudio": TORCH,
                               "comfy-test-dep": "1.0"}


def test_comfyui_is_the_tagged_commit(core_image, inside):
    assert 'COMFY_TEST_REF = "tag"' in inside["main"]
    assert not inside["later_only"] and not inside["git_dir"]
    env = json.loads(docker("image", "inspect", "--format", "{{json .Config.Env}}", core_image.image).stdout)
    assert f"COMFYUI_REF={TAG}" in env
    # the label names what was checked out (here the caller's COMFYUI_REF; no [comfyui] pin)
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", core_image.image).stdout)
    assert labels["io.comfyimg.comfyui.ref"] == TAG


def test_runs_as_comfy_with_writable_data_dirs_and_readonly_venv(inside):
    assert inside["comfy"] == [1000, 1000]
    assert (inside["uid"], inside["gid"]) == (1000, 1000)
    assert inside["data"] == dict.fromkeys(DATA_DIRS + SHIPPED_DIRS, True)  # models/checkpoints too
    assert inside["home"]
    assert inside["site_writable"] == dict.fromkeys(inside["site_writable"], False)


def test_no_layer_duplicates_site_packages(core_image):
    proc = docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}",
                  core_image.image)
    assert proc.returncode == 0, proc.stderr
    layers = [(int(size), by) for size, _, by in (ln.partition("\t") for ln in proc.stdout.splitlines())]
    layers.reverse()  # oldest first
    venv = next(i for i, (_, by) in enumerate(layers) if "python3 -m venv /app/.venv" in by)
    venv_size = layers[venv][0]
    assert venv_size > 100_000_000, layers[venv]  # real torch
    for size, by in layers[venv + 1:]:
        assert size < venv_size // 20, f"a layer after the venv is {size} bytes: {by[:200]}"
    recursive = re.compile(r"\bch(?:own|mod)\b[^;&|]*\s-(?:-recursive\b|[A-Za-z]*R)")
    assert not [by for _, by in layers if recursive.search(by)]


def test_an_arbitrary_uid_in_group_0_can_write_the_shipped_model_folders(core_image):
    proc = docker("run", "--rm", "--network", "none", "--user", "12345", core_image.image,
                  "sh", "-c", "touch models/checkpoints/x input/3d/x && id -u", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["12345"]


def test_entrypoint_keeps_group_add_groups_but_not_root(core_image):
    proc = docker("run", "--rm", "--network", "none", "--group-add", "44", "--group-add", "0", core_image.image,
                  "sh", "-c", "id -u; id -g; id -G", timeout=60)
    assert proc.returncode == 0, proc.stderr
    uid, gid, *groups = proc.stdout.split()
    assert (uid, gid) == ("1000", "1000")
    assert sorted(groups) == ["1000", "44"], proc.stdout  # video (44) kept; root's group 0 dropped


def test_entrypoint_runs_the_command_as_puid_pgid(core_image):
    proc = _run_in(core_image.image, "sh", "-c", 'echo "$(id -u) $(id -g) $HOME"; stat -c %u:%g models',
                   env={"PUID": "2000", "PGID": "3000"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2000", "3000", "/home/comfy", "2000:3000"]


@pytest.mark.parametrize(("puid", "message"), [
    ("abc", "PUID='abc' is not a decimal integer"),
    ("0", "PUID=0 would run ComfyUI as root"),
])
def test_entrypoint_refuses_a_bad_puid(core_image, puid, message):
    proc = _run_in(core_image.image, env={"PUID": puid})
    assert proc.returncode == 64, (proc.returncode, proc.stdout, proc.stderr)
    assert f"comfy-entrypoint: error: {message}" in proc.stderr

