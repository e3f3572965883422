"""The docker CLI for tests and the GPU scripts (stdlib only: tests/gpu/fullpath.py runs where
pytest is not installed). The package itself talks to docker through python-on-whales."""

from __future__ import annotations

import subprocess


def docker(*args: str, timeout: float = 300, check: bool = False, env: dict | None = None,
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], text=True, capture_output=True, timeout=timeout, check=check,
                          env=env)
