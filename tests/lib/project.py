"""One project factory: a throw-away copy of the project (the real ``tasks.py``, a
``wheels.toml``, a ``docker-bake.hcl``, and whatever else a test copies in) to run the real
tasks against, as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INVOKE = [sys.executable, "-m", "invoke"]


@dataclass
class Project:
    root: Path
    timeout: float = 120  # seconds a command may take

    @property
    def pins(self) -> Path:
        return self.root / "wheels.toml"

    def snapshot(self) -> dict[str, bytes]:
        """Every file's bytes, to prove a failed command changed nothing."""
        return {
            str(p.relative_to(self.root)): p.read_bytes()
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        }

    def env(self, **extra: str | None) -> dict[str, str]:
        """The environment of a run: this one, under CI, plus ``extra`` (None removes a variable)."""
        env = {**os.environ, "CI": "1", **extra}
        return {k: v for k, v in env.items() if v is not None}

    def run(self, *args: str, env: dict[str, str | None] | None = None, timeout: float | None = None,
            **popen: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*args], cwd=self.root, env=self.env(**(env or {})), text=True,
                              capture_output=True, timeout=timeout or self.timeout, check=False,
                              **popen)  # type: ignore[call-overload]

    def invoke(self, *args: str, env: dict[str, str | None] | None = None, timeout: float | None = None,
               **popen: object) -> subprocess.CompletedProcess[str]:
        return self.run(*INVOKE, *args, env=env, timeout=timeout, **popen)


def make_project(root: Path, wheels_toml: str | bytes | None, bake_hcl: str | None = None, *,
                 copy: tuple[str, ...] = ()) -> Path:
    """Fill ``root`` (emptied first): the real tasks.py, ``wheels_toml`` (None: no file), the
    given docker-bake.hcl (None: the real one) and the repository paths in ``copy``."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copy(REPO / "tasks.py", root / "tasks.py")
    if bake_hcl is None:
        shutil.copy(REPO / "docker-bake.hcl", root / "docker-bake.hcl")
    else:
        (root / "docker-bake.hcl").write_text(bake_hcl)
    for rel in copy:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / rel).is_dir():
            shutil.copytree(REPO / rel, root / rel)
        else:
            shutil.copy(REPO / rel, root / rel)
    if isinstance(wheels_toml, str):
        (root / "wheels.toml").write_text(wheels_toml, encoding="utf-8")
    elif isinstance(wheels_toml, bytes):
        (root / "wheels.toml").write_bytes(wheels_toml)
    return root
