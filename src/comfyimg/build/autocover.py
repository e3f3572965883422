"""``invoke bake`` records missing kernel coverage itself, for pins whose sha256 is known.

For every pin a build installs that serves a GPU, has a sha256 and has no coverage read from
that sha256: download its URL (streaming, through :mod:`comfyimg.transport`), check the bytes
against the pinned sha256 (other bytes fail: exit 1, nothing written), read its compiled
kernels and record ``coverage`` + ``coverage_from`` into ``wheels.toml`` (atomically, after
re-validating the whole file). Preflight then judges the recorded coverage as always.

A pin without a sha256 is never downloaded here: trusting bytes for the first time is the
user's explicit decision (``invoke bump --verify``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from comfyimg import render
from comfyimg.bump.digests import Digests
from comfyimg.bump.github import Asset, GitHub, Release
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.fsutil import atomic_write_many, exclusive, read_text
from comfyimg.kernels import coverage
from comfyimg.kernels.record import record_fields
from comfyimg.kernels.elf import BadKernels
from comfyimg.kernels.read import WheelKernels, read_wheel
from comfyimg.output import err, progress_factory
from comfyimg.pins import load as pins_mod
from comfyimg.pins.edit import dumps_with_changes


def missing(pins: pins_mod.Pins, candidates: Iterable[pins_mod.Pin]) -> list[pins_mod.Pin]:
    """The pins among ``candidates`` this module records: hashed, serving a GPU, no coverage of that hash."""
    found: list[pins_mod.Pin] = []
    for pin in candidates:
        if pin in found or pin.sha256 is None or not coverage.serves(pins, pin):
            continue
        if pin.coverage is None or pin.coverage.sha256 != pin.sha256:
            found.append(pin)
    return found


def _read(pin: pins_mod.Pin, part: Path) -> WheelKernels:
    try:
        return read_wheel(part, name=pin.filename)
    except BadKernels as exc:
        raise WorkFailed(f"cannot read the kernels of {pin.filename} ({pin.url}): {exc}") from None


def record(root: Path, pins: pins_mod.Pins, chosen: list[pins_mod.Pin], *,
           bake_targets: set[str] | None = None, client: GitHub | None = None) -> pins_mod.Pins:
    """Record the coverage of ``chosen`` (see :func:`missing`) and return the reloaded pins."""
    if not chosen:
        return pins
    path = pins.path
    edits: dict[int, dict[str, object]] = {}
    own = client is None
    client = client or GitHub.from_env()
    try:
        with exclusive(path, "invoke bake"), tempfile.TemporaryDirectory(prefix="comfyimg-cover-") as tmp:
            text = read_text(path)
            for pin in chosen:
                assert pin.sha256 is not None
                asset = Asset(id=pin.index + 1, name=pin.filename, size=0, digest=pin.sha256, url=pin.url,
                              browser_download_url=pin.url, content_type="", state="uploaded",
                              digest_from="wheels.toml")
                rel = Release(id=0, tag=f"URL {pin.url}", name=pin.key, draft=False, prerelease=False,
                              published_at=None, assets=(asset,))
                digests = Digests(client, rel, Path(tmp), True, progress_factory())
                _, _, found = digests.find(asset, lambda _sha: True, partial(_read, pin))
                assert found is not None
                edits[pin.index] = record_fields(found)
                err().print(f"recorded the kernel coverage of {pin.key} (read from {pin.filename}, "
                            f"sha256 {pin.sha256[:12]}… verified)")
            new_text = dumps_with_changes(text, edits)
            try:
                new_pins = pins_mod.loads(new_text, path, bake_targets=bake_targets)
            except BadInput as exc:
                raise WorkFailed(f"recording coverage would leave {path.name} invalid:\n{exc}") from None
            atomic_write_many({path: new_text})
            render.write(new_pins, root)
            return new_pins
    finally:
        if own:
            client.close()


__all__ = ["missing", "record"]
