"""The one ``wheels.toml`` builder for tests and benchmarks: one ``[profiles.NAME]`` or
``[[wheel]]`` table at a time, in the layout a person would write; :func:`pin_toml` for a pin of a
wheel built on disk, :func:`recorded` to record its kernels as ``invoke bump`` does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from comfyimg.audit import record
from comfyimg.kernels.read import read_wheel
from comfyimg.pins import edit as pinedit
from comfyimg.pins import load as pins
from tests.lib.wheels import sha256_file


def _strings(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def profile(name: str, *, torch: str, torch_index: str, cuda: str | None = None,
            archs: Sequence[str] = (), python: str = "cp312", platform: str = "linux_x86_64",
            platforms: Sequence[str] = ()) -> str:
    """One ``[profiles.NAME]``; ``platforms`` (several) replaces ``platform``."""
    where = f"platforms = {_strings(platforms)}" if platforms else f'platform = "{platform}"'
    lines = [f"[profiles.{name}]", f'python = "{python}"', where,
             f'torch = "{torch}"', f'torch_index = "{torch_index}"']
    if cuda:
        lines.append(f'cuda = "{cuda}"')
    if archs:
        lines.append(f"archs = {_strings(archs)}")
    return "\n".join(lines) + "\n"


def wheel(name: str, version: str, url: str, *, targets: Sequence[str], provides: Sequence[str] = (),
          arch: str | None = None, sha256: str | None = None, github: str | None = None,
          release: str | None = None, comment: str | None = None, extra: str = "",
          source: str | None = None, platform: str | None = None) -> str:
    """One ``[[wheel]]`` table; ``github`` + ``release`` make its source (or ``source``, an inline
    table as written, e.g. an index), ``comment`` the line above, ``extra`` (whole lines) ends it."""
    lines = [f"# {comment}"] if comment else []
    lines += ["[[wheel]]", f'name = "{name}"']
    if arch:
        lines.append(f'arch = "{arch}"')
    if platform:
        lines.append(f'platform = "{platform}"')
    lines += [f'version = "{version}"', f'url = "{url}"']
    if sha256:
        lines.append(f'sha256 = "{sha256}"')
    if github:
        source = f'{{ github = "{github}", release = "{release}" }}'
    if source:
        lines.append(f"source = {source}")
    lines += [f"targets = {_strings(targets)}", f"provides = {_strings(provides or [name])}"]
    return "\n".join(lines) + "\n" + extra


# A CUDA profile serving five archs and the bake file naming its one target, for the kernel
# coverage tests (check, audit, dispatch).
BAKE_COMPLETE_CUDA = 'target "complete-cuda" {}\n'
PROFILE_CUDA = "# coverage test pins\n" + profile("cuda", torch="2.9.0", torch_index="cu128", cuda="12.9",
                                                  archs=["sm80", "sm86", "sm89", "sm90", "sm120"])


def pin_toml(name: str, version: str, wheel_file: Path, *, sha: str | None = None, extra: str = "") -> str:
    """A commented ``[[wheel]]`` of ``complete-cuda`` for a wheel on disk (its sha256 unless ``sha``)."""
    return "\n" + wheel(name, version, f"https://example.invalid/{wheel_file.name}",
                        sha256=sha or sha256_file(wheel_file), github="pixeloven/SageAttention", release="v9",
                        targets=["complete-cuda"], comment=f"{name}: a comment that must survive", extra=extra)


def recorded(text: str, path: Path, *wheels: Path | None) -> str:
    """``text`` with each wheel's kernels recorded by the same code bump uses (None: skip that pin)."""
    loaded = pins.loads(text, path)
    changes = {i: record.record_fields(read_wheel(w)) for i, w in enumerate(wheels) if w}
    return pinedit.dumps_with_changes(text, changes) if loaded else text
