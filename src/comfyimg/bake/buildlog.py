"""Parses of buildx and pip output in a build log."""

from __future__ import annotations

import re


def pip_hash_mismatch(lines: list[str]) -> str | None:
    """pip's "THESE PACKAGES DO NOT MATCH THE HASHES" in a build log, as one line naming the wheel."""
    start = next((i for i, ln in enumerate(lines) if "DO NOT MATCH THE HASHES" in ln), None)
    if start is None:
        return None
    for ln in lines[start:]:
        if m := re.search(r"(\S+\.whl)", ln):
            return (f"hash mismatch: the wheel {m[1].rsplit('/', 1)[-1]} served at {m[1]} "
                    "does not match its pinned sha256")
    return None
