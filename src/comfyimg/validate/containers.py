"""Run a validation probe inside a built image (engine/containers.py, confined): the jobs side by
side, each under one deadline, every container removed however the run ends. The verdict on
what they printed is :mod:`comfyimg.validate.verdict`'s.

The probes (``probes/sage2.py``, ``probes/sage3.py``, and ``probes/comfyui.py`` for
ComfyUI's own attention path) print one JSON object and exit 0 pass, 1 fail, 3 skip.
Here a crash (a signal, no JSON, malformed JSON) is a failure, never a pass. A host
with an NVIDIA GPU whose container saw none fails too (no silent skip), and
``--require-gpu`` turns any skipped GPU part into a failure. The probe and the ComfyUI probe
run side by side, each in its own container; the probe's timing waits for the ComfyUI one
to end (``--bench-after``), so nothing else uses the GPU while it is timed.

    python -m comfyimg validate sage2 [--image IMAGE] [--gpus auto|all|cdi|none] [--require-gpu]
                                      [--comfyui PATH|none] [--timeout S] [-- PROBE ARGS…]
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfyimg.bake import record
from comfyimg.engine import containers as sandbox
from comfyimg.engine.docker import NO_DOCKER_CLI, ClientNotFoundError, DockerException, DockerTimeout, error_line
from comfyimg.render import pins_for
from comfyimg.errors import BadInput, UserError, WorkFailed
from comfyimg.audit import coverage
from comfyimg.kernels import rules
from comfyimg.pins.load import load
from comfyimg.validate.defaults import COMFYUI_PATH, DEFAULT_CDI_KIND, VALIDATE_TIMEOUT
from comfyimg.validate.gpuaccess import GpuAccess, choose_gpu_access, host_gpu
from comfyimg.validate.reports import Outcome, write_reports
from comfyimg.validate.verdict import (
    Run,
    comfyui_label_check,
    expected_pins,
    judge,
    label_check,
    merge_comfyui,
    no_silent_skip,
    parse_result,
)

PROBES_DIR = Path(__file__).parent / "probes"
KERNELS_TABLE = rules.TABLE  # the probes' fallback table (probes/table.py), mounted beside them
PROBE_HOME = "/opt/comfyimg"  # the probes run as the package ``probes`` from here: python -m probes.sage2
PROBE_MOUNT = f"{PROBE_HOME}/probes"
# The probe's own writable, exec-able scratch (HOME, TMPDIR, Triton's cache). Not /tmp:
# Docker keeps the mode of the image's own /tmp even with mode=1777, so an image whose
# /tmp is 0755 would leave a non-root probe without a cache. A path no image has gets
# the tmpfs's own mode.
SCRATCH = "/run/comfyimg"
# The bench gate: a host folder mounted read-only; its file appears when the ComfyUI probe,
# which runs beside the probe and shares its GPU, has ended (probe option --bench-after).
GATE_MOUNT, GATE_FILE = "/run/comfyimg-gate", "comfyui-ended"
DEFAULT_TIMEOUT = VALIDATE_TIMEOUT


@dataclass(frozen=True)
class ProbeSpec:
    name: str  # sage2
    distribution: str  # the pin whose version is expected
    script: str


PROBES = {
    "sage2": ProbeSpec("sage2", "sageattention", "sage2.py"),
    "sage3": ProbeSpec("sage3", "sageattn3", "sage3.py"),
}
COMFYUI_SCRIPT = "comfyui.py"


def probe_module(script: str) -> str:
    """``sage2.py`` -> ``probes.sage2``: the probes import each other relatively, so they run as modules."""
    return f"probes.{script.removesuffix('.py')}"



class ProbeTimeout(Exception):
    pass


# --------------------------------------------------------------------------- image + expectations


def expected_from_pins(root: Path, spec: ProbeSpec, target: str | None) -> str | None:

    pins = load(root / "wheels.toml")
    versions = {p.version for p in pins.wheels if p.name == spec.distribution
                and (target is None or target in p.targets)}
    return versions.pop() if len(versions) == 1 else None


def expectations(root: Path, spec: ProbeSpec, target: str | None) -> list[str]:
    """What the probe must find, from the pin's recorded coverage (none for --image alone)."""

    if target is None or not (root / "wheels.toml").exists():
        return []
    pins = load(root / "wheels.toml")
    return coverage.probe_args(pins, spec.distribution, pins_for(pins, target) or [])


# --------------------------------------------------------------------------- run


NON_ROOT_USER = "comfy"  # the images' own non-root user (PUID/PGID, tools/ and docker-bake.hcl)
PROBE_STDOUT_CAP = 16 * 1024 * 1024  # a probe prints one JSON line; more than this is a failure


def probe_user(image_user: str, asked: str | None = None) -> str:
    """Who the probe runs as: ``asked`` (``--user``) when given; else the image's ``USER``
    unless that is uid 0 in any spelling (``""``, ``0``, ``root``, ``0:0``, ``root:root``,
    ``00:1000``...), which becomes the image's non-root user. Never root unless asked."""
    if asked:
        return asked
    return NON_ROOT_USER if sandbox.is_root(image_user) else image_user


def image_user_and_gpu(image: str, user: str | None, gpus: str, cdi_kind: str) -> tuple[str, GpuAccess]:
    """The image's run user and the GPU access for it, or one line: no image, no docker CLI,
    no engine. validate and smoke both start here."""
    try:
        image_user = sandbox.image_user(image)
        if image_user is None:
            raise WorkFailed(f"image {image} not found in the engine; build it with `invoke bake` or pass --image")
        return probe_user(image_user, user), choose_gpu_access(gpus, cdi_kind)
    except ClientNotFoundError:
        raise WorkFailed(NO_DOCKER_CLI) from None
    except DockerException as exc:
        raise WorkFailed(f"cannot reach the Docker engine: {error_line(exc)}") from None


def container_options(user: str, gpu: GpuAccess | None = None) -> sandbox.Sandbox:
    """How a probe runs (engine/containers.py: no network, no capabilities, no new privileges,
    read-only root), as the image's non-root user, the probes mounted read-only. Its writable
    place is its own exec tmpfs at SCRATCH (HOME, TMPDIR, TRITON_CACHE_DIR): Triton compiles
    its kernel launchers into its cache and dlopen()s them, which Docker's default noexec
    tmpfs refuses ("failed to map segment from shared object"), and the image's own /tmp is
    not trusted (Docker keeps its mode)."""
    return sandbox.Sandbox(
        user=user, entrypoint="python", workdir=PROBE_HOME, allow_root=sandbox.is_root(user),
        tmpfs=(f"{SCRATCH}:exec,mode=1777", "/tmp:exec,mode=1777"),
        envs={"HOME": SCRATCH, "TMPDIR": SCRATCH, "TRITON_CACHE_DIR": f"{SCRATCH}/triton",
              "XDG_CACHE_HOME": f"{SCRATCH}/cache", "COMFYIMG_SCRATCH": SCRATCH, "PYTHONDONTWRITEBYTECODE": "1"},
        read_only_binds=((str(PROBES_DIR), PROBE_MOUNT), (str(KERNELS_TABLE), f"{PROBE_HOME}/kernels.json")),
        gpu=gpu.run_args() if gpu else ())


def _quietly(fn, *args, **kwargs) -> None:
    """Cleanup that a second Ctrl-C cannot interrupt, and whose own failure is moot."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
    try:
        fn(*args, **kwargs)
    except (DockerException, OSError):
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def container_name(what: str) -> str:
    return f"comfyimg-validate-{what}-{uuid.uuid4().hex[:10]}"


def probe_stdout(captured: sandbox.Captured) -> tuple[str, str | None]:
    """(what the probe printed, why it cannot be its answer): read back at most
    PROBE_STDOUT_CAP bytes, whatever it printed."""
    data, more = sandbox.read_head(captured.path, PROBE_STDOUT_CAP)
    if more or captured.cut:
        return (data[:2000].decode(errors="replace"),
                f"the probe printed more than {PROBE_STDOUT_CAP // (1024 * 1024)} MiB on stdout, not one JSON object")
    return data.decode(errors="replace"), None


def run_container(image: str, command: list[str], options: sandbox.Sandbox, deadline: float, name: str,
                  folder: Path) -> Run:
    """Run a probe in the container ``name``, which is always removed: at its end, at the deadline
    (killed first: ProbeTimeout), on Ctrl-C or SIGTERM (the exception goes on). Its stdout goes
    to ``folder`` (capped) and is read back bounded."""
    started = time.monotonic()
    try:
        try:
            sandbox.start(image, command, options, name)
        except DockerException as exc:
            return Run(name, None, exc.return_code, "", f"docker could not start the probe container: "
                       f"{_docker_says(exc)}", time.monotonic() - started)
        try:
            code = sandbox.wait(name, deadline - time.monotonic())
        except DockerTimeout:
            _quietly(sandbox.kill, name)
            raise ProbeTimeout(name) from None
        captured = sandbox.logs(name, folder, timeout=max(30.0, deadline - time.monotonic()))
        stdout, too_much = probe_stdout(captured)
        result, problem = (None, too_much) if too_much else parse_result(stdout)
        return Run(name, result, code, stdout, problem, time.monotonic() - started)
    finally:
        remove_container(name)


@dataclass
class Job:
    """One probe container of a session: its command, and what to do when it has ended."""

    what: str
    command: list[str]
    options: sandbox.Sandbox
    ended: Any = None  # called (no arguments) when the container has ended, however it ended
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or container_name(self.what)


def run_side_by_side(image: str, jobs: list[Job], deadline: float) -> list[Run]:
    """Run the jobs' containers at once, one thread and one named container each, under one
    deadline. Every container is removed however the run ends: at its end, at the deadline
    (ProbeTimeout naming each killed one), on Ctrl-C or SIGTERM in the main thread (removed here,
    then the exception goes on), or when a thread's docker call fails (re-raised here)."""
    results: dict[int, Run | BaseException] = {}
    folder = Path(tempfile.mkdtemp(prefix="comfyimg-probe-out-"))

    def work(i: int, job: Job) -> None:
        try:
            results[i] = run_container(image, job.command, job.options, deadline, job.name, folder)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            results[i] = exc
        finally:
            if job.ended is not None:
                job.ended()

    threads = [threading.Thread(target=work, args=(i, job), name=job.name, daemon=True) for i, job in enumerate(jobs)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # short joins: Ctrl-C and SIGTERM reach the main thread at once
    except BaseException:
        for job in jobs:
            remove_container(job.name)
        for thread in threads:
            thread.join(10)
        for job in jobs:  # one whose `docker run` was still creating it at the first pass
            remove_container(job.name)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ordered = [results[i] for i in range(len(jobs))]  # the jobs' order, not the order they ended in
    timeouts = [str(r) for r in ordered if isinstance(r, ProbeTimeout)]
    if timeouts:
        raise ProbeTimeout(", ".join(timeouts))
    for result in ordered:
        if isinstance(result, BaseException):
            raise result
    return ordered  # type: ignore[return-value]


def _open_gate(gate: Path) -> None:
    try:
        (gate / GATE_FILE).touch()
    except OSError:
        pass  # the session is over (the folder went with it): nothing waits any more


def remove_container(name: str) -> None:
    """Remove the container, also one that an interrupted ``docker run`` was still creating."""
    _quietly(sandbox.remove, name)


def _docker_says(exc: DockerException) -> str:
    """Docker's own reason ("unable to find user comfy", "executable file not found")."""
    text = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Run 'docker run --help'")]
    said = " ".join(lines) if lines else error_line(exc)
    return said[:600]


# --------------------------------------------------------------------------- command


def _failed(root: Path, probe: str, image: str, reason: str, code: int, started: float, gpu: dict) -> list[str]:
    """A session that could not judge the image still leaves reports that say why; returns
    the warnings of writing them."""
    outcome = Outcome(probe, image, {"status": "fail", "reason": reason, "checks": [], "crash": True}, code,
                      False, time.monotonic() - started, gpu)
    try:
        write_reports(root, outcome)
    except OSError:
        pass  # the error itself is printed by cli; an unwritable reports/ must not hide it
    return outcome.warnings


def validate(root: Path, probe: str, *, image: str | None = None, target: str | None = None,
             expect_version: str | None = None, require_gpu: bool = False,
             probe_args: list[str] | None = None, gpus: str = "auto", cdi_kind: str = DEFAULT_CDI_KIND,
             comfyui: str | None = COMFYUI_PATH, timeout: float = DEFAULT_TIMEOUT,
             user: str | None = None) -> Outcome:
    spec = PROBES[probe]
    from_build_record = image is None
    started = time.monotonic()
    deadline = started + timeout
    gpu: dict[str, Any] = {}
    try:
        if image is None:
            image, recorded, target = record.image_for(root, spec.distribution, target)
            expect_version = expect_version or recorded
        elif expect_version is None:
            expect_version = expected_from_pins(root, spec, target)
        if expect_version is None:
            raise BadInput(f"no expected version for {spec.distribution}: pass --expect-version")
        host = host_gpu()
        run_as, access = image_user_and_gpu(image, user, gpus, cdi_kind)
        gpu = {"mode": gpus, "access": access.flag or "none", "why": access.why, "host_gpu": host}
        options = container_options(run_as, access)
        args = ["--expect-version", expect_version, *(["--require-gpu"] if require_gpu else []),
                *expectations(root, spec, target), *(probe_args or [])]
        jobs = [Job(probe, ["-m", probe_module(spec.script), *args], options)]
        if comfyui:
            # Both containers at once; the probe's timing waits for the ComfyUI probe to end
            # (the gate file), so no other work shares the GPU while it is timed.
            gate = Path(tempfile.mkdtemp(prefix="comfyimg-gate-"))
            gate.chmod(0o755)  # the probe's non-root user reads it
            jobs[0].command += ["--bench-after", f"{GATE_MOUNT}/{GATE_FILE}"]
            jobs[0].options = dataclasses.replace(
                options, read_only_binds=(*options.read_only_binds, (str(gate), GATE_MOUNT)))
            comfy_args = ["--comfyui", comfyui, "--attention", probe, *(["--require-gpu"] if require_gpu else [])]
            jobs.append(Job(f"{probe}-comfyui", ["-m", probe_module(COMFYUI_SCRIPT), *comfy_args], options,
                            ended=lambda: _open_gate(gate)))
        try:
            runs = run_side_by_side(image, jobs, deadline)
        except ProbeTimeout as exc:
            many = "," in str(exc)
            raise WorkFailed(f"{probe}: the probe did not finish within {timeout:g} s (--timeout); "
                             f"its container{'s' if many else ''} {exc} {'were' if many else 'was'} killed and "
                             "removed") from None
        except DockerException as exc:
            raise WorkFailed(f"the Docker engine failed during the probe: {error_line(exc)}") from None
        finally:
            if comfyui:
                shutil.rmtree(gate, ignore_errors=True)
        main, comfy = runs[0], (runs[1] if comfyui else None)
    except UserError as exc:
        for warning in _failed(root, probe, image or "?", str(exc), exc.exit_code, started, gpu):
            exc.add_note(f"warning: {warning}")  # cli prints the notes before the error
        raise
    passed, verdict = judge(main.result, main.code, require_gpu, main.problem)
    if verdict.get("crash"):
        verdict["stdout_tail"] = main.stdout[-2000:]  # what the probe printed before it ended
    device = (main.result or {}).get("device")
    gpu["container_gpu"] = f"{device.get('name')} ({device.get('sm')})" if isinstance(device, dict) else None
    passed, verdict = no_silent_skip(passed, verdict, host, access)
    if comfyui:
        passed, verdict = merge_comfyui(passed, verdict, comfy, require_gpu)
    else:
        verdict = {**verdict, "checks": [*(verdict.get("checks") or []),
                                         {"name": "comfyui", "kind": "install", "status": "skip",
                                          "detail": "ComfyUI checks not run (--comfyui none)"}]}
    verdict["timing"] = {"probe_container_s": round(main.seconds, 2),
                         "comfyui_container_s": round(comfy.seconds, 2) if comfy else None,
                         "side_by_side": comfy is not None,  # the probe's bench waited for ComfyUI's end
                         "whole_s": round(time.monotonic() - started, 2)}
    if not gpu["container_gpu"] and passed:
        why = "this host has no NVIDIA GPU" if not host else "--gpus none"
        verdict = {**verdict, "reason": f"{verdict.get('reason', '')}; GPU checks NOT run: {why}"}
    labels = label_check(image, expected_pins(root, from_build_record, target, spec.distribution), exact=from_build_record)
    comfy_label = comfyui_label_check(root, image)
    verdict = {**verdict, "checks": [*(verdict.get("checks") or []), labels, comfy_label]}
    for check in (labels, comfy_label):
        if check["status"] == "fail" and passed:
            passed, verdict = False, {**verdict, "status": "fail", "reason": f"labels: {check['detail']}"}
    outcome = Outcome(probe, image, verdict, main.code, passed, time.monotonic() - started, gpu)
    write_reports(root, outcome)  # cli prints its summary and the paths
    return outcome
