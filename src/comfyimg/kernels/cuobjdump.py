"""NVIDIA's cuobjdump (the PyPI package ``nvidia-cuda-cuobjdump``): which SASS and PTX the fatbin
of one compiled module carries.

``cuobjdump --list-elf --list-ptx`` names each cubin and PTX; ``--list-elf`` drops the ``f`` of a
family-specific cubin (an ``sm_120f`` cubin is listed as ``….sm_120.cubin``), so such a listing
is checked against the arch each cubin's own header names (``cuobjdump --dump-elf-symbols``
prints ``arch = sm_120f`` above each cubin's symbols). ``--list-ptx`` keeps the suffix.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from comfyimg.errors import BadInput, WorkFailed, seconds_from_env
from comfyimg.kernels import elf
from comfyimg.kernels.elf import BadKernels
from comfyimg.kernels.rules import Module, Target

_LISTED = re.compile(r"^(ELF|PTX) file\s+\d+:\s+(\S+)$", re.ASCII)
_LISTED_ARCH = re.compile(r"\.(sm_\d+[af]?)\.(?:cubin|ptx)$", re.ASCII)
_CUBIN_ARCH = re.compile(r"^Fatbin elf code:\n=+\narch = (sm_\d+[af]?)$", re.ASCII | re.MULTILINE)
# Family-specific targets (sm_XYf) exist from compute capability 10.0 on (nvcc 13.5 refuses
# compute_90f and compute_89f): only a cubin listed as a plain sm_XY at 10.0 or above may be one.
FAMILY_FROM = 10


@cache
def cuobjdump() -> tuple[str, str]:
    """(path, version) of NVIDIA's cuobjdump: ``$COMFYIMG_CUOBJDUMP``, the PyPI package
    ``nvidia-cuda-cuobjdump`` (it lands at ``site-packages/nvidia/cu13/bin/cuobjdump``), or PATH."""
    path = os.environ.get("COMFYIMG_CUOBJDUMP")
    if not path:
        # Where the wheel puts it (nvidia/cu13/bin/cuobjdump), by the import system's own search:
        # importlib.metadata would cost the audit ~10 ms of start-up (bench/audit_wheel.py).
        spec = importlib.util.find_spec("nvidia")
        tops = (spec.submodule_search_locations or []) if spec else []
        found = sorted(p for top in tops for p in Path(top).glob("cu*/bin/cuobjdump"))
        path = str(found[-1]) if found else None
    path = path or shutil.which("cuobjdump")
    if not path or not os.access(path, os.X_OK):
        raise BadInput("cuobjdump not found: install the project (pip install -e .; it depends on "
                       "nvidia-cuda-cuobjdump), or set COMFYIMG_CUOBJDUMP to NVIDIA's cuobjdump")
    try:
        text = _run_cuobjdump([path, "--version"], f"cuobjdump at {path}").stdout
    except OSError as exc:
        raise BadInput(f"cuobjdump at {path} cannot run: {exc}") from None
    m = re.search(r"release [\d.]+, V([\d.]+)", text)
    return path, f"cuobjdump {m[1] if m else 'unknown'}"


TIMEOUT_ENV = "COMFYIMG_CUOBJDUMP_TIMEOUT"


def cuobjdump_timeout() -> float:
    """Seconds one cuobjdump run may take: ``$COMFYIMG_CUOBJDUMP_TIMEOUT``, 1 to 3600, default 120 (per module)."""
    return seconds_from_env(TIMEOUT_ENV, 120, BadKernels)


def _run_cuobjdump(args: list[str], where: str) -> subprocess.CompletedProcess[str]:
    limit = cuobjdump_timeout()
    try:
        return subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=limit)
    except subprocess.TimeoutExpired:
        raise WorkFailed(f"{where}: cuobjdump did not finish within {limit:g} s ({TIMEOUT_ENV}); "
                         "it was stopped") from None


def read_module(path: Path, name: str, where: str, machine: str | None = None) -> Module:
    """List one compiled module's SASS and PTX with cuobjdump; a cubin listed as a plain sm_XY
    of a family that has family-specific targets is named by its own header (module docstring).
    ``machine`` (``aarch64``: what the wheel's platform tag says): an ELF for another machine is
    :class:`BadKernels`, a mislabelled wheel."""
    header = elf.read(path, where)
    if machine is not None and header.machine != machine:
        raise BadKernels(f"{where}: an ELF for {header.machine} in a wheel whose platform tag says {machine}")
    sections = header.sections
    tool, _ = cuobjdump()
    proc = _run_cuobjdump([tool, "--list-elf", "--list-ptx", str(path)], where)
    text = proc.stdout + proc.stderr
    if "does not contain device code" in text and proc.returncode != 0:
        if ".nv_fatbin" in sections:
            raise BadKernels(f"{where}: has a .nv_fatbin section but cuobjdump finds no device code in it")
        return Module(name)
    if proc.returncode != 0 or "fatal" in text:
        why = next((ln.split(":", 1)[-1].strip() for ln in text.splitlines() if "fatal" in ln),
                   text.strip().splitlines()[-1] if text.strip() else f"exit {proc.returncode}")
        raise BadKernels(f"{where}: cuobjdump cannot read its fatbin: {why}")
    cubins: list[str] = []
    ptx: set[str] = set()
    for line in proc.stdout.splitlines():
        if (m := _LISTED.match(line.strip())) and (a := _LISTED_ARCH.search(m[2])):
            if m[1] == "ELF":
                cubins.append(a[1])
            else:  # cuobjdump names PTX "…sm_80.ptx"; it is compute_80 PTX
                ptx.add(a[1].replace("sm_", "compute_"))
    if any(not (t := Target.parse(c)).variant and t.major >= FAMILY_FROM for c in cubins):
        cubins = _cubin_headers(path, where, len(cubins))
    return Module(name, tuple(sorted(set(cubins), key=Target.parse)), tuple(sorted(ptx, key=Target.parse)))


def _cubin_headers(path: Path, where: str, listed: int) -> list[str]:
    """The arch each cubin's header names (``sm_120f``, where ``--list-elf`` says ``sm_120``)."""
    tool, _ = cuobjdump()
    proc = _run_cuobjdump([tool, "--dump-elf-symbols", str(path)], where)
    archs = _CUBIN_ARCH.findall(proc.stdout)
    if proc.returncode != 0 or len(archs) != listed:
        raise BadKernels(f"{where}: cuobjdump lists {listed} cubin(s) but its cubin headers name "
                         f"{len(archs)} (exit {proc.returncode})")
    return archs
