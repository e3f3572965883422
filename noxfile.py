"""Sessions: ``nox --list``.  Thin: install, then call pytest or comfyimg."""

from pathlib import Path

import nox
import nox.virtualenv

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["check", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def check(session):
    """Validate wheels.toml and verify generated/ is current (same as `invoke check`)."""
    session.install("-e", ".")
    session.run("invoke", "check")


@nox.session
def tests(session):
    """The test suite: unit, loopback HTTP, real Docker engine (needs tools/bootstrap.sh --engine).

    Extra arguments go to pytest: nox -s tests -- -k pins -x
    """
    session.install("-e", ".[test]")
    session.install("torch==2.13.0")  # CPU torch for the probe tests (a local wheel on the build machines)
    session.run("pytest", *session.posargs)


def _validate(session, probe):
    # `nox --no-venv` (a GPU host without an index: the package and its deps on PYTHONPATH)
    # refuses session.install (nox issue 739), so install only into a real venv.
    if not isinstance(session.virtualenv, nox.virtualenv.PassthroughEnv):
        session.install("-e", ".")
    session.run("python", "-m", "comfyimg.validate", probe, *session.posargs)


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
    session.install("-e", ".[test]")
    session.run("python", "-m", f"bench.{session.posargs[0]}", *session.posargs[1:])
