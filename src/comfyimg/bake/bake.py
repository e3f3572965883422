"""The only place that talks to ``docker buildx bake``.

python-on-whales' ``bake()`` lacks ``--allow`` and runs a second ``--print`` after
every build; :func:`bake_command` builds the command once from python-on-whales'
client config (``docker_cmd``, through :mod:`comfyimg.engine.docker`, which runs it), so
extra flags live here and nowhere else: the labels (OCI, pins), the cache import/export of
every target (:func:`derived_args`), the checks that no value smuggles buildx options
(:func:`check_value`) and the environment buildx gets (:func:`environment`).

Over 500 lines on purpose: it is the one boundary to buildx (options checked, preflight, the
plan, the derived options, the build and its failure explained); split, each part would
import the others' private rules about the same command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from comfyimg import render
from comfyimg.bake import autocover, record
from comfyimg.render import (
    BAKE_FILE,
    COVERAGE_LABEL,
    PINS_LABEL,
    PLATFORM_LABEL,
    RUNS_LABEL,
    coverage_label,
    pins_for,
    pins_label,
    platform_for,
    runs_label,
)
from comfyimg.render import targets as bake_targets
from comfyimg.bake.buildlog import pip_hash_mismatch
from comfyimg.engine.docker import (
    DockerException,
    NoDockerCLI,
    command,
    error_line,
    run,
    stream,
    text,
    versions,
)
from comfyimg.bake.record import Built
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.fsutil import read_bytes
from comfyimg.audit import coverage
from comfyimg.output import Say
from comfyimg.pins.model import Pin, Pins, record_hash_command
from comfyimg import untrusted
from comfyimg.untrusted import loads_json

_VERTEX = re.compile(r"^#(\d+) \[(?P<target>[^\s\]]+)[\s\]]", re.ASCII)
_LINE_ID = re.compile(r"^#(\d+) ", re.ASCII)


@dataclass(frozen=True)
class BakeRequest:
    """What to bake and how; never changed once made (preflight returns a copy with ``attest`` decided)."""

    targets: list[str] = field(default_factory=lambda: ["default"])
    mode: str = "load"  # load | push | print
    label: str | None = None
    builder: str | None = None
    sets: list[str] = field(default_factory=list)
    no_cache: bool = False
    progress: str = "plain"
    files: list[Path] = field(default_factory=list)  # extra bake files, after ours
    allow: list[str] = field(default_factory=list)  # buildx entitlements, e.g. network.host
    cache_to: list[str] = field(default_factory=list)  # BACKEND[=WHERE], see cache_entries()
    cache_from: list[str] = field(default_factory=list)
    attest: tuple[str, ...] = ()  # on a push: names in ATTESTATIONS; preflight decides what the builder can


def _files(root: Path, request: BakeRequest) -> list[Path]:
    return [root / BAKE_FILE, root / render.BAKE_VARS, *request.files]


_OCI_VALUES: dict[Path, dict[str, str]] = {}  # once per command: the plan and the build agree on "created"


def variables(request: BakeRequest, root: Path | None = None) -> dict[str, str]:
    found = {"IMAGE_LABEL": request.label} if request.label else {}
    if root is not None:  # the OCI labels' values (docker-bake.hcl); the caller's environment wins
        if root not in _OCI_VALUES:
            _OCI_VALUES[root] = oci_values(root)
        found.update({k: v for k, v in _OCI_VALUES[root].items() if not os.environ.get(k)})
    return found


# The environment buildx gets, decided here and nowhere else (#27): what docker and buildx need
# to find the engine and their own settings, and the variables the bake files of this command
# declare (docker-bake.hcl, generated/, any --file) — never a name that holds a credential,
# never a value that is a known secret. Nothing else of the caller's environment reaches a
# build: a token in the environment cannot become a build arg, a label or a line of the log.
ENGINE_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME",
              "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY",
              "DOCKER_API_VERSION", "DOCKER_BUILDKIT", "BUILDX_CONFIG", "BUILDX_BUILDER", "BUILDKIT_PROGRESS",
              "BUILDX_NO_DEFAULT_ATTESTATIONS", "SOURCE_DATE_EPOCH")
_DECLARED = re.compile(r'^\s*variable\s+"([A-Za-z_][A-Za-z0-9_]*)"', re.M)


def declared_variables(files: Sequence[Path]) -> set[str]:
    """The variable names the bake files declare (HCL ``variable "NAME"``, JSON ``"variable": {…}``)."""
    names: set[str] = set()
    for path in files:
        try:
            text = read_bytes(path).decode("utf-8", errors="replace")
        except (OSError, BadInput):
            continue
        if path.suffix == ".json":
            try:
                declared = json.loads(text).get("variable", {})
            except (ValueError, AttributeError):
                declared = {}
            names |= {n for n in declared if isinstance(n, str)} if isinstance(declared, dict) else set()
        else:
            names |= set(_DECLARED.findall(text))
    return names


def environment(request: BakeRequest, root: Path) -> dict[str, str]:
    """The whole environment of a buildx command: allow-listed (ENGINE_ENV, the declared bake
    variables), without credentials, plus the values this command sets (:func:`variables`);
    every bake variable passes the one redaction (``user:password@`` in a URL becomes ``***@``)."""
    wanted = set(ENGINE_ENV) | declared_variables(_files(root, request))
    env = {k: v for k, v in os.environ.items()
           if k in wanted and not untrusted.secret_name(k) and not untrusted.is_secret(v)}
    return {k: v if k in ENGINE_ENV else untrusted.redact(v) for k, v in {**env, **variables(request, root)}.items()}


ATTESTATIONS = {"sbom": "--sbom=true", "provenance:max": "--provenance=mode=max"}  # record name → buildx option


# What may reach buildx's own grammar (#27): a target is a name, never an option; a value that
# lands in a comma-separated option (a cache ref, scope or folder) holds no ',', '=', quote or
# line break, so it cannot add options of its own.
_TARGET = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")  # registry/repo[:tag][@digest]
_SCOPE = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_value(value: str, what: str, pattern: re.Pattern[str] | None = None) -> str:
    """``value`` as given, or BadInput naming ``what`` and the rule it breaks."""
    if _CONTROL.search(value):
        raise BadInput(f"{what} {value!r}: a line break or control character cannot reach buildx")
    if pattern is not None and not pattern.fullmatch(value):
        rule = {_TARGET: "a target name: letters, digits, '_', '.', '-' (not first)",
                _REF: "an image reference: letters, digits, '.', '_', '/', ':', '@', '-' (no ',' or '=')",
                _SCOPE: "a scope: letters, digits, '_', '.', '-'"}.get(pattern, pattern.pattern)
        raise BadInput(f"{what} {value!r}: expected {rule}")
    return value


def _folder(value: str, what: str) -> str:
    check_value(value, what)
    if any(c in value for c in ',="\''):
        raise BadInput(f"{what} {value!r}: a cache folder cannot hold ',', '=' or quotes (buildx reads them as options)")
    return value


def bake_command(root: Path, request: BakeRequest, *extra: str, derived: Sequence[str] = ()) -> list[str]:
    """The one ``docker buildx bake`` command line. ``derived``: options computed from the plan
    (:func:`derived_args`: labels, caches), after the user's own ``--set``s. Every value from the
    user or a bake file is checked against buildx's grammar first (:func:`check_value`)."""
    for t in request.targets:
        check_value(t, "target", _TARGET)
    for value, what in ((request.builder, "--builder"), *((s, "--set") for s in request.sets),
                        *((a, "--allow") for a in request.allow), *((str(f), "--file") for f in request.files),
                        *((d, "option") for d in derived)):
        if value:
            check_value(value, what)
    if request.builder and request.builder.startswith("-"):
        raise BadInput(f"--builder {request.builder!r}: a builder name, not an option")
    cmd = command("buildx", "bake")
    for f in _files(root, request):
        cmd += ["--file", str(f)]
    if request.builder:
        cmd += ["--builder", request.builder]
    for s in request.sets:
        cmd += ["--set", s]
    cmd += list(derived)
    for a in request.allow:
        cmd += ["--allow", a]
    if request.mode == "push":  # pushed images carry an SBOM and max-mode provenance, as the builder can
        cmd += [ATTESTATIONS[name] for name in request.attest]
    cmd += list(extra)
    return cmd + list(request.targets)


# --------------------------------------------------------------------------- labels and caches


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def source_url(remote: str) -> str | None:
    """The web address of a git remote for ``org.opencontainers.image.source``: an http(s) URL
    without its credential, an ``ssh://`` or ``git@host:owner/repo`` remote as https; None for
    a local path or ``file://`` (a clone of a clone: the label would name a directory)."""
    if m := re.fullmatch(r"[\w.-]+@([\w.-]+):(?!/)(.+)", remote):  # scp-like: git@github.com:o/r.git
        return f"https://{m[1]}/{m[2]}"
    if m := re.fullmatch(r"(?:ssh|git)://(?:[^/@]*@)?([\w.-]+)(?::\d+)?/(.+)", remote):
        return f"https://{m[1]}/{m[2]}"
    if re.match(r"https?://[^/]", remote):
        return re.sub(r"^(\w+://)[^/@]*@", r"\1", remote)  # never a credential in a label
    return None


def oci_values(root: Path) -> dict[str, str]:
    """IMAGE_SOURCE, IMAGE_REVISION, IMAGE_CREATED: the bake variables behind the OCI labels
    (each set in the environment wins, see :func:`variables`). IMAGE_SOURCE: GitHub Actions'
    repository, else the web address of the ``origin`` remote, else "unknown", never a path."""
    source = None
    if os.environ.get("GITHUB_REPOSITORY"):
        server = os.environ.get("GITHUB_SERVER_URL") or "https://github.com"
        source = f"{server}/{os.environ['GITHUB_REPOSITORY']}"
    elif remote := _git(root, "config", "--get", "remote.origin.url"):
        source = source_url(remote)
    return {
        "IMAGE_SOURCE": source or "unknown",
        "IMAGE_REVISION": os.environ.get("GITHUB_SHA") or _git(root, "rev-parse", "HEAD") or "unknown",
        "IMAGE_CREATED": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


CACHE_BACKENDS = ("registry", "gha", "local", "inline", "image")


def cache_entries(spec: str, target: str, tags: list[str], *, export: bool) -> list[str]:
    """One ``--cache-to`` / ``--cache-from`` option → buildx cache entries for ``target``.

    ``registry=REPO`` (REPO:TARGET-cache), ``gha[=SCOPE]`` (SCOPE-TARGET), ``local=DIR``
    (DIR/TARGET), ``inline`` (export only: the cache rides in the image), ``image`` (import
    only: the target's own tags, e.g. pushed with inline cache), or a raw buildx spec
    ``type=…`` passed as it is."""
    option = "--cache-to" if export else "--cache-from"
    check_value(spec, option)
    if spec.startswith("type="):
        return [spec]  # the user's own raw buildx spec, commas and all (no line break: checked)
    backend, _, where = spec.partition("=")
    if backend not in CACHE_BACKENDS:
        raise BadInput(f"{option} {spec!r}: unknown cache backend {backend!r}; "
                       f"expected one of {', '.join(CACHE_BACKENDS)} or a buildx spec type=…")
    mode = ",mode=max" if export else ""
    if backend == "registry":
        if not where:
            raise BadInput(f"{option} {spec!r}: registry needs a repository, e.g. registry=ghcr.io/acme/cache")
        check_value(where, f"{option} registry", _REF)
        return [f"type=registry,ref={where}:{check_value(target, 'target', _TARGET)}-cache{mode}"]
    if backend == "gha":
        scope = check_value(where or "comfyimg", f"{option} gha scope", _SCOPE)
        return [f"type=gha,scope={scope}-{check_value(target, 'target', _TARGET)}{mode}"]
    if backend == "local":
        if not where:
            raise BadInput(f"{option} {spec!r}: local needs a directory, e.g. local=build/cache")
        directory = Path(_folder(where, f"{option} local")).resolve() / check_value(target, "target", _TARGET)
        _folder(str(directory), f"{option} local")
        return [f"type=local,dest={directory}{mode}" if export else f"type=local,src={directory}"]
    if (backend == "inline") != export:
        raise BadInput(f"{option} {spec!r}: {backend} is for "
                       f"{'--cache-to' if backend == 'inline' else '--cache-from'} only")
    return ["type=inline"] if export else [f"type=registry,ref={check_value(tag, 'tag of ' + target, _REF)}"
                                           for tag in tags]


def derived_args(pins: Pins, request: BakeRequest, resolved: dict[str, Any]) -> list[str]:
    """``--set`` for every resolved target (its pins label, its cache import/export), and the
    ``--allow fs.*`` entitlements that a local cache folder needs."""
    sets: list[str] = []
    for target, spec in sorted(resolved.get("target", {}).items()):
        installed = pins_for(pins, target)
        if installed is not None:
            sets.append(f"{target}.labels.{PINS_LABEL}={pins_label(pins, target, installed)}")
            sets.append(f"{target}.labels.{PLATFORM_LABEL}={platform_for(pins, target)}")
            sets.append(f"{target}.labels.{RUNS_LABEL}={runs_label(pins, target, installed)}")
            sets.append(f"{target}.labels.{COVERAGE_LABEL}={coverage_label(pins, installed)}")
        tags = list(spec.get("tags", []))
        for key, specs, export in (("cache-to", request.cache_to, True), ("cache-from", request.cache_from, False)):
            entries = [e for s in specs for e in cache_entries(s, target, tags, export=export)]
            sets += [f"{target}.{key}{'=' if i == 0 else '+='}{e}" for i, e in enumerate(entries)]
    allows = sorted({f"fs.{'write' if export else 'read'}={Path(spec.partition('=')[2]).resolve()}"
                     for specs, export in ((request.cache_to, True), (request.cache_from, False))
                     for spec in specs if spec.startswith("local=")})
    return [arg for s in sets for arg in ("--set", s)] + [arg for a in allows for arg in ("--allow", a)]


def builder_driver(name: str | None) -> str | None:
    try:
        found = run(command("buildx", "inspect", *([name] if name else [])))
    except DockerException:
        return None
    m = re.search(r"^Driver:\s*(\S+)", found, re.M)
    return m[1] if m else None


def _containerd_store() -> bool:
    """Whether the engine keeps images in containerd (then its docker driver exports every cache)."""
    try:
        return "io.containerd.snapshotter" in run(command("info", "--format", "{{json .DriverStatus}}"))
    except DockerException:
        return False


def check_cache(request: BakeRequest) -> None:
    """The docker driver on the classic image store exports only inline cache: say so before a
    build fails half-way."""
    exports = [s for s in request.cache_to if s.partition("=")[0] != "inline" and "type=inline" not in s]
    if exports and builder_driver(request.builder) == "docker" and not _containerd_store():
        raise BadInput(f"--cache-to {exports[0]}: the builder {request.builder or '(default)'} uses the docker "
                       "driver on the classic image store, which exports only inline cache; use --cache-to "
                       "inline, a builder with the docker-container driver (docker buildx create --driver "
                       "docker-container --use), or an engine with the containerd image store")


def _default_bridge() -> bool:
    """Whether the engine has its default ``bridge`` network (``dockerd --bridge=none`` has none)."""
    try:
        run(command("network", "inspect", "--format", "{{.Name}}", "bridge"))
    except DockerException:
        return False
    return True


def check_attest(request: BakeRequest, say: Say) -> tuple[str, ...]:
    """The attestations the builder can attach to pushed images (names in :data:`ATTESTATIONS`),
    with a warning to ``say`` for each it cannot. The docker driver on the classic image store attaches
    none. The docker driver runs BuildKit's SBOM generator on the engine's default bridge
    network, so without one (``dockerd --bridge=none``) it attaches provenance only."""
    who = f"the builder {request.builder or '(default)'} uses the docker driver"
    if builder_driver(request.builder) != "docker":
        return tuple(ATTESTATIONS)
    if not _containerd_store():
        say(f"warning: {who} on the classic image store, which cannot attach attestations: the images "
            "are pushed WITHOUT an SBOM and provenance. Use a docker-container builder (docker buildx "
            "create --driver docker-container --use) or the containerd image store to attest them")
        return ()
    if not _default_bridge():
        say(f"warning: {who} on an engine without a default bridge network (dockerd --bridge=none), "
            "where BuildKit cannot run the SBOM generator: the images are pushed with max-mode "
            "provenance but WITHOUT an SBOM. Use a docker-container builder or an engine with a "
            "bridge network to attach one")
        return ("provenance:max",)
    return tuple(ATTESTATIONS)


# --------------------------------------------------------------------------- preflight


def check_engine() -> str:
    """The docker CLI and an engine must answer (one ``docker version`` call); versions on failure.
    The buildx plugin is proven by :func:`plan`, which runs ``buildx bake --print``."""
    client, server, why = versions()
    if server is None:
        raise WorkFailed(f"preflight: no Docker engine answers (docker CLI {client}): {why}. "
                         "Start one (tools/engine/start.sh)")
    return f"docker CLI {client}, engine {server}"


def buildx_version() -> str | None:
    try:
        return run(command("buildx", "version")).strip()
    except DockerException:
        return None


def plan(root: Path, request: BakeRequest, derived: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved bake plan (``--print``), as JSON."""
    cmd = bake_command(root, request, "--print", derived=derived)
    try:
        with contextlib.chdir(root):  # bake resolves contexts against the working directory
            return json.loads(run(cmd, env=environment(request, root)))
    except DockerException as exc:
        if buildx_version() is None:
            raise WorkFailed(f"preflight: the buildx plugin is missing (docker CLI {versions()[0]}); "
                             f"install docker-buildx >= 0.17 ({error_line(exc)})") from None
        raise BadInput(f"bake: cannot evaluate {BAKE_FILE} for {' '.join(request.targets)}: "
                       f"{error_line(exc)}") from None


PROGRESS_MODES = ("plain", "auto", "quiet", "rawjson")
_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")  # the tail of a Docker tag


def check_options(request: BakeRequest) -> None:
    """Options buildx would only reject mid-way: bad input, before anything runs."""
    if request.progress not in PROGRESS_MODES:
        why = (" (the build output is streamed through invoke, never to a terminal of its own)"
               if request.progress == "tty" else "")
        raise BadInput(f"--progress {request.progress!r} is not supported{why}; "
                       f"expected one of {', '.join(PROGRESS_MODES)}")
    for specs, export in ((request.cache_to, True), (request.cache_from, False)):
        for spec in specs:
            cache_entries(spec, "target", [], export=export)
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

    errors, unrecorded = coverage.problems(pins, target_pins)
    return errors + [f"{pins.path.name}:{p.line}: coverage: {p.key} in {target} has no recorded kernel "
                     f"coverage; record it with: {coverage.record_command(p)}" for p in unrecorded]


def preflight(root: Path, pins: Pins, request: BakeRequest,
              say: Say) -> tuple[dict[str, Any], list[str], BakeRequest]:
    """Everything checked before a build: returns the plan (labels and caches included), the
    options that put them there, and the request with its attestations decided (a push).
    Renders generated/ first; ``say`` gets what it did and warnings."""
    try:
        return _preflight(root, pins, request, say)
    except NoDockerCLI as exc:
        raise WorkFailed(f"preflight: {exc}") from None


def _preflight(root: Path, pins: Pins, request: BakeRequest,
               say: Say) -> tuple[dict[str, Any], list[str], BakeRequest]:
    check_options(request)
    changed = render.write(pins, root)
    for path in changed:
        say(f"rendered {path}")
    if request.mode != "print":  # printing the plan needs no engine
        check_engine()
        if request.builder:
            check_builder(request.builder)
        check_cache(request)
    if request.mode == "push":
        request = replace(request, attest=check_attest(request, say))
    resolved = plan(root, request)
    if request.mode != "print":  # record missing kernel coverage of hashed pins, then judge it
        wanted = [p for t in resolved.get("target", {}) for p in pins_for(pins, t) or []]
        pins = autocover.record(root, pins, autocover.missing(pins, wanted),
                                bake_targets=bake_targets(root / BAKE_FILE), say=say)
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
        say(f"warning: {problem}")
    derived = derived_args(pins, request, resolved)
    if request.mode == "print" and (request.cache_to or request.cache_from):
        # buildx prints a cache entry in its own parsed form (attributes as keys): let it.
        return plan(root, request, derived), derived, request
    # The labels the build will set: what buildx prints for the same --set options (one
    # --print run, not two; tests/engine/test_bake.py compares the two).
    for target, spec in resolved.get("target", {}).items():
        if (installed := pins_for(pins, target)) is not None:
            labels = spec.setdefault("labels", {})
            labels[PINS_LABEL] = pins_label(pins, target, installed)
            labels[PLATFORM_LABEL] = platform_for(pins, target)
            labels[RUNS_LABEL] = runs_label(pins, target, installed)
            labels[COVERAGE_LABEL] = coverage_label(pins, installed)
    return resolved, derived, request


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


def _stream(cmd: list[str], env: dict[str, str], say: Say) -> tuple[str, dict[str, tuple[float, float]]]:
    """Run ``cmd``, hand each output line to ``say``, and time each target from the plain progress lines."""
    log: list[str] = []
    vertex_target: dict[str, str] = {}
    spans: dict[str, tuple[float, float]] = {}
    try:
        for _source, raw in stream(cmd, env=env, stopped=lambda pid: say(
                f"stopping: sent SIGTERM to docker buildx bake (pid {pid}); the build was cancelled")):
            line = raw.decode(errors="replace").rstrip("\n")
            now = time.monotonic()
            log.append(line)
            say(line)
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


def build(root: Path, pins: Pins, request: BakeRequest, say: Say) -> list[Built]:
    """Preflight, build (the build log goes line by line to ``say``) and write the build record."""
    resolved, derived, request = preflight(root, pins, request, say)
    extra = ["--progress", request.progress, f"--{request.mode}"]
    if request.no_cache:
        extra.append("--no-cache")
    for spec in request.cache_to:  # buildx grants fs.write only on a folder that exists
        if spec.startswith("local="):
            Path(spec.partition("=")[2]).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        meta_file = Path(tmp) / "metadata.json"
        cmd = bake_command(root, request, *extra, "--metadata-file", str(meta_file), derived=derived)
        started = time.monotonic()
        with contextlib.chdir(root):
            _, spans = _stream(cmd, environment(request, root), say)
        total = time.monotonic() - started
        raw = loads_json(read_bytes(meta_file)) if meta_file.exists() else {}
        metadata: dict[str, Any] = raw if isinstance(raw, dict) else {}
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
            labels=dict(spec.get("labels", {})),
        ))
    record.write(root, built, attested=list(request.attest) if request.mode == "push" else None)
    return built
