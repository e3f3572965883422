"""How a wheel's kernels are recorded in ``wheels.toml`` (``coverage``, ``coverage_from``,
``dispatch_from``, ``dispatch``), as tomlkit items: what ``invoke bump`` and bake's preflight
(``build.autocover``) write. Apart from the audits, so that reading a wheel never imports tomlkit."""

from __future__ import annotations

from typing import Any

import tomlkit

from comfyimg.kernels import dispatch
from comfyimg.kernels.read import WheelKernels
from comfyimg.kernels.rules import CodeRead


def dispatch_records(d: dispatch.WheelDispatch) -> list[dict[str, Any]]:
    """The arms of a dispatch as wheels.toml (and kernels.json) record them."""
    out = []
    for b in (*d.branches, *([d.otherwise] if d.otherwise else [])):
        arm: dict[str, Any] = {"archs": list(b.archs)}
        if b.kernel:
            arm.update({"kernel": b.kernel, "modules": list(b.modules), "line": b.line, "triton": b.triton})
            if b.fakes:
                arm["fakes"] = list(b.fakes)
        else:
            arm.update({"raise": b.text, "line": b.line})
        out.append(arm)
    return out


def code_record(c: CodeRead) -> Any:
    """One disassembled target as wheels.toml records it (an inline table)."""
    t = tomlkit.inline_table()
    t.update({"target": c.target, "kernels": c.kernels, "named": c.named, "trapped": list(c.trapped),
              "kernel": c.kernel, "instruction": c.instruction})
    return t


def record_fields(found: WheelKernels, package: str | None = None) -> dict[str, Any]:
    """The wheels.toml keys that record ``found`` (tomlkit items: one module per line): the
    coverage, and where the dispatch of ``package`` (default: the one package found) came from."""
    array = tomlkit.array()
    for m in found.modules:
        entry = tomlkit.inline_table()
        entry.update({"module": m.name, "sass": list(m.sass), "ptx": list(m.ptx)})
        if m.code:  # what the disassembly found in the code the dispatch reaches (kernels.sass)
            entry["code"] = [code_record(c) for c in m.code]
        array.append(entry)
    array.multiline(bool(found.modules))
    fields: dict[str, Any] = {"coverage_from": {"tool": found.tool, "sha256": found.sha256}, "coverage": array}
    key = package.lower().replace("-", "_") if package else None
    how = found.dispatch.get(key) if key else (next(iter(found.dispatch.values())) if len(found.dispatch) == 1 else None)
    if isinstance(how, dispatch.WheelDispatch):
        fields["dispatch_from"] = {"source": "wheel", "file": how.file, "sha256": how.sha256,
                                   "entry": how.entry, "imports": list(how.imports)}
        arms = tomlkit.array()
        for arm in dispatch_records(how):
            t = tomlkit.inline_table()
            t.update(arm)
            arms.append(t)
        arms.multiline(True)
        fields["dispatch"] = arms
    elif isinstance(how, dispatch.FromTable):
        fields["dispatch_from"] = {"source": "table", "why": how.why}
    return fields
