"""Shared set-up of the build benchmarks (bench/bake_*.py): a throw-away project under
build/bench-projects with copies of the real build files, a TEST wheels.toml whose cuda
profile fits the stand-in core (local/core-standin:test), and a loopback wheel server on a
FIXED port (so that build-arg values, and with them the layer cache keys, stay the same
from run to run).

Needs: a Docker engine with buildx and the base images (bash tools/bootstrap.sh --engine
--test-images). Uses the engine tests' helpers (tests/lib/engine.py, tests/lib/).
"""

from __future__ import annotations

import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lib.engine import (
    OVERRIDE,
    WheelPin,
    engine_problem,
    make_wheel,
    sage2_files,
    sage3_files,
    wheels_toml,
)
from tests.lib.project import REPO as ROOT
from tests.lib.server import serve
from tests.lib.wheels import sha256_file

INVOKE = [sys.executable, "-m", "invoke"]
PORT = int(os.environ.get("BENCH_WHEEL_PORT", "38917"))
LABEL = "bench"


def die_without_engine() -> None:
    problem = engine_problem()
    if problem:
        sys.exit(f"bench: {problem}")


def payload(mb: int, seed: str) -> bytes:
    """Incompressible bytes standing in for a wheel's compiled kernels (deterministic per seed)."""
    import random

    rng = random.Random(seed)
    return b"".join(rng.randbytes(2**20) for _ in range(mb))


@dataclass
class Bench:
    root: Path  # project
    wheels: Path  # served directory
    url: str
    server: object
    # A fresh value per run, written into every wheel: without it a re-run of a benchmark
    # would find its "new" wheel layers in BuildKit's cache from the previous run.
    nonce: str = field(default_factory=lambda: secrets.token_hex(8))

    def pin(self, dist: str, version: str, payload_mb: int = 0) -> WheelPin:
        if dist == "sageattention":
            files: dict[str, str | bytes] = dict(sage2_files(version))
            provides = ("sageattention",)
        else:
            files = dict(sage3_files())
            provides = ("sageattn3", "fp4attn_cuda", "fp4quant_cuda")
        files[f"{dist}/_bench_run.txt"] = self.nonce
        if payload_mb:
            files[f"{dist}/_kernels.bin"] = payload(payload_mb, f"{dist}-{version}-{self.nonce}")
        path = make_wheel(self.wheels, dist, version, files)  # type: ignore[arg-type]
        return WheelPin(dist, version, f"{self.url}/{path.name}", sha256_file(path), provides)

    def write_pins(self, pins: list[WheelPin]) -> None:
        (self.root / "wheels.toml").write_text(wheels_toml(pins), encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CI": "1", "TEST_PIP_INDEX_URL": f"{self.url}/simple/", "IMAGE_LABEL": LABEL}

    def invoke_bake(self, *extra: str) -> list[str]:
        return [*INVOKE, "bake", "-t", "complete-cuda", "--file", OVERRIDE, "--allow", "network.host",
                "--label", LABEL, *extra]

    def raw_bake(self, *extra: str) -> list[str]:
        """The same plan as invoke_bake, straight to buildx: same -f files, --allow, target, --load."""
        return ["docker", "buildx", "bake", "--file", "docker-bake.hcl", "--file", "generated/wheels.bake.json",
                "--file", OVERRIDE, "--allow", "network.host", "--progress", "plain", "--load", *extra,
                "complete-cuda"]

    def run(self, cmd: list[str]) -> float:
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=self.root, env=self.env, capture_output=True, text=True, check=False)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        return took

    def stop(self) -> None:
        self.server.stop()  # type: ignore[attr-defined]
        subprocess.run(["docker", "image", "rm", "--force", f"comfyui:cuda-{LABEL}"], capture_output=True, check=False)
        if not os.environ.get("KEEP_BENCH_PROJECT"):
            shutil.rmtree(self.root, ignore_errors=True)


def setup(name: str) -> Bench:
    die_without_engine()
    root = ROOT / "build" / "bench-projects" / name
    if root.exists():
        shutil.rmtree(root)
    (root / "tests" / "engine").mkdir(parents=True)
    shutil.copy(ROOT / "tasks.py", root / "tasks.py")
    shutil.copy(ROOT / "docker-bake.hcl", root / "docker-bake.hcl")
    shutil.copytree(ROOT / "services", root / "services")
    shutil.copy(ROOT / OVERRIDE, root / OVERRIDE)
    wheels = root / "wheels-served"
    server = serve(wheels, PORT)
    return Bench(root, wheels, f"http://127.0.0.1:{PORT}", server)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt(xs: list[float]) -> str:
    return f"median {median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"

