"""The only place that talks to ``docker buildx bake``, through python-on-whales.

python-on-whales' ``bake()`` lacks ``--allow`` and runs a second ``--print`` after
every build; :func:`_bake_cmd` builds the command once from python-on-whales'
client config (``docker.buildx.docker_cmd``) and runs it with its ``utils``
helpers, so extra flags live here and nowhere else.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from python_on_whales.utils import run, stream_stdout_and_stderr

from . import record, render
from .console import err
from .digests import pip_hash_mismatch
from .dockerclient import DockerException, NoDockerCLI, command, error_line, text, versions
from .errors import BadInput, WorkFailed
from .bakefile import BAKE_FILE
from .hints import record_hash_command
from .pins import Pin, Pins

_PER_ARCH = re.compile(r"^(?P<base>.+)-(?P<arch>sm\d{2,3}[a-z]?)$")
_VERTEX = re.compile(r"^#(\d+) \[(?P<target>[^\s\]]+)[\s\]]")
_LINE_ID = re.compile(r"^#(\d+) ")


@dataclass
class BakeRequest:
    targets: list[str] = field(default_factory=lambda: ["default"])
    mode: str = "load"  # load | push | print
    label: str | None = None
    builder: str | None = None
    sets: list[str] = field(default_factory=list)
    no_cache: bool = False
    progress: str = "plain"
    files: list[Path] = field(default_factory=list)  # extra bake files, after ours
    allow: list[str] = field(default_factory=list)  # buildx entitlements, e.g. network.host


@dataclass
class Built:
    target: str
    tags: list[str]
    image_id: str | None
    digest: str | None
    seconds: float
    pins: list[Pin]


def _files(root: Path, request: BakeRequest) -> list[Path]:
    return [root / BAKE_FILE, root / render.BAKE_VARS, *request.files]


def _variables(request: BakeRequest) -> dict[str, str]:
    return {"IMAGE_LABEL": request.label} if request.label else {}


def _bake_cmd(root: Path, request: BakeRequest, *extra: str) -> list[str]:
    cmd = command("buildx", "bake")
    for f in _files(root, request):
        cmd += ["--file", str(f)]
    if request.builder:
        cmd += ["--builder", request.builder]
    for s in request.sets:
        cmd += ["--set", s]
    for a in request.allow:
        cmd += ["--allow", a]
    cmd += list(extra)
    return cmd + list(request.targets)


# --------------------------------------------------------------------------- preflight


def check_engine() -> str:
    """The docker CLI and an engine must answer (one ``docker version`` call); versions on failure.
    The buildx plugin is proven by :func:`plan`, which runs ``buildx bake --print``."""
    client, server, why = versions()
    if server is None:
        raise WorkFailed(f"preflight: no Docker engine answers (docker CLI {client}): {why}. "
                         "Start one (tools/engine/start.sh)")
    return f"docker CLI {client}, engine {server}"


def _buildx_version() -> str | None:
    try:
        return run(command("buildx", "version")).strip()
    except DockerException:
        return None


def plan(root: Path, request: BakeRequest) -> dict[str, Any]:
    """The resolved bake plan (``--print``), as JSON."""
    cmd = _bake_cmd(root, request, "--print")
    try:
        with contextlib.chdir(root):  # bake resolves contexts against the working directory
            return json.loads(run(cmd, env=_variables(request)))
    except DockerException as exc:
        if _buildx_version() is None:
            raise WorkFailed(f"preflight: the buildx plugin is missing (docker CLI {versions()[0]}); "
                             f"install docker-buildx >= 0.17 ({error_line(exc)})") from None
        raise BadInput(f"bake: cannot evaluate {BAKE_FILE} for {' '.join(request.targets)}: "
                       f"{error_line(exc)}") from None


def pins_for(pins: Pins, target: str) -> list[Pin] | None:
    """The pins a resolved bake target installs; None when wheels.toml does not cover it."""
    if target in pins.targets():
        return pins.for_target(target)
    m = _PER_ARCH.match(target)
    if m and m["base"] in pins.targets():
        return pins.for_target(m["base"], m["arch"])
    return None


PROGRESS_MODES = ("plain", "auto", "quiet", "rawjson")
_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")  # the tail of a Docker tag


def check_options(request: BakeRequest) -> None:
    """Options buildx would only reject mid-way: bad input, before anything runs."""
    if request.progress not in PROGRESS_MODES:
        why = (" (the build output is streamed through invoke, never to a terminal of its own)"
               if request.progress == "tty" else "")
        raise BadInput(f"--progress {request.progress!r} is not supported{why}; "
                       f"expected one of {', '.join(PROGRESS_MODES)}")
    if request.label is not None and not _LABEL.fullmatch(request.label):
        raise BadInput(f"--label {request.label!r} cannot end a Docker tag; expected letters, digits, "
                       "'_', '.' and '-' (not first), at most 100 characters")


def check_builder(name: str) -> None:
    try:
        run(command("buildx", "inspect", name))
    except DockerException as exc:
        raise BadInput(f"--builder {name!r}: {error_line(exc)}; "
                       "list the builders with: docker buildx ls") from None


def kernel_problems(pins: Pins, target: str, target_pins: list[Pin]) -> list[str]:
    """Pins of ``target`` whose recorded kernel coverage misses an arch they serve, or is not recorded."""
    from . import coverage

    errors, unrecorded = coverage.problems(pins, target_pins)
    return errors + [f"{pins.path.name}:{p.line}: coverage: {p.key} in {target} has no recorded kernel "
                     f"coverage; record it with: {coverage.record_command(p)}" for p in unrecorded]


def preflight(root: Path, pins: Pins, request: BakeRequest) -> dict[str, Any]:
    """Everything checked before a build: returns the plan. Renders generated/ first."""
    try:
        return _preflight(root, pins, request)
    except NoDockerCLI as exc:
        raise WorkFailed(f"preflight: {exc}") from None


def _preflight(root: Path, pins: Pins, request: BakeRequest) -> dict[str, Any]:
    check_options(request)
    changed = render.write(pins, root)
    for path in changed:
        err().print(f"rendered {path}")
    if request.mode != "print":  # printing the plan needs no engine
        check_engine()
        if request.builder:
            check_builder(request.builder)
    resolved = plan(root, request)
    problems: list[str] = []
    for target in sorted(resolved.get("target", {})):
        target_pins = pins_for(pins, target) or []
        for pin in target_pins:
            if pin.sha256 is None:
                problems.append(f"{pins.path.name}:{pin.line}: sha256: {pin.key} in {target} has no hash; "
                                f"record it with: {record_hash_command(pin)}")
        problems += kernel_problems(pins, target, target_pins)
    if problems and request.mode != "print":
        raise BadInput("\n".join(problems))
    for problem in problems if request.mode == "print" else []:
        err().print(f"warning: {problem}")
    return resolved


# --------------------------------------------------------------------------- build


def _url_in(line: str) -> str | None:
    """The URL a pip error line names; pip (urllib3) writes an unreachable one as
    ``HTTPConnectionPool(host='h', port=p): Max retries exceeded with url: /path``."""
    if m := re.search(r"(https?://\S+?\.whl)", line) or re.search(r"(https?://\S+)", line):
        return m[1]
    if m := re.search(r"(HTTPS?)ConnectionPool\(host='([^']+)', port=(\d+)\).*?url: (/\S+)", line):
        return f"{m[1].lower()}://{m[2]}:{m[3]}{m[4]}"
    return None


def explain_failure(log: str) -> str:
    """One line that names the wheel or URL a failed build tripped on."""
    lines = log.splitlines()
    if why := pip_hash_mismatch(lines):
        return why
    for ln in lines:
        m = re.search(r"(?:Could not install requirement|HTTP error \d+ while getting|"
                      r"connection error|Max retries exceeded|Failed to establish).*", ln, re.I)
        if m:
            if url := _url_in(ln):
                return f"cannot download {url}: {m[0].strip()[:200]}"
    for ln in lines:
        # pip's own refusal; not the RUN line that merely passes --require-hashes.
        if "Hashes are required" in ln:
            return f"pip refused an unhashed requirement: {ln.strip()[:300]}"
    return error_line(log)


def _stream(cmd: list[str], env: dict[str, str] | None = None) -> tuple[str, dict[str, tuple[float, float]]]:
    """Run ``cmd``, echo its output, and time each target from the plain progress lines."""
    log: list[str] = []
    vertex_target: dict[str, str] = {}
    spans: dict[str, tuple[float, float]] = {}
    try:
        for _source, raw in stream_stdout_and_stderr(cmd, env=env or None):
            line = raw.decode(errors="replace").rstrip("\n")
            now = time.monotonic()
            log.append(line)
            err().print(line)
            if m := _VERTEX.match(line):
                vertex_target.setdefault(m[1], m["target"])
            if (m := _LINE_ID.match(line)) and m[1] in vertex_target:
                t = vertex_target[m[1]]
                start, _ = spans.get(t, (now, now))
                spans[t] = (start, now)
    except DockerException as exc:
        output = "\n".join(log) + "\n" + text(exc.stderr)
        raise WorkFailed(f"bake failed: {explain_failure(output)}") from None
    return "\n".join(log), spans


def build(root: Path, pins: Pins, request: BakeRequest) -> list[Built]:
    resolved = preflight(root, pins, request)
    extra = ["--progress", request.progress, f"--{request.mode}"]
    if request.no_cache:
        extra.append("--no-cache")
    with tempfile.TemporaryDirectory() as tmp:
        meta_file = Path(tmp) / "metadata.json"
        cmd = _bake_cmd(root, request, *extra, "--metadata-file", str(meta_file))
        started = time.monotonic()
        with contextlib.chdir(root):
            _, spans = _stream(cmd, _variables(request))
        total = time.monotonic() - started
        metadata = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    built = []
    for target, spec in sorted(resolved.get("target", {}).items()):
        meta = metadata.get(target, {})
        start_end = spans.get(target)
        built.append(Built(
            target=target,
            tags=list(spec.get("tags", [])),
            image_id=meta.get("containerimage.config.digest"),
            digest=meta.get("containerimage.digest"),
            seconds=(start_end[1] - start_end[0]) if start_end else total,
            pins=pins_for(pins, target) or [],
        ))
    record.write(root, built)
    return built
