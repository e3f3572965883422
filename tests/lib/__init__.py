"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "vendor"


def vendored_sage_files(source: str) -> dict[str, bytes]:
    """The upstream Python of one vendored source (``v2.2.0``, ``d1a57a5``, ``pixeloven-7bd3a0e``;
    see tests/vendor/vendor.txt): wheel path (``sageattention/core.py``) → bytes."""
    root = VENDOR / f"sageattention-{source}"
    if not root.is_dir():
        root = VENDOR / source
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.py"))}
    if not files:
        raise FileNotFoundError(f"no vendored Python under {root}")
    return files
