"""Read a wheel: every compiled module with its targets (:mod:`comfyimg.kernels.wheel`) and
the kernel its own Python sends each GPU to (:mod:`comfyimg.kernels.dispatch`), in one pass."""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO

from comfyimg.kernels import dispatch
from comfyimg.kernels.wheel import (
    CHUNK,
    BadKernels,
    Module,
    WheelKernels,
    cuobjdump,
    is_module,
    module_name,
    read_module,
)


def _sha256(path: Path, label: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise BadKernels(f"{label}: cannot read: {exc.strerror}") from None
    return digest.hexdigest()


def _read_and_delete(part: Path, name: str, where: str) -> Module:
    try:
        return read_module(part, name, where)
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


def read_wheel(path: Path, name: str | None = None) -> WheelKernels:
    """Every compiled module of the wheel at ``path`` (named ``name``, default its file name)
    with its targets, and the wheel's sha256.

    One pass over the members: each ``.so`` is streamed to a temp file and listed by cuobjdump
    while the next one is extracted (at most two on disk at a time); the sha256 is computed
    alongside, so memory stays flat and the wall time stays close to one read of the wheel."""
    label = name or path.name
    _, version = cuobjdump()
    modules: list[Module] = []
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadKernels(f"{label}: not a readable wheel (zip): {exc}") from None
    with zf, tempfile.TemporaryDirectory(prefix="comfyimg-kernels-") as tmp, \
            ThreadPoolExecutor(max_workers=3) as pool:
        hashing = pool.submit(_sha256, path, label)
        reading = pool.submit(dispatch.from_path, path)  # its own handle: overlaps cuobjdump
        listing: Future[Module] | None = None
        members = [i for i in zf.infolist() if not i.is_dir() and is_module(i.filename)]
        for n, info in enumerate(members):
            where = f"{label}: {info.filename}"
            part = Path(tmp) / f"module-{n}.so"
            try:
                with zf.open(info) as src, open(part, "wb") as dst:
                    _copy_capped(src, dst, where)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError,
                    RuntimeError, NotImplementedError) as exc:  # encrypted; unsupported compression
                raise BadKernels(f"{where}: the zip member cannot be read: {exc}") from None
            if listing is not None:
                modules.append(listing.result())
            listing = pool.submit(_read_and_delete, part, module_name(info.filename), where)
        if listing is not None:
            modules.append(listing.result())
        digest = hashing.result()
        found = reading.result()
    return WheelKernels(label, digest, version, tuple(sorted(modules, key=lambda m: m.name)), found)


__all__ = ["read_wheel"]
