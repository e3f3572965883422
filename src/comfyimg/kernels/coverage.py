"""Kernel coverage per pin: which GPU archs a pin must serve, whether its recorded coverage
covers them, how bump records it, and the reports (``invoke audit``, the generated docs table).

The rules live in :mod:`comfyimg.kernels`; the package knowledge in ``probes/kernels.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import tomlkit
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from comfyimg.errors import BadInput
from comfyimg.kernels import dispatch
from comfyimg.kernels import rules as kernels
from comfyimg.kernels.elf import BadKernels
from comfyimg.kernels.read import WheelKernels, read_wheel
from comfyimg.kernels.rules import Module, Verdict
from comfyimg.output import SafeTable as Table
from comfyimg.output import err, out
from comfyimg.pins import load as pins_mod
from comfyimg.pins.hints import record_hash_command
from comfyimg.pins.load import Pin, Pins

DOC = Path("docs/reference/gpu-coverage.md")
# The GPUs the coverage docs always show, by arch (labels only: any arch NVIDIA's rules know is judged).
GPUS = {"sm75": "T4", "sm80": "A100", "sm86": "A10 / RTX 30xx", "sm89": "L4 / RTX 40xx",
        "sm90": "H100 / H200", "sm100": "B200", "sm120": "RTX 50xx", "sm121": "DGX Spark"}


def serves(pins: Pins, pin: Pin) -> tuple[str, ...]:
    """The GPU archs ``pin`` must run on: its ``serves``; else its ``arch``; else its profiles'
    ``archs``, narrowed to the archs the package table says the package serves at all."""
    if pin.serves is not None:
        return tuple(kernels.sort_archs(pin.serves))
    if pin.arch:
        return (pin.arch,)
    archs: set[str] = set()
    for target in pin.targets:
        archs.update(pins.profile_for(target).abi.archs)
    rules = kernels.rules_for(pin.name, pin.version)
    if rules and rules.serves is not None:
        archs &= set(rules.serves)
    return tuple(kernels.sort_archs(archs))


def dispatch_of(pin: Pin) -> dispatch.Found | None:
    """Where ``pin``'s dispatch comes from: recorded with its coverage; else, for a wheel known
    by its recipe, the recipe's source; else None (unknown: the table)."""
    if pin.coverage is not None:
        return pin.coverage.dispatch
    entry = kernels.table().get("recipes", {}).get(pin.filename, {})
    return recipe_dispatch(entry)


def recipe_dispatch(entry: dict[str, Any]) -> dispatch.Found | None:
    """The dispatch a recipe entry of kernels.json names (read from the source it was built from)."""
    src, arms = entry.get("dispatch_from"), entry.get("dispatch")
    if src and src.get("source") == "table":
        return dispatch.FromTable("", src["why"])
    if not src or not arms:
        return None
    branches = [dispatch.Branch(tuple(a["archs"]), a.get("kernel"), a["line"], tuple(a.get("modules", ())),
                                a.get("triton", False), a.get("raise", ""), tuple(a.get("fakes", ())))
                for a in arms]
    return dispatch.WheelDispatch("", src["file"], src["sha256"], src["entry"], tuple(src["imports"]),
                                  tuple(b for b in branches if b.archs),
                                  next((b for b in branches if not b.archs), None), f"{src['origin']}'s")


def rules_of(pin: Pin) -> kernels.Rules | None:
    return dispatch.rules(pin.name, pin.version, dispatch_of(pin))


def verdicts(pin: Pin, archs: Iterable[str], modules: Sequence[Module] | None = None) -> dict[str, Verdict]:
    mods = modules if modules is not None else (pin.coverage.modules if pin.coverage else ())
    return kernels.judge_all(mods, archs, rules_of(pin))


def record_command(pin: Pin) -> str:
    """A plain URL pin too: ``invoke bump --verify --name`` downloads it and records its coverage."""
    return record_hash_command(pin)


def problems(pins: Pins, chosen: Iterable[Pin] | None = None) -> tuple[list[str], list[Pin]]:
    """(errors, pins with no coverage recorded). An error names the pin, the arch and the missing code."""
    errors: list[str] = []
    unrecorded: list[Pin] = []
    name = pins.path.name
    for pin in chosen if chosen is not None else pins.wheels:
        archs = serves(pins, pin)
        if not archs:
            continue
        cov = pin.coverage
        if cov is None:
            unrecorded.append(pin)
            continue
        if pin.sha256 and cov.sha256 != pin.sha256:
            errors.append(f"{name}:{cov.line}: coverage_from.sha256: {pin.key}'s coverage was read from "
                          f"another wheel ({cov.sha256[:12]}…, the pin is {pin.sha256[:12]}…); "
                          f"record it again with: {record_command(pin)}")
            continue
        for arch, v in verdicts(pin, archs).items():
            if not v.runnable:
                errors.append(f"{name}:{cov.line}: coverage: {pin.key} cannot run on {arch}, which it "
                              f"serves: {v.why}")
    return errors, unrecorded


def unrecorded_message(pins: Pins, pin: Pin) -> str:
    return (f"{pins.path.name}:{pin.line}: coverage: {pin.key} has no recorded kernel coverage for "
            f"{', '.join(serves(pins, pin))}; builds of {', '.join(pin.targets)} refuse it. "
            f"Record it with: {record_command(pin)}")


# --------------------------------------------------------------------------- recording


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


def record_fields(found: WheelKernels, package: str | None = None) -> dict[str, Any]:
    """The wheels.toml keys that record ``found`` (tomlkit items: one module per line): the
    coverage, and where the dispatch of ``package`` (default: the one package found) came from."""
    array = tomlkit.array()
    for m in found.modules:
        entry = tomlkit.inline_table()
        entry.update({"module": m.name, "sass": list(m.sass), "ptx": list(m.ptx)})
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


# --------------------------------------------------------------------------- reports


def cell(module: Module, arch: str) -> str:
    """What ``module`` offers ``arch``: the SASS that runs, ``JIT compute_XY``, or ``-``."""
    sass = [t for t in module.targets if not t.ptx and kernels.runs_on(t, arch)]
    if sass:
        return str(max(sass))
    ptx = [t for t in module.targets if t.ptx and kernels.runs_on(t, arch)]
    if ptx:
        return f"JIT {max(ptx)}"
    return "(host)" if not module.targets else "-"


def verdict_cell(v: Verdict) -> str:
    return {"sass": "yes", "ptx-jit": "yes (PTX JIT)", "triton": "yes (Triton)"}.get(v.by or "", "NO")


def grid(pin: Pin, modules: Sequence[Module], archs: Sequence[str]) -> list[list[str]]:
    """Rows of module × arch, then the verdict row."""
    vs = verdicts(pin, archs, modules)
    rows = [[m.name, *(cell(m, a) for a in archs)] for m in modules]
    rows.append([f"{pin.name} {pin.version} runs", *(verdict_cell(vs[a]) for a in archs)])
    return rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]


def doc_archs(pins: Pins) -> list[str]:
    archs: set[str] = set(GPUS)
    for profile in pins.profiles.values():
        archs.update(profile.abi.archs)
    for pin in pins.wheels:
        archs.update(serves(pins, pin))
    return kernels.sort_archs(archs)


def coverage_of(pin: Pin) -> tuple[Sequence[Module] | None, str]:
    """(modules, how they are known): recorded, else by recipe, else (None, "not recorded")."""
    if pin.coverage:
        return pin.coverage.modules, (f"recorded: read with {pin.coverage.tool} from the wheel with "
                                      f"sha256 `{pin.coverage.sha256}`")
    if (found := kernels.recipe(pin.filename)) is not None:
        return found[1], f"by recipe: not read from the wheel yet; from {found[0]}"
    return None, "not recorded"


def _label(arch: str) -> str:
    return f"{arch} ({GPUS[arch]})" if arch in GPUS else arch


def dispatch_words(pin: Pin) -> str:
    how = dispatch_of(pin)
    if isinstance(how, dispatch.WheelDispatch):
        who = "this wheel's" if how.origin == "this wheel's" else f"{how.origin.removesuffix(chr(39) + 's')}'s (by recipe)"
        return f"which kernel runs on which GPU: read from {who} `{how.file}` (sha256 `{how.sha256[:12]}…`)"
    rules = kernels.rules_for(pin.name, pin.version)
    label = rules.source if rules else pin.name
    if isinstance(how, dispatch.FromTable):
        return f"which kernel runs on which GPU: by the table for {label}, not read from the wheel: {how.why}"
    return f"which kernel runs on which GPU: by the table for {label} (where the dispatch comes from is not recorded)"


def markdown(pins: Pins) -> str:
    """``docs/reference/gpu-coverage.md``: which image runs its attention kernels on which GPU."""
    archs = doc_archs(pins)
    out = ["<!-- GENERATED by `invoke render` from wheels.toml and src/comfyimg/validate/probes/kernels.json; "
           "checked by `invoke check`. Do not edit. -->", "", "# Which image for which GPU", "",
           "Read from each pinned wheel's compiled modules (SASS and PTX, listed by NVIDIA's cuobjdump) "
           "with NVIDIA's compatibility rules, and from the wheel's own Python: which kernel its "
           "`sageattention/core.py` sends each GPU to and which compiled modules that kernel needs (read "
           "with `ast`, never imported). The package table (`src/comfyimg/validate/probes/kernels.json`) is the "
           "fallback, and each section says which was used. "
           "`yes (PTX JIT)`: the driver compiles the kernel at the first call. `-`: no kernel for that GPU. "
           "`invoke audit` prints the same from wheels.toml.", ""]
    summary: list[list[str]] = []
    shown: list[tuple[Pin, Sequence[Module], str]] = []
    for pin in pins.wheels:
        served = serves(pins, pin)
        if not served:
            continue
        modules, how = coverage_of(pin)
        if modules is None:
            cells = ["?" for _ in archs]
        else:
            vs = verdicts(pin, archs, modules)
            cells = [verdict_cell(vs[a]) for a in archs]
            shown.append((pin, modules, how))
        images = ", ".join(f"{t}-{pin.arch}" if pin.arch else t for t in pin.targets)
        summary.append([images, pin.key, ", ".join(served), how.split(":")[0], *cells])
    out += _md_table(["image", "pin", "serves", "coverage", *map(_label, archs)], summary)
    out += ["", "An image serves the GPUs its profile lists (`archs` in wheels.toml); a pin serves "
            "its `serves` (default: the profile's archs, or its `arch`). `NO` on a GPU the pin serves "
            "fails `invoke check` once the coverage is recorded; `?`: nothing known yet.", ""]
    for pin, modules, how in shown:
        served = serves(pins, pin)
        out += [f"## {pin.key} {pin.version}", "", f"`{pin.filename}` serves {', '.join(served)}; "
                f"coverage {how}; {dispatch_words(pin)}.", ""]
        out += _md_table(["module", *map(_label, archs)], grid(pin, modules, archs))
        vs = verdicts(pin, archs, modules)
        out += [""] + [f"- {_label(a)}: {verdict_cell(vs[a])}: {vs[a].why}" for a in archs] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- invoke audit


def _check_archs(archs: Sequence[str]) -> list[str]:

    for arch in archs:
        try:
            kernels.parse_arch(arch)
        except ValueError as exc:
            raise BadInput(f"--arch: {exc}") from None
    return kernels.sort_archs(archs)


def audit_wheel(root: Path, path: Path, archs: Sequence[str], *, as_json: bool) -> int:
    """Audit one wheel on disk; default archs: those the matching pins of wheels.toml serve."""



    archs = _check_archs(archs)
    try:
        dist, version, _, _ = parse_wheel_filename(path.name)
    except InvalidWheelFilename as exc:
        raise BadInput(f"{path.name}: {exc}") from None
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    if not archs:
        known = pins_mod.load(root / "wheels.toml") if (root / "wheels.toml").exists() else None
        matching = [p for p in (known.wheels if known else ()) if canonicalize_name(p.name) == dist]
        archs = kernels.sort_archs(a for p in matching for a in serves(known, p)) if known else []
        if not archs:
            raise BadInput(f"{path.name}: no pin of {dist} in wheels.toml serves a GPU arch; "
                           "name the archs with --arch smXY")
    try:
        found = read_wheel(path)
    except BadKernels as exc:
        raise BadInput(str(exc)) from None
    package = dist.replace("-", "_")
    how = found.dispatch.get(package)
    rules = dispatch.rules(dist, str(version), how)
    vs = kernels.judge_all(found.modules, archs, rules)
    ok = all(v.runnable for v in vs.values())
    if as_json:
        print(json.dumps({"wheel": found.filename, "sha256": found.sha256, "tool": found.tool,
                          "package": dist, "version": str(version),
                          "rules": rules.versions if rules else None,
                          "dispatch_from": how.as_json() if how else None,
                          "modules": kernels.modules_json(found.modules),
                          "archs": {a: _arch_json(v, rules, how) for a, v in vs.items()},
                          "runnable": ok}, indent=2))
        return 0 if ok else 1

    pseudo = Pin(0, dist, str(version), path.name, found.sha256, None, (), (), None, 0)
    table = Table("module", *archs, title=f"{found.filename} ({found.tool})")
    for row in grid(pseudo, found.modules, archs):
        table.add_row(*row)
    out().print(table)
    for a, v in vs.items():
        out().print(f"{a}: {'runnable' if v.runnable else 'NOT runnable'}: {v.why}")
    return 0 if ok else 1


def _arch_json(v: Verdict, rules: kernels.Rules | None, how: dispatch.Found | None) -> dict[str, Any]:
    """A verdict with the branch it came from: file and line when read from the wheel."""
    out = v.as_json()
    path = rules.path(v.arch) if rules else None
    out["modules"] = list(path.modules) if path else []
    out["file"] = how.file if isinstance(how, dispatch.WheelDispatch) else None
    out["line"] = path.line if path else (
        how.otherwise.line if isinstance(how, dispatch.WheelDispatch) and how.otherwise else None)
    return out


def audit_pins(pins: Pins, archs: Sequence[str], *, as_json: bool) -> int:
    """Every pin from its recorded coverage: module × arch. Exit 1 when a pin misses an arch it serves."""



    archs = _check_archs(archs) or doc_archs(pins)
    report: dict[str, Any] = {}
    failed = False
    for pin in pins.wheels:
        served = serves(pins, pin)
        if not served and not pin.coverage:
            continue
        modules, how = coverage_of(pin)
        entry: dict[str, Any] = {"serves": list(served), "coverage": how.split(":")[0], "archs": {}}
        found = dispatch_of(pin)
        entry["dispatch_from"] = found.as_json() if found else None
        if modules is not None:
            vs = verdicts(pin, archs, modules)
            entry["modules"] = kernels.modules_json(modules)
            entry["archs"] = {a: _arch_json(v, rules_of(pin), found) for a, v in vs.items()}
            failed |= pin.coverage is not None and any(not vs[a].runnable for a in served if a in vs)
        report[pin.key] = entry
        if as_json:
            continue
        if modules is None:
            err().print(f"{pin.key} {pin.version}: {unrecorded_message(pins, pin)}")
            continue
        table = Table("module", *archs, title=f"{pin.key} {pin.version}: {how}")
        for row in grid(pin, modules, archs):
            table.add_row(*row)
        out().print(table)
    if as_json:
        print(json.dumps({"pins": report}, indent=2))
    return 1 if failed else 0


# --------------------------------------------------------------------------- the probe's expectations


def probe_args(pins: Pins, distribution: str, target_pins: Sequence[Pin]) -> list[str]:
    """``--serves`` (the archs the pin serves), ``--needs ARCH=MODULES`` (the modules whose
    kernels each of those archs launches, from the pin's recorded coverage) and, when the dispatch
    was read from the wheel, ``--kernel ARCH=FUNCTION`` (empty: refused) for a probe."""
    pin = next((p for p in target_pins if p.name == distribution), None)
    if pin is None or not (served := serves(pins, pin)):
        return []
    args = ["--serves", ",".join(served)]
    if pin.coverage is not None:
        for arch, v in verdicts(pin, served).items():
            if v.runnable:
                args += ["--needs", f"{arch}={','.join(v.needs)}"]
        rules = rules_of(pin)
        if rules is not None and rules.from_wheel:  # the wheel's own kernel on each GPU
            for arch in served:
                path = rules.path(arch)
                args += ["--kernel", f"{arch}={path.kernel if path else ''}"]
    return args
