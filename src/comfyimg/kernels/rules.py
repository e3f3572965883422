"""NVIDIA's rules and the package table: can the code a compiled module carries run on a GPU
arch, and does a wheel run on it, given the modules its dispatch needs there.

:func:`runs_on` applies NVIDIA's compatibility rules to one target and one GPU arch.
:func:`judge` combines the modules the package needs on that arch (the wheel's own dispatch,
:mod:`comfyimg.kernels.dispatch`, or ``kernels/kernels.json``, the one table the probes read too)
with what the wheel carries: runnable by SASS, by PTX JIT (the first call compiles), by
Triton, or not, with the reason.

NVIDIA's rules, from the CUDA Programming Guide, §1.3 "The CUDA platform" (binary and PTX
compatibility; compiler feature-set targets), https://docs.nvidia.com/cuda/cuda-programming-guide/01-introduction/cuda-platform.html,
and NVIDIA's "Blackwell and CUDA 12.9 introduce family-specific architecture features" (2025,
https://developer.nvidia.com/blog/nvidia-blackwell-and-nvidia-cuda-12-9-introduce-family-specific-architecture-features/):

* SASS ``sm_XY`` runs on compute capability X.Z for every Z ≥ Y of the same major X
  (``sm_80`` runs on 8.6 and 8.9, never on 9.0 or 12.0);
* SASS ``sm_XYa`` (architecture-specific) runs on X.Y only;
* SASS ``sm_XYf`` (family-specific, CUDA 12.9+) runs on the same family at ≥ X.Y
  (``sm_120f`` on 12.0 and 12.1, ``sm_100f`` on 10.0 and 10.3, neither on another major), the
  same GPUs as a plain ``sm_XY`` cubin: the ``f`` allows the family's own instructions;
* PTX ``compute_XY`` is JIT-compiled by the driver for any capability ≥ X.Y, at the first
  launch; ``compute_XYa`` PTX only for X.Y, ``compute_XYf`` for the family at ≥ X.Y;
* with none of these, the first launch fails with "no kernel image is available for
  execution on the device" (loading the module still succeeds).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

TABLE = Path(__file__).parent / "kernels.json"  # this stage's data; validate mounts it beside the probes
_TARGET = re.compile(r"^(sm|compute)_(\d+)(\d)([af]?)$", re.ASCII)
_ARCH = re.compile(r"^sm(\d+)(\d)$", re.ASCII)


# --------------------------------------------------------------------------- targets and rules


@dataclass(frozen=True, order=True)
class Target:
    major: int
    minor: int
    variant: str  # "", "a" (arch-specific), "f" (family-specific)
    ptx: bool

    @classmethod
    def parse(cls, text: str) -> Target:
        m = _TARGET.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a CUDA target; expected sm_XY[a|f] or compute_XY[a|f]")
        return cls(int(m[2]), int(m[3]), m[4], m[1] == "compute")

    def __str__(self) -> str:
        return f"{'compute' if self.ptx else 'sm'}_{self.major}{self.minor}{self.variant}"


def parse_arch(arch: str) -> tuple[int, int]:
    """``sm120`` → (12, 0)."""
    m = _ARCH.match(arch)
    if not m:
        raise ValueError(f"{arch!r} is not a GPU arch; expected e.g. 'sm90'")
    return int(m[1]), int(m[2])


def runs_on(target: Target, arch: str) -> bool:
    """NVIDIA's rule (see the module docstring): can code for ``target`` run on ``arch``?"""
    major, minor = parse_arch(arch)
    if target.variant == "a":
        return (major, minor) == (target.major, target.minor)
    if target.variant == "f" or not target.ptx:
        return major == target.major and minor >= target.minor
    return (major, minor) >= (target.major, target.minor)


@dataclass(frozen=True)
class CodeRead:
    """What the disassembly of one target of a module (the cubin or PTX the driver picks for
    some GPU the dispatch sends there) found in the kernels the dispatch launches
    (:mod:`comfyimg.kernels.sass`)."""

    target: str  # "sm_80" (SASS) or "compute_80" (PTX)
    kernels: int  # entry points read
    named: bool  # those read are the ones the wheel's Python calls by name; else every entry point
    trapped: tuple[str, ...]  # the kernels read that hold a trap (BPT.TRAP; PTX trap/brkpt)
    kernel: str  # the kernel the verdict names
    instruction: str  # found in it: its trap, or its first MMA-class instruction ("": neither)

    @property
    def compiled_out(self) -> bool:
        """A trap in place of the work: in a kernel the Python calls by name, or, when no kernel
        is named, in every entry point (a module with one trapping helper among working
        kernels is not refused on a guess)."""
        return bool(self.trapped) and (self.named or len(self.trapped) == self.kernels)

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "kernels": self.kernels, "named": self.named,
                "trapped": list(self.trapped), "kernel": self.kernel, "instruction": self.instruction,
                "compiled_out": self.compiled_out}


@dataclass(frozen=True)
class Module:
    """One compiled module of a wheel and the GPU code its fatbin carries."""

    name: str  # importable name, e.g. sageattention._qattn_sm80
    sass: tuple[str, ...] = ()
    ptx: tuple[str, ...] = ()
    code: tuple[CodeRead, ...] = ()  # the targets the dispatch reaches, disassembled

    def code_for(self, arch: str) -> Target | None:
        """The code the driver picks on ``arch``: the newest SASS that runs there, else the
        newest PTX (JIT); None: no kernel image."""
        sass = [t for t in self.targets if not t.ptx and runs_on(t, arch)]
        if sass:
            return max(sass)
        ptx = [t for t in self.targets if t.ptx and runs_on(t, arch)]
        return max(ptx) if ptx else None

    def read_of(self, target: Target) -> CodeRead | None:
        return next((c for c in self.code if c.target == str(target)), None)

    @property
    def targets(self) -> list[Target]:
        return [Target.parse(t) for t in (*self.sass, *self.ptx)]

    def carries(self) -> str:
        return ", ".join([*self.sass, *self.ptx]) or "no GPU code"

    def on(self, arch: str) -> str | None:
        """"sass", "ptx" (JIT at the first call) or None (no kernel image for ``arch``)."""
        if not self.sass and not self.ptx:
            return "host"  # a module without device code runs anywhere
        if any(runs_on(t, arch) for t in self.targets if not t.ptx):
            return "sass"
        if any(runs_on(t, arch) for t in self.targets if t.ptx):
            return "ptx"
        return None


# --------------------------------------------------------------------------- the package table


@dataclass(frozen=True)
class Dispatch:
    kernel: str
    modules: tuple[str, ...]
    why: str
    line: int | None = None  # the branch's line, when read from the wheel's Python
    broken: str = ""  # why the call cannot work whatever the GPU code (read from the wheel's Python)


@dataclass(frozen=True)
class Rules:
    """What one package version needs (an entry of ``kernels/kernels.json``)."""

    package: str
    versions: str
    entry: str
    imports: tuple[str, ...]
    dispatch: Mapping[str, Dispatch]
    refused: str
    serves: tuple[str, ...] | None
    source: str = ""  # "this wheel's sageattention/core.py", or the table entry's label
    default: Dispatch | None = None  # the arch chain's final else, when it calls a kernel
    fallback: str = ""  # why the table is used instead of the wheel's Python
    from_wheel: bool = False  # read from the package's Python (comfyimg.dispatch), not the table

    def path(self, arch: str) -> Dispatch | None:
        return self.dispatch.get(arch, self.default)

    def prefix(self) -> str:
        if not self.fallback:
            return ""
        return f"by the table for {self.source}, not read from this wheel: {self.fallback}; "


@cache
def table() -> dict[str, Any]:
    return json.loads(TABLE.read_text(encoding="utf-8"))


def _release(version: str) -> tuple[int, ...]:
    return Version(version).release


def rules_for(name: str, version: str | None) -> Rules | None:
    """The table entry for ``name`` at ``version``; None when the table does not know it."""
    entries = table()["packages"].get(canonicalize_name(name).replace("-", "_"), [])
    try:
        release = _release(version) if version else None
    except InvalidVersion:
        release = None
    for e in entries:
        lo, hi = e["versions"].get("min"), e["versions"].get("below")
        if release is None or (lo and release < _release(lo)) or (hi and release >= _release(hi)):
            continue
        dispatch = {arch: Dispatch(p["kernel"], tuple(p["modules"]), p.get("why", ""))
                    for arch, p in e["dispatch"].items()}
        return Rules(name, f">={lo},<{hi}", e["entry"], tuple(e.get("import", ())), dispatch,
                     e["refused"], tuple(e["serves"]) if "serves" in e else None, e.get("label", ""))
    return None


def recipe(filename: str) -> tuple[str, tuple[Module, ...]] | None:
    """Coverage of a wheel by its published build recipe (not read from the wheel)."""
    entry = table().get("recipes", {}).get(filename)
    if not entry:
        return None
    mods = tuple(Module(n, tuple(m["sass"]), tuple(m["ptx"])) for n, m in sorted(entry["modules"].items()))
    return entry["source"], mods


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Missing:
    module: str
    carries: str  # what the wheel has for that module ("not in the wheel" when absent)
    needs: str  # the code the arch would need

    def __str__(self) -> str:
        if self.carries == "not in the wheel":
            return f"{self.module}: not in the wheel (needs {self.needs})"
        return f"{self.module}: needs {self.needs}; the wheel carries {self.carries}"


@dataclass(frozen=True)
class Verdict:
    arch: str
    runnable: bool
    by: str | None  # "sass", "ptx-jit", "triton", None
    why: str
    kernel: str | None = None
    needs: tuple[str, ...] = ()
    missing: tuple[Missing, ...] = ()
    jit: tuple[str, ...] = ()
    code: tuple[tuple[str, CodeRead], ...] = ()  # (module, what its picked code holds), where read

    def as_json(self) -> dict[str, Any]:
        return {"runnable": self.runnable, "by": self.by, "why": self.why, "kernel": self.kernel,
                "needs": list(self.needs), "jit": list(self.jit),
                "missing": [{"module": m.module, "carries": m.carries, "needs": m.needs} for m in self.missing],
                "code": [{"module": name, **read.as_json()} for name, read in self.code]}


def needed_code(arch: str) -> str:
    major, minor = parse_arch(arch)
    if minor == 0:
        sass = f"sm_{major}0, sm_{major}0a or sm_{major}0f"
    else:
        sass = f"sm_{major}0…sm_{major}{minor}, sm_{major}{minor}a or a family sm_{major}Yf with Y ≤ {minor}"
    return f"SASS for {arch} ({sass}) or PTX compute_XY ≤ {major}.{minor}"


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _carry(by_name: Mapping[str, Module], needs: Sequence[str], arch: str) -> str:
    """"both carry sm_100a" / "_qattn_sm89 carries sm_89, _fused carries sm_80": the code that runs."""
    runs = {}
    for n in needs:
        mod = by_name[n]
        sass = [t for t in mod.targets if not t.ptx and runs_on(t, arch)]
        ptx = [t for t in mod.targets if t.ptx and runs_on(t, arch)]
        runs[n] = str(max(sass)) if sass else (f"PTX {max(ptx)} (JIT)" if ptx else "host code only")
    if len(set(runs.values())) == 1 and len(runs) > 1:
        return f"{'both' if len(runs) == 2 else 'all'} carry {next(iter(runs.values()))}"
    return ", ".join(f"{_short(n)} carries {c}" for n, c in runs.items())


def _and(names: Sequence[str]) -> str:
    names = [_short(n) for n in names]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def judge(modules: Sequence[Module], arch: str, rules: Rules | None) -> Verdict:
    """Can the wheel whose compiled ``modules`` are given run on ``arch``?"""
    v = _judge(modules, arch, rules)
    if rules is not None and rules.fallback:
        return dataclasses.replace(v, why=rules.prefix() + v.why)
    return v


def _compiled_out(arch: str, out: Sequence[tuple[str, CodeRead]]) -> str:
    """``…, but compiled out for sm89: _qattn_sm89's kernel qk_fp8_attn, built for sm_80, holds
    BPT.TRAP 0x1 where the work should be``."""
    parts = []
    for name, read in out:
        how = (f"holds {read.instruction}" if read.named else
               f"holds {read.instruction}, as every one of its {read.kernels} entry point(s) does,")
        parts.append(f"{name}'s kernel {read.kernel}, built for {read.target}, {how} where the work should be")
    return f"compiled out for {arch}: " + "; ".join(parts)


def _judge(modules: Sequence[Module], arch: str, rules: Rules | None) -> Verdict:
    by_name = {m.name: m for m in modules}
    if rules is None:
        needs = tuple(m.name for m in modules if m.sass or m.ptx)
        if not modules:
            return Verdict(arch, True, "triton", "Triton only: the wheel has no compiled modules; "
                           "Triton compiles its kernels on the first call")
        kernel = None
    else:
        absent = [n for n in rules.imports if n not in by_name]
        if absent:
            return Verdict(arch, False, None, f"the import fails: {', '.join(absent)} is not in the wheel",
                           needs=tuple(absent),
                           missing=tuple(Missing(n, "not in the wheel", "the module") for n in absent))
        path = rules.path(arch)
        if path is None:
            if rules.from_wheel:
                return Verdict(arch, False, None, f"refused: {rules.refused.format(arch=arch)}")
            return Verdict(arch, False, None, f"{rules.package} refuses {arch} at run time: "
                           + rules.refused.format(arch=arch))
        needs, kernel = path.modules, path.kernel
        if path.broken:
            return Verdict(arch, False, None, f"{rules.source} sends {arch} to {kernel} ({path.why.split(';')[0]}), "
                           f"but {path.broken}", kernel, tuple(needs))
        if not needs:
            if rules.from_wheel:
                return Verdict(arch, True, "triton", f"{rules.source} sends {arch} to {kernel} ({path.why}); "
                               "no compiled module needed", kernel)
            return Verdict(arch, True, "triton", f"{rules.entry} runs {kernel} on {arch}: Triton, "
                           f"compiled on the first call; no compiled module needed ({path.why})", kernel)
    missing: list[Missing] = []
    jit: list[str] = []
    for name in needs:
        mod = by_name.get(name)
        how = mod.on(arch) if mod else None
        if how is None:
            missing.append(Missing(name, mod.carries() if mod else "not in the wheel", needed_code(arch)))
        elif how == "ptx":
            jit.append(name)
    if rules and kernel and rules.from_wheel:
        where = rules.path(arch)
        head = (f"{rules.source} sends {arch} to {kernel} ({where.why.split(';')[0] if where else '?'}), "
                f"which needs {_and(needs)}")
        if not missing:
            head += f"; {_carry(by_name, needs, arch)}"
    elif rules and kernel:
        head = f"{rules.entry} runs {kernel} on {arch}" if kernel != rules.entry else f"{kernel} on {arch}"
    else:
        head = f"on {arch}"
    code: list[tuple[str, CodeRead]] = []
    for name in needs:
        mod = by_name.get(name)
        target = mod.code_for(arch) if mod else None
        read = mod.read_of(target) if mod and target else None
        if read is not None:
            code.append((name, read))
    if missing:
        return Verdict(arch, False, None, f"{head}, but no kernel image: " + "; ".join(map(str, missing)),
                       kernel, tuple(needs), tuple(missing), tuple(jit), tuple(code))
    out = [(n, r) for n, r in code if r.compiled_out]
    if out:
        return Verdict(arch, False, None, f"{head}, but {_compiled_out(arch, out)}", kernel, tuple(needs),
                       (), tuple(jit), tuple(code))
    if jit:
        return Verdict(arch, True, "ptx-jit", f"{head}: by PTX JIT for {', '.join(jit)} (the first call "
                       "compiles it; expect a delay), SASS for the rest", kernel, tuple(needs), (), tuple(jit),
                       tuple(code))
    if rules and rules.from_wheel:
        return Verdict(arch, True, "sass", head, kernel, tuple(needs), code=tuple(code))
    what = ", ".join(needs) if needs else "no module with GPU code"
    return Verdict(arch, True, "sass", f"{head}: SASS in {what}", kernel, tuple(needs), code=tuple(code))


def judge_all(modules: Sequence[Module], archs: Iterable[str], rules: Rules | None) -> dict[str, Verdict]:
    return {arch: judge(modules, arch, rules) for arch in archs}


def sort_archs(archs: Iterable[str]) -> list[str]:
    return sorted(set(archs), key=parse_arch)


def modules_json(modules: Sequence[Module]) -> list[dict[str, Any]]:
    return [{"module": m.name, "sass": list(m.sass), "ptx": list(m.ptx),
             **({"code": [c.as_json() for c in m.code]} if m.code else {})} for m in modules]
