"""Sessions: ``nox --list``.  Thin: install from the lock (uv.lock), then call pytest or comfyimg."""

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["check", "tests"]
nox.options.reuse_existing_virtualenvs = True



def uv() -> str:
    """uv's binary; imported only by the sessions that use it, so that `nox --no-venv -s smoke`
    (or validate_*) runs on a GPU host that has no uv."""
    from uv import find_uv_bin

    return find_uv_bin()
# torch for the probe tests: the CPU build, from torch's CPU index by default (PyPI's torch is
# the CUDA one, which does not import on a machine without CUDA's libraries, such as a stock
# GitHub runner). COMFYIMG_TEST_TORCH_INDEX names another index; set it empty to use pip's own
# configuration (a machine whose index or find-links carry the CPU build). Its own dependencies
# are locked in the test group; torch goes in without them.
TORCH = "torch==2.13.0"
TORCH_INDEX = os.environ.get("COMFYIMG_TEST_TORCH_INDEX", "https://download.pytorch.org/whl/cpu")


def install_torch(session):
    session.install("--no-deps", *(["--index-url", TORCH_INDEX] if TORCH_INDEX else []), TORCH)


def install_locked(session, *groups):
    """``uv sync --locked`` into the session's venv: exactly the locked versions, or a failure
    when uv.lock is stale. ``--inexact`` keeps the venv's own pip (torch comes through it)."""
    session.run_install(uv(), "sync", "--locked", "--inexact", "--no-default-groups",
                        *(f"--group={g}" for g in groups),
                        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location, "UV_SYSTEM_CERTS": "1"},
                        external=True)


@nox.session
def check(session):
    """Validate wheels.toml and verify generated/ is current (the command of `invoke check`)."""
    install_locked(session)
    session.run("python", "-m", "comfyimg", "check", *session.posargs)


@nox.session
def tests(session):
    """The test suite from the lock: unit, loopback HTTP, real Docker engine (needs
    tools/bootstrap.sh --engine). Fails first when uv.lock is stale.

    Extra arguments go to pytest: nox -s tests -- -k pins -x
    """
    session.run(uv(), "lock", "--check", env={"UV_SYSTEM_CERTS": "1"}, external=True)
    install_locked(session, "test")
    install_torch(session)
    session.run("pytest", *session.posargs)


@nox.session(default=False, tags=["maintenance"])
def tests_latest(session):
    """Early warning: the newest versions pyproject.toml allows (not the lock), in a fresh venv,
    against the unit and HTTP suites. The weekly workflow runs it.

    nox -s tests_latest -- [PYTEST ARGS]
    """
    session.run_install(uv(), "pip", "install", "--python", session.virtualenv.location, "--upgrade",
                        "-e", ".", "--group", "test", env={"UV_SYSTEM_CERTS": "1"}, external=True)
    install_torch(session)
    session.run("python", "-m", "pip", "list", "--format=freeze")
    session.run("pytest", "-m", "not lock", "tests/unit", "tests/http", "tests/lib", *session.posargs)


@nox.session(default=False, tags=["maintenance"])
def lock(session):
    """Refresh uv.lock to the newest allowed versions (Dependabot does the same weekly)."""
    session.run(uv(), "lock", "--upgrade", env={"UV_SYSTEM_CERTS": "1"}, external=True)


@nox.session
def lint(session):
    """ruff and mypy over src/, tasks.py and noxfile.py, ruff over tests/ and bench/ too (not the
    vendored third-party files of tests/vendor), at the locked versions."""
    install_locked(session, "lint")
    targets = ["src", "tasks.py", "noxfile.py"]
    session.run("ruff", "check", *targets, "tests", "bench", "--extend-exclude", "tests/vendor")
    session.run("mypy", *targets)


def _validate(session, probe):
    # `nox --no-venv` (a GPU host without an index: the package and its deps on PYTHONPATH)
    # refuses session.install (nox issue 739), so install only into a real venv.
    if session.venv_backend != "none":
        install_locked(session)
    session.run("python", "-m", "comfyimg", "validate", probe, *session.posargs)


@nox.session(default=False, tags=["validate"])
def validate_sage2(session):
    """Run the SageAttention 2 probe inside the built image, on its GPU.

    Image: the latest build record (build/bake-record.json) unless given.
    nox -s validate_sage2 -- [--image IMAGE] [--gpus auto|all|cdi|none] [--require-gpu] [--comfyui PATH|none]
                             [--timeout S] [--expect-version V] [-- PROBE ARGS]
    """
    _validate(session, "sage2")


@nox.session(default=False, tags=["validate"])
def validate_sage3(session):
    """Run the SageAttention 3 probe inside the built image (kernels run on sm120/sm121 only).

    nox -s validate_sage3 -- [--image IMAGE] [--gpus auto|all|cdi|none] [--require-gpu] [--comfyui PATH|none]
                             [--timeout S] [--expect-version V] [-- PROBE ARGS]
    """
    _validate(session, "sage3")


# --------------------------------------------------------------------------- benchmarks


@nox.session(default=False, tags=["bench"])
def bench(session):
    """Run a script of bench/, the numbers behind the docs: nox -s bench -- SCRIPT [ARGS]

    check, bump_digest, bump_download (loopback only); bake_rebuild, bake_bump, bake_size
    (need the engine and the test base images: tools/bootstrap.sh --engine --test-images).
    """
    scripts = sorted(p.stem for p in Path("bench").glob("[!_]*.py"))
    if not session.posargs or session.posargs[0] not in scripts:
        session.error(f"Usage: nox -s bench -- SCRIPT [ARGS]; SCRIPT is one of {', '.join(scripts)}")
    install_locked(session, "test")
    session.run("python", "-m", f"bench.{session.posargs[0]}", *session.posargs[1:])


@nox.session(default=False, tags=["validate"])
def smoke(session):
    """Boot the image as production does and render a workflow on its GPU, with and without
    --use-sage-attention; the outputs must agree and sageattn must have run.

    nox -s smoke -- --image IMAGE [--gpus auto|all|cdi|none] [--timeout S] [--steps N]
    """
    if session.venv_backend != "none":
        install_locked(session)
    session.run("python", "-m", "comfyimg", "smoke", *session.posargs)
