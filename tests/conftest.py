"""Shared fixtures: a throw-away copy of the project to run the real tasks against."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke"]


@dataclass
class Project:
    root: Path

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

    def invoke(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
               ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "CI": "1", **(env or {})}
        return subprocess.run([*INVOKE, *args], cwd=self.root, env=full_env, text=True,
                              capture_output=True, timeout=timeout, check=False)


def make_project(root: Path, wheels_toml: str | bytes | None, bake_hcl: str | None = None) -> Project:
    """A project dir with the real tasks.py, the given wheels.toml and a docker-bake.hcl."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "tasks.py", root / "tasks.py")
    if bake_hcl is None:
        shutil.copy(REPO / "docker-bake.hcl", root / "docker-bake.hcl")
    else:
        (root / "docker-bake.hcl").write_text(bake_hcl)
    if isinstance(wheels_toml, str):
        (root / "wheels.toml").write_text(wheels_toml, encoding="utf-8")
    elif isinstance(wheels_toml, bytes):
        (root / "wheels.toml").write_bytes(wheels_toml)
    return Project(root)


@pytest.fixture
def project_factory(tmp_path):
    def factory(wheels_toml, bake_hcl=None, name="project"):
        return make_project(tmp_path / name, wheels_toml, bake_hcl)
    return factory
