"""``invoke check``'s build checks: ``docker buildx bake --call check`` on every target.

Run through the one bake command line (:func:`comfyimg.bake.bake.bake_command`) on every target of
the ``all`` group (matrix targets expanded by ``bake --print``), or every declared target
when there is no such group. A warning from BuildKit's Dockerfile checks fails ``invoke
check`` (exit 1), listing each one.

The checks need an engine with buildx whose BuildKit can lint (its Dockerfile frontend
supports ``--call check``, or can fetch one that does: Docker Engine 28 can, 26 cannot).
Without an engine, or when its BuildKit cannot run the checks, they are **skipped and said
to be skipped**, never counted as passed.

A target linked to another through a ``target:`` named context (``FROM core``) cannot be
checked as it is: buildx (0.29 and earlier, docker/buildx#3343) sends the ``target:`` link to
the frontend unresolved under ``--call check`` and it fails with "unsupported context source
target". So each such context is replaced, for the check only, by an empty folder: the
Dockerfile is linted against a base with no image config (no ENV inherited from the linked
stage, no platform to compare).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from comfyimg.bake import bake
from comfyimg import render
from comfyimg.engine.docker import TIMEOUT_ENV, DockerTimeout, NoDockerCLI, complete, docker_timeout
from comfyimg.errors import BadInput, WorkFailed

_WARNING = re.compile(r"^WARNING: (\S+ - .*)$", re.M)
_CANNOT = re.compile(r"unsupported request frontend\.lint|resolve image config for docker-image://[^\s/]+/docker/dockerfile")


@dataclass
class Result:
    status: str  # "passed" | "failed" | "skipped"
    detail: str
    warnings: list[str] = field(default_factory=list)
    note: bool = False  # nothing here to check (no Dockerfile in this checkout): a note, not a warning
    targets: dict[str, str] = field(default_factory=dict)  # target → its own status (_per_target)

    def as_json(self) -> dict[str, object]:
        return {"status": self.status, "detail": self.detail, "warnings": self.warnings, "targets": self.targets}


def _last_error(output: str) -> str:
    """The error that stopped the check: bake's per-target ``error: …`` line, else its last ``ERROR``."""
    lines = [ln.strip() for ln in output.splitlines() if ln.startswith("error: ")]
    lines = lines or [ln.strip() for ln in output.splitlines() if ln.strip().startswith("ERROR")]
    return lines[-1] if lines else (output.strip().splitlines() or ["no output"])[-1]  # whole: never cut mid-word


def _unlinked(specs: dict, targets: list[str], stub: Path) -> tuple[list[str], list[str]]:
    """``--set`` values that replace every ``target:`` named context of ``targets`` by ``stub``
    (an empty folder), and the ``fs.read`` entitlement buildx wants for it."""
    sets = [f"{t}.contexts.{name}={stub}" for t in targets
            for name, value in sorted((specs[t].get("contexts") or {}).items()) if str(value).startswith("target:")]
    return sets, ([f"fs.read={stub}"] if sets else [])


def _dockerfile(root: Path, spec: dict) -> Path | None:
    """The target's Dockerfile on disk; None for a remote context or a file not in this checkout."""
    context = str(spec.get("context") or ".")
    if "://" in context or context.startswith("target:"):
        return None
    path = (root / context / str(spec.get("dockerfile") or "Dockerfile"))
    return path if path.is_file() else None


def run(root: Path) -> Result:
    try:
        engine = bake.check_engine()
    except (WorkFailed, NoDockerCLI) as exc:
        return Result("skipped", f"build checks skipped: {exc}")
    if bake.buildx_version() is None:
        return Result("skipped", f"build checks skipped: no buildx plugin ({engine})")
    bake_file = root / render.BAKE_FILE
    if not bake_file.exists():
        return Result("skipped", f"build checks skipped: no {render.BAKE_FILE}")
    declared = render.targets(bake_file) or set()
    has_all = re.search(r'^\s*group\s+"all"', bake_file.read_text(encoding="utf-8"), re.M)
    try:
        resolved = bake.plan(root, bake.BakeRequest(targets=["all"] if has_all else sorted(declared)))
    except (BadInput, WorkFailed) as exc:
        return Result("failed", f"build checks: {exc}")
    specs = resolved.get("target", {})
    targets = [t for t in sorted(specs) if _dockerfile(root, specs[t]) is not None]
    missing = sorted(set(specs) - set(targets))
    if not targets:
        return Result("skipped", "build checks skipped: no target has a Dockerfile in this checkout"
                      + (f" ({', '.join(missing)})" if missing else ""), note=True)
    limit = docker_timeout()  # the whole check run, as every short docker command (bump.md)
    with tempfile.TemporaryDirectory(prefix="comfyimg-check-") as stub:
        sets, allow = _unlinked(specs, targets, Path(stub))
        request = bake.BakeRequest(targets=targets, sets=sets, allow=allow)
        cmd = bake.bake_command(root, request, "--call", "check", "--progress", "plain")
        try:
            with contextlib.chdir(root):
                done = complete(cmd, timeout=limit, env=bake.environment(request, root))
        except DockerTimeout:
            return Result("failed", f"build checks: no answer within {limit:g} s ({TIMEOUT_ENV})")
    output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    warnings = _WARNING.findall(output)
    per = _per_target(done.stdout.decode(errors="replace"), targets, missing, ok=done.code == 0 and not warnings)
    if warnings:
        return Result("failed", f"build checks: {len(warnings)} warning(s) in {len(targets)} target(s)", warnings,
                      targets=per)
    if done.code == 0:
        unchecked = f"; not checked (no Dockerfile here): {', '.join(missing)}" if missing else ""
        return Result("passed", f"build checks passed on {len(targets)} target(s){unchecked}", targets=per)
    if _CANNOT.search(output):
        return Result("skipped", "build checks NOT run: this engine's BuildKit cannot run Dockerfile checks "
                                 f"and could not fetch a frontend that can ({_last_error(output)})",
                      targets=dict.fromkeys(targets, "not run: this engine cannot run build checks") | {
                          t: per[t] for t in missing})
    errors = _target_errors(done.stdout.decode(errors="replace"), targets)
    unresolved = {t: e for t, e in errors.items() if _UNRESOLVED in e}
    if errors and errors == unresolved:  # only base images out of reach: the other targets passed
        passed = [t for t in targets if t not in unresolved]
        first = next(iter(unresolved.values()))
        return Result("skipped", f"build checks passed on {len(passed)} target(s) but were NOT run on "
                                 f"{', '.join(unresolved)}: a base image cannot be resolved ({first})", targets=per)
    return Result("failed", f"build checks: {_last_error(output)}", targets=per)


_UNRESOLVED = "failed to resolve source metadata"


NO_DOCKERFILE = "not checked: no Dockerfile in this checkout"


def _sections(stdout: str, targets: list[str]) -> dict[str, list[str]]:
    """bake's report, target by target: it names each target on a line of its own."""
    found: dict[str, list[str]] = {}
    current = None
    for line in stdout.splitlines():
        if line.strip() in targets:
            current = line.strip()
            found.setdefault(current, [])
        elif current:
            found[current].append(line)
    return found


def _per_target(stdout: str, targets: list[str], missing: list[str], *, ok: bool) -> dict[str, str]:
    """Each target's own status (``check --json``): passed; failed (its error, or its warnings);
    not run (a base image out of reach); not checked (no Dockerfile here). A target bake did not
    report on by name (a single target) takes the run's own outcome."""
    found = _sections(stdout, targets)
    status: dict[str, str] = {}
    for target in targets:
        lines = found.get(target)
        if lines is None:
            status[target] = "passed" if ok else "failed: see the build checks' detail"
            continue
        error = next((ln.removeprefix("error: ").strip() for ln in lines if ln.startswith("error: ")), None)
        warned = [ln for ln in lines if _WARNING.match(ln)]
        if error and _UNRESOLVED in error:
            status[target] = f"not run: a base image cannot be resolved ({error})"
        elif error:
            status[target] = f"failed: {error}"
        elif warned:
            status[target] = f"failed: {len(warned)} warning(s)"
        else:
            status[target] = "passed"
    return status | dict.fromkeys(missing, NO_DOCKERFILE)


def _target_errors(stdout: str, targets: list[str]) -> dict[str, str]:
    """bake's per-target ``error: …`` lines: the report names each target on a line of its own."""
    errors: dict[str, str] = {}
    current = None
    for line in stdout.splitlines():
        if line.strip() in targets:
            current = line.strip()
        elif current and line.startswith("error: ") and current not in errors:
            errors[current] = line.removeprefix("error: ").strip()
    return errors


__all__ = ["Result", "run"]
