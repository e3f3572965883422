"""Where the build record is written and read: ``build/bake-record.json``.

``invoke bake`` writes it (target → image id, tags, the pins inside); validation reads it
to find the image to probe and the version to expect.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput
from .fsutil import atomic_write

if TYPE_CHECKING:
    from .bake import Built

RECORD = Path("build/bake-record.json")


def write(root: Path, built: list[Built]) -> Path:
    """Record what was built, atomically."""
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": {
            b.target: {
                "image_id": b.image_id,
                "digest": b.digest,
                "tags": b.tags,
                "seconds": round(b.seconds, 2),
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
    return path


def read(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / RECORD).read_text())
    except FileNotFoundError:
        raise BadInput(f"no build record at {RECORD}: run `invoke bake` first, or pass --image IMAGE") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{RECORD}: unreadable build record ({exc}); rebuild or pass --image IMAGE") from None


def image_for(root: Path, distribution: str, target: str | None) -> tuple[str, str | None, str]:
    """(image, expected version of ``distribution``, target) from the latest build record."""
    record = read(root)
    targets = record.get("targets", {})
    candidates = [target] if target else sorted(
        t for t, v in targets.items() if any(p["name"] == distribution for p in v.get("pins", []))
    )
    if not candidates or candidates[0] not in targets:
        raise BadInput(f"{RECORD}: no built target {'named ' + target if target else 'holds ' + distribution}; "
                       f"built: {', '.join(sorted(targets)) or 'none'}")
    chosen = targets[candidates[0]]
    image = chosen.get("image_id") or (chosen.get("tags") or [None])[0]
    if not image:
        raise BadInput(f"{RECORD}: target {candidates[0]} has no image id or tag; rebuild with invoke bake")
    expected = next((p["version"] for p in chosen.get("pins", []) if p["name"] == distribution), None)
    return image, expected, candidates[0]
