"""Wheel file name → what it was built for; does it fit an image's ABI, and if not, why.

Understands the conventions used for pre-built attention wheels:

* PEP 427 build tags, ``sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl``:
  ``290`` = torch 2.9.0, ``129`` = CUDA 12.9.
* PEP 440 local versions, ``sageattention-2.2.0+cu130.torch2.13.0.sm90-…``
  (one wheel per SM), ``…+cu128torch2.8.0-…`` and ``…+cu130torch2.11-…`` (Comfy-Org's
  index: torch major.minor, fits every patch release of it).
* abi3 and manylinux platform tags, through :mod:`packaging.tags`, for x86-64 and aarch64
  (``linux_aarch64``, ``manylinux_2_XX_aarch64`` up to the image's glibc, ``manylinux2014_aarch64``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

_PYTHON_TAG = re.compile(r"^cp(?P<major>\d)(?P<minor>\d+)$", re.ASCII)
_PLATFORM = re.compile(r"^(?P<os>linux|manylinux_\d+_\d+|manylinux\d+|musllinux_\d+_\d+|win|macosx_\d+_\d+)_(?P<arch>\w+)$", re.ASCII)
_BUILD_TAG = re.compile(r"^(?P<torch>\d{3,4})\.(?P<cuda>\d{3})$", re.ASCII)
_LOCAL_CUDA = re.compile(r"(?:^|\.)cu(?P<cuda>\d{3})(?=\.|torch|$)", re.ASCII)
_LOCAL_TORCH = re.compile(r"torch(?P<torch>\d+(?:\.\d+){1,2})(?=\.|$)", re.ASCII)
_LOCAL_SM = re.compile(r"(?:^|\.)(?P<sm>sm\d{2,3}[a-z]?)(?=\.|$)", re.ASCII)
SM = re.compile(r"^sm\d{2,3}[a-z]?$", re.ASCII)
# glibc of Ubuntu 24.04, the images' base; manylinux wheels up to it fit.
_DEFAULT_GLIBC = (2, 39)


class InvalidWheelName(ValueError):
    """A file name that is not a wheel's (raised by :func:`parse_wheel` only)."""


@dataclass(frozen=True)
class ImageABI:
    """What an image offers to a wheel: interpreter, platform, torch, CUDA, GPU archs."""

    python: str  # "cp312"
    platform: str  # "linux_x86_64"
    torch: str  # "2.9.0"
    cuda: str | None = None  # "12.9"; None for a CPU image
    archs: tuple[str, ...] = ()  # GPU archs the image is built for; () = not restricted
    glibc: tuple[int, int] = _DEFAULT_GLIBC

    def describe(self) -> str:
        parts = [self.python, self.platform, f"torch {self.torch}"]
        parts.append(f"CUDA {self.cuda}" if self.cuda else "CPU")
        return "/".join(parts)


@dataclass(frozen=True)
class WheelABI:
    """What a wheel file name says it was built for."""

    filename: str
    name: NormalizedName
    version: Version
    tags: frozenset[Tag]
    torch: Version | None  # torch it was built against, if the name says
    cuda: str | None  # "12.9", if the name says
    sm: str | None  # "sm90" for per-arch wheels

def _torch_from_digits(digits: str) -> Version:
    # "290" -> 2.9.0, "2100" -> 2.10.0: major, minor..., patch.
    return Version(f"{digits[0]}.{int(digits[1:-1])}.{digits[-1]}")


def _cuda_from_digits(digits: str) -> str:
    # "129" -> "12.9", "130" -> "13.0"
    return f"{int(digits[:2])}.{digits[2:]}"


def parse_wheel(filename: str) -> WheelABI:
    """Parse a wheel file name; raise :class:`InvalidWheelName` with the reason when it is not one."""
    try:
        name, version, build, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        raise InvalidWheelName(f"not a valid wheel file name: {exc}") from None
    torch: Version | None = None
    cuda: str | None = None
    sm: str | None = None
    if build:
        raw = f"{build[0]}{build[1]}"
        m = _BUILD_TAG.match(raw)
        if m:
            torch = _torch_from_digits(m["torch"])
            cuda = _cuda_from_digits(m["cuda"])
    if version.local:
        local = version.local
        if m := _LOCAL_CUDA.search(local):
            cuda = _cuda_from_digits(m["cuda"])
        if m := _LOCAL_TORCH.search(local):
            torch = Version(m["torch"])
        if m := _LOCAL_SM.search(local):
            sm = m["sm"]
    return WheelABI(filename, name, version, tags, torch, cuda, sm)


@lru_cache(maxsize=64)
def _supported_tags(python: str, platform: str, glibc: tuple[int, int]) -> frozenset[Tag]:
    m = _PYTHON_TAG.match(python)
    if not m:
        raise ValueError(f"python tag {python!r} is not a CPython tag like 'cp312'")
    py = (int(m["major"]), int(m["minor"]))
    platforms = [platform]
    pm = _PLATFORM.match(platform)
    if pm and pm["os"] == "linux":
        arch = pm["arch"]
        major, top = glibc
        floor = 4 if arch in ("x86_64", "i686") else 16  # PEP 600: manylinux_2_5 exists only there
        for minor in range(top, floor, -1):
            platforms.append(f"manylinux_{major}_{minor}_{arch}")
        legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
        if floor != 4:  # PEP 599: manylinux2014 is the first legacy tag with aarch64 (and others)
            legacy = {(2, 17): "manylinux2014"}
        platforms += [f"{alias}_{arch}" for (maj, mi), alias in legacy.items() if (maj, mi) <= glibc]
    tags = set(cpython_tags(py, platforms=platforms))
    tags |= set(compatible_tags(py, python, platforms=platforms))
    return frozenset(tags)


def _platforms(wheel: WheelABI) -> str:
    return ", ".join(sorted({t.platform for t in wheel.tags}))


def _pythons(wheel: WheelABI) -> str:
    return ", ".join(sorted({f"{t.interpreter}-{t.abi}" for t in wheel.tags}))


def _platform_reason(wheel: WheelABI, image: ImageABI) -> str:
    for tag in wheel.tags:
        m = re.match(r"^manylinux_(\d+)_(\d+)_(\w+)$", tag.platform, re.ASCII)
        if m and image.platform == f"linux_{m[3]}" and (int(m[1]), int(m[2])) > image.glibc:
            need, have = f"{m[1]}.{m[2]}", ".".join(map(str, image.glibc))
            return f"platform {tag.platform} needs glibc {need} > the image's {have}"
    return f"platform {_platforms(wheel)} ≠ {image.platform}"


def _same_torch(built: Version, image: Version) -> bool:
    """``torch2.11`` (a local version naming major.minor, Comfy-Org style) fits every 2.11.x;
    ``torch2.13.0`` and build tag ``290`` name the exact release."""
    if len(built.release) == 2:
        return built.release == image.release[:2]
    return Version(built.public) == image


def mismatches(wheel: WheelABI, image: ImageABI) -> list[str]:
    """Every reason ``wheel`` does not fit ``image``; an empty list means it fits."""
    reasons: list[str] = []
    supported = _supported_tags(image.python, image.platform, image.glibc)
    if not wheel.tags & supported:
        platform_ok = any(
            t.platform in {s.platform for s in supported} for t in wheel.tags
        )
        python_ok = any(
            (t.interpreter, t.abi) in {(s.interpreter, s.abi) for s in supported} for t in wheel.tags
        )
        if not python_ok:
            reasons.append(f"python {_pythons(wheel)} ≠ {image.python}")
        if not platform_ok:
            reasons.append(_platform_reason(wheel, image))
        if python_ok and platform_ok:
            reasons.append(f"tags {_pythons(wheel)}/{_platforms(wheel)} do not fit {image.python}/{image.platform}")
    if wheel.torch is not None and not _same_torch(wheel.torch, Version(image.torch)):
        reasons.append(f"torch {wheel.torch} ≠ {image.torch}")
    if wheel.cuda is not None:
        if image.cuda is None:
            reasons.append(f"CUDA {wheel.cuda} wheel on a CPU image")
        elif wheel.cuda != image.cuda:
            reasons.append(f"CUDA {wheel.cuda} ≠ {image.cuda}")
    if wheel.sm is not None and image.archs and wheel.sm not in image.archs:
        reasons.append(f"{wheel.sm} not among the image's archs {', '.join(image.archs)}")
    return reasons


def arch_mismatch(wheel: WheelABI, arch: str | None) -> str | None:
    """The one rule for a pin's ``arch``: a per-arch pin takes the wheel built for exactly
    that arch; a pin without an arch takes a wheel built for every arch."""
    if arch and wheel.sm != arch:
        return f"built for {wheel.sm or 'every arch'}, the pin is for {arch}"
    if not arch and wheel.sm:
        return f"built for {wheel.sm} only; the pin has no arch"
    return None


def fit(wheel: WheelABI, image: ImageABI, arch: str | None) -> list[str]:
    """Every reason ``wheel`` is not the file for a pin with ``arch`` in ``image``; [] = it fits.
    ``pins`` (checking wheels.toml) and ``bump`` (choosing an asset) both ask this."""
    return [why for why in [arch_mismatch(wheel, arch)] if why] + mismatches(wheel, image)
