"""The commands behind ``tasks.py`` and ``noxfile.py``: each returns an exit code or raises
:class:`~comfyimg.errors.UserError`; :func:`run` turns that into invoke's ``Exit``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING
from pathlib import Path

from . import pins as pins_mod
from . import console, render
from .console import err, out, plain
from .errors import UserError

if TYPE_CHECKING:
    from .bake import BakeRequest


def run(fn: Callable[..., int | None], *args: object, **kwargs: object) -> None:
    """Run a command; a :class:`UserError` becomes invoke's ``Exit`` (no traceback)."""
    from invoke.exceptions import Exit

    try:
        code = fn(*args, **kwargs) or 0
    except UserError as exc:
        raise Exit(str(exc), exc.exit_code) from None
    except OSError as exc:  # disk full, permission denied: the work failed; writes are atomic
        raise Exit(f"error: {exc}", 1) from None
    if code:
        raise Exit(code=code)


def load_pins(root: Path) -> pins_mod.Pins:
    return pins_mod.load(root / "wheels.toml")


def warn_unhashed(pins: pins_mod.Pins) -> None:
    for pin in pins.unhashed():
        err().print(f"warning: {pins.path.name}:{pin.line}: sha256: {pin.key} has no hash yet; "
                    f"builds of {', '.join(pin.targets)} refuse it. Record it with: "
                    f"{pins_mod.record_hash_command(pin)}")


def check_coverage(pins: pins_mod.Pins) -> None:
    """Recorded kernel coverage that misses an arch a pin serves: bad input (exit 2);
    no coverage recorded: a warning with the command that records it."""
    from . import coverage
    from .errors import BadInput

    errors, unrecorded = coverage.problems(pins)
    for pin in unrecorded:
        err().print(f"warning: {coverage.unrecorded_message(pins, pin)}")
    if errors:
        raise BadInput("\n".join(errors))


def check(root: Path, json_out: bool = False) -> int:
    """Validate wheels.toml and verify the generated files are current: 0 ok, 1 drift, 2 bad input."""
    pins = load_pins(root)
    check_coverage(pins)
    drifts = render.check(pins, root)
    warn_unhashed(pins)
    if json_out:  # bad input never gets here: it is a one-line error on stderr, exit 2
        from . import coverage

        print(json.dumps({
            "file": pins.path.name, "wheels": len(pins.wheels), "current": not drifts,
            "drift": [str(d.path) for d in drifts],
            "unhashed": [{"pin": p.key, "line": p.line, "targets": list(p.targets)} for p in pins.unhashed()],
            "coverage_unrecorded": [p.key for p in coverage.problems(pins)[1]],
        }, indent=2))
        return 1 if drifts else 0
    if drifts:
        for drift in drifts:
            out().print(drift.diff, end="", soft_wrap=True)
        err().print(f"error: {len(drifts)} generated file(s) out of date with {pins.path.name}: "
                    f"{', '.join(str(d.path) for d in drifts)}. Run: invoke render")
        return 1
    out().print(f"{pins.path.name}: {len(pins.wheels)} wheel(s) valid; generated files are current")
    return 0


def audit(root: Path, wheel: str | None, archs: list[str], as_json: bool) -> int:
    """``invoke audit``: a wheel on disk (exit 0 runnable on every arch, 1 not, 2 bad input),
    or every pin from its recorded coverage."""
    from . import coverage

    if wheel:
        return coverage.audit_wheel(root, Path(wheel), archs, as_json=as_json)
    return coverage.audit_pins(load_pins(root), archs, as_json=as_json)


def render_files(root: Path) -> int:
    pins = load_pins(root)
    changed = render.write(pins, root)
    for path in changed:
        out().print(f"wrote {path}")
    if not changed:
        out().print("generated files already current")
    warn_unhashed(pins)
    return 0


def bake(root: Path, request: BakeRequest, json_out: bool = False) -> int:
    """Preflight, build through buildx bake, print a summary and write the build record."""
    from . import bake as bake_mod

    pins = load_pins(root)
    if request.mode == "print":
        resolved, _ = bake_mod.preflight(root, pins, request)
        out().print_json(data=resolved) if not (plain() or json_out) else print(json.dumps(resolved, indent=2))
        return 0
    built = bake_mod.build(root, pins, request)
    if json_out:  # the build record itself; the build log went to stderr
        print((root / bake_mod.RECORD).read_text(), end="")
        return 0
    table = console.table("target", "tags", "image id", "duration", "pins", title="bake")
    for b in built:
        table.add_row(b.target, "\n".join(b.tags), (b.image_id or "-")[:19], f"{b.seconds:.1f}s",
                      ", ".join(f"{p.name} {p.version}" for p in b.pins) or "-")
    out().print(table)
    out().print(f"build record: {bake_mod.RECORD}")
    return 0
