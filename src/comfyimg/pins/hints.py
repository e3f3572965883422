"""The commands that messages print to fix a problem."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfyimg.pins.load import Pin


def record_hash_command(pin: Pin) -> str:
    """The one command that records a missing sha256 (run where GitHub is reachable)."""
    name = f"'{pin.key}'" if pin.arch else pin.key  # [smXX] is a shell glob
    release = getattr(pin.source, "release", None)  # a GitHub source; an index or a URL has none
    return f"invoke bump{f' --release {release}' if release else ''} --verify --name {name}"
