"""The commands behind ``tasks.py`` and ``noxfile.py``: each returns an exit code or raises
:class:`~comfyimg.errors.UserError`; :func:`run` turns that into invoke's ``Exit``."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from comfyimg import render
from comfyimg.build import bakefile
from comfyimg.build.record import RECORD
from comfyimg.errors import BAD_INPUT, FAILED, INTERRUPTED, BadInput, UserError
from comfyimg.fsutil import changed_statement, read_bytes
from comfyimg.kernels import coverage, report
from comfyimg.output import SafeTable as Table
from comfyimg.output import err, out, plain
from comfyimg.pins import load as pins_mod
from comfyimg.pins.hints import record_hash_command
from comfyimg.untrusted import for_terminal

# `python -m comfyimg audit` stays within 2x of reading the wheel (docs/user-guides/performance.md):
# the commands that drive docker (python-on-whales, pydantic), GitHub (httpx) or invoke import
# them in their own function, marked "# optional:" (tests/unit/test_audit_imports.py).

# Short flags, the same in every task: one letter never means two things (-p was --pre in
# bump and --push in bake). Every other option is long only. -f after a task name is that
# task's --file (bake's extra bake file); before it, invoke's own config-file flag.
SHORT_FLAGS = {"name": "n", "target": "t", "file": "f"}


def task_class():
    """invoke's ``Task``, with :data:`SHORT_FLAGS` instead of invoke's automatic short flags."""
    from invoke import Task  # optional: invoke's own tasks only; `python -m comfyimg` runs without it

    class FixedShortFlags(Task):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **{**kwargs, "auto_shortflags": False})  # type: ignore[arg-type]

        def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict:
            opts = super().arg_opts(name, default, taken_names)
            if name in SHORT_FLAGS:
                opts["names"].append(SHORT_FLAGS[name])
            return opts

    return FixedShortFlags


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every ``finally`` (temporary
    directories, partial downloads, probe containers) runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def failure(exc: BaseException) -> tuple[str, int] | None:
    """The message and exit code a command ends with for ``exc``; None: a bug (traceback).
    The one place where errors become exit codes (each :class:`UserError` carries its own)."""
    if isinstance(exc, UserError):
        return for_terminal(exc), exc.exit_code
    if isinstance(exc, OSError):  # disk full, permission denied: the work failed; writes are atomic
        return for_terminal(f"error: {exc}"), FAILED
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted (Ctrl-C); {changed_statement()}", INTERRUPTED
    if isinstance(exc, Stopped):
        name = signal.Signals(exc.signum).name
        return f"stopped by {name}; {changed_statement()}", 128 + exc.signum
    return None


def run(fn: Callable[..., int | None], *args: object, **kwargs: object) -> None:
    """Run a command; a :class:`UserError` becomes invoke's ``Exit`` (no traceback). SIGTERM
    and SIGHUP end it like Ctrl-C: one line, temporary files removed, exit 143 / 129."""
    from invoke.exceptions import Exit  # optional: invoke's own tasks only, as task_class

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code = fn(*args, **kwargs) or 0
    except (UserError, OSError, KeyboardInterrupt, Stopped) as exc:
        message, status = failure(exc)  # type: ignore[misc]
        raise Exit(message, status) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if code:
        raise Exit(code=code)


def after_dashes(remainder: str | None) -> list[str]:
    """The words after ``--`` (invoke hands them over as one string), split as a shell would."""
    try:
        return shlex.split(remainder or "")
    except ValueError as exc:
        raise BadInput(f"cannot parse the arguments after --: {exc}") from None


def load_pins(root: Path) -> pins_mod.Pins:
    """``wheels.toml`` of the project at ``root``, its targets checked against the bake file."""
    return pins_mod.load(root / "wheels.toml", bake_targets=bakefile.targets(root / bakefile.BAKE_FILE))


def warn_unhashed(pins: pins_mod.Pins) -> None:
    """Warnings that do not stop a check: unrecorded hashes, images left without a wheel."""
    for target in pins.targets():
        for name, per_arch in pins.arch_only(target).items():
            archs = ", ".join(p.arch for p in per_arch if p.arch)
            err().print(f"warning: {pins.path.name}:{per_arch[0].line}: arch: {name} in {target} is pinned for "
                        f"{archs} only, so the {target} image (built without an arch) has no {name}; "
                        f"build {target}-<arch>, or add a pin without arch")
    for pin in pins.unhashed():
        err().print(f"warning: {pins.path.name}:{pin.line}: sha256: {pin.key} has no hash yet; "
                    f"builds of {', '.join(pin.targets)} refuse it. Record it with: "
                    f"{record_hash_command(pin)}")


def check_coverage(pins: pins_mod.Pins) -> None:
    """Recorded kernel coverage that misses an arch a pin serves: bad input (exit 2);
    no coverage recorded: a warning with the command that records it."""

    errors, unrecorded = coverage.problems(pins)
    for pin in unrecorded:
        err().print(f"warning: {coverage.unrecorded_message(pins, pin)}")
    if errors:
        raise BadInput("\n".join(errors))


def check(root: Path, json_out: bool = False) -> int:
    """Validate wheels.toml, verify the generated files are current, run the bake build checks
    when an engine can: 0 ok, 1 drift or a build-check warning, 2 bad input."""
    from comfyimg.build import checks as buildchecks  # optional: the docker stack, for this command only
    pins = load_pins(root)
    check_coverage(pins)
    drifts = render.check(pins, root)
    warn_unhashed(pins)
    built = buildchecks.run(root)  # bake --call check on every target, when an engine can
    if json_out:  # bad input never gets here: it is a one-line error on stderr, exit 2

        print(json.dumps({
            "file": pins.path.name, "wheels": len(pins.wheels), "current": not drifts,
            "drift": [str(d.path) for d in drifts],
            "unhashed": [{"pin": p.key, "line": p.line, "targets": list(p.targets)} for p in pins.unhashed()],
            "coverage_unrecorded": [p.key for p in coverage.problems(pins)[1]],
            "build_checks": built.as_json(),
        }, indent=2))
        return 1 if drifts or built.status == "failed" else 0
    for warning in built.warnings:
        err().print(f"error: build check: {warning}")
    if built.status == "skipped":
        err().print(f"{'note' if built.note else 'warning'}: {built.detail}")
    if drifts:
        for drift in drifts:
            out().print(drift.diff, end="", soft_wrap=True)
        err().print(f"error: {len(drifts)} generated file(s) out of date with {pins.path.name}: "
                    f"{', '.join(str(d.path) for d in drifts)}. Run: invoke render")
        return 1
    if built.status == "failed":
        err().print(f"error: {built.detail}")
        return 1
    out().print(f"{pins.path.name}: {len(pins.wheels)} wheel(s) valid; generated files are current"
                + ("; " + built.detail if built.status == "passed" else ""))
    return 0


def audit(root: Path, wheel: str | None, archs: list[str], as_json: bool) -> int:
    """``invoke audit``: a wheel on disk (exit 0 runnable on every arch, 1 not, 2 bad input),
    or every pin from its recorded coverage."""

    if wheel:
        return show_wheel_audit(coverage.audit_wheel(root, Path(wheel), archs), as_json)
    pins = load_pins(root)
    result = coverage.audit_pins(pins, archs)
    if as_json:
        print(json.dumps(report.pins_json(result), indent=2))
    else:
        for entry in result.pins:
            if entry.modules is None:
                err().print(f"{entry.pin.key} {entry.pin.version}: {coverage.unrecorded_message(pins, entry.pin)}")
            else:
                out().print(report.pin_table(entry, result.archs))
    return 1 if result.failed else 0


def show_wheel_audit(result: coverage.WheelAudit, as_json: bool) -> int:
    """Exit 0: runnable on every arch asked; 1: not."""
    if as_json:
        print(json.dumps(report.wheel_json(result), indent=2))
    else:
        out().print(report.wheel_table(result))
        for line in report.wheel_lines(result):
            out().print(line)
    return 0 if result.runnable else 1


def render_files(root: Path) -> int:
    pins = load_pins(root)
    changed = render.write(pins, root)
    for path in changed:
        out().print(f"wrote {path}")
    if not changed:
        out().print("generated files already current")
    warn_unhashed(pins)
    return 0


def parse_names(names: Sequence[str] | None, remainder: str = "") -> list[str]:
    """``--name a --name b,c`` and ``-- a b`` → ``[a, b, c]``; given but empty is bad input
    (``--name ""`` must not mean "all")."""
    parsed: list[str] = []
    for raw in [*(names or ()), *after_dashes(remainder)]:
        parsed += [n.strip() for n in raw.split(",") if n.strip()]
    if not parsed and (names or (remainder or "").strip()):
        raise BadInput("the pin names given are empty; name a pin (e.g. --name sageattention), "
                       "or give none to bump every pin with a source")
    return parsed


def bump(root: Path, names: Sequence[str] | None, remainder: str, **kwargs: object) -> int:
    """``invoke bump``: names from ``--name`` (repeatable, comma-separated) and after ``--``."""
    from comfyimg.bump import comfyui as comfyui_bump  # optional: httpx, for this command only
    from comfyimg.bump import plan as bump_mod  # optional: httpx, for this command only

    if kwargs.pop("comfyui", False):
        if parse_names(names, remainder) or kwargs.get("verify") or kwargs.get("accept_new_bytes"):
            raise BadInput("--comfyui moves the ComfyUI pin alone; it takes no pin names, "
                           "--verify or --accept-new-bytes")
        return comfyui_bump.bump(root, pre=bool(kwargs["pre"]), release=kwargs["release"],  # type: ignore[arg-type]
                                  dry_run=bool(kwargs["dry_run"]), json_out=bool(kwargs["json_out"]))
    return bump_mod.bump(root, parse_names(names, remainder), **kwargs)  # type: ignore[arg-type]


def bake(root: Path, targets: Sequence[str] | None, remainder: str, *, load: bool, push: bool,
         print_plan: bool, files: Sequence[str] | None, sets: Sequence[str] | None,
         allow: Sequence[str] | None, json_out: bool = False, **options: object) -> int:
    """``invoke bake``: preflight, build through buildx bake, print a summary and write the
    build record (``--print``: print the resolved plan instead)."""
    from comfyimg.build import bake as bake_mod  # optional: the docker stack, for this command only

    modes = [m for m, on in (("load", load), ("push", push), ("print", print_plan)) if on]
    if len(modes) > 1:
        raise BadInput(f"choose one of --load, --push, --print (got {', '.join(modes)})")
    request = bake_mod.BakeRequest(
        targets=[*(targets or []), *after_dashes(remainder)] or ["default"],
        mode=(modes or ["load"])[0], sets=list(sets or []), allow=list(allow or []),
        files=[Path(f).resolve() for f in files or []], **options)  # type: ignore[arg-type]
    pins = load_pins(root)
    if request.mode == "print":
        resolved, _ = bake_mod.preflight(root, pins, request)
        out().print_json(data=resolved) if not (plain() or json_out) else print(json.dumps(resolved, indent=2))
        return 0
    built = bake_mod.build(root, pins, request)
    if json_out:  # the build record itself; the build log went to stderr
        print(read_bytes(root / RECORD).decode("utf-8", "replace"), end="")
        return 0

    table = Table("target", "tags", "image id", "duration", "pins", title="bake")
    for b in built:
        table.add_row(b.target, "\n".join(b.tags), (b.image_id or "-")[:19], f"{b.seconds:.1f}s",
                      ", ".join(f"{p.name} {p.version}" for p in b.pins) or "-")
    out().print(table)
    out().print(f"build record: {RECORD}")
    return 0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0 or value > 86400:
        raise argparse.ArgumentTypeError(f"--timeout must be between 0 and 86400 seconds, got {text!r}")
    return value


def _on_sigterm(signum, frame):  # noqa: ARG001
    from comfyimg.validate import containers  # optional: the docker stack, validate and smoke only
    raise containers.Terminated(signum)


def _stoppable(what: str, removed: str, work: Callable[[], Any]) -> int:
    """Run validate's or smoke's work: 0 pass, 1 fail; an error, Ctrl-C (130), SIGTERM (143) or
    SIGHUP (129) is one line, after the containers were removed (their ``finally``)."""
    from comfyimg.validate import containers  # optional: the docker stack, validate and smoke only
    previous = {s: signal.signal(s, _on_sigterm) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        outcome = work()
    except (UserError, OSError) as exc:  # e.g. reports/ not writable
        message, code = failure(exc)  # type: ignore[misc]
        err().print(message if message.startswith("error: ") else f"error: {message}")
        return code
    except KeyboardInterrupt:
        err().print(f"interrupted: {what} stopped; {removed} removed")
        return INTERRUPTED
    except containers.Terminated as exc:
        err().print(f"terminated: {what} stopped by {signal.Signals(exc.signum).name}; {removed} removed")
        return 128 + exc.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if outcome.passed else 1


def validate_main(argv: list[str] | None = None) -> int:
    """``python -m comfyimg validate PROBE [options] [-- PROBE ARGS]`` (the nox sessions call it)."""
    from comfyimg.validate import containers  # optional: the docker stack, validate and smoke only
    from comfyimg.validate.gpuaccess import DEFAULT_CDI_KIND, GPU_MODES  # optional: as above
    parser = argparse.ArgumentParser(prog="python -m comfyimg validate", description=containers.__doc__.splitlines()[0])
    parser.add_argument("probe", choices=sorted(containers.PROBES))
    parser.add_argument("--image", help="image to validate (default: the latest build record)")
    parser.add_argument("--target", help="bake target to take from the build record / wheels.toml")
    parser.add_argument("--expect-version", help="override the pinned version")
    parser.add_argument("--require-gpu", action="store_true", help="a skipped GPU check fails")
    parser.add_argument("--gpus", choices=GPU_MODES, default="auto",
                        help="how the container gets the GPU: auto (nvidia runtime → --gpus all, else a CDI "
                             "device → --device KIND=all, else none), all, cdi, none")
    parser.add_argument("--cdi-kind", default=DEFAULT_CDI_KIND, help="the CDI device kind to look for")
    parser.add_argument("--comfyui", default=containers.COMFYUI_PATH, metavar="PATH|none",
                        help="the image's ComfyUI, whose own attention path is checked too ('none': skip)")
    parser.add_argument("--timeout", type=_positive_seconds, default=containers.DEFAULT_TIMEOUT,
                        help="seconds for the whole validation; the container is killed and removed after it")
    parser.add_argument("--user", default=None,
                        help="run the probe as this user (default: the image's USER, or comfy when that is root)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (default: .)")
    argv = list(sys.argv[1:] if argv is None else argv)
    probe_args: list[str] = []
    if "--" in argv:
        probe_args = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    comfyui = None if ns.comfyui.strip().lower() in ("", "none") else ns.comfyui
    return _stoppable(f"validate {ns.probe}", "its probe container was", lambda: containers.validate(
        ns.root.resolve(), ns.probe, image=ns.image, target=ns.target, expect_version=ns.expect_version,
        require_gpu=ns.require_gpu, probe_args=probe_args, gpus=ns.gpus, cdi_kind=ns.cdi_kind, comfyui=comfyui,
        timeout=ns.timeout, user=ns.user))


def smoke_main(argv: list[str] | None = None) -> int:
    """``python -m comfyimg smoke --image IMAGE [options]`` (``nox -s smoke`` calls it)."""
    from comfyimg.validate import smoke as smoke_mod  # optional: the docker stack, validate and smoke only
    from comfyimg.validate.gpuaccess import DEFAULT_CDI_KIND, GPU_MODES  # optional: as above
    parser = argparse.ArgumentParser(prog="python -m comfyimg smoke", description=smoke_mod.__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="the image to smoke-test")
    parser.add_argument("--gpus", choices=GPU_MODES, default="auto")
    parser.add_argument("--cdi-kind", default=DEFAULT_CDI_KIND)
    parser.add_argument("--timeout", type=_positive_seconds, default=smoke_mod.DEFAULT_TIMEOUT,
                        help="seconds for the whole smoke; containers are killed and removed after it")
    parser.add_argument("--steps", type=int, default=smoke_mod.DEFAULT_STEPS)
    parser.add_argument("--root", type=Path, default=Path.cwd())
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    if not 1 <= ns.steps <= 200:
        err().print(f"error: --steps must be 1..200, got {ns.steps}")
        return BAD_INPUT
    return _stoppable("smoke", "its containers were", lambda: smoke_mod.smoke(
        ns.root.resolve(), ns.image, gpus=ns.gpus, cdi_kind=ns.cdi_kind, timeout=ns.timeout, steps=ns.steps))


def audit_main(argv: Sequence[str] | None = None) -> int:
    """``python -m comfyimg audit --wheel PATH [--arch smXY]... [--json]``: ``invoke audit``
    without invoke (for machines that carry only the package and its dependencies)."""


    parser = argparse.ArgumentParser(prog="python -m comfyimg audit", description=audit_main.__doc__)
    parser.add_argument("--wheel", type=Path, required=True)
    parser.add_argument("--arch", action="append", default=[])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (default: .)")
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        return show_wheel_audit(coverage.audit_wheel(ns.root, ns.wheel, ns.arch), ns.json)
    except UserError as exc:
        err().print(f"error: {exc}")
        return exc.exit_code
    finally:
        sys.stdout.flush()


COMMANDS = {"validate": validate_main, "smoke": smoke_main, "audit": audit_main}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m comfyimg COMMAND [ARGS]``: the commands that run without invoke."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        err().print(f"usage: python -m comfyimg {{{','.join(COMMANDS)}}} [ARGS]  (--help after a command)")
        return BAD_INPUT
    return COMMANDS[argv[0]](argv[1:])
