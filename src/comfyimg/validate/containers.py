"""Run a validation probe inside a built image (python-on-whales ``docker.run``) and report.

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

import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from python_on_whales import DockerClient

from comfyimg.build import record
from comfyimg.build.bake import PINS_LABEL, pins_for
from comfyimg.build.docker import NO_DOCKER_CLI, ClientNotFoundError, DockerException, client, error_line
from comfyimg.errors import BadInput, UserError, WorkFailed
from comfyimg.kernels import coverage
from comfyimg.output import out
from comfyimg.pins import comfyui as comfyui_pin
from comfyimg.pins.load import load
from comfyimg.untrusted import loads_json
from comfyimg.validate.gpuaccess import (
    DEFAULT_CDI_KIND,
    GIVE_THE_ENGINE_THE_GPU,
    GpuAccess,
    choose_gpu_access,
    host_gpu,
)
from comfyimg.validate.probes import contract
from comfyimg.validate.reports import Outcome, clean, print_table, write_reports

PROBES_DIR = Path(__file__).parent / "probes"
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
COMFYUI_PATH = "/app/ComfyUI"  # where services/comfy/core/dockerfile.comfy.core puts ComfyUI
DEFAULT_TIMEOUT = 300.0


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


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so that ``finally`` blocks remove the container."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


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


# --------------------------------------------------------------------------- labels


def label_pins(raw: str) -> set[tuple[str, str, str | None]] | str:
    """The (name, version, sha256) pins of an ``io.comfyimg.pins`` label, or what is wrong
    with it: a label is written by whoever built the image, so every field is checked."""
    try:
        items = loads_json(raw)
    except ValueError as exc:
        return str(exc)
    if not isinstance(items, list):
        return f"a JSON {type(items).__name__}, not a list"
    pins = set()
    for i, p in enumerate(items):
        if not isinstance(p, dict):
            return f"[{i}] is a JSON {type(p).__name__}, not an object"
        for key in ("name", "version"):
            if not isinstance(p.get(key), str):
                return f"[{i}].{key} is {type(p.get(key)).__name__}, not a string"
        if p.get("sha256") is not None and not isinstance(p["sha256"], str):
            return f"[{i}].sha256 is {type(p['sha256']).__name__}, not a string or null"
        pins.add((p["name"], p["version"], p.get("sha256")))
    return pins


def label_check(image: str, expected: list[dict], *, exact: bool) -> dict:
    """The image's ``io.comfyimg.pins`` label (written by ``invoke bake``) against the pins it
    should hold, as one more check of the report. ``exact``: the label must list exactly
    ``expected`` (an image from the build record); else each labelled pin named in
    ``expected`` must be one of them (``--image``: wheels.toml's pins), and an image built
    elsewhere, without the label, is a skip."""

    name = "image labels match the pins"
    try:
        raw = (client().image.inspect(image).config.labels or {}).get(PINS_LABEL)
    except DockerException as exc:
        return {"name": name, "status": "fail", "detail": f"cannot inspect {image}: {error_line(exc)}"}
    if raw is None:
        status = "fail" if exact else "skip"
        return {"name": name, "status": status, "detail": f"no {PINS_LABEL} label (not built by invoke bake)"}
    labelled = label_pins(raw)
    if isinstance(labelled, str):
        return {"name": name, "status": "fail", "detail": f"{PINS_LABEL} is not a pin list: {labelled}"}
    wanted = {(p["name"], p["version"], p["sha256"]) for p in expected}
    names = {n for n, _, _ in wanted}
    if not exact and not names:
        return {"name": name, "status": "skip", "detail": "no wheels.toml pins to compare the label with"}
    wrong = labelled ^ wanted if exact else {p for p in labelled if p[0] in names} - wanted
    if wrong:
        shown = "; ".join(f"{n} {v} {(h or 'no sha256')[:12]}" for n, v, h in sorted(wrong, key=str))
        return {"name": name, "status": "fail", "detail": f"label and expected pins differ: {shown}"}
    return {"name": name, "status": "pass", "detail": f"{len(labelled)} pin(s) labelled as expected"}


def comfyui_label_check(root: Path, image: str) -> dict:
    """The image's ``io.comfyimg.comfyui.*`` labels against ``[comfyui]`` in wheels.toml."""
    try:
        labels = client().image.inspect(image).config.labels or {}
    except DockerException as exc:
        return {"name": "ComfyUI label matches the pin", "status": "fail",
                "detail": f"cannot inspect {image}: {error_line(exc)}"}
    try:
        pin = load(root / "wheels.toml").comfyui
    except BadInput:
        pin = None
    return comfyui_pin.label_check(labels, pin)


def expected_pins(root: Path, image_from_record: bool, target: str | None, spec: ProbeSpec) -> list[dict]:
    if image_from_record:
        built = record.read(root).get("targets", {})
        return list(built[target].get("pins", [])) if target in built else []

    if not (root / "wheels.toml").exists():  # --image from anywhere: nothing to expect
        return []
    return [{"name": p.name, "version": p.version, "sha256": p.sha256} for p in load(root / "wheels.toml").wheels
            if p.name == spec.distribution and (target is None or target in p.targets)]


# --------------------------------------------------------------------------- run


NON_ROOT_USER = "comfy"  # the images' own non-root user (PUID/PGID, tools/ and docker-bake.hcl)


def probe_user(image_user: str, asked: str | None = None) -> str:
    """Who the probe runs as: ``asked`` (``--user``) when given; else the image's ``USER``
    unless that is uid 0 in any spelling (``""``, ``0``, ``root``, ``0:0``, ``root:root``,
    ``00:1000``...), which becomes the image's non-root user. Never root unless asked."""
    if asked:
        return asked
    uid = image_user.split(":", 1)[0].strip()
    if uid.lower() in ("", "root") or (uid.isascii() and uid.isdigit() and int(uid) == 0):
        return NON_ROOT_USER
    return image_user


def image_probe_user(docker: DockerClient, image: str, asked: str | None) -> str:
    """Who the probe runs as in ``image`` (see :func:`probe_user`)."""
    return probe_user(docker.image.inspect(image).config.user or "", asked)


def image_user_and_gpu(docker: DockerClient, image: str, user: str | None, gpus: str,
                       cdi_kind: str) -> tuple[str, GpuAccess]:
    """The image's run user and the GPU access for it, or one line: no image, no docker CLI,
    no engine. validate and smoke both start here."""
    try:
        if not docker.image.exists(image):
            raise WorkFailed(f"image {image} not found in the engine; build it with `invoke bake` or pass --image")
        return image_probe_user(docker, image, user), choose_gpu_access(docker, gpus, cdi_kind)
    except ClientNotFoundError:
        raise WorkFailed(NO_DOCKER_CLI) from None
    except DockerException as exc:
        raise WorkFailed(f"cannot reach the Docker engine: {error_line(exc)}") from None


def container_options(user: str, gpu: GpuAccess | None = None) -> dict[str, Any]:
    """How a probe runs: no network, read-only root, the image's non-root user, the probes
    mounted read-only. Its writable place is its own exec tmpfs at SCRATCH (HOME, TMPDIR,
    TRITON_CACHE_DIR): Triton compiles its kernel launchers into its cache and dlopen()s
    them, which Docker's default noexec tmpfs refuses ("failed to map segment from shared
    object"), and the image's own /tmp is not trusted (Docker keeps its mode)."""
    return {
        "entrypoint": "python",
        "networks": ["none"],
        "read_only": True,
        "tmpfs": [f"{SCRATCH}:exec,mode=1777", "/tmp:exec,mode=1777"],
        "user": user,
        "envs": {"HOME": SCRATCH, "TMPDIR": SCRATCH, "TRITON_CACHE_DIR": f"{SCRATCH}/triton",
                 "XDG_CACHE_HOME": f"{SCRATCH}/cache", "COMFYIMG_SCRATCH": SCRATCH,
                 "PYTHONDONTWRITEBYTECODE": "1"},
        "volumes": [(str(PROBES_DIR), PROBE_MOUNT, "ro")],
        "workdir": PROBE_HOME,
        **(gpu.run_options() if gpu else {}),
    }


@dataclass
class Run:
    """One probe container: its JSON (or None), exit code, stdout, and docker's own words."""

    name: str
    result: dict | None
    code: int
    stdout: str
    problem: str | None = None  # why result is None: malformed JSON, docker could not start it, …
    seconds: float = 0.0


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


def run_container(docker: DockerClient, image: str, command: list[str], options: dict[str, Any],
                  deadline: float, name: str) -> Run:
    """Run a probe in the container ``name``, which is always removed: at its end, at the deadline
    (killed first: ProbeTimeout), on Ctrl-C or SIGTERM (the exception goes on)."""
    started = time.monotonic()
    try:
        try:
            docker.run(image, command, name=name, detach=True, **options)
        except DockerException as exc:
            return Run(name, None, exc.return_code, "", f"docker could not start the probe container: "
                       f"{_docker_says(exc)}", time.monotonic() - started)
        codes: list[int] = []

        def wait() -> None:
            try:
                codes.append(docker.container.wait(name))
            except BaseException:  # noqa: BLE001 - the container went (Ctrl-C removed it): `codes` stays
                pass  # empty and is handled below; a thread must never print a traceback

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        waiter.join(max(0.0, deadline - time.monotonic()))
        if waiter.is_alive():
            _quietly(docker.container.kill, name)
            raise ProbeTimeout(name)
        if not codes:  # the wait itself failed (engine gone?)
            state = docker.container.inspect(name).state
            codes.append(state.exit_code if state.exit_code is not None else 125)
        stdout = "".join(chunk.decode(errors="replace") for source, chunk in  # type: ignore[union-attr,str-unpack]
                         docker.container.logs(name, stream=True) if source == "stdout")
        result, problem = parse_result(stdout)
        return Run(name, result, codes[0], stdout, problem, time.monotonic() - started)
    finally:
        remove_container(docker, name)


@dataclass
class Job:
    """One probe container of a session: its command, and what to do when it has ended."""

    what: str
    command: list[str]
    options: dict[str, Any]
    ended: Any = None  # called (no arguments) when the container has ended, however it ended
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or container_name(self.what)


def run_side_by_side(docker: DockerClient, image: str, jobs: list[Job], deadline: float) -> list[Run]:
    """Run the jobs' containers at once, one thread and one named container each, under one
    deadline. Every container is removed however the run ends: at its end, at the deadline
    (ProbeTimeout naming each killed one), on Ctrl-C or SIGTERM in the main thread (removed here,
    then the exception goes on), or when a thread's docker call fails (re-raised here)."""
    results: dict[int, Run | BaseException] = {}

    def work(i: int, job: Job) -> None:
        try:
            results[i] = run_container(docker, image, job.command, job.options, deadline, job.name)
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
            remove_container(docker, job.name)
        for thread in threads:
            thread.join(10)
        for job in jobs:  # one whose `docker run` was still creating it at the first pass
            remove_container(docker, job.name)
        raise
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


def remove_container(docker: DockerClient, name: str) -> None:
    """Remove the container, also one that an interrupted ``docker run`` was still creating."""
    for _ in range(3):
        _quietly(docker.container.remove, name, force=True, volumes=True)
        try:
            if not docker.container.exists(name):
                return
        except DockerException:
            return
        time.sleep(0.5)


def _docker_says(exc: DockerException) -> str:
    """Docker's own reason ("unable to find user comfy", "executable file not found")."""
    text = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Run 'docker run --help'")]
    said = " ".join(lines) if lines else error_line(exc)
    return said[:600]


# --------------------------------------------------------------------------- the probe's JSON


def parse_result(stdout: str) -> tuple[dict | None, str | None]:
    """(the probe's JSON object, None) or (None, what is wrong with it)."""
    lines = [ln for ln in (stdout or "").splitlines() if ln.strip()]
    if not lines:
        return None, "the probe printed nothing on stdout"
    if len(lines) != 1:
        return None, f"the probe printed {len(lines)} lines on stdout, not one JSON object"
    try:
        obj = loads_json(lines[0])
    except ValueError as exc:
        return None, f"the probe's output is not JSON: {exc}"
    obj = clean(obj)
    if not isinstance(obj, dict):
        return None, f"the probe printed a JSON {type(obj).__name__}, not an object"
    if obj.get("schema") != contract.SCHEMA:
        return None, f"the probe's schema is {obj.get('schema')!r}; this host reads schema {contract.SCHEMA}"
    if obj.get("status") not in contract.STATUSES:
        return None, f"the probe's status is {obj.get('status')!r}, not pass, fail or skip"
    checks = obj.get("checks", [])
    if not isinstance(checks, list):
        return None, f"the probe's checks are a JSON {type(checks).__name__}, not a list"
    for i, check in enumerate(checks):
        if not isinstance(check, dict):
            return None, f"checks[{i}] is a JSON {type(check).__name__}, not an object"
        if not isinstance(check.get("name"), str) or check.get("status") not in contract.STATUSES:
            return None, f"checks[{i}] needs a string name and a status of pass, fail or skip"
    obj["checks"] = checks
    return obj, None


_DOCKER_EXIT = {125: "the container did not start", 126: "the command could not be run",
                127: "the command was not found"}


def _ended(code: int) -> str:
    if code in _DOCKER_EXIT:
        return f"docker exit {code}: {_DOCKER_EXIT[code]}"
    if code > 128 and (code - 128) in {int(s) for s in signal.Signals}:
        return f"killed by {signal.Signals(code - 128).name}"
    return f"exit code {code}"


def judge(result: dict | None, code: int, require_gpu: bool, problem: str | None = None) -> tuple[bool, dict]:
    """The host's verdict: a crash or malformed output is a failure, never a pass."""
    if result is None or code not in contract.EXIT_FOR.values():
        if result is None:
            reason = problem if problem and problem.startswith("docker could not") else (
                f"probe crashed ({_ended(code)}) without a valid JSON result" + (f": {problem}" if problem else ""))
        else:
            reason = f"probe ended with {_ended(code)} after printing its result ({result['status']})"
        return False, {"status": "fail", "reason": reason, "checks": (result or {}).get("checks", []), "crash": True}
    expected_code = contract.EXIT_FOR[result["status"]]
    if code != expected_code:
        return False, {**result, "status": "fail",
                       "reason": f"probe said {result['status']} but exited {code}: {result.get('reason', '')}"}
    if result["status"] == "fail":
        return False, result
    if require_gpu and (result["status"] == "skip" or result.get("gpu_checks") != "ran"):
        return False, {**result, "status": "fail",
                       "reason": f"--require-gpu: GPU checks were not run ({result.get('gpu_checks')}): "
                                 f"{result.get('reason', '')}"}
    return True, result


def no_silent_skip(passed: bool, verdict: dict, host: str | None, access: GpuAccess) -> tuple[bool, dict]:
    """A host with an NVIDIA GPU whose container saw none fails, and says how to fix it
    (unless --gpus none asked for exactly that)."""
    if (not passed or not host or access.mode == "none" or verdict.get("device")
            or verdict.get("gpu_checks") == "ran"):
        return passed, verdict
    reason = (f"the host has an NVIDIA GPU ({host}) but the probe container saw none "
              f"(GPU access: {access.describe()}); {GIVE_THE_ENGINE_THE_GPU}")
    return False, {**verdict, "status": "fail", "reason": reason, "gpu_not_given": True}


def merge_comfyui(passed: bool, verdict: dict, comfy: Run | None, require_gpu: bool) -> tuple[bool, dict]:
    """The ComfyUI checks are rows of the same report; their failure fails the session."""
    if comfy is None:
        return passed, verdict
    c_passed, c_verdict = judge(comfy.result, comfy.code, require_gpu, comfy.problem)
    rows = [c if c["name"].startswith("comfyui") else {**c, "name": f"comfyui:{c['name']}"}
            for c in c_verdict.get("checks") or []]  # e.g. its own scratch row
    if c_verdict.get("crash"):
        rows.append({"name": "comfyui", "kind": "install", "status": "fail", "detail": c_verdict["reason"]})
    merged = {**verdict, "checks": [*(verdict.get("checks") or []), *rows],
              "comfyui": {k: c_verdict.get(k) for k in ("status", "reason", "package", "device", "gpu_checks",
                                                        "elapsed_s")}}
    if c_passed:
        return passed, merged
    reason = f"comfyui: {c_verdict.get('reason', '')}"
    merged["reason"] = f"{verdict.get('reason', '')}; {reason}" if not passed else reason
    merged["status"] = "fail"
    return False, merged


# --------------------------------------------------------------------------- command


def _failed(root: Path, probe: str, image: str, reason: str, code: int, started: float, gpu: dict) -> None:
    """A session that could not judge the image still leaves reports that say why."""
    outcome = Outcome(probe, image, {"status": "fail", "reason": reason, "checks": [], "crash": True}, code,
                      False, time.monotonic() - started, gpu)
    try:
        write_reports(root, outcome)
    except OSError:
        pass  # the error itself is printed by main; an unwritable reports/ must not hide it


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
        docker = client()
        run_as, access = image_user_and_gpu(docker, image, user, gpus, cdi_kind)
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
            jobs[0].options = {**options, "volumes": [*options["volumes"], (str(gate), GATE_MOUNT, "ro")]}
            comfy_args = ["--comfyui", comfyui, "--attention", probe, *(["--require-gpu"] if require_gpu else [])]
            jobs.append(Job(f"{probe}-comfyui", ["-m", probe_module(COMFYUI_SCRIPT), *comfy_args], options,
                            ended=lambda: _open_gate(gate)))
        try:
            runs = run_side_by_side(docker, image, jobs, deadline)
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
        _failed(root, probe, image or "?", str(exc), exc.exit_code, started, gpu)
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
    labels = label_check(image, expected_pins(root, from_build_record, target, spec), exact=from_build_record)
    comfy_label = comfyui_label_check(root, image)
    verdict = {**verdict, "checks": [*(verdict.get("checks") or []), labels, comfy_label]}
    for check in (labels, comfy_label):
        if check["status"] == "fail" and passed:
            passed, verdict = False, {**verdict, "status": "fail", "reason": f"labels: {check['detail']}"}
    outcome = Outcome(probe, image, verdict, main.code, passed, time.monotonic() - started, gpu)
    print_table(outcome)
    for path in write_reports(root, outcome):
        out().print(f"report: {path.relative_to(root) if path.is_relative_to(root) else path}")
    return outcome
