"""The target names declared in ``docker-bake.hcl`` (pins name them in ``targets``)."""

from __future__ import annotations

import re
from pathlib import Path

BAKE_FILE = "docker-bake.hcl"
_BAKE_TARGET = re.compile(r'^\s*target\s+"([^"]+)"', re.M)


def targets(bake_file: Path) -> set[str] | None:
    """Target names declared in ``docker-bake.hcl``, or None when there is no such file."""
    try:
        return set(_BAKE_TARGET.findall(bake_file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
