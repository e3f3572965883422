"""Read a wheel: every compiled module with its targets (:mod:`comfyimg.kernels.cuobjdump`) and
the kernel its own Python sends each GPU to (:mod:`comfyimg.kernels.dispatch`), in one pass."""

from __future__ import annotations

import hashlib
import tempfile
import threading
import zipfile
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion

from comfyimg.kernels import dispatch, sass
from comfyimg.kernels.cuobjdump import cuobjdump, read_module
from comfyimg.kernels.elf import MACHINES, BadKernels
from comfyimg.kernels.rules import Module

CHUNK = 1 << 16  # 64 KiB: larger reads cost more in page faults than they save in calls (bench/audit_wheel.py)


@dataclass(frozen=True)
class WheelKernels:
    filename: str
    sha256: str
    tool: str
    modules: tuple[Module, ...]
    dispatch: Mapping[str, Any] = field(default_factory=dict)  # package -> dispatch.Found

    def module(self, name: str) -> Module | None:
        return next((m for m in self.modules if m.name == name), None)


def module_name(member: str) -> str:
    """``sageattention/_fused.cpython-312-x86_64-linux-gnu.so`` → ``sageattention._fused``."""
    parts = member.split("/")
    if len(parts) > 2 and parts[0].endswith(".data") and parts[1] in ("purelib", "platlib"):
        parts = parts[2:]
    return ".".join([*parts[:-1], parts[-1].split(".", 1)[0]])


def is_module(member: str) -> bool:
    base = member.rsplit("/", 1)[-1]
    return base.endswith(".so") or ".so." in base


def _sha256(path: Path, label: str) -> str:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError as exc:
        raise BadKernels(f"{label}: cannot read: {exc.strerror}") from None


def wheel_machine(filename: str) -> str | None:
    """The one ELF machine a wheel's platform tags name (``…-linux_aarch64.whl`` → ``aarch64``);
    None for ``any``, several, or a name that is not a wheel's."""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion):
        return None
    found = {m for t in tags for m in MACHINES.values() if t.platform.endswith("_" + m)}
    return found.pop() if len(found) == 1 else None


def _read_and_delete(part: Path, name: str, where: str, reached: Callable[[], Mapping[str, Any]],
                     archs: Collection[str] | None, machine: str | None = None) -> Module:
    """List the module (an ELF for ``machine``, when the wheel names one); then, with the wheel's
    dispatch (``reached``), disassemble the code it reaches on ``archs`` (None: every arch it sends
    there; :mod:`comfyimg.kernels.sass`); delete it."""
    try:
        module = read_module(part, name, where, machine)
        if module.sass or module.ptx:
            module = sass.read_module_code(part, module, reached(), where, archs)
        return module
    finally:
        part.unlink(missing_ok=True)


# The largest compiled module read (real attention extensions are well under 1 GiB): a member
# that inflates past it (a zip bomb) stops here instead of filling the disk.
MAX_MODULE_BYTES = 4 << 30


def _copy_capped(src: IO[bytes], dst: IO[bytes], where: str) -> None:
    total = 0
    while chunk := src.read(CHUNK):
        total += len(chunk)
        if total > MAX_MODULE_BYTES:
            raise BadKernels(f"{where}: the zip member inflates past {MAX_MODULE_BYTES} bytes; "
                             "not a compiled module this tool reads")
        dst.write(chunk)


def _extract_and_read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, part: Path, where: str,
                      reached: Callable[[], Mapping[str, Any]], archs: Collection[str] | None,
                      machine: str | None = None) -> Module:
    """Stream one member to ``part``, list and disassemble it with cuobjdump, delete it."""
    try:
        with zf.open(info) as src, open(part, "wb") as dst:
            _copy_capped(src, dst, where)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError,
            RuntimeError, NotImplementedError) as exc:  # encrypted; unsupported compression
        part.unlink(missing_ok=True)
        raise BadKernels(f"{where}: the zip member cannot be read: {exc}") from None
    return _read_and_delete(part, module_name(info.filename), where, reached, archs, machine)


# Members inflated side by side: zlib and the CRC check release the GIL, so two threads use two
# cores (the build machine has two); at most this many modules are on disk at a time.
WORKERS = 2


def read_wheel(path: Path, name: str | None = None, archs: Collection[str] | None = None) -> WheelKernels:
    """Every compiled module of the wheel at ``path`` (named ``name``, default its file name)
    with its targets, and the wheel's sha256; the code its dispatch reaches is disassembled on
    ``archs`` (None, when recording: every arch the dispatch sends to a module).

    Each ``.so`` is streamed to a temp file, listed by cuobjdump, the code the dispatch reaches
    disassembled (:mod:`comfyimg.kernels.sass`; it waits for the dispatch, read alongside) and
    deleted, two members side by side (at most two on disk at a time); the sha256 and the
    dispatch (the wheel's own Python) are read alongside, so memory stays flat and the wall time
    stays close to one read of the wheel."""
    label = name or path.name
    machine = wheel_machine(label)  # an aarch64 wheel holds aarch64 ELFs: the same fatbins
    _, version = cuobjdump()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadKernels(f"{label}: not a readable wheel (zip): {exc}") from None
    with zf, tempfile.TemporaryDirectory(prefix="comfyimg-kernels-") as tmp, \
            ThreadPoolExecutor(max_workers=2 + WORKERS) as pool:
        hashing = pool.submit(_sha256, path, label)
        reading = pool.submit(dispatch.from_path, path)  # its own handle
        members = [i for i in zf.infolist() if not i.is_dir() and is_module(i.filename)]
        gate = threading.BoundedSemaphore(WORKERS)

        def one(n: int, info: zipfile.ZipInfo) -> Module:
            with gate:
                return _extract_and_read(zf, info, Path(tmp) / f"module-{n}.so", f"{label}: {info.filename}",
                                         reading.result, archs, machine)

        listings = [pool.submit(one, n, info) for n, info in enumerate(members)]
        modules = [f.result() for f in listings]
        digest = hashing.result()
        found = reading.result()
    return WheelKernels(label, digest, version, tuple(sorted(modules, key=lambda m: m.name)), found)


__all__ = ["WheelKernels", "is_module", "module_name", "read_wheel"]
