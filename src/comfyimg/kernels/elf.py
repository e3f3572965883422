"""The ELF facts the kernel reader checks itself, before handing a compiled module to cuobjdump:
that it is a whole 64-bit little-endian ELF file, the machine it is for (x86-64 or aarch64: the
fatbin inside is the same either way) and the names of its sections."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

# e_machine → the architecture part of a wheel platform tag (linux_x86_64, manylinux_2_34_aarch64).
MACHINES = {62: "x86_64", 183: "aarch64"}


@dataclass(frozen=True)
class Elf:
    machine: str  # "x86_64", "aarch64", or "EM_<n>" for another machine
    sections: set[str]


class BadKernels(ValueError):
    """A wheel, zip member, ELF file or fatbin that cannot be read (bad input: exit 2)."""


def read(path: Path, where: str) -> Elf:
    """Machine and section names of an ELF64 little-endian file; a cut-off or mangled ELF is
    :class:`BadKernels`. cuobjdump reports a truncated file as "does not contain device code", like
    a host-only one."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF":
            raise BadKernels(f"{where}: not an ELF file")
        if head[4] != 2 or head[5] != 1:
            raise BadKernels(f"{where}: not a 64-bit little-endian ELF file")
        e_machine, = struct.unpack_from("<H", head, 0x12)
        machine = MACHINES.get(e_machine, f"EM_{e_machine}")
        shoff, = struct.unpack_from("<Q", head, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
        if shnum == 0:  # no section table (or more than 65279 sections): cuobjdump decides
            return Elf(machine, set())
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
    return Elf(machine, {strings[n:strings.find(b"\0", n)].decode("ascii", "replace") for n, *_ in headers})
