"""Test wheels with real compiled modules: the nvcc-built objects of
``tests/fixtures/cuda-objects`` (committed; see its README and build.sh) put into wheels under
real module names.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

from tests.lib import vendored_sage_files
from tests.lib.wheels import build_wheel

REPO = Path(__file__).resolve().parents[2]
SUFFIX = ".cpython-312-x86_64-linux-gnu.so"
ARM_SUFFIX = ".cpython-312-aarch64-linux-gnu.so"
EM_AARCH64 = 183

# The seed's sageattention wheel, by its build recipe (pixeloven/SageAttention 7bd3a0e,
# TORCH_CUDA_ARCH_LIST="7.0;7.5;8.0;8.6;8.7;8.9;9.0;10.0"): module -> fixture object.
SEED_SAGE2 = {"_qattn_sm80": "r_80", "_qattn_sm89": "r_89_100a", "_qattn_sm90": "r_90a",
              "_fused": "r_80_89_90a_100a"}
# A sageattention that serves sm80, sm86, sm89, sm90 and sm120 (the _fused kernels by PTX JIT
# above sm80).
FULL_SAGE2 = {"_qattn_sm80": "r_80", "_qattn_sm89": "r_89_120a", "_qattn_sm90": "r_90a",
              "_fused": "r_80_ptx80"}
# One wheel per arch, as upstream's setup.py builds it with TORCH_CUDA_ARCH_LIST=X.Y.
PER_ARCH_SAGE2 = {
    "sm80": {"_qattn_sm80": "r_80", "_fused": "r_80"},
    "sm86": {"_qattn_sm80": "r_80", "_fused": "r_80"},
    "sm89": {"_qattn_sm80": "r_89_100a", "_qattn_sm89": "r_89_100a", "_fused": "r_89_100a"},
    "sm90": {"_qattn_sm80": "r_90a", "_qattn_sm89": "r_90a", "_qattn_sm90": "r_90a", "_fused": "r_90a"},
    "sm100": {"_qattn_sm80": "r_100a", "_qattn_sm89": "r_100a", "_fused": "r_100a"},
    "sm120": {"_qattn_sm80": "r_89_120a", "_qattn_sm89": "r_89_120a", "_fused": "r_89_120a"},
}


OBJECTS = REPO / "tests" / "fixtures" / "cuda-objects"
LISTING = OBJECTS / "listing.txt"


def objects_dir() -> Path:
    """The committed fixture objects (part of the repository: never missing)."""
    return OBJECTS


def so(name: str) -> bytes:
    return (objects_dir() / f"{name}.so").read_bytes()


def fatbin(name: str) -> bytes:
    """The ``.nv_fatbin`` section of a fixture object: the GPU code nvcc put in it, whatever the host."""
    data = so(name)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * 64) for i in range(shnum)]
    strings = headers[shstrndx][4]
    for n, _kind, _flags, _addr, offset, size in headers:
        if data[strings + n:data.index(b"\0", strings + n)] == b".nv_fatbin":
            return data[offset:offset + size]
    raise AssertionError(f"{name}.so has no .nv_fatbin")


def aarch64_so(name: str) -> bytes:
    """A minimal aarch64 shared object (ELF64 LE, ``e_machine`` EM_AARCH64) carrying the fixture's
    fatbin in its ``.nv_fatbin`` section, as nvcc's aarch64 build of the same kernel would: the
    fatbin does not depend on the host CPU. Nothing here is ever loaded, only read."""
    fat = fatbin(name)
    names = b"\0.nv_fatbin\0.shstrtab\0"
    fat_at, names_at = 64, 64 + len(fat)
    headers_at = (names_at + len(names) + 7) & ~7
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, version 1, System V
    header = ident + struct.pack("<HHIQQQIHHHHHH", 3, EM_AARCH64, 1, 0, 0, headers_at, 0, 64, 0, 0, 64, 3, 2)
    body = header + fat + names
    body += bytes(headers_at - len(body))
    sections = bytes(64)  # SHN_UNDEF
    sections += struct.pack("<IIQQQQIIQQ", 1, 1, 2, 0, fat_at, len(fat), 0, 0, 8, 0)  # PROGBITS, SHF_ALLOC
    sections += struct.pack("<IIQQQQIIQQ", 11, 3, 0, 0, names_at, len(names), 0, 0, 1, 0)  # STRTAB
    return body + sections


def sage2_wheel(directory: Path, modules: Mapping[str, str], *, version: str = "2.2.0",
                filename: str | None = None, source: str | None = None,
                python: Mapping[str, str | bytes] | None = None, aarch64: bool = False) -> Path:
    """A sageattention wheel whose ``sageattention.<module>`` are the given fixture objects and
    whose Python is the vendored upstream ``source`` (tests/vendor), or ``python``, or a stub
    whose dispatch cannot be read."""
    files: dict[str, str | bytes] = {"sageattention/__init__.py": "from .core import sageattn\n",
                                     "sageattention/core.py": "def sageattn(*a, **k): ...\n"}
    if source is not None:
        files = dict(vendored_sage_files(source))
    files.update(python or {})
    if aarch64:  # an aarch64 wheel: aarch64 ELFs carrying the same fatbins, an aarch64 file name
        files.update({f"sageattention/{mod}{ARM_SUFFIX}": aarch64_so(obj) for mod, obj in modules.items()})
    else:
        files.update({f"sageattention/{mod}{SUFFIX}": so(obj) for mod, obj in modules.items()})
    platform = "linux_aarch64" if aarch64 else "linux_x86_64"
    return build_wheel(directory, "sageattention", version,
                       filename=filename or f"sageattention-{version}-290.129-cp312-cp312-{platform}.whl",
                       files=files)


def sage3_wheel(directory: Path, obj: str, *, version: str = "1.0.0", filename: str | None = None) -> Path:
    files: dict[str, str | bytes] = {"sageattn3/__init__.py": "def sageattn3_blackwell(*a, **k): ...\n",
                                     f"fp4attn_cuda{SUFFIX}": so(obj), f"fp4quant_cuda{SUFFIX}": so(obj)}
    return build_wheel(directory, "sageattn3", version,
                       filename=filename or f"sageattn3-{version}-290.129-cp312-cp312-linux_x86_64.whl",
                       files=files)


# --------------------------------------------------------------------------- compiled out below the guard

# tests/fixtures/cuda-trap (see its README and build.sh): trap.cu's FP8 MMA guarded by
# `#if __CUDA_ARCH__ >= 890`, a breakpoint below, compiled for sm_80 (t_80), sm_80 + sm_89
# (t_80_89), PTX compute_80 (t_ptx80); t_only_80 holds only the guarded kernel.
TRAP_OBJECTS = REPO / "tests" / "fixtures" / "cuda-trap"

# A sageattention whose dispatch sends sm89 to _qattn_sm89.qk_fp8_attn, the guarded kernel by name.
TRAP_PYTHON = {
    "sageattention/__init__.py": "from .core import sageattn\n",
    "sageattention/core.py": '''import torch

from . import _qattn_sm89


def get_cuda_arch():
    major, minor = torch.cuda.get_device_capability(0)
    return f"sm{major}{minor}"


def sageattn(q, k, v):
    arch = get_cuda_arch()
    if arch == "sm89":
        return sageattn_fp8(q, k, v)
    else:
        raise ValueError(f"Unsupported CUDA architecture: {arch}")


def sageattn_fp8(q, k, v):
    out = torch.empty_like(q)
    _qattn_sm89.qk_fp8_attn(out, q, k)
    return out
''',
}


def trap_wheel(directory: Path, obj: str, *, python: Mapping[str, str] | None = None,
               modules: Mapping[str, str] | None = None, filename: str | None = None) -> Path:
    """A sageattention wheel whose ``_qattn_sm89`` is the cuda-trap object ``obj``; its Python is
    :data:`TRAP_PYTHON` (or ``python``); ``modules``: more cuda-objects fixtures by module."""
    files: dict[str, str | bytes] = dict(python or TRAP_PYTHON)
    files[f"sageattention/_qattn_sm89{SUFFIX}"] = (TRAP_OBJECTS / f"{obj}.so").read_bytes()
    files.update({f"sageattention/{mod}{SUFFIX}": so(o) for mod, o in (modules or {}).items()})
    return build_wheel(directory, "sageattention", "2.2.0",
                       filename=filename or "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl",
                       files=files)
