"""Read the code a GPU would execute: disassemble, with NVIDIA's cuobjdump (its ``-sass`` needs
NVIDIA's nvdisasm, the PyPI package ``nvidia-cuda-nvdisasm``), the kernels a wheel's dispatch
launches, in the cubin or PTX the driver picks for each GPU the dispatch sends to the module.

Why: CUDA sources guard architecture-specific instructions with ``#if __CUDA_ARCH__ >= …``, and
below the guard the same function compiles to a trap, with no compile error (SageAttention
v2.2.0's ``csrc/mma.cuh``: the FP8 MMA for ``__CUDA_ARCH__ >= 890``, else ``__brkpt()``). A
wheel built for ``sm_80`` but not ``sm_89`` carries ``_qattn_sm89`` with ``sm_80`` SASS that an
sm89 GPU loads under NVIDIA's rules, and traps in. In SASS the trap is ``BPT.TRAP`` (both
``__brkpt()`` and ``__trap()``); in PTX ``brkpt;`` or ``trap;`` (the guard is resolved when the
PTX is generated, so a ``compute_80`` PTX JIT-compiled for sm89 traps too). A device
``assert`` is a call to ``__assertfail``, not a trap.

Which kernels: the entry points whose names the wheel's Python calls on the module (an
``extern "C"`` name, or the identifier inside a mangled one); when the Python names none (a
pybind function launches a templated kernel of another name), every entry point of that code,
and the module counts as compiled out only if every one of them traps
(:attr:`comfyimg.kernels.rules.CodeRead.compiled_out`).

Bounded: cuobjdump's output is read line by line (only one summary per function is kept),
each run within ``$COMFYIMG_CUOBJDUMP_TIMEOUT``, and only the targets some GPU is sent to.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from comfyimg.errors import BadInput, WorkFailed
from comfyimg.kernels import dispatch
from comfyimg.kernels.cuobjdump import TIMEOUT_ENV, cuobjdump, cuobjdump_timeout
from comfyimg.kernels.elf import BadKernels
from comfyimg.kernels.rules import CodeRead, Module, Target

# The compute capabilities of NVIDIA's GPUs from Volta on: the GPUs an arch chain's final else
# sends to the kernel it calls (those the chain does not name).
KNOWN_ARCHS = ("sm70", "sm72", "sm75", "sm80", "sm86", "sm87", "sm89", "sm90", "sm100", "sm103",
               "sm110", "sm120", "sm121")
MAX_LINE = 1 << 16  # a longer line is cut: no instruction is that long
_FUNCTION = re.compile(r"^\s*Function : (\S+)\s*$")
_ARCH_HEAD = re.compile(r"^arch = (sm_\d+[af]?)\s*$")
_SASS = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P[T\d]+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_SASS_CALL = re.compile(r"`\(([^)`]+)\)")
_PTX_FUNC = re.compile(r"^\s*(?:\.(?:visible|weak|extern)\s+)*\.(entry|func)\s+(?:\([^)]*\)\s*)?([\w$.]+)")
_PTX_INSN = re.compile(r"^\s*(?:@!?%\w+\s+)?([a-z][\w.]*)([^;]*);")
_PTX_CALL = re.compile(r"^\s*(?:@!?%\w+\s+)?call(?:\.uni)?\s+(?:\([^)]*\)\s*,\s*)?([\w$.]+)")


@cache
def nvdisasm() -> str:
    """NVIDIA's nvdisasm, which ``cuobjdump -sass`` runs: next to cuobjdump, the PyPI package
    ``nvidia-cuda-nvdisasm`` (``site-packages/nvidia/cu13/bin/nvdisasm``), or PATH."""
    tool, _ = cuobjdump()
    beside = Path(tool).with_name("nvdisasm")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    spec = importlib.util.find_spec("nvidia")
    tops = (spec.submodule_search_locations or []) if spec else []
    found = sorted(p for top in tops for p in Path(top).glob("cu*/bin/nvdisasm"))
    path = str(found[-1]) if found else shutil.which("nvdisasm")
    if not path:
        raise BadInput("nvdisasm not found (cuobjdump needs it to disassemble): install the project "
                       "(pip install -e .; it depends on nvidia-cuda-nvdisasm), or put NVIDIA's nvdisasm "
                       f"beside the cuobjdump at {tool}")
    return path


@dataclass
class _Function:
    name: str
    entry: bool
    trap: str = ""
    mma: str = ""
    calls: set[str] = field(default_factory=set)


def _stream(args: list[str], where: str, line: Any) -> tuple[int, str]:
    """Run cuobjdump, handing each stdout line to ``line``; (exit code, its last stderr line).
    Stopped at the timeout (:class:`WorkFailed`)."""
    limit = cuobjdump_timeout()
    env = {**os.environ, "NVDISASM_PATH": nvdisasm()}
    try:  # its own process group: a stop takes nvdisasm, which cuobjdump runs, with it
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True)
    except OSError as exc:
        raise BadInput(f"cuobjdump at {args[0]} cannot run: {exc}") from None
    stopped = threading.Event()

    def kill() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop() -> None:
        stopped.set()
        kill()

    timer = threading.Timer(limit, stop)
    errors: collections.deque[bytes] = collections.deque(maxlen=8)  # the last lines of stderr

    def drain_errors() -> None:
        assert proc.stderr is not None
        while line := proc.stderr.readline(MAX_LINE):
            errors.append(line)

    drain = threading.Thread(target=drain_errors, daemon=True)
    timer.start()
    drain.start()
    try:
        assert proc.stdout is not None
        while raw := proc.stdout.readline(MAX_LINE):
            line(raw.decode("utf-8", "replace"))
        code = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
        drain.join(5)
    if stopped.is_set():
        raise WorkFailed(f"{where}: cuobjdump did not finish disassembling within {limit:g} s "
                         f"({TIMEOUT_ENV}); it was stopped")
    last = next((e.decode("utf-8", "replace").strip() for e in reversed(errors) if e.strip()), "")
    return code, last


def _read_sass(path: Path, target: Target, where: str) -> dict[str, _Function]:
    """Every function of the cubins for exactly ``target`` (``-arch sm_90`` also prints an
    sm_90a cubin: each cubin's own ``arch =`` header decides)."""
    tool, _ = cuobjdump()
    funcs: dict[str, _Function] = {}
    state: dict[str, Any] = {"arch": None, "fn": None}
    want = str(target)

    def line(text: str) -> None:
        if m := _ARCH_HEAD.match(text):
            state["arch"], state["fn"] = m[1], None
        elif (m := _FUNCTION.match(text)) and state["arch"] == want:
            state["fn"] = funcs.setdefault(m[1], _Function(m[1], entry=True))
        elif (fn := state["fn"]) is not None and (m := _SASS.match(text)):
            op = m[1]
            base = op.split(".", 1)[0]
            if base == "BPT" and "TRAP" in op and not fn.trap:
                fn.trap = f"{op}{m[2]}".strip()
            elif base.endswith("MMA") and not fn.mma:
                fn.mma = op
            if base == "CALL":
                fn.calls.update(_SASS_CALL.findall(m[2]))

    code, last = _stream([tool, "-sass", "-arch", f"sm_{target.major}{target.minor}", str(path)], where, line)
    if code != 0:
        raise BadKernels(f"{where}: cuobjdump cannot disassemble its {want} code: {last or f'exit {code}'}")
    return funcs


def _read_ptx(path: Path, target: Target, where: str) -> dict[str, _Function]:
    """Every ``.entry`` and ``.func`` of the PTX for ``target`` (``cuobjdump -ptx -arch sm_XY``)."""
    tool, _ = cuobjdump()
    funcs: dict[str, _Function] = {}
    state: dict[str, Any] = {"arch": None, "fn": None}
    want = f"sm_{target.major}{target.minor}{target.variant}"

    def line(text: str) -> None:
        if m := _ARCH_HEAD.match(text):
            state["arch"], state["fn"] = m[1], None
        elif state["arch"] != want:
            return
        elif m := _PTX_FUNC.match(text):
            state["fn"] = funcs.setdefault(m[2], _Function(m[2], entry=m[1] == "entry"))
        elif (fn := state["fn"]) is not None:
            if c := _PTX_CALL.match(text):
                fn.calls.add(c[1])
            elif m := _PTX_INSN.match(text):
                op = m[1]
                if op in ("trap", "brkpt") and not fn.trap:
                    fn.trap = op
                elif (op.startswith(("mma.", "wgmma.")) or ".mma" in op) and not fn.mma:
                    fn.mma = op

    code, last = _stream([tool, "-ptx", "-arch", f"sm_{target.major}{target.minor}", str(path)], where, line)
    if code != 0:
        raise BadKernels(f"{where}: cuobjdump cannot read its {target} PTX: {last or f'exit {code}'}")
    return funcs


def names_kernel(symbol: str, attr: str) -> bool:
    """Does the Python name ``attr`` name the kernel ``symbol``: the same ``extern "C"`` name,
    or the identifier inside an Itanium-mangled one (``_Z11qk_fp8_attnPf``)?"""
    return symbol == attr or re.search(rf"(?<!\d){len(attr)}{re.escape(attr)}", symbol) is not None


def _reaches(funcs: Mapping[str, _Function], start: _Function) -> tuple[str, str]:
    """(the first trap, the first MMA-class instruction) in ``start`` or a function it calls."""
    trap, mma = start.trap, start.mma
    todo, seen = list(start.calls), {start.name}
    while todo and not trap:
        name = todo.pop()
        if name in seen or name not in funcs:
            continue
        seen.add(name)
        f = funcs[name]
        trap, mma = trap or f.trap, mma or f.mma
        todo += f.calls
    return trap, mma


def read_code(path: Path, target: Target, calls: Iterable[str], where: str) -> CodeRead:
    """Disassemble ``target``'s code of the module at ``path`` and judge the kernels that the
    Python ``calls`` (attribute names) name, or every entry point when it names none."""
    funcs = _read_ptx(path, target, where) if target.ptx else _read_sass(path, target, where)
    entries = [f for f in funcs.values() if f.entry]
    named = [f for f in entries if any(names_kernel(f.name, a) for a in calls)]
    read = sorted(named or entries, key=lambda f: f.name)
    found = {f.name: _reaches(funcs, f) for f in read}
    trapped = tuple(n for n, (trap, _) in found.items() if trap)
    if trapped:
        kernel, instruction = trapped[0], found[trapped[0]][0]
    else:
        kernel = next((n for n, (_, mma) in found.items() if mma), read[0].name if read else "")
        instruction = found[kernel][1] if kernel else ""
    return CodeRead(str(target), len(read), bool(named), trapped, kernel, instruction)


def wanted(module: Module, found: Mapping[str, dispatch.Found],
           only: Iterable[str] | None = None) -> tuple[list[Target], set[str]]:
    """The targets of ``module`` the driver picks on some GPU that a dispatch read from the wheel
    sends to it (of the archs ``only``, when given), and the names the Python calls on the module."""
    archs: set[str] = set()
    calls: set[str] = set()
    only = set(only) if only is not None else None
    for how in found.values():
        if not isinstance(how, dispatch.WheelDispatch):
            continue
        named = {a for b in how.branches for a in b.archs}
        for b in (*how.branches, *([how.otherwise] if how.otherwise else [])):
            if b.kernel is None or module.name not in b.modules:
                continue
            archs |= set(b.archs) if b.archs else {a for a in (only or KNOWN_ARCHS) if a not in named}
            calls |= {c.removeprefix(module.name + ".") for c in b.calls if c.startswith(module.name + ".")}
    if only is not None:
        archs &= set(only)
    targets = {t for a in archs if (t := module.code_for(a)) is not None}
    return sorted(targets), calls


def read_module_code(path: Path, module: Module, found: Mapping[str, dispatch.Found], where: str,
                     only: Iterable[str] | None = None) -> Module:
    """``module`` with :attr:`Module.code`: each target the dispatch reaches (on the archs
    ``only``, when given), disassembled."""
    targets, calls = wanted(module, found, only)
    if not targets:
        return module
    code = tuple(read_code(path, t, calls, where) for t in targets)
    return Module(module.name, module.sass, module.ptx, code)


__all__ = ["KNOWN_ARCHS", "names_kernel", "nvdisasm", "read_code", "read_module_code", "wanted"]
