"""Run a probe script as the image would, and the ONE assertion helper for its verdict, shared
by the CPU tests (test_probes_cpu.py) and the GPU ones (test_probes_gpu.py, marked ``gpu``)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.lib.project import REPO

PROBES = REPO / "src" / "comfyimg" / "validate" / "probes"
SAGE2 = PROBES / "sage2.py"
SAGE3 = PROBES / "sage3.py"
# The options that fit PyPI's sageattention 1.0.6: fewer exports, no compiled extensions.
PYPI_106 = ("--exports", "sageattn,sageattn_varlen", "--extensions", "", "--no-dispatch-check")
KEYS = ("probe", "schema", "status", "exit_code", "reason", "package", "device", "gpu_checks", "environment",
        "checks", "bench", "elapsed_s")


def parse_single_json(text: str) -> tuple[dict | None, str | None]:
    """The probe contract: stdout is exactly one JSON object (plus a newline)."""
    stripped = text.strip()
    if not stripped:
        return None, "no output on stdout (crash?)"
    try:
        obj, end = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError as exc:
        return None, f"stdout is not JSON: {exc}: {stripped[:200]!r}"
    if stripped[end:].strip():
        return None, f"extra output after the JSON object: {stripped[end:end + 200]!r}"
    if not isinstance(obj, dict):
        return None, "stdout JSON is not an object"
    return obj, None


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.json, self.json_error = parse_single_json(proc.stdout)

    def check(self, name: str) -> dict:
        matches = [c for c in self.json["checks"] if c["name"] == name]
        assert matches, f"no check {name!r} in {[c['name'] for c in self.json['checks']]}"
        return matches[0]

    def __repr__(self) -> str:  # shown by pytest on failure
        return f"<Run rc={self.rc} stdout={self.stdout[:1500]!r} stderr={self.stderr[-1500:]!r}>"


def probe_command(probe: Path) -> tuple[list[str], Path]:
    """How a probe runs, here as in the image: as a module of the folder ``probes``, from the
    folder above it (``python -m probes.sage2``), so its siblings import relatively."""
    return [sys.executable, "-m", f"{probe.parent.name}.{probe.stem}"], probe.parent.parent


def run_probe(probe: Path, pythonpath: Path | None, *args: str, gpu: bool = False, timeout: float = 600) -> Run:
    """The probe under this interpreter, with ``pythonpath`` as the install under test. Without
    ``gpu`` the GPU is hidden (CUDA_VISIBLE_DEVICES=""), so the no-GPU path runs anywhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP", "CUDA_VISIBLE_DEVICES")}
    if not gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env["PYTHONNOUSERSITE"] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    argv, cwd = probe_command(probe)
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    return Run(proc)


def assert_probe(r: Run, status: str, code: int, *, reason: str | None = None, gpu_checks: str | None = None) -> None:
    """The verdict: one JSON object of the contract's shape, ``status`` with exit ``code`` (the
    JSON's exit_code too), every row well formed; ``reason`` a regex the reason must match;
    ``gpu_checks`` ran | skipped | not-run."""
    assert r.json_error is None, (r.json_error, r)
    assert r.rc == code, r
    j = r.json
    assert j["status"] == status, r
    assert j["exit_code"] == code, r
    missing = [k for k in KEYS if k not in j]
    assert not missing, (missing, r)
    for c in j["checks"]:
        assert set(c) >= {"name", "kind", "status", "detail"}, c
        assert c["status"] in ("pass", "fail", "skip"), c
        assert c["kind"] in ("install", "gpu"), c
    if reason is not None:
        assert re.search(reason, j["reason"]), (reason, j["reason"])
    if gpu_checks is not None:
        assert j["gpu_checks"] == gpu_checks, (gpu_checks, r)
