"""Where the GPU reaches the probe container: what the host has, what the engine offers
(its ``nvidia`` runtime, or CDI specs of a kind), and the choice for ``--gpus auto|all|cdi|none``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from comfyimg.engine.docker import DockerException, command, error_line
from comfyimg.engine.docker import run as docker_run_cli
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.fsutil import read_bytes

HOST_GPU_ENV = "COMFYIMG_HOST_GPU"  # auto (default) | 1 | 0: what the host has, for tests and odd hosts
GIVE_THE_ENGINE_THE_GPU = (
    "give the engine the GPU: install the NVIDIA Container Toolkit and register its runtime "
    "(nvidia-ctk runtime configure --runtime=docker), or generate a CDI spec "
    "(nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml) and enable CDI in dockerd "
    "(daemon.json {\"features\": {\"cdi\": true}}); then --gpus auto finds it, or pass --gpus all|cdi")


@dataclass(frozen=True)
class GpuAccess:
    """How the probe container gets the GPU, and why."""

    mode: str  # what was asked: auto | all | cdi | none
    chosen: str  # all | cdi | none
    flag: str  # the docker run flag, for people: "--gpus all", "--device nvidia.com/gpu=all", ""
    why: str
    devices: tuple[str, ...] = ()

    def run_args(self) -> tuple[str, ...]:
        """The ``docker run`` options that give the container the GPU (engine/containers.py's Sandbox.gpu)."""
        if self.chosen == "all":
            return ("--gpus", "all")
        if self.chosen == "cdi":
            return tuple(a for d in self.devices for a in ("--device", d))
        return ()

    def describe(self) -> str:
        return f"{self.flag or 'no GPU flag'} ({self.why})"


def host_gpu() -> str | None:
    """What says this host has an NVIDIA GPU (None: it has none). ``COMFYIMG_HOST_GPU``=1/0
    overrides the detection (tests; hosts where the engine runs elsewhere)."""
    forced = os.environ.get(HOST_GPU_ENV, "auto").strip().lower()
    if forced in ("1", "yes", "true"):
        return f"{HOST_GPU_ENV}={forced}"
    if forced in ("0", "no", "false", "none"):
        return None
    if forced != "auto":
        raise BadInput(f"{HOST_GPU_ENV}={forced!r}: use auto, 1 or 0")
    if Path("/dev/nvidia0").exists():
        return "/dev/nvidia0 exists"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=15).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        first = next((ln.strip() for ln in listed.splitlines() if ln.startswith("GPU ")), None)
        if first:
            return f"nvidia-smi -L: {first}"
    return None


def host_driver() -> str | None:
    """The NVIDIA driver version of this host (``nvidia-smi``), or None where it cannot be read."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        listed = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=15).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    first = listed.strip().splitlines()[0].strip() if listed.strip() else ""
    return first[:40] if first and first.replace(".", "").isdigit() else None


def _engine_info() -> dict[str, Any]:
    """``docker info`` as JSON (python-on-whales' model drops CDISpecDirs)."""
    try:
        text = docker_run_cli(command("info", "--format", "{{json .}}"))
    except DockerException as exc:
        raise WorkFailed(f"cannot reach the Docker engine: {error_line(exc)}") from None
    try:
        info = json.loads(text)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def cdi_devices(spec_dirs: list[str], kind: str) -> tuple[list[str], list[str]]:
    """(device names of ``kind`` in the CDI specs under spec_dirs, problems reading them)."""

    names: list[str] = []
    problems: list[str] = []
    for directory in spec_dirs:
        try:
            files = sorted(p for p in Path(directory).iterdir() if p.suffix in (".yaml", ".yml", ".json"))
        except OSError:
            continue  # a dir that does not exist holds no spec (the engine's defaults often don't)
        for path in files:
            try:
                spec = yaml.safe_load(read_bytes(path).decode("utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError, BadInput) as exc:
                problems.append(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
                continue
            if not isinstance(spec, dict) or spec.get("kind") != kind:
                continue
            for device in spec.get("devices") or []:
                if isinstance(device, dict) and isinstance(device.get("name"), str):
                    names.append(device["name"])
    return names, problems


def choose_gpu_access(mode: str, cdi_kind: str) -> GpuAccess:
    if mode == "none":
        return GpuAccess(mode, "none", "", "--gpus none")
    if mode == "all":
        return GpuAccess(mode, "all", "--gpus all", "--gpus all")
    info = _engine_info()
    spec_dirs = [d for d in (info.get("CDISpecDirs") or []) if isinstance(d, str)]
    names, problems = cdi_devices(spec_dirs, cdi_kind) if spec_dirs else ([], [])
    device = f"{cdi_kind}=all" if ("all" in names or not names) else None
    devices = (device,) if device else tuple(f"{cdi_kind}={n}" for n in names)
    if mode == "cdi":
        found = f"CDI {cdi_kind}: {', '.join(names)}" if names else f"no CDI {cdi_kind} spec seen here; docker decides"
        return GpuAccess(mode, "cdi", " ".join(f"--device {d}" for d in devices), f"--gpus cdi, {found}", devices)
    runtimes = info.get("Runtimes") or {}
    if isinstance(runtimes, dict) and "nvidia" in runtimes:
        return GpuAccess(mode, "all", "--gpus all", "the engine has the nvidia runtime")
    if names:
        return GpuAccess(mode, "cdi", " ".join(f"--device {d}" for d in devices),
                         f"the engine's CDI specs offer {cdi_kind} ({', '.join(names)})", devices)
    where = (f"CDI spec dirs {', '.join(spec_dirs)} hold no {cdi_kind} device" if spec_dirs
             else "CDI is off in the engine (no CDISpecDirs)")
    if problems:
        where += f"; unreadable specs: {'; '.join(problems)}"
    return GpuAccess(mode, "none", "", f"no nvidia runtime, and {where}")
