"""Engine fixtures: a real dockerd + buildx, the stand-in core image, loopback wheel servers.

Every image is built ONCE per session through the real ``invoke bake`` (a subprocess
in a throw-away project under the repo's git-ignored ``build/``), on the stand-in core
(``local/core-standin:test``, built by ``tools/engine/base-image.sh``):

* ``main``   sageattention 2.2.0 + sageattn3 1.0.0 (both fakes that satisfy the sage2
             probe's install checks), from a loopback HTTP server;
* ``bump``   the same pins with sageattention bumped to 2.2.1 (new url + sha256);
* ``crash``  sageattention 2.2.0 whose import kills the interpreter (SIGSEGV).

Without an engine (or without the base images) the engine tests FAIL, naming what is missing
(tools/engine/ sets it up): only gpu-marked tests may skip (tests/conftest.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lib.pinfile import profile, wheel
from tests.lib.dockercli import docker
from tests.lib.project import REPO, Project, make_project
from tests.lib.server import StaticServer, serve
from tests.lib.wheels import build_wheel, sha256_file

STANDIN = "local/core-standin:test"
BASE = "local/debian-py:bookworm"
PROJECTS = REPO / "build" / "test-projects"
OVERRIDE = "tests/engine/override.hcl"
# Tags of this session: unique, so that parallel sessions and other people's images
# on the same engine never collide.
LABEL = f"t{uuid.uuid4().hex[:8]}"
BUILD_TIMEOUT = 600

WHEEL_TAG = "2130.129-cp311-cp311-linux_x86_64"  # build tag: torch 2.13.0 / CUDA 12.9; the stand-in's Python


# --------------------------------------------------------------------------- engine gate


@functools.cache
def engine_problem() -> str | None:
    """None when the engine tests can run, else why not."""
    if shutil.which("docker") is None:
        return "the docker CLI is not on PATH (bash tools/bootstrap.sh --engine)"
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 30 s"
    if info.returncode != 0:
        return f"no Docker engine answers ({info.stderr.strip()[:200]}); run tools/engine/start.sh"
    bx = docker("buildx", "version", timeout=30)
    m = re.search(r"v?(\d+)\.(\d+)", bx.stdout)
    if bx.returncode != 0 or not m or (int(m[1]), int(m[2])) < (0, 17):
        return f"docker buildx >= 0.17 is needed (got: {(bx.stdout or bx.stderr).strip()[:100]})"
    for image in (BASE, STANDIN):
        if docker("image", "inspect", image, timeout=30).returncode != 0:
            return f"base image {image} missing; run tools/engine/base-image.sh"
    return None


def require_engine() -> None:
    problem = engine_problem()
    if problem:
        # A setup bug, not a reason to skip (only gpu-marked tests skip): tools/engine/ sets it up.
        pytest.fail(f"engine tests need a Docker engine: {problem}", pytrace=False)


@pytest.fixture(autouse=True)
def _engine_gate(request):
    if request.node.get_closest_marker("engine"):
        require_engine()


# --------------------------------------------------------------------------- loopback servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- fake wheels

SAGE2_INIT = '''\
"""Fake SageAttention 2 for the engine tests: the exports and extension modules the probe checks."""
from . import core
from .core import (sageattn, sageattn_varlen, sageattn_qk_int8_pv_fp16_triton, sageattn_qk_int8_pv_fp16_cuda,
                   sageattn_qk_int8_pv_fp8_cuda, sageattn_qk_int8_pv_fp8_cuda_sm90)
'''
SAGE2_CORE = '''\
SM80_ENABLED = SM89_ENABLED = SM90_ENABLED = True


def _kernel(*args, **kwargs):
    raise RuntimeError("fake SageAttention: no kernels on the engine test machine")


sageattn = sageattn_varlen = sageattn_qk_int8_pv_fp16_triton = sageattn_qk_int8_pv_fp16_cuda = _kernel
sageattn_qk_int8_pv_fp8_cuda = sageattn_qk_int8_pv_fp8_cuda_sm90 = _kernel
'''
CRASH_INIT = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"


def sage2_files(version: str, init: str = SAGE2_INIT) -> dict[str, str]:
    files = {"sageattention/__init__.py": init, "sageattention/core.py": SAGE2_CORE,
             "sageattention/_version.py": f"FAKE_VERSION = {version!r}\n"}
    for ext in ("_qattn_sm80", "_qattn_sm89", "_qattn_sm90", "_fused"):
        files[f"sageattention/{ext}.py"] = f"# stand-in for the compiled extension {ext}\n"
    return files


def sage3_files() -> dict[str, str]:
    return {"sageattn3/__init__.py": "def sageattn3_blackwell(*a, **k):\n    raise RuntimeError('fake')\n",
            "fp4attn_cuda.py": "", "fp4quant_cuda.py": ""}


def wheel_name(dist: str, version: str) -> str:
    return f"{dist}-{version}-{WHEEL_TAG}.whl"


def make_wheel(directory: Path, dist: str, version: str, files: dict[str, str]) -> Path:
    return build_wheel(directory, dist, version, filename=wheel_name(dist, version), files=files)


# --------------------------------------------------------------------------- wheels.toml

# The cuda profile matches the stand-in core (Python 3.11 venv, torch 2.13.0 CPU build); the
# wheels come from a loopback server. torch_index only feeds core-cuda, which these tests never
# build (the override swaps in the stand-in), but it must still be a CUDA 12 index for a profile
# with cuda 12.9.
PROFILES = ("# TEST wheels.toml for the engine tests\n"
            + profile("cuda", python="cp311", torch="2.13.0", torch_index="cu128", cuda="12.9", archs=["sm80", "sm90"])
            + "\n" + profile("cpu", python="cp311", torch="2.13.0", torch_index="cpu"))


@dataclass(frozen=True)
class WheelPin:
    name: str
    version: str
    url: str
    sha256: str | None
    provides: tuple[str, ...]
    arch: str | None = None
    # The stand-in wheels hold no GPU code (the engine machines have no GPU): they serve no arch,
    # so no kernel coverage is needed. tests/engine/test_kernels_preflight.py covers the rest.
    serves: tuple[str, ...] = ()

    def toml(self) -> str:
        return wheel(self.name, self.version, self.url, sha256=self.sha256, arch=self.arch, targets=["complete-cuda"],
                     provides=self.provides, extra=f"serves = {json.dumps(list(self.serves))}\n")


def wheels_toml(pins: list[WheelPin]) -> str:
    return PROFILES + "".join("\n" + p.toml() for p in pins)


# --------------------------------------------------------------------------- projects


@dataclass
class Bake:
    """The outcome of one ``invoke bake``."""

    proc: subprocess.CompletedProcess[str]

    @property
    def code(self) -> int:
        return self.proc.returncode

    @property
    def output(self) -> str:
        return self.proc.stdout + "\n" + self.proc.stderr

    def steps(self) -> dict[str, bool]:
        """Build step name (``[complete-cuda 3/4] RUN …``) → whether it was CACHED."""
        names: dict[str, str] = {}
        cached: set[str] = set()
        for line in self.output.splitlines():
            if m := re.match(r"^#(\d+) (\[.*)$", line):
                names.setdefault(m[1], m[2])
            elif m := re.match(r"^#(\d+) CACHED\s*$", line):
                cached.add(m[1])
        return {name: vid in cached for vid, name in names.items()}


@dataclass
class EngineProject(Project):
    label: str = ""
    timeout: float = BUILD_TIMEOUT

    @property
    def tag(self) -> str:
        return f"comfyui:cuda-{self.label}"

    def record(self) -> dict:
        return json.loads((self.root / "build" / "bake-record.json").read_text())

    def bake(self, *extra: str, pip_index: str = "http://127.0.0.1:9/simple/", env: dict | None = None,
             target: str = "complete-cuda") -> Bake:
        """``invoke bake -t complete-cuda`` on the stand-in (the test override file)."""
        return Bake(self.invoke("bake", "-t", target, "--file", OVERRIDE, "--allow", "network.host",
                                "--label", self.label, *extra,
                                env={"TEST_PIP_INDEX_URL": pip_index, **(env or {})}))


def make_engine_project(name: str, toml_text: str) -> EngineProject:
    """A project under build/test-projects with copies of the real build files."""
    root = make_project(PROJECTS / f"{LABEL}-{name}", toml_text, copy=("services", OVERRIDE))
    return EngineProject(root, label=f"{LABEL}-{name}")


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


# --------------------------------------------------------------------------- session fixtures


@dataclass
class Served:
    """Wheels built by the test and served from 127.0.0.1."""

    server: StaticServer
    pins: dict[str, WheelPin]  # key → pin

    def pin(self, key: str) -> WheelPin:
        return self.pins[key]


@pytest.fixture(scope="session")
def served(tmp_path_factory) -> Served:
    require_engine()
    root = tmp_path_factory.mktemp("wheels")
    server = serve(root)
    pins: dict[str, WheelPin] = {}

    def add(key, dist, version, files, provides, subdir=""):
        path = make_wheel(root / subdir if subdir else root, dist, version, files)
        url = f"{server.url}/{subdir + '/' if subdir else ''}{path.name}"
        pins[key] = WheelPin(dist, version, url, sha256_file(path), provides)

    add("sage2", "sageattention", "2.2.0", sage2_files("2.2.0"), ("sageattention",))
    add("sage2-bump", "sageattention", "2.2.1", sage2_files("2.2.1"), ("sageattention",))
    add("sage2-crash", "sageattention", "2.2.0", sage2_files("2.2.0", CRASH_INIT), ("sageattention",), "crash")
    add("sage3", "sageattn3", "1.0.0", sage3_files(), ("sageattn3", "fp4attn_cuda", "fp4quant_cuda"))
    # Same file name, same pinned sha256 as "sage2", but the bytes served differ.
    tampered = make_wheel(root / "tampered", "sageattention", "2.2.0",
                          {**sage2_files("2.2.0"), "sageattention/evil.py": "print('tampered')\n"})
    assert sha256_file(tampered) != pins["sage2"].sha256
    pins["sage2-tampered"] = WheelPin("sageattention", "2.2.0", f"{server.url}/tampered/{tampered.name}",
                                      pins["sage2"].sha256, ("sageattention",))
    yield Served(server, pins)
    server.stop()


@dataclass
class Built:
    project: EngineProject
    bake: Bake
    pins: list[WheelPin]

    @property
    def image(self) -> str:
        return self.project.tag


_built_tags: list[str] = []
_projects: list[Path] = []


def _build(name: str, pins: list[WheelPin], served: Served, text: str | None = None) -> Built:
    project = make_engine_project(name, text if text is not None else wheels_toml(pins))
    _projects.append(project.root)
    result = project.bake(pip_index=f"{served.server.url}/simple/")
    _built_tags.append(project.tag)
    assert result.code == 0, f"invoke bake of {name} failed:\n{result.output[-6000:]}"
    return Built(project, result, pins)


@pytest.fixture(scope="session")
def main_image(served) -> Built:
    """complete-cuda with sageattention 2.2.0 + sageattn3 1.0.0."""
    return _build("main", [served.pin("sage2"), served.pin("sage3")], served)


@pytest.fixture(scope="session")
def bumped_image(served, main_image) -> Built:
    """main's wheels.toml with ONE pin bumped (sageattention 2.2.0 → 2.2.1: version, url, sha256)."""
    old, new = served.pin("sage2"), served.pin("sage2-bump")
    text = main_image.project.pins.read_text()
    for a, b in ((f'version = "{old.version}"', f'version = "{new.version}"'), (old.url, new.url),
                 (old.sha256, new.sha256)):
        assert text.count(a) == 1, a
        text = text.replace(a, b)
    return _build("bump", [new, served.pin("sage3")], served, text)


@pytest.fixture(scope="session")
def crash_image(served, main_image) -> Built:
    """sageattention 2.2.0 whose ``import sageattention`` kills the interpreter with SIGSEGV."""
    return _build("crash", [served.pin("sage2-crash"), served.pin("sage3")], served)


@pytest.fixture(scope="session", autouse=True)
def _cleanup():
    yield
    for tag in _built_tags:
        docker("image", "rm", "--force", tag)
    if not os.environ.get("KEEP_TEST_PROJECTS"):
        for root in _projects:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def engine_project(served):
    """A throw-away project (removed at the end of the session) for tests that bake their own."""

    def factory(name: str, text: str) -> EngineProject:
        project = make_engine_project(name, text)
        _projects.append(project.root)
        _built_tags.append(project.tag)
        return project

    return factory


def pip_list(image: str) -> dict[str, str]:
    proc = docker("run", "--rm", "--network", "none", "--entrypoint", "/app/.venv/bin/python", image,
                  "-m", "pip", "list", "--format", "json", "--disable-pip-version-check")
    assert proc.returncode == 0, proc.stderr
    return {d["name"].lower(): d["version"] for d in json.loads(proc.stdout)}


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()



# --------------------------------------------------------------------------- registry


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{self.host}"


REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {data}
  delete:
    enabled: true
http:
  addr: {host}
  secret: engine-tests-only
"""


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Registry:
    """Debian's docker-registry (distribution 2.8) on 127.0.0.1:<free port>, filesystem storage in tmp."""
    import time
    import urllib.request

    require_engine()
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists():
        msg = "docker-registry is not installed (tools/engine/install.sh installs it)"
        pytest.fail(msg, pytrace=False)
    tmp = tmp_path_factory.mktemp("registry")
    host = f"127.0.0.1:{free_port()}"
    config = tmp / "config.yml"
    config.write_text(REGISTRY_CONFIG.format(data=tmp / "data", host=host))
    log = open(tmp / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"docker-registry did not start on {host}:\n{(tmp / 'registry.log').read_text()[-2000:]}")
        time.sleep(0.1)
    yield Registry(host, proc)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
