"""Pins → the generated files the images are built from.

* ``generated/requirements/<target>.txt`` (and ``<target>-<arch>.txt`` for per-arch
  wheels): hash-pinned requirements, installed with
  ``pip install --require-hashes --no-deps``.
* ``generated/wheels.bake.json``: bake variables (torch version and index per
  profile, the per-arch targets), read by ``docker-bake.hcl``.
* The targets of ``docker-bake.hcl`` and the labels they carry: the names it declares (pins
  name them in ``targets``), the pins a resolved target installs, and its ``io.comfyimg.pins``
  label. Read with a real HCL parser (python-hcl2), not a pattern: a ``target "x" {`` line
  inside a heredoc or a comment is text, not a target. ``invoke check`` needs no Docker engine
  for it; ``invoke bake`` checks the same names again against buildx's own evaluation.

Output is deterministic: rendering twice gives byte-identical files.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from comfyimg.errors import BadInput
from comfyimg.fsutil import CHANGED, atomic_write_many, read_bytes, read_text
from comfyimg.audit import coverage, report
from comfyimg.pins import comfyui as comfyui_pin
from comfyimg.pins.model import DOCKER_PLATFORMS, Pin, Pins, docker_arch, record_hash_command
from comfyimg.untrusted import one_line

GENERATED = Path("generated")
REQUIREMENTS = GENERATED / "requirements"
BAKE_VARS = GENERATED / "wheels.bake.json"
PER_ARCH_TARGET = "complete-cuda"  # the bake target docker-bake.hcl expands per arch


def _requirement(pin: Pin) -> list[str]:
    if pin.sha256 is None:
        return [
            f"# {pin.key} {pin.version}: sha256 not recorded; pip refuses this line under --require-hashes.",
            f"# Record it with: {record_hash_command(pin)}",
            f"{pin.name} @ {pin.url}",
        ]
    return [f"{pin.name} @ {pin.url} --hash=sha256:{pin.sha256}"]


def image_name(pins: Pins, target: str, arch: str | None = None, platform: str | None = None) -> str:
    """The bake target that builds ``target`` for ``arch`` on ``platform``: ``complete-cuda``,
    ``complete-cuda-sm90``, ``complete-cuda-arm64``, ``complete-cuda-sm90-arm64`` (a profile's
    first platform has no suffix)."""
    name = f"{target}-{arch}" if arch else target
    if platform and platform != pins.platform_of(target, None):
        name += f"-{docker_arch(platform)}"
    return name


def requirements_text(pins: Pins, target: str, arch: str | None = None, platform: str | None = None) -> str:
    profile = pins.profile_for(target)
    abi = profile.abi_for(platform)
    name = image_name(pins, target, arch, platform)
    lines = [
        "# GENERATED FILE - do not edit.",
        f"# From {pins.path.name} by `invoke render` (checked by `invoke check`).",
        f"# Image: {name}; ABI {abi.describe()}, torch index {profile.torch_index}.",
        "# Installed with: pip install --require-hashes --no-deps -r <this file>",
    ]
    for pin in pins.for_target(target, arch, platform):
        lines += _requirement(pin)
    for dist, per_arch in ({} if arch else pins.arch_only(target, platform)).items():
        archs = ", ".join(p.arch for p in per_arch if p.arch)
        lines.append(f"# NOTE: {dist} is pinned per GPU arch only ({archs}): this image, built without an "
                     f"arch, has NO {dist}; the {image_name(pins, target, '<arch>', platform)} images have it.")
    return "\n".join(lines) + "\n"


def bake_vars(pins: Pins) -> dict[str, object]:
    variables: dict[str, object] = {}
    for name, profile in sorted(pins.profiles.items()):
        prefix = name.upper()
        variables[f"{prefix}_TORCH_VERSION"] = {"default": profile.abi.torch}
        variables[f"{prefix}_TORCH_INDEX"] = {"default": profile.torch_index}
        first, *others = profile.all_platforms
        variables[f"{prefix}_PLATFORM"] = {"default": DOCKER_PLATFORMS[first]}
        variables[f"{prefix}_OTHER_PLATFORMS"] = {"default": [docker_arch(p) for p in others]}
    variables["CUDA_ARCH_TARGETS"] = {"default": pins.archs_for(PER_ARCH_TARGET)}
    other = pins.profiles["cuda"].all_platforms[1:] if "cuda" in pins.profiles else ()
    variables["CUDA_ARCH_PLATFORM_TARGETS"] = {"default": [
        f"{arch}-{docker_arch(p)}" for p in other for arch in pins.archs_for(PER_ARCH_TARGET, p)]}
    if pins.comfyui:  # COMFYUI_REF: the recorded commit, else the tag
        variables.update(comfyui_pin.bake_vars(pins.comfyui))
    return {
        "//": f"GENERATED from {pins.path.name} by `invoke render` - do not edit.",
        "variable": variables,
    }


def render(pins: Pins) -> dict[Path, str]:
    """Every generated file, as repo-relative path → content."""
    files: dict[Path, str] = {}
    for target in pins.targets():
        for platform in pins.platforms_for(target):
            files[REQUIREMENTS / f"{image_name(pins, target, None, platform)}.txt"] = \
                requirements_text(pins, target, None, platform)
            for arch in pins.archs_for(target, platform):
                files[REQUIREMENTS / f"{image_name(pins, target, arch, platform)}.txt"] = \
                    requirements_text(pins, target, arch, platform)
    files[BAKE_VARS] = json.dumps(bake_vars(pins), indent=2, sort_keys=True) + "\n"

    files[report.DOC] = report.markdown(pins)
    return files


@dataclass(frozen=True)
class Drift:
    path: Path
    diff: str


def _stale(root: Path, files: dict[Path, str]) -> list[Path]:
    folder = root / REQUIREMENTS
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(root) for p in folder.glob("*.txt") if p.relative_to(root) not in files)


def is_current(path: Path, want: str) -> bool:
    """Byte for byte: a file turned CRLF, or not UTF-8, has drifted."""
    return path.exists() and read_bytes(path) == want.encode("utf-8")


def _lines(path: Path) -> list[str]:
    """A file's lines for a diff, line endings kept (``\r`` shows as ``\\r``)."""
    if not path.exists():
        return []
    text = read_bytes(path).decode("utf-8", errors="backslashreplace").replace("\r", "\\r")
    return text.splitlines(keepends=True)


def check(pins: Pins, root: Path) -> list[Drift]:
    """Generated files that differ from what ``render`` would write (missing and stale ones too)."""
    files = render(pins)
    drifts: list[Drift] = []
    for rel, want in sorted(files.items()):
        path = root / rel
        if not is_current(path, want):
            diff = difflib.unified_diff(_lines(path), want.splitlines(keepends=True),
                                        f"a/{rel}" if path.exists() else "/dev/null", f"b/{rel}")
            drifts.append(Drift(rel, "".join(diff)))
    for rel in _stale(root, files):
        diff = difflib.unified_diff(_lines(root / rel), [], f"a/{rel}", "/dev/null")
        drifts.append(Drift(rel, "".join(diff)))
    return drifts


def changed(pins: Pins, root: Path, files: dict[Path, str] | None = None) -> dict[Path, bytes | str]:
    """The generated files under ``root`` whose content ``pins`` changes: path → new content."""
    files = render(pins) if files is None else files
    return {root / rel: text for rel, text in files.items() if not is_current(root / rel, text)}


def write(pins: Pins, root: Path) -> list[Path]:
    """Write every generated file that changed (atomically) and remove stale ones."""
    files = render(pins)
    changed_files = changed(pins, root, files)
    atomic_write_many(changed_files)
    stale = _stale(root, files)
    for rel in stale:
        (root / rel).unlink()
        CHANGED.append(root / rel)
    return sorted([p.relative_to(root) for p in changed_files] + stale)

BAKE_FILE = "docker-bake.hcl"
PINS_LABEL = "io.comfyimg.pins"
PLATFORM_LABEL = "io.comfyimg.pins.platform"  # which platform's pins the image carries: linux_aarch64
_PER_ARCH = re.compile(r"^(?P<base>.+)-(?P<arch>sm\d{2,3}[a-z]?)$", re.ASCII)
_SUFFIX = {docker_arch(p): p for p in DOCKER_PLATFORMS}  # arm64 -> linux_aarch64


def _label(raw: str) -> str:
    """A block label as python-hcl2 gives it (``'"name"'``) → ``name``."""
    return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw


def parse_targets(text: str, name: str = BAKE_FILE) -> set[str]:
    """Target names declared in bake-file ``text``; malformed HCL is bad input with its line."""
    import hcl2  # optional: imported here, commands that never read the bake file do without the parser
    from lark.exceptions import LarkError, UnexpectedInput  # optional: python-hcl2's parser, as above

    try:
        tree = hcl2.loads(text)
    except UnexpectedInput as exc:
        raise BadInput(f"{one_line(name)}:{exc.line}: syntax: not valid HCL "
                       f"({one_line(str(exc).strip().splitlines()[0])})") from None
    except (LarkError, ValueError, RecursionError) as exc:
        raise BadInput(f"{one_line(name)}:1: syntax: not valid HCL ({type(exc).__name__})") from None
    found: set[str] = set()
    for block in tree.get("target", []) if isinstance(tree, dict) else []:
        if isinstance(block, dict):
            found.update(_label(str(key)) for key in block if not str(key).startswith("__"))
    return found


def targets(bake_file: Path) -> set[str] | None:
    """Target names declared in ``docker-bake.hcl``, or None when there is no such file."""
    if not bake_file.exists() and not bake_file.is_symlink():
        return None
    return parse_targets(read_text(bake_file), bake_file.name)


def image_of(pins: Pins, target: str) -> tuple[str, str | None, str] | None:
    """A resolved bake target → (the pinned target, arch, platform) it builds; None when
    wheels.toml does not cover it. ``complete-cuda-sm90-arm64`` → (complete-cuda, sm90, linux_aarch64)."""
    base, _, suffix = target.rpartition("-")
    platform = _SUFFIX.get(suffix)
    if platform is None:
        base = target
    arch = None
    if base not in pins.targets() and (m := _PER_ARCH.match(base)):
        base, arch = m["base"], m["arch"]
    if base not in pins.targets():
        return None
    platforms = pins.platforms_for(base)
    if platform is None:
        platform = platforms[0]
    elif platform == platforms[0] or platform not in platforms:
        return None  # the first platform's images carry no suffix
    return base, arch, platform


def pins_for(pins: Pins, target: str) -> list[Pin] | None:
    """The pins a resolved bake target installs; None when wheels.toml does not cover it."""
    found = image_of(pins, target)
    return None if found is None else pins.for_target(*found)


def platform_for(pins: Pins, target: str) -> str | None:
    """The wheel platform whose pins ``target`` installs (its ``io.comfyimg.pins.platform`` label)."""
    found = image_of(pins, target)
    return None if found is None else found[2]


def pins_label(pins: Pins, target: str, installed: list[Pin]) -> str:
    """The ``io.comfyimg.pins`` label: what the image installs, as compact JSON."""
    return json.dumps([{"name": p.name, "version": p.version, "sha256": p.sha256,
                        "archs": list(coverage.serves(pins, p))} for p in installed],
                      separators=(",", ":"), sort_keys=True)
