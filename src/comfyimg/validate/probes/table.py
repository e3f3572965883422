"""What the host expects (which GPUs the image serves, which compiled modules the GPU at hand
needs: ``--serves``, ``--needs``, ``--kernel``, from the wheel's own dispatch as the host read it),
and the FALLBACK when the host passed nothing for the GPU at hand: the package table
(kernels.json: the kernels stage's table, which the host reads too and mounts beside the probes,
see :data:`TABLES`). The host's
``comfyimg.kernels.rules`` is the one implementation of the rules; what follows only looks up
the table, in the stdlib (a probe runs in the image, without ``packaging``), and every check it
decides says so ("by kernels.json")."""
from __future__ import annotations

import json
import os
import re

from .report import Report


_HERE = os.path.dirname(os.path.abspath(__file__))
# Where the table is: in the image, beside the probes folder (the host mounts
# src/comfyimg/kernels/kernels.json at /opt/comfyimg/kernels.json); in a checkout, the kernels
# stage's own file.
TABLES = (os.path.join(_HERE, "..", "kernels.json"), os.path.join(_HERE, "..", "..", "kernels", "kernels.json"))


def _table() -> str:
    return os.path.normpath(next((t for t in TABLES if os.path.isfile(t)), TABLES[0]))


def _release(version: str) -> tuple[int, ...]:
    m = re.match(r"^\s*v?(?:\d+!)?(\d+(?:\.\d+)*)", version or "", re.ASCII)
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def package_rules(dist: str, version: str | None) -> dict | None:
    """The kernels.json entry for ``dist`` at ``version`` (dispatch per GPU arch, modules that
    must load everywhere), or None when the table does not know that version."""
    with open(_table(), encoding="utf-8") as fh:
        entries = json.load(fh)["packages"].get(dist, [])
    release = _release(version) if version else ()
    for entry in entries:
        lo, hi = entry["versions"].get("min"), entry["versions"].get("below")
        if not release or (lo and release < _release(lo)) or (hi and release >= _release(hi)):
            continue
        return entry
    return None


def newest_rules(dist: str) -> dict | None:
    """The table's newest entry for ``dist`` (entries are listed newest first)."""
    with open(_table(), encoding="utf-8") as fh:
        entries = json.load(fh)["packages"].get(dist, [])
    return entries[0] if entries else None


def table_modules(rules: dict | None) -> list[str]:
    """Every compiled module the table names for the package, imports first."""
    if not rules:
        return []
    names = list(rules.get("import", []))
    for path in rules["dispatch"].values():
        names += [m for m in path["modules"] if m not in names]
    return names



def required_modules(rules: dict | None, args, device: dict | None) -> list[str]:
    """The modules that must load: the table's imports, plus what the GPU at hand needs (from
    --needs, else the table); without a GPU, what every served arch needs."""
    needs = dict(args.needs)
    required = list(rules.get("import", [])) if rules else []
    if device is not None:
        sm = device["sm"]
        archs = [sm]
    else:
        archs = list(args.serves or needs)
    for arch in archs:
        if arch in needs:
            mods = needs[arch]
        elif rules and arch in rules["dispatch"]:
            mods = rules["dispatch"][arch]["modules"]
        else:
            mods = []
        required += [m for m in mods if m not in required]
    return required


def serves_check(report: Report, device: dict, serves: list[str] | None) -> bool:
    """False (a failed check) when the image does not serve the GPU at hand."""
    if serves is None:
        return True
    sm = device["sm"]
    if sm in serves:
        report.add("serves", "pass", f"this image serves {', '.join(serves)}, including {sm}", kind="gpu", sm=sm)
        return True
    report.add("serves", "fail", f"this image serves {', '.join(serves) or 'no GPU'}; this GPU is {sm} "
               f"({device['name']})", kind="gpu", sm=sm, serves=serves)
    return False
