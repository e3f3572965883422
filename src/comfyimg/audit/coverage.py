"""Kernel coverage per pin: which GPU archs a pin must serve, whether its recorded coverage
covers them, and the audits (``invoke audit``) as data; their text, tables
and JSON, and the generated docs table, are :mod:`comfyimg.audit.report`'s.

The rules live in :mod:`comfyimg.kernels`; the package knowledge in ``kernels/kernels.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from comfyimg.errors import BadInput
from comfyimg.kernels import dispatch
from comfyimg.kernels import rules as kernels
from comfyimg.kernels.elf import BadKernels
from comfyimg.kernels.read import WheelKernels, read_wheel
from comfyimg.kernels.rules import Module, Verdict
from comfyimg.pins import load as pins_mod
from comfyimg.pins.model import record_hash_command
from comfyimg.pins.load import Pin, Pins

# The GPUs the coverage docs always show, by arch (labels only: any arch NVIDIA's rules know is judged).
GPUS = {"sm75": "T4", "sm80": "A100", "sm86": "A10 / RTX 30xx", "sm89": "L4 / RTX 40xx",
        "sm90": "H100 / H200", "sm100": "B200", "sm120": "RTX 50xx", "sm121": "DGX Spark"}
# The arm64 (linux_aarch64) machines NVIDIA builds around each arch: Grace Hopper, Grace Blackwell
# and the DGX Spark desk machine. The arm64 rows of the coverage docs show these.
ARM64_GPUS = {"sm90": "GH200", "sm100": "GB200", "sm121": "GB10 / DGX Spark"}
ARM64 = "linux_aarch64"


def gpu_names(platform: str | None) -> dict[str, str]:
    """Arch → the GPU it stands for on ``platform`` (an aarch64 wheel runs on GH200, not H100)."""
    return ARM64_GPUS if platform == ARM64 else GPUS


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


def images_of(pins: Pins, pin: Pin) -> str:
    """The images a pin goes into: its targets (``complete-cuda-sm90`` for a per-arch pin,
    ``complete-cuda-arm64`` for one of a profile's other platforms)."""
    return ", ".join(pins.image_name(t, pin.arch, pin.platform) for t in pin.targets)


def gpu(arch: str, platform: str | None = None) -> str:
    """``sm120 (RTX 50xx)``: an arch with the GPUs it stands for on ``platform``, where known
    (``sm90 (GH200)`` on linux_aarch64)."""
    names = gpu_names(platform)
    return f"{arch} ({names[arch]})" if arch in names else arch


def brief(v: Verdict, rules: kernels.Rules | None) -> str:
    """Why ``v`` cannot run, in one clause: the module and what it carries, or the refusal."""
    if v.missing:
        return "; ".join(f"{m.module} is not in the wheel" if m.carries == "not in the wheel"
                         else f"{m.module} carries only {m.carries}" for m in v.missing)
    return v.why.removeprefix(rules.prefix()) if rules is not None else v.why


def fix_for(pins: Pins, pin: Pin, arch: str) -> str:
    """The edit that makes a pin stop promising ``arch``, or the move that makes it keep it."""
    if pin.arch == arch and pin.serves is None:  # a per-arch pin serves its arch: a wheel for it is the fix
        return f"move it to a wheel built for {arch}, or remove the pin ({pins.path.name}:{pin.line})"
    rest = [a for a in serves(pins, pin) if a != arch]
    return (f"serves = {json.dumps(rest)} in its [[wheel]] ({pins.path.name}:{pin.line}), "
            f"or move it to a wheel built for {arch}")


def refusal(pins: Pins, pin: Pin, arch: str, v: Verdict, line: int) -> str:
    """One line: the image, the arch, the pin, the module, and the edit that fixes it."""
    return (f"{pins.path.name}:{line}: coverage: {images_of(pins, pin)} on {gpu(arch, pin.platform)}: {pin.key} {pin.version} "
            f"cannot run: {brief(v, rules_of(pin))}; fix: {fix_for(pins, pin, arch)}")


def problems(pins: Pins, chosen: Iterable[Pin] | None = None) -> tuple[list[str], list[Pin]]:
    """(errors, pins with no coverage recorded). An error names the image, the arch, the pin,
    the missing code and the fix (:func:`refusal`)."""
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
                errors.append(refusal(pins, pin, arch, v, cov.line))
    return errors, unrecorded


def unrecorded_message(pins: Pins, pin: Pin) -> str:
    return (f"{pins.path.name}:{pin.line}: coverage: {pin.key} has no recorded kernel coverage for "
            f"{', '.join(serves(pins, pin))}; builds of {', '.join(pin.targets)} refuse it. "
            f"Record it with: {record_command(pin)}")


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


# --------------------------------------------------------------------------- runs on, per image


@dataclass(frozen=True)
class ArchRun:
    """One GPU arch in one image, for one attention package."""

    arch: str
    status: str  # "runs", "runs, not validated", "falls back", "unknown"
    why: str

    def as_json(self) -> dict[str, str]:
        return {"arch": self.arch, "gpu": GPUS.get(self.arch, ""), "status": self.status, "why": self.why}


@dataclass(frozen=True)
class Runs:
    """Where one pinned attention package runs in one image: every arch the image is for."""

    image: str
    pin: Pin
    archs: tuple[ArchRun, ...]
    known: str = "recorded"  # how its kernels are known: "recorded", "by recipe" (not read yet), "not recorded"

    def having(self, *status: str) -> list[ArchRun]:
        return [a for a in self.archs if a.status in status]

    def lines(self) -> list[str]:
        """The summary line, then one line per reason that some archs fall back (or are unknown)."""
        runs = self.having("runs", "runs, not validated")
        named = ", ".join(gpu(a.arch, self.pin.platform) + (" (not validated: not in serves)" if a.status != "runs" else "")
                          for a in runs)
        out = [f"{self.image}: {self.pin.key} {self.pin.version} runs on " + (named or "no GPU")
               + ("" if self.known == "recorded" else f" ({self.known}: its kernels are not read from the wheel yet)")]
        for status in ("falls back", "unknown"):
            grouped: dict[str, list[str]] = {}  # archs whose reason differs only by their name
            for a in self.having(status):
                grouped.setdefault(a.why.replace(a.arch, "{arch}"), []).append(a.arch)
            for why, archs in grouped.items():
                head = "falls back to PyTorch attention on" if status == "falls back" else "unknown on"
                out.append(f"  {head} {', '.join(gpu(a, self.pin.platform) for a in archs)}: "
                           + why.replace("{arch}", archs[0] if len(archs) == 1 else "each"))
        return out

    def as_json(self) -> dict[str, Any]:
        return {"image": self.image, "pin": self.pin.key, "package": self.pin.name, "version": self.pin.version,
                "known": self.known,
                "platform": self.pin.platform,
                "runs_on": [a.arch for a in self.having("runs")],
                "gpus": [gpu(a.arch, self.pin.platform) for a in self.having("runs")],
                "runs_not_validated": [a.arch for a in self.having("runs, not validated")],
                "falls_back": {a.arch: a.why for a in self.having("falls back")},
                "unknown": {a.arch: a.why for a in self.having("unknown")},
                "archs": [a.as_json() for a in self.archs]}


def image_archs(pins: Pins, installed: Sequence[Pin], target: str, arch: str | None) -> list[str]:
    """The GPU archs an image is for: its own arch (``complete-cuda-sm90``), else its profile's
    ``archs`` and every arch one of its pins serves."""
    if arch:
        return [arch]
    found = set(pins.profile_for(target).abi.archs)
    for pin in installed:
        found.update(serves(pins, pin))
    return kernels.sort_archs(found)


def runs_in(pins: Pins, image: str, target: str, arch: str | None, installed: Sequence[Pin]) -> list[Runs]:
    """Per attention package of one image: which of its archs run it, and why the others fall back."""
    archs = image_archs(pins, installed, target, arch)
    result = []
    for pin in installed:
        served = set(serves(pins, pin))
        modules, how = coverage_of(pin)
        rules = rules_of(pin)
        found: list[ArchRun] = []
        for a, v in (verdicts(pin, archs, modules) if modules is not None else {}).items():
            if v.runnable:
                found.append(ArchRun(a, "runs" if a in served else "runs, not validated", v.by or ""))
            else:
                why = brief(v, rules)
                found.append(ArchRun(a, "falls back", why if a in served else f"not in serves; {why}"))
        if modules is None:
            why = f"no kernel coverage recorded; record it with: {record_command(pin)}"
            found = [ArchRun(a, "unknown", why) for a in archs]
        if modules is not None or served:
            result.append(Runs(image, pin, tuple(found), how.split(":")[0]))
    return result


def images(pins: Pins) -> list[tuple[str, str, str | None, list[Pin]]]:
    """Every image wheels.toml installs pins into: (image, target, arch, its pins)."""
    found: list[tuple[str, str, str | None, list[Pin]]] = []
    for target in pins.targets():
        for platform in pins.platforms_for(target):  # complete-cuda, then complete-cuda-arm64
            found.append((pins.image_name(target, None, platform), target, None,
                          pins.for_target(target, None, platform)))
            found += [(pins.image_name(target, a, platform), target, a, pins.for_target(target, a, platform))
                      for a in pins.archs_for(target, platform)]
    return found


def runs_on(pins: Pins) -> list[Runs]:
    """Per image and attention package: the archs whose GPUs run it, and those that fall back."""
    return [r for image, target, arch, installed in images(pins)
            for r in runs_in(pins, image, target, arch, installed)]


# --------------------------------------------------------------------------- invoke audit


def _check_archs(archs: Sequence[str]) -> list[str]:

    for arch in archs:
        try:
            kernels.parse_arch(arch)
        except ValueError as exc:
            raise BadInput(f"--arch: {exc}") from None
    return kernels.sort_archs(archs)


@dataclass(frozen=True)
class WheelAudit:
    """One wheel on disk judged on each arch: what it carries, whose dispatch, the verdicts."""

    found: WheelKernels
    package: str
    version: str
    rules: kernels.Rules | None
    how: dispatch.Found | None
    verdicts: dict[str, Verdict]

    @property
    def runnable(self) -> bool:
        return all(v.runnable for v in self.verdicts.values())


def audit_wheel(root: Path, path: Path, archs: Sequence[str]) -> WheelAudit:
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
        found = read_wheel(path, archs=archs)
    except BadKernels as exc:
        raise BadInput(str(exc)) from None
    how = found.dispatch.get(dist.replace("-", "_"))
    rules = dispatch.rules(dist, str(version), how)
    return WheelAudit(found, dist, str(version), rules, how, kernels.judge_all(found.modules, archs, rules))


@dataclass(frozen=True)
class PinAudit:
    """One pin from its recorded coverage (``modules`` None: nothing recorded or known)."""

    pin: Pin
    served: tuple[str, ...]
    modules: Sequence[Module] | None
    how: str  # how the modules are known (coverage_of)
    found: dispatch.Found | None
    rules: kernels.Rules | None
    verdicts: dict[str, Verdict]


@dataclass(frozen=True)
class PinsAudit:
    archs: list[str]
    pins: tuple[PinAudit, ...]
    runs: tuple[Runs, ...] = ()  # per image: where each attention package runs (runs_on)

    @property
    def failed(self) -> bool:
        """A pin whose recorded coverage misses an arch it serves."""
        return any(a.pin.coverage is not None and any(not a.verdicts[x].runnable for x in a.served if x in a.verdicts)
                   for a in self.pins)


def audit_pins(pins: Pins, archs: Sequence[str]) -> PinsAudit:
    """Every pin from its recorded coverage (or recipe): module × arch."""
    archs = _check_archs(archs) or doc_archs(pins)
    audited = []
    for pin in pins.wheels:
        served = serves(pins, pin)
        if not served and not pin.coverage:
            continue
        modules, how = coverage_of(pin)
        vs = verdicts(pin, archs, modules) if modules is not None else {}
        audited.append(PinAudit(pin, served, modules, how, dispatch_of(pin), rules_of(pin), vs))
    return PinsAudit(archs, tuple(audited), tuple(runs_on(pins)))


# --------------------------------------------------------------------------- the probe's expectations


def probe_args(pins: Pins, distribution: str, target_pins: Sequence[Pin]) -> list[str]:
    """``--serves`` (the archs the pin serves), ``--needs ARCH=MODULES`` (the modules whose
    kernels the dispatch launches on each of those archs, whether or not the wheel carries code
    for it: the probe then fails naming them) and, when the dispatch was read from the wheel,
    ``--kernel ARCH=FUNCTION`` (empty: refused) for a probe. With these the probe judges the GPU
    at hand by this wheel's dispatch; its own copy of the table is only its fallback."""
    pin = next((p for p in target_pins if p.name == distribution), None)
    if pin is None or not (served := serves(pins, pin)):
        return []
    args = ["--serves", ",".join(served)]
    if pin.coverage is not None:
        rules = rules_of(pin)
        for arch, v in verdicts(pin, served).items():
            path = rules.path(arch) if rules is not None else None
            if path is not None:
                args += ["--needs", f"{arch}={','.join(path.modules)}"]
            elif rules is None and v.runnable:  # no dispatch known: every module with GPU code
                args += ["--needs", f"{arch}={','.join(v.needs)}"]
        if rules is not None and rules.from_wheel:  # the wheel's own kernel on each GPU
            for arch in served:
                path = rules.path(arch)
                args += ["--kernel", f"{arch}={path.kernel if path else ''}"]
    return args
