"""The target names declared in ``docker-bake.hcl`` (pins name them in ``targets``)."""

from __future__ import annotations

import re
from pathlib import Path

from comfyimg.fsutil import read_text

BAKE_FILE = "docker-bake.hcl"
_BAKE_TARGET = re.compile(r'^\s*target\s+"([^"]+)"', re.M)


def targets(bake_file: Path) -> set[str] | None:
    """Target names declared in ``docker-bake.hcl``, or None when there is no such file."""
    if not bake_file.exists() and not bake_file.is_symlink():
        return None
    return set(_BAKE_TARGET.findall(read_text(bake_file)))
