"""Which engine answers mean "this BuildKit cannot run build checks" (bake/checks.py): the two
lines Docker 26.1's BuildKit printed here on 2026-12-04, with the registry host elided as it is
in every line of this repository, and lines that must not be read so."""

import pytest

from comfyimg.bake.checks import _CANNOT

HOST = "registry.invalid"  # any host: the pattern must not depend on it


@pytest.mark.parametrize("line", [
    "ERROR: target runtime-cpu: failed to solve: unsupported request frontend.lint",
    f"ERROR: failed to solve: resolve image config for docker-image://{HOST}/docker/dockerfile:1.8.1: "
    "failed to do request",
])
def test_an_engine_that_cannot_lint_is_recognised(line):
    assert _CANNOT.search(line)


@pytest.mark.parametrize("line", [
    "WARNING: FromAsCasing - 'as' and 'FROM' keywords' casing do not match (line 3)",
    f"ERROR: failed to solve: resolve image config for docker-image://{HOST}/library/ubuntu:24.04",
    "unsupported request frontendXlint",
])
def test_other_failures_are_not_read_as_an_engine_that_cannot_lint(line):
    assert not _CANNOT.search(line)


# bake --call check's report on two targets (Docker 28.5 here, 2026-12-07; the host elided): a
# target bake cannot resolve the base of, a target whose linked stage the check cannot follow,
# and one that passed.
REPORT = f"""core-cpu

error: unsupported context source target for runtime
services/comfy/core/dockerfile.comfy.core:12
--------------------
  12 | >>> FROM runtime
--------------------


runtime-cpu

error: ubuntu:24.04: failed to resolve source metadata for {HOST}/library/ubuntu:24.04: failed to do request
services/runtime/dockerfile.cpu.runtime:5


runtime-cuda

Check complete, no warnings found.
"""


def test_check_json_says_each_targets_own_status():
    from comfyimg.bake.checks import NO_DOCKERFILE, _per_target

    status = _per_target(REPORT, ["core-cpu", "runtime-cpu", "runtime-cuda"], ["complete-cuda"], ok=False)
    assert status == {
        "core-cpu": "failed: unsupported context source target for runtime",
        "runtime-cpu": f"not run: a base image cannot be resolved (ubuntu:24.04: failed to resolve source metadata "
                       f"for {HOST}/library/ubuntu:24.04: failed to do request)",
        "runtime-cuda": "passed",
        "complete-cuda": NO_DOCKERFILE,
    }
    warned = "core-cpu\n\nWARNING: FromAsCasing - 'as' and 'FROM' keywords' casing do not match (line 3)\n"
    assert _per_target(warned, ["core-cpu"], [], ok=False) == {"core-cpu": "failed: 1 warning(s)"}
    # One target: bake names none; the target takes the run's outcome.
    assert _per_target("Check complete, no warnings found.\n", ["core-cpu"], [], ok=True) == {"core-cpu": "passed"}
    assert _per_target("error: x\n", ["core-cpu"], [], ok=False)["core-cpu"].startswith("failed")
