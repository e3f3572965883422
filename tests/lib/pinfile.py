"""``wheels.toml`` text for tests and benchmarks: one ``[profiles.NAME]`` or ``[[wheel]]``
table at a time, in the layout a person would write."""

from __future__ import annotations

import json
from collections.abc import Sequence


def _strings(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def profile(name: str, *, torch: str, torch_index: str, cuda: str | None = None,
            archs: Sequence[str] = (), python: str = "cp312", platform: str = "linux_x86_64") -> str:
    lines = [f"[profiles.{name}]", f'python = "{python}"', f'platform = "{platform}"',
             f'torch = "{torch}"', f'torch_index = "{torch_index}"']
    if cuda:
        lines.append(f'cuda = "{cuda}"')
    if archs:
        lines.append(f"archs = {_strings(archs)}")
    return "\n".join(lines) + "\n"


def wheel(name: str, version: str, url: str, *, targets: Sequence[str], provides: Sequence[str] = (),
          arch: str | None = None, sha256: str | None = None, github: str | None = None,
          release: str | None = None, comment: str | None = None) -> str:
    """One ``[[wheel]]`` table; ``github`` + ``release`` make its source, ``comment`` the line above."""
    lines = [f"# {comment}"] if comment else []
    lines += ["[[wheel]]", f'name = "{name}"']
    if arch:
        lines.append(f'arch = "{arch}"')
    lines += [f'version = "{version}"', f'url = "{url}"']
    if sha256:
        lines.append(f'sha256 = "{sha256}"')
    if github:
        lines.append(f'source = {{ github = "{github}", release = "{release}" }}')
    lines += [f"targets = {_strings(targets)}", f"provides = {_strings(provides or [name])}"]
    return "\n".join(lines) + "\n"
