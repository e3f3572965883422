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
from typing import TYPE_CHECKING

from comfyimg import render
from comfyimg.fsutil import exclusive
from comfyimg.audit import coverage
from comfyimg.audit.record import record_fields
from comfyimg.output import Say, progress_factory
from comfyimg.pins import model as pins_mod
from comfyimg.pins.edit import save_changes

if TYPE_CHECKING:
    from comfyimg.sources.github import GitHub


def missing(pins: pins_mod.Pins, candidates: Iterable[pins_mod.Pin]) -> list[pins_mod.Pin]:
    """The pins among ``candidates`` this module records: hashed, serving a GPU, no coverage of that hash."""
    found: list[pins_mod.Pin] = []
    for pin in candidates:
        if pin in found or pin.sha256 is None or not coverage.serves(pins, pin):
            continue
        if pin.coverage is None or pin.coverage.sha256 != pin.sha256:
            found.append(pin)
    return found


def record(root: Path, pins: pins_mod.Pins, chosen: list[pins_mod.Pin], *,
           say: Say, bake_targets: set[str] | None = None, client: GitHub | None = None) -> pins_mod.Pins:
    """Record the coverage of ``chosen`` (see :func:`missing`) and return the reloaded pins;
    ``say`` gets a line for each pin recorded."""
    if not chosen:
        return pins
    # Only a bake that records coverage downloads: the HTTP client (httpx) is not imported
    # by one that has nothing to record, nor by `bake --print` (docs/dev/startup.md).
    from comfyimg.bump.plan import read_kernels  # optional: start-up, as above
    from comfyimg.sources.digests import Digests  # optional: start-up, as above
    from comfyimg.sources.github import Asset, Release, borrowed  # optional: start-up, as above

    path = pins.path
    edits: dict[int, dict[str, object]] = {}
    with (borrowed(client) as github, exclusive(path, "invoke bake"),
          tempfile.TemporaryDirectory(prefix="comfyimg-cover-") as tmp):
        for pin in chosen:
            assert pin.sha256 is not None
            asset = Asset(id=pin.index + 1, name=pin.filename, size=0, digest=pin.sha256, url=pin.url,
                          browser_download_url=pin.url, content_type="", state="uploaded",
                          digest_from="wheels.toml")
            rel = Release(id=0, tag=f"URL {pin.url}", name=pin.key, draft=False, prerelease=False,
                          published_at=None, assets=(asset,))
            digests = Digests(github, rel, Path(tmp), True, progress_factory())
            _, _, found = digests.find(asset, lambda _sha: True, partial(read_kernels, pin.filename, f"({pin.url})"))
            assert found is not None
            edits[pin.index] = record_fields(found)
            say(f"recorded the kernel coverage of {pin.key} (read from {pin.filename}, "
                f"sha256 {pin.sha256[:12]}… verified)")
        new_pins = save_changes(pins, edits, bake_targets=bake_targets,
                                failed=f"recording coverage would leave {path.name} invalid")
        render.write(new_pins, root)
        return new_pins


__all__ = ["missing", "record"]
