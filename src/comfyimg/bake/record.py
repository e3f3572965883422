"""Where the build record is written and read: ``build/bake-record.json``.

``invoke bake`` writes it (target → image id, digest, tags, the pins inside); validation reads it
to find the image to probe and the version to expect. Beside it, ``build/image-digests.txt``
lists ``DIGEST  TAG`` for every image with a digest (the pushed ones), like ``sha256sum``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyimg.errors import BadInput
from comfyimg.fsutil import atomic_write, read_bytes
from comfyimg.pins.model import Pin
from comfyimg.untrusted import loads_json

RECORD = Path("build/bake-record.json")
DIGESTS = Path("build/image-digests.txt")  # beside the record: "DIGEST  TAG" per pushed tag


@dataclass
class Built:
    target: str
    tags: list[str]
    image_id: str | None
    digest: str | None
    seconds: float
    pins: list[Pin]
    labels: dict[str, str] = field(default_factory=dict)


def write(root: Path, built: list[Built], *, attested: list[str] | None = None) -> Path:
    """Record what was built, atomically. ``attested``: the attestations attached to the pushed
    images (``sbom``, ``provenance:max``; empty: pushed without), None when nothing was pushed."""
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "attestations": attested,
        "targets": {
            b.target: {
                "image_id": b.image_id,
                "digest": b.digest,
                "tags": b.tags,
                "seconds": round(b.seconds, 2),
                "labels": b.labels,
                "pins": [
                    {"name": p.name, "version": p.version, "url": p.url, "sha256": p.sha256,
                     "provides": list(p.provides), "arch": p.arch}
                    for p in b.pins
                ],
            }
            for b in built
        },
    }
    path = root / RECORD
    atomic_write(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    lines = [f"{b.digest}  {tag}" for b in sorted(built, key=lambda b: b.target) if b.digest for tag in b.tags]
    atomic_write(root / DIGESTS, "".join(line + "\n" for line in lines))
    return path


def _record_error(message: str) -> BadInput:
    return BadInput(f"{RECORD}: {message}; rebuild with `invoke bake` or pass --image IMAGE")


def read(root: Path) -> dict[str, Any]:
    """The build record, its shape checked: a malformed record is bad input naming the field."""
    try:
        if not (root / RECORD).exists():
            raise FileNotFoundError
        record = loads_json(read_bytes(root / RECORD))
    except FileNotFoundError:
        raise BadInput(f"no build record at {RECORD}: run `invoke bake` first, or pass --image IMAGE") from None
    except (OSError, ValueError) as exc:
        raise _record_error(f"unreadable build record ({exc})") from None
    if not isinstance(record, dict):
        raise _record_error(f"the build record is a JSON {type(record).__name__}, not an object")
    targets = record.get("targets", {})
    if not isinstance(targets, dict):
        raise _record_error(f"'targets' is a JSON {type(targets).__name__}, not an object of target → build")
    for name, built in targets.items():
        if not isinstance(built, dict):
            raise _record_error(f"targets.{name} is a JSON {type(built).__name__}, not an object")
        pins = built.get("pins", [])
        if not isinstance(pins, list):
            raise _record_error(f"targets.{name}.pins is not a list")
        for i, pin in enumerate(pins):
            if not isinstance(pin, dict) or not isinstance(pin.get("name"), str):
                raise _record_error(f"targets.{name}.pins[{i}] has no 'name'")
    return record


def image_for(root: Path, distribution: str, target: str | None) -> tuple[str, str | None, str]:
    """(image, expected version of ``distribution``, target) from the latest build record."""
    targets = read(root).get("targets", {})
    candidates = [target] if target else sorted(
        t for t, v in targets.items() if any(p["name"] == distribution for p in v.get("pins", []))
    )
    if not candidates or candidates[0] not in targets:
        raise BadInput(f"{RECORD}: no built target {'named ' + target if target else 'holds ' + distribution}; "
                       f"built: {', '.join(sorted(targets)) or 'none'}")
    chosen = targets[candidates[0]]
    tags = chosen.get("tags") if isinstance(chosen.get("tags"), list) else []
    image = chosen.get("image_id") or (tags or [None])[0]
    if not image or not isinstance(image, str):
        raise _record_error(f"target {candidates[0]} has no image id or tag")
    expected = next((p.get("version") for p in chosen.get("pins", []) if p["name"] == distribution), None)
    return image, expected if isinstance(expected, str) else None, candidates[0]
