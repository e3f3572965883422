"""The commands that messages print to fix a problem."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfyimg.pins.load import Pin


def record_hash_command(pin: Pin) -> str:
    """The one command that records a missing sha256 (run where GitHub is reachable)."""
    if pin.source:
        name = f"'{pin.key}'" if pin.arch else pin.key  # [smXX] is a shell glob
        return f"invoke bump --release {pin.source.release} --verify --name {name}"
    return f"sha256sum {pin.filename}  # then set sha256 of {pin.key} in wheels.toml"
