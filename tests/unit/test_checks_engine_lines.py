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
