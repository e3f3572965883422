"""The ELF facts the kernel reader checks itself, before handing a compiled module to cuobjdump:
that it is a whole 64-bit little-endian ELF file, and the names of its sections."""

from __future__ import annotations

import struct
from pathlib import Path


class BadKernels(ValueError):
    """A wheel, zip member, ELF file or fatbin that cannot be read (bad input: exit 2)."""


def sections(path: Path, where: str) -> set[str]:
    """Section names of an ELF64 little-endian file; a cut-off or mangled ELF is :class:`BadKernels`.
    cuobjdump reports a truncated file as "does not contain device code", like a host-only one."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF":
            raise BadKernels(f"{where}: not an ELF file")
        if head[4] != 2 or head[5] != 1:
            raise BadKernels(f"{where}: not a 64-bit little-endian ELF file")
        shoff, = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
        if shnum == 0:  # no section table (or more than 65279 sections): cuobjdump decides
            return set()
        if shentsize != 64 or shoff + shnum * shentsize > size or shstrndx >= max(shnum, 1):
            raise BadKernels(f"{where}: truncated or corrupt ELF (section headers at {shoff} beyond "
                             f"the {size}-byte file)")
        fh.seek(shoff)
        table = fh.read(shnum * 64)
        headers = [struct.unpack_from("<IIQQQQ", table, i * 64) for i in range(shnum)]
        for _name, kind, _flags, _addr, offset, length in headers:
            if kind != 8 and offset + length > size:  # 8 = SHT_NOBITS
                raise BadKernels(f"{where}: truncated ELF (a section ends at {offset + length}, "
                                 f"the file has {size} bytes)")
        _, _, _, _, str_off, str_len = headers[shstrndx]
        fh.seek(str_off)
        strings = fh.read(str_len)
    return {strings[n:strings.find(b"\0", n)].decode("ascii", "replace") for n, *_ in headers}
