"""The targets of ``docker-bake.hcl`` and the labels they carry: the names it declares (pins
name them in ``targets``), the pins a resolved target installs, and its ``io.comfyimg.pins``
label.

Read with a real HCL parser (python-hcl2), not a pattern: a ``target "x" {`` line inside a
heredoc or a comment is text, not a target. ``invoke check`` needs no Docker engine for it;
``invoke bake`` checks the same names again against buildx's own evaluation (``--print``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from comfyimg.errors import BadInput
from comfyimg.fsutil import read_text
from comfyimg.kernels import coverage
from comfyimg.pins.model import Pin, Pins
from comfyimg.untrusted import one_line

BAKE_FILE = "docker-bake.hcl"
PINS_LABEL = "io.comfyimg.pins"
_PER_ARCH = re.compile(r"^(?P<base>.+)-(?P<arch>sm\d{2,3}[a-z]?)$", re.ASCII)


def _label(raw: str) -> str:
    """A block label as python-hcl2 gives it (``'"name"'``) → ``name``."""
    return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw


def parse_targets(text: str, name: str = BAKE_FILE) -> set[str]:
    """Target names declared in bake-file ``text``; malformed HCL is bad input with its line."""
    import hcl2  # optional: imported here, commands that never read the bake file do without the parser
    from lark.exceptions import LarkError, UnexpectedInput  # optional: python-hcl2's parser, as above

    try:
        tree = hcl2.loads(text)
    except UnexpectedInput as exc:
        raise BadInput(f"{one_line(name)}:{exc.line}: syntax: not valid HCL "
                       f"({one_line(str(exc).strip().splitlines()[0])})") from None
    except (LarkError, ValueError, RecursionError) as exc:
        raise BadInput(f"{one_line(name)}:1: syntax: not valid HCL ({type(exc).__name__})") from None
    found: set[str] = set()
    for block in tree.get("target", []) if isinstance(tree, dict) else []:
        if isinstance(block, dict):
            found.update(_label(str(key)) for key in block if not str(key).startswith("__"))
    return found


def targets(bake_file: Path) -> set[str] | None:
    """Target names declared in ``docker-bake.hcl``, or None when there is no such file."""
    if not bake_file.exists() and not bake_file.is_symlink():
        return None
    return parse_targets(read_text(bake_file), bake_file.name)


def pins_for(pins: Pins, target: str) -> list[Pin] | None:
    """The pins a resolved bake target installs; None when wheels.toml does not cover it."""
    if target in pins.targets():
        return pins.for_target(target)
    m = _PER_ARCH.match(target)
    if m and m["base"] in pins.targets():
        return pins.for_target(m["base"], m["arch"])
    return None


def pins_label(pins: Pins, target: str, installed: list[Pin]) -> str:
    """The ``io.comfyimg.pins`` label: what the image installs, as compact JSON."""
    return json.dumps([{"name": p.name, "version": p.version, "sha256": p.sha256,
                        "archs": list(coverage.serves(pins, p))} for p in installed],
                      separators=(",", ":"), sort_keys=True)
