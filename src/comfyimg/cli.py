"""The one CLI layer: the commands behind ``tasks.py``, ``python -m comfyimg`` and ``noxfile.py``.

Only this module parses arguments, prints, emits JSON (:func:`emit_json`) and turns errors into
exit codes (:func:`failure`; each error class carries its code, :mod:`comfyimg.errors`). The
domain functions it calls return data or raise; :func:`run` (invoke) and :func:`main`
(``python -m comfyimg``) end a command the same way."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfyimg import render
from comfyimg.bake.record import RECORD
from comfyimg.errors import BAD_INPUT, FAILED, INTERRUPTED, BadInput, Stopped, UserError
from comfyimg.fsutil import changed_statement, read_bytes
from comfyimg.audit import coverage, report
from comfyimg.output import SafeTable as Table
from comfyimg.output import err, out, plain
from comfyimg.pins import load as pins_mod
from comfyimg.pins.model import record_hash_command
from comfyimg.untrusted import for_terminal
from comfyimg.validate import reports

if TYPE_CHECKING:
    from comfyimg.bump.plan import Bumped

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


def emit_json(data: object) -> None:
    """``--json``: the one place a command writes JSON on stdout."""
    print(json.dumps(data, indent=2))


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


ENDINGS = (UserError, OSError, KeyboardInterrupt, Stopped)  # what a command may end with: no traceback


def failure(exc: BaseException, stopped: tuple[str, str] | None = None, *,
            prefixed: bool = False) -> tuple[str, int] | None:
    """The message and exit code a command ends with for ``exc``; None: a bug (traceback).
    The one place where errors become exit codes (each error class carries its own).
    ``stopped``: (what stopped, what was removed) for validate's and smoke's Ctrl-C/signal line;
    ``prefixed``: an error's line starts with ``error: `` (``python -m comfyimg``; invoke's
    ``Exit`` prints the message as it is)."""
    if isinstance(exc, UserError):
        message = for_terminal(exc)
        return (f"error: {message}" if prefixed and not message.startswith("error: ") else message), exc.exit_code
    if isinstance(exc, OSError):  # disk full, permission denied: the work failed; writes are atomic
        return for_terminal(f"error: {exc}"), FAILED
    if isinstance(exc, KeyboardInterrupt):
        if stopped:
            return f"interrupted: {stopped[0]} stopped; {stopped[1]} removed", INTERRUPTED
        return f"interrupted (Ctrl-C); {changed_statement()}", INTERRUPTED
    if isinstance(exc, Stopped):
        if stopped:
            return f"terminated: {stopped[0]} stopped by {exc.name}; {stopped[1]} removed", exc.exit_code
        return f"stopped by {exc.name}; {changed_statement()}", exc.exit_code
    return None


def _shown_before(exc: BaseException) -> None:
    """What an error shows on stderr before its message: warnings and tables it carries, notes."""
    for item in [*getattr(exc, "shown", ()), *getattr(exc, "__notes__", ())]:
        err().print(item)


def _ending(work: Callable[[], int | None], *, stopped: tuple[str, str] | None = None,
            prefixed: bool = False) -> tuple[int, str | None]:
    """Run a command's work under the SIGTERM/SIGHUP handler (each unwinds like Ctrl-C, so
    every ``finally`` runs): (exit code, the one line to end with, see :func:`failure`)."""
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return work() or 0, None
    except ENDINGS as exc:
        _shown_before(exc)
        message, code = failure(exc, stopped, prefixed=prefixed)  # type: ignore[misc]
        return code, message
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(fn: Callable[..., int | None], *args: object, **kwargs: object) -> None:
    """Run a command for invoke; an error becomes invoke's ``Exit`` (one line, no traceback)."""
    from invoke.exceptions import Exit  # optional: invoke's own tasks only, as task_class

    code, message = _ending(lambda: fn(*args, **kwargs))
    if code:
        raise Exit(message, code)


def ended(code: int, message: str | None) -> int:
    """``python -m comfyimg``'s ending: the one line on stderr, then the exit code."""
    sys.stdout.flush()
    if message:
        err().print(message)
    return code


def after_dashes(remainder: str | None) -> list[str]:
    """The words after ``--`` (invoke hands them over as one string), split as a shell would."""
    try:
        return shlex.split(remainder or "")
    except ValueError as exc:
        raise BadInput(f"cannot parse the arguments after --: {exc}") from None


def load_pins(root: Path) -> pins_mod.Pins:
    """``wheels.toml`` of the project at ``root``, its targets checked against the bake file."""
    return pins_mod.load(root / "wheels.toml", bake_targets=render.targets(root / render.BAKE_FILE))


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
    from comfyimg.bake import checks as buildchecks  # optional: the docker stack, for this command only
    pins = load_pins(root)
    check_coverage(pins)
    drifts = render.check(pins, root)
    warn_unhashed(pins)
    built = buildchecks.run(root)  # bake --call check on every target, when an engine can
    if json_out:  # bad input never gets here: it is a one-line error on stderr, exit 2

        emit_json({
            "file": pins.path.name, "wheels": len(pins.wheels), "current": not drifts,
            "drift": [str(d.path) for d in drifts],
            "unhashed": [{"pin": p.key, "line": p.line, "targets": list(p.targets)} for p in pins.unhashed()],
            "coverage_unrecorded": [p.key for p in coverage.problems(pins)[1]],
            "build_checks": built.as_json(),
        })
        return FAILED if drifts or built.status == "failed" else 0
    for warning in built.warnings:
        err().print(f"error: build check: {warning}")
    if built.status == "skipped":
        err().print(f"{'note' if built.note else 'warning'}: {built.detail}")
    if drifts:
        for drift in drifts:
            out().print(drift.diff, end="", soft_wrap=True)
        err().print(f"error: {len(drifts)} generated file(s) out of date with {pins.path.name}: "
                    f"{', '.join(str(d.path) for d in drifts)}. Run: invoke render")
        return FAILED
    if built.status == "failed":
        err().print(f"error: {built.detail}")
        return FAILED
    out().print(f"{pins.path.name}: {len(pins.wheels)} wheel(s) valid; generated files are current"
                + ("; " + built.detail if built.status == "passed" else ""))
    return 0


def audit(root: Path, wheel: str | Path | None, archs: list[str], as_json: bool) -> int:
    """``invoke audit``: a wheel on disk (exit 0 runnable on every arch, 1 not, 2 bad input),
    or every pin from its recorded coverage."""

    if wheel:
        return show_wheel_audit(coverage.audit_wheel(root, Path(wheel), archs), as_json)
    pins = load_pins(root)
    result = coverage.audit_pins(pins, archs)
    if as_json:
        emit_json(report.pins_json(result))
    else:
        for entry in result.pins:
            if entry.modules is None:
                err().print(f"{entry.pin.key} {entry.pin.version}: {coverage.unrecorded_message(pins, entry.pin)}")
            else:
                out().print(report.pin_table(entry, result.archs))
                out().print(report.pin_runs_on(entry))
    return FAILED if result.failed else 0


def show_wheel_audit(result: coverage.WheelAudit, as_json: bool) -> int:
    """Exit 0: runnable on every arch asked; 1: not."""
    if as_json:
        emit_json(report.wheel_json(result))
    else:
        out().print(report.wheel_table(result))
        for line in report.wheel_lines(result):
            out().print(line)
    return 0 if result.runnable else FAILED


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
        moved = comfyui_bump.bump(root, pre=bool(kwargs["pre"]), release=kwargs["release"],  # type: ignore[arg-type]
                                  dry_run=bool(kwargs["dry_run"]))
        show_comfyui_bump(moved, json_out=bool(kwargs["json_out"]))
        return 0
    json_out = bool(kwargs.pop("json_out", False))
    show_bump(bump_mod.bump(root, parse_names(names, remainder), say=err().print, **kwargs),  # type: ignore[arg-type]
              json_out=json_out)
    return 0


def show_bump(done: Bumped, *, json_out: bool) -> None:
    """``invoke bump``'s output (its warnings went to stderr as they came): the table and what
    changed, or ``--json``."""
    from comfyimg.bump import plan as bump_mod  # optional: httpx, for this command only
    if json_out:
        emit_json(bump_mod.as_json(done.changes, dry_run=done.dry_run, wrote=done.wrote,
                                   diff=done.diff if done.edits else ""))
        return
    out().print(bump_mod.table(done.changes))
    if not done.edits:
        out().print(f"up to date: {', '.join(sorted({c.pin.key for c in done.changes}))} "
                    f"already at {', '.join(sorted({c.release.tag for c in done.changes}))}")
    elif done.dry_run:
        out().print(done.diff, end="", soft_wrap=True)
        out().print(f"dry run: {done.edits} pin(s) would change; nothing written")
    else:
        out().print(f"bumped {done.edits} pin(s) in {done.seconds:.2f} s; wrote {', '.join(done.wrote)}")


def show_comfyui_bump(moved: dict[str, Any], *, json_out: bool) -> None:
    """``invoke bump --comfyui``'s output: one line (a diff on a dry run), or ``--json``."""
    diff = moved.pop("diff", None)
    if json_out:
        emit_json(moved)
        return
    old, new = moved["comfyui"]["old"], moved["comfyui"]["new"]
    if not moved["comfyui"]["changed"]:
        out().print(f"up to date: ComfyUI {new['release']} at {new['commit']}")
    elif diff is not None:
        out().print(diff, end="", soft_wrap=True)
        out().print("dry run: nothing written")
    else:
        out().print(f"ComfyUI: {old['release']} {old['commit'] or '(no commit)'} → {new['release']} "
                    f"{new['commit']}; wrote {', '.join(moved['wrote'])}")


def bake(root: Path, targets: Sequence[str] | None, remainder: str, *, load: bool, push: bool,
         print_plan: bool, files: Sequence[str] | None, sets: Sequence[str] | None,
         allow: Sequence[str] | None, json_out: bool = False, **options: object) -> int:
    """``invoke bake``: preflight, build through buildx bake, print a summary and write the
    build record (``--print``: print the resolved plan instead)."""
    from comfyimg.bake import bake as bake_mod  # optional: the docker stack, for this command only

    modes = [m for m, on in (("load", load), ("push", push), ("print", print_plan)) if on]
    if len(modes) > 1:
        raise BadInput(f"choose one of --load, --push, --print (got {', '.join(modes)})")
    request = bake_mod.BakeRequest(
        targets=[*(targets or []), *after_dashes(remainder)] or ["default"],
        mode=(modes or ["load"])[0], sets=list(sets or []), allow=list(allow or []),
        files=[Path(f).resolve() for f in files or []], **options)  # type: ignore[arg-type]
    pins = load_pins(root)
    if request.mode == "print":
        resolved, _ = bake_mod.preflight(root, pins, request, err().print)
        out().print_json(data=resolved) if not (plain() or json_out) else emit_json(resolved)
        return 0
    built = bake_mod.build(root, pins, request, err().print)
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


def _stoppable(what: str, removed: str, work: Callable[[], reports.Outcome], root: Path | None = None) -> int:
    """Run validate's or smoke's work and show its outcome: 0 pass, 1 fail; an error (e.g.
    reports/ not writable), Ctrl-C or SIGTERM/SIGHUP is one line, after the containers were
    removed (their ``finally``)."""
    outcomes: list[reports.Outcome] = []
    code, message = _ending(lambda: outcomes.append(work()), stopped=(what, removed), prefixed=True)
    if message:
        return ended(code, message)
    show_outcome(outcomes[0], root or Path.cwd())
    return 0 if outcomes[0].passed else FAILED


def show_outcome(outcome: reports.Outcome, root: Path) -> None:
    """validate's and smoke's table, timing and verdict, then the reports they wrote."""
    for shown in reports.summary(outcome):
        out().print(shown)
    for warning in outcome.warnings:
        err().print(f"warning: {warning}")
    for path in outcome.reports:
        out().print(f"report: {path.relative_to(root) if path.is_relative_to(root) else path}")


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
    ns = parse(parser, argv)
    if isinstance(ns, int):
        return ns
    comfyui = None if ns.comfyui.strip().lower() in ("", "none") else ns.comfyui
    return _stoppable(f"validate {ns.probe}", "its probe container was", lambda: containers.validate(
        ns.root.resolve(), ns.probe, image=ns.image, target=ns.target, expect_version=ns.expect_version,
        require_gpu=ns.require_gpu, probe_args=probe_args, gpus=ns.gpus, cdi_kind=ns.cdi_kind, comfyui=comfyui,
        timeout=ns.timeout, user=ns.user), ns.root.resolve())


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
    ns = parse(parser, argv)
    if isinstance(ns, int):
        return ns
    if not 1 <= ns.steps <= 200:
        err().print(f"error: --steps must be 1..200, got {ns.steps}")
        return BAD_INPUT
    return _stoppable("smoke", "its containers were", lambda: smoke_mod.smoke(
        ns.root.resolve(), ns.image, gpus=ns.gpus, cdi_kind=ns.cdi_kind, timeout=ns.timeout, steps=ns.steps),
        ns.root.resolve())


# --------------------------------------------------------------------------- one definition, two front ends


@dataclass(frozen=True)
class Option:
    """One option of a command that both invoke and ``python -m comfyimg`` expose."""

    name: str  # the Python name; --json, --arch on the command line
    help: str
    many: bool = False  # repeatable: --arch sm90 --arch sm120
    flag: bool = False  # on/off


@dataclass(frozen=True)
class Command:
    """A command defined once: its options and help feed invoke's task (``tasks.py``) and the
    argparse parser of ``python -m comfyimg NAME``, and both call :attr:`call` through the same
    error handling."""

    name: str
    summary: str
    options: tuple[Option, ...]
    call: Callable[..., int | None]  # call(root, **{option.name: value})

    def task_options(self) -> dict[str, Any]:
        """The keywords of invoke's ``@task`` (help texts, repeatable options)."""
        return {"help": {o.name.replace("_", "-"): o.help for o in self.options},
                "iterable": [o.name for o in self.options if o.many]}

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=f"python -m comfyimg {self.name}", description=self.summary)
        for o in self.options:
            flag = f"--{o.name.replace('_', '-')}"
            if o.flag:
                parser.add_argument(flag, dest=o.name, action="store_true", help=o.help)
            elif o.many:
                parser.add_argument(flag, dest=o.name, action="append", default=[], help=o.help)
            else:
                parser.add_argument(flag, dest=o.name, help=o.help)
        parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (default: .)")
        return parser

    def main(self, argv: Sequence[str]) -> int:
        ns = parse(self.parser(), argv)
        if isinstance(ns, int):
            return ns
        options = vars(ns)
        root = options.pop("root").resolve()
        return ended(*_ending(lambda: self.call(root, **options), prefixed=True))


JSON = Option("json", "print the result as one JSON object on stdout", flag=True)
CHECK = Command("check", "Validate wheels.toml and verify generated/ is current (exit 1: drift, 2: bad input).",
                (JSON,), lambda root, json: check(root, json_out=json))
RENDER = Command("render", "Regenerate generated/ (hash-pinned requirements, bake variables) from wheels.toml.",
                 (), lambda root: render_files(root))
AUDIT = Command(
    "audit", "Which GPU archs can run a wheel's compiled kernels (exit 0 all, 1 one cannot, 2 bad input).",
    (Option("wheel", "a wheel on disk to audit (default: every pin, from its recorded coverage)"),
     Option("arch", "GPU arch to judge, e.g. sm120; repeatable (default: the archs its pins serve)", many=True),
     Option("json", "print one JSON object instead of tables", flag=True)),
    lambda root, wheel, arch, json: audit(root, wheel, list(arch or []), json))


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code: 0 after --help, 2 (bad input) after argparse's
    own usage error."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return BAD_INPUT if exc.code else 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "validate": validate_main, "smoke": smoke_main,
    **{c.name: c.main for c in (CHECK, RENDER, AUDIT)},
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m comfyimg COMMAND [ARGS]``: the commands that run without invoke."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        err().print(f"usage: python -m comfyimg {{{','.join(COMMANDS)}}} [ARGS]  (--help after a command)")
        return BAD_INPUT
    return COMMANDS[argv[0]](argv[1:])
