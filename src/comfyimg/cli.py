"""The one CLI layer: the commands behind ``tasks.py``, ``python -m comfyimg`` and ``noxfile.py``.

Only this module parses arguments, prints, emits JSON (:func:`emit_json`) and turns errors into
exit codes (:func:`failure`; each error class carries its code, :mod:`comfyimg.errors`). The
domain functions it calls return data or raise; :func:`run` (invoke) and :func:`main`
(``python -m comfyimg``) end a command the same way.

Every command is defined once (the end of this module): a frozen dataclass of its options, each
with its help (:func:`option`), and a :class:`Command` that names it, its summary and the function
that runs it. One parser (:meth:`Command.request_from`) builds the request for invoke's task
(:meth:`Command.task`, which ``tasks.py`` lists), for ``python -m comfyimg NAME`` (:meth:`Command.main`)
and so for nox, which runs ``python -m comfyimg``. How to add one: docs/dev/commands.md.

Over 500 lines on purpose: the boundary puts all parsing, printing and exit codes here and
nowhere else, so this module holds each command's options and output."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import math
import re
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from comfyimg.errors import BAD_INPUT, FAILED, INTERRUPTED, BadInput, Stopped, UserError
from comfyimg.fsutil import changed_statement, read_bytes
from comfyimg.output import SafeTable as Table
from comfyimg.output import err, out, plain
from comfyimg.untrusted import for_terminal
from comfyimg.validate.defaults import (
    COMFYUI_PATH,
    DEFAULT_CDI_KIND,
    GPU_MODES,
    MAX_STEPS,
    SMOKE_MODELS,
    SMOKE_STEPS,
    SMOKE_TIMEOUT,
    VALIDATE_TIMEOUT,
)

if TYPE_CHECKING:
    from invoke import Task

    from comfyimg.audit import coverage
    from comfyimg.bump.plan import Bumped
    from comfyimg.pins import load as pins_mod
    from comfyimg.validate import reports

# Start-up (docs/dev/startup.md): this module imports only what parsing and printing need; each
# command imports the stages it runs in its own function ("# optional: start-up"), so invoke
# --list, --help and a command that needs little do not pay for the others.

# `python -m comfyimg audit` stays within 2x of reading the wheel (docs/user-guides/performance.md):
# the commands that drive docker (python-on-whales, pydantic), GitHub (httpx) or invoke import
# them in their own function, marked "# optional:" (tests/unit/test_audit_imports.py).

# Short flags, the same in every task: one letter never means two things (-p was --pre in
# bump and --push in bake). Every other option is long only. -f after a task name is that
# task's --file (bake's extra bake file); before it, invoke's own config-file flag.
SHORT_FLAGS = {"name": "n", "target": "t", "file": "f"}


def task_class() -> type[Task]:
    """invoke's ``Task``, with :data:`SHORT_FLAGS` instead of invoke's automatic short flags."""
    from invoke import Task  # optional: invoke's own tasks only; `python -m comfyimg` runs without it

    class FixedShortFlags(Task):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.auto_shortflags = False

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
        ending = failure(exc, stopped, prefixed=prefixed)
        if ending is None:  # failure() answers every one of ENDINGS; a bug keeps its traceback
            raise
        return ending[1], ending[0]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(work: Callable[[], int | None]) -> None:
    """Run a command for invoke; an error becomes invoke's ``Exit`` (one line, no traceback)."""
    from invoke.exceptions import Exit  # optional: invoke's own tasks only, as task_class

    code, message = _ending(work)
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
    from comfyimg import render  # optional: start-up
    from comfyimg.pins import load as pins_mod  # optional: start-up

    return pins_mod.load(root / "wheels.toml", bake_targets=render.targets(root / render.BAKE_FILE))


def warn_unhashed(pins: pins_mod.Pins) -> None:
    """Warnings that do not stop a check: unrecorded hashes, images left without a wheel."""
    from comfyimg.pins.model import record_hash_command  # optional: start-up

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
    from comfyimg.audit import coverage  # optional: start-up

    errors, unrecorded = coverage.problems(pins)
    for pin in unrecorded:
        err().print(f"warning: {coverage.unrecorded_message(pins, pin)}")
    if errors:
        raise BadInput("\n".join(errors))


def check(root: Path, json_out: bool = False) -> int:
    """Validate wheels.toml, verify the generated files are current, run the bake build checks
    when an engine can: 0 ok, 1 drift or a build-check warning, 2 bad input."""
    from comfyimg import render  # optional: start-up
    from comfyimg.audit import coverage  # optional: start-up
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
        out().print(render.shown_diff(drifts, root), end="", soft_wrap=True)  # long ones summarised
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
    from comfyimg.audit import coverage, report  # optional: start-up

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
        out().print("runs on, per image:")
        for line in report.runs_lines(result.runs):
            out().print(line, soft_wrap=True)
    return FAILED if result.failed else 0


def show_wheel_audit(result: coverage.WheelAudit, as_json: bool) -> int:
    """Exit 0: runnable on every arch asked; 1: not."""
    from comfyimg.audit import report  # optional: start-up

    if as_json:
        emit_json(report.wheel_json(result))
    else:
        out().print(report.wheel_table(result))
        for line in report.wheel_lines(result):
            out().print(line)
    return 0 if result.runnable else FAILED


def render_files(root: Path) -> int:
    from comfyimg import render  # optional: start-up

    pins = load_pins(root)
    changed = render.write(pins, root)
    for path in changed:
        out().print(f"wrote {path}")
    if not changed:
        out().print("generated files already current")
    warn_unhashed(pins)
    return 0


def parse_names(names: Sequence[str]) -> list[str]:
    """``--name a --name b,c`` and ``-- a b`` → ``[a, b, c]``; given but empty is bad input
    (``--name ""`` must not mean "all")."""
    parsed: list[str] = []
    for raw in names:
        parsed += [n.strip() for n in raw.split(",") if n.strip()]
    if not parsed and names:
        raise BadInput("the pin names given are empty; name a pin (e.g. --name sageattention), "
                       "or give none to bump every pin with a source")
    return parsed


def show_bump(done: Bumped, *, json_out: bool) -> None:
    """``invoke bump``'s output (its warnings went to stderr as they came): the table and what
    changed, or ``--json``."""
    from comfyimg.bump import plan as bump_mod  # optional: httpx, for this command only
    if json_out:
        emit_json(bump_mod.as_json(done.changes, dry_run=done.dry_run, wrote=done.wrote,
                                   diff=done.diff if done.edits or done.profile else "", profile=done.profile))
        return
    out().print(bump_mod.table(done.changes))
    for key, (old, new) in done.profile.items():
        out().print(f"profile: {key} {old} → {new}")
    if not done.edits and not done.profile:
        out().print(f"up to date: {', '.join(sorted({c.pin.key for c in done.changes}))} "
                    f"already at {', '.join(sorted({c.release.tag for c in done.changes}))}")
    elif done.dry_run:
        out().print(done.diff, end="", soft_wrap=True)
        out().print(f"dry run: {done.edits} pin(s){' and the profile' if done.profile else ''} would change; "
                    "nothing written")
    else:
        out().print(f"bumped {done.edits} pin(s){' and the profile' if done.profile else ''} in "
                    f"{done.seconds:.2f} s; wrote {', '.join(done.wrote)}")


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
    from comfyimg.validate import reports  # optional: start-up
    for shown in reports.summary(outcome):
        out().print(shown)
    for warning in outcome.warnings:
        err().print(f"warning: {warning}")
    for path in outcome.reports:
        out().print(f"report: {path.relative_to(root) if path.is_relative_to(root) else path}")




# --------------------------------------------------------------------------- one definition per command
#
# A command's options are the fields of a frozen dataclass, each made by option() with its help
# beside it; the kind of an option follows from its default: False is an on/off flag, () a
# repeatable option (a tuple of words), anything else takes one value. One parser
# (Command.request_from) turns what invoke or argparse collected into that dataclass, so both
# front ends check values the same way and a bad one is exit 2 in one line.


@dataclass(frozen=True)
class Spec:
    """How one option appears on the command line."""

    help: str  # one or more full sentences
    flag: str | None = None  # the long flag without "--" (default: the field name, "_" → "-"); "" none
    parse: Callable[[str], object] | None = None  # a value's text → the value; raises BadInput
    choices: tuple[str, ...] | Callable[[], Sequence[str]] = ()  # a callable: looked up when parsing
    metavar: str | None = None
    positional: bool = False  # python -m comfyimg validate PROBE
    dashes: bool = False  # also takes the words after `--`


def option(default: Any, spec: Spec | str, **how: Any) -> Any:
    """A field of a request: its default and its :class:`Spec` (a help text, or a shared Spec)."""
    shown = Spec(spec, **how) if isinstance(spec, str) else dataclasses.replace(spec, **how)
    return field(default=default, metadata={"spec": shown})


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadInput(f"--timeout: not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0 or value > 86400:
        raise BadInput(f"--timeout must be between 0 and 86400 seconds, got {text!r}")
    return value


def _steps(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_STEPS:
        raise BadInput(f"--steps must be 1..{MAX_STEPS}, got {text!r}")
    return int(text)


# The options several commands share, defined once.
JSON = Spec("Print the result as one JSON object on stdout instead of tables and lines.")
GPUS = Spec("How the container gets the GPU: auto (the nvidia runtime gives --gpus all, else a CDI device "
            "gives --device KIND=all, else none), all, cdi or none.", choices=GPU_MODES)
CDI_KIND = Spec("The CDI device kind to look for when --gpus is auto or cdi.")
TIMEOUT = Spec("Seconds for the whole run; its containers are killed and removed after it.", parse=_seconds)
ROOT = "The project root, the folder of wheels.toml (default: the current folder)."

class Request(Protocol):
    """A command's request: a (frozen) dataclass."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


R = TypeVar("R", bound=Request)


@dataclass(frozen=True)
class Command(Generic[R]):
    """A command defined once: ``tasks.py`` lists :meth:`task`, ``python -m comfyimg NAME`` runs
    :meth:`main`; both build the same request and call :attr:`call` through the same endings."""

    name: str
    summary: str  # one full sentence: invoke --list, python -m comfyimg --help
    request: type[R]  # the frozen dataclass of its options
    call: Callable[[Path, R], int | None]
    usage: str = ""  # more lines for invoke --help NAME (environment, examples)

    def fields(self) -> list[tuple[dataclasses.Field[Any], Spec]]:
        return [(f, f.metadata["spec"]) for f in dataclasses.fields(self.request)]

    @staticmethod
    def flag(f: dataclasses.Field[Any], spec: Spec) -> str:
        return f.name.replace("_", "-") if spec.flag is None else spec.flag

    def request_from(self, given: dict[str, Any], words: Sequence[str] = ()) -> R:
        """The request from what a front end collected: ``given`` maps a long flag to None (not
        given), a bool, a list of words or one word; ``words``: those after ``--``."""
        values: dict[str, Any] = {}
        if words and not any(spec.dashes for _, spec in self.fields()):
            raise BadInput(f"{self.name} takes nothing after --: {shlex.join(words)}")
        for f, spec in self.fields():
            raw = given.get(self.flag(f, spec))
            if spec.dashes:
                raw = [*(raw or []), *words] if isinstance(f.default, tuple) else (raw or None)
            if raw is None or raw == []:
                continue
            if isinstance(f.default, bool):
                values[f.name] = bool(raw)
            elif isinstance(f.default, tuple):
                values[f.name] = tuple(str(w) for w in raw)
            else:
                values[f.name] = self.value(f, spec, str(raw))
        return self.request(**values)

    def value(self, f: dataclasses.Field[Any], spec: Spec, text: str) -> object:
        choices = spec.choices() if callable(spec.choices) else spec.choices
        if choices and text not in choices:
            where = f.name if spec.positional else f"--{self.flag(f, spec)}"
            raise BadInput(f"{self.name} {where} {text!r}: expected one of {', '.join(choices)}")
        return spec.parse(text) if spec.parse else text

    # ---- python -m comfyimg NAME

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=f"python -m comfyimg {self.name}", description=self.summary,
                                         allow_abbrev=False)
        for f, spec in self.fields():
            flag = self.flag(f, spec)
            if spec.positional:
                parser.add_argument(flag, nargs="?", help=spec.help, metavar=spec.metavar)
            elif not flag:
                continue  # only after --
            elif isinstance(f.default, bool):
                parser.add_argument(f"--{flag}", dest=flag, action="store_true", help=spec.help)
            else:
                parser.add_argument(f"--{flag}", dest=flag, help=spec.help, metavar=spec.metavar,
                                    action="append" if isinstance(f.default, tuple) else "store")
        parser.add_argument("--root", type=Path, default=Path.cwd(), help=ROOT)
        if any(spec.dashes for _, spec in self.fields()):
            parser.epilog = "Words after -- go to " + ", ".join(
                f"--{self.flag(f, s)}" if self.flag(f, s) else f.name for f, s in self.fields() if s.dashes) + "."
        return parser

    def main(self, argv: Sequence[str]) -> int:
        argv = list(argv)
        words: list[str] = []
        if "--" in argv:
            argv, words = argv[: argv.index("--")], argv[argv.index("--") + 1:]
        if refused := refused_letter(self, argv):
            return ended(BAD_INPUT, f"error: {refused}")
        ns = parse(self.parser(), argv)
        if isinstance(ns, int):
            return ns
        given = vars(ns)
        root = given.pop("root").resolve()
        return ended(*_ending(lambda: self.call(root, self.request_from(given, words)), prefixed=True))

    # ---- invoke NAME

    def task(self, root: Path) -> Task:
        """invoke's task: its parameters are this command's long flags, its help theirs."""
        import invoke  # optional: invoke's own tasks only, as task_class

        fields = [(f, s, self.flag(f, s)) for f, s in self.fields() if self.flag(f, s) and not s.positional]
        positional = [(f, s, self.flag(f, s)) for f, s in self.fields() if s.positional]

        def body(c: invoke.Context, **given: Any) -> None:
            run(lambda: self.call(root, self.request_from(
                {flag.replace("_", "-"): value for flag, value in given.items()}, after_dashes(c.remainder))))

        body.__name__ = body.__qualname__ = self.name
        body.__doc__ = f"{self.summary}\n\n{self.usage}".rstrip() + "\n"
        params = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        params += [inspect.Parameter(flag.replace("-", "_"), inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
                   for _, _, flag in positional]  # invoke verify REF
        params += [inspect.Parameter(flag.replace("-", "_"), inspect.Parameter.KEYWORD_ONLY,
                                     default=False if isinstance(f.default, bool) else None)
                   for f, _, flag in fields]
        vars(body)["__signature__"] = inspect.Signature(params)  # what invoke reads the parameters from
        return task_class()(body, help={flag: s.help for _, s, flag in [*positional, *fields]},
                            positional=[flag.replace("-", "_") for _, _, flag in positional],
                            iterable=[flag.replace("-", "_") for f, _, flag in fields if isinstance(f.default, tuple)])

    def long_flags(self) -> list[str]:
        return [self.flag(f, s) for f, s in self.fields() if self.flag(f, s) and not s.positional]


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code: 0 after --help, 2 (bad input) after argparse's
    own usage error."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return BAD_INPUT if exc.code else 0


# invoke's own letters (invoke --help): after a task name they would silently mean invoke's flag.
INVOKE_LETTERS = {"c": "--collection", "d": "--debug", "e": "--echo", "f": "--config", "h": "--help", "l": "--list",
                  "p": "--pty", "r": "--search-root", "w": "--warn-only", "D": "--list-depth",
                  "F": "--list-format", "R": "--dry", "T": "--command-timeout", "V": "--version"}


def refused_letter(command: Command[Any], argv: Sequence[str]) -> str | None:
    """The one-line refusal of a short flag that is not the command's own (``bump -d``: -d is
    invoke's --debug, never --dry-run), naming the long flag meant; None when there is none."""
    own = {SHORT_FLAGS[f] for f in command.long_flags() if f in SHORT_FLAGS}
    for word in argv:
        if word == "--":
            break
        if not re.fullmatch(r"-[A-Za-z]\S*", word) or word[1] in own or word in ("-h",):
            continue
        letter = word[1]
        meant = [f"--{f}" for f in command.long_flags() if f.startswith(letter.lower())]
        why = f" (invoke reads -{letter} as its own {INVOKE_LETTERS[letter]})" if letter in INVOKE_LETTERS else ""
        fix = (f"write the long flag: {' or '.join(meant)}" if meant else
               f"its options are long only: {', '.join('--' + f for f in command.long_flags()) or 'none'}")
        return f"-{letter} is not an option of {command.name}{why}; {fix}. Nothing was changed."
    return None


def refuse_invoke_letters(argv: Sequence[str], commands: dict[str, Command[Any]]) -> None:
    """For ``tasks.py``, before invoke parses: a short flag after a task name that the task does
    not own ends the run with exit 2 and one line naming the long flag. invoke itself would take
    -d, -p, -r as its own flags and run the task anyway, or stop with exit 1 on others (-v)."""
    current: Command[Any] | None = None
    for i, word in enumerate(argv[1:], 1):
        if word == "--":
            return
        if word in commands and not (i > 1 and re.fullmatch(r"-[cfrT]|--(collection|config|search-root)", argv[i - 1])):
            current = commands[word]
        elif current is not None and (refused := refused_letter(current, [word])):
            err().print(f"error: {refused}")
            raise SystemExit(BAD_INPUT)


# --------------------------------------------------------------------------- check, render, audit


@dataclass(frozen=True)
class CheckRequest:
    json: bool = option(False, JSON)


@dataclass(frozen=True)
class RenderRequest:
    pass


@dataclass(frozen=True)
class AuditRequest:
    wheel: Path | None = option(None, "A wheel on disk to audit (default: every pin, from its recorded coverage).",
                                parse=Path, metavar="PATH")
    arch: tuple[str, ...] = option((), "A GPU arch to judge, e.g. sm120; repeat it for several (default: the "
                                       "archs its pins serve).", metavar="smXY")
    json: bool = option(False, JSON)


CHECK = Command("check", "Validate wheels.toml and verify generated/ is current (exit 1: drift, 2: bad input).",
                CheckRequest, lambda root, r: check(root, json_out=r.json),
                "invoke check [--json]    (fix drift with: invoke render)")
RENDER = Command("render", "Regenerate generated/ (hash-pinned requirements, bake variables) from wheels.toml.",
                 RenderRequest, lambda root, _: render_files(root),
                 "invoke render    (no options; stale generated files are removed)")
AUDIT = Command("audit", "Which GPU archs can run a wheel's compiled kernels (exit 0 all, 1 one cannot, 2 bad input).",
                AuditRequest, lambda root, r: audit(root, r.wheel, list(r.arch), r.json),
                "invoke audit [--wheel PATH] [--arch smXY]... [--json]")


# --------------------------------------------------------------------------- bump


@dataclass(frozen=True)
class BumpRequest:
    name: tuple[str, ...] = option(
        (), "A pin to bump: a wheel name (all its arch pins) or NAME[smXX]; repeatable and comma-separated, "
            "or give names after `--`. Default: every pin with a source.", dashes=True, metavar="NAME")
    release: str | None = option(None, "The release tag to move to (default: the latest release).", metavar="TAG")
    pre: bool = option(False, "Consider prereleases (and allow a prerelease --release).")
    dry_run: bool = option(False, "Print the table and the wheels.toml diff; write nothing.")
    verify: bool = option(False, "Always download and hash; fail if the API digest or SHA256SUMS disagree.")
    accept_new_bytes: bool = option(False, "A pinned asset whose bytes changed under the same URL is a failure; "
                                           "with this flag, record the new sha256 instead.")
    json: bool = option(False, JSON)
    comfyui: bool = option(False, "Move the [comfyui] pin to the newest ComfyUI release and record its commit "
                                  "(instead of the wheels).")
    profile: str | None = option(None, "Move this profile and every pin of it together (with --torch, --cuda, "
                                       "--python or --torch-index): each pin to the newest file that fits, in one "
                                       "edit, or nothing.", metavar="NAME")
    torch: str | None = option(None, "With --profile: the torch version to move to, e.g. 2.11.0.", metavar="V")
    cuda: str | None = option(None, "With --profile: the CUDA version the wheels are built with, e.g. 13.0 "
                                    "(torch_index follows it).", metavar="V")
    python: str | None = option(None, "With --profile: the CPython tag, e.g. cp313.", metavar="cpXY")
    torch_index: str | None = option(None, "With --profile: the torch wheel index, e.g. cu130 (default: it "
                                           "follows --cuda).", metavar="INDEX")


def bump(root: Path, request: BumpRequest) -> int:
    """``invoke bump``: names from ``--name`` (repeatable, comma-separated) and after ``--``."""
    from comfyimg.bump import comfyui as comfyui_bump  # optional: httpx, for this command only
    from comfyimg.bump import plan as bump_mod  # optional: httpx, for this command only
    from comfyimg.bump.profile import ProfileMove  # optional: as above

    names = parse_names(request.name)
    if request.comfyui:
        if names or request.verify or request.accept_new_bytes or request.profile:
            raise BadInput("--comfyui moves the ComfyUI pin alone; it takes no pin names, "
                           "--verify, --accept-new-bytes or --profile")
        moved = comfyui_bump.bump(root, pre=request.pre, release=request.release, dry_run=request.dry_run)
        show_comfyui_bump(moved, json_out=request.json)
        return 0
    moved = {"torch": request.torch, "cuda": request.cuda, "python": request.python,
             "torch_index": request.torch_index}
    if request.profile is None and (given := [f"--{k.replace('_', '-')}" for k, v in moved.items() if v]):
        raise BadInput(f"{', '.join(given)} move a profile: name it with --profile NAME")
    profile = ProfileMove(request.profile, **moved) if request.profile is not None else None
    show_bump(bump_mod.bump(root, names, say=progress, release=request.release, pre=request.pre,
                            dry_run=request.dry_run, verify=request.verify,
                            accept_new_bytes=request.accept_new_bytes, profile=profile), json_out=request.json)
    return 0


BUMP = Command("bump", "Move pins to a GitHub release: pick the asset fitting each ABI and record its sha256.",
               BumpRequest, bump, """\
invoke bump [--name NAME]... [--release TAG] [--pre] [--dry-run] [--verify] [-- NAME...]
invoke bump --comfyui [--release TAG] [--pre] [--dry-run]
invoke bump --profile NAME [--torch V] [--cuda V] [--python cpXY] [--torch-index INDEX] [--dry-run]

Environment: GITHUB_TOKEN (or GH_TOKEN), optional, sent to the API host only;
GITHUB_API_URL (default https://api.github.com); COMFYIMG_HTTP_TIMEOUT (s, default 30),
COMFYIMG_HTTP_RETRIES (default 3), COMFYIMG_HTTP_BACKOFF (s, default 1).""")


# --------------------------------------------------------------------------- bake


@dataclass(frozen=True)
class BakeArgs:
    target: tuple[str, ...] = option((), "A bake target or group; repeat it for several, or give them after `--` "
                                         "(default: the 'default' group).", dashes=True, metavar="TARGET")
    load: bool = option(False, "Load the images into the engine (the default).")
    push: bool = option(False, "Push the images to the registry (the REGISTRY variable, or --label).")
    print_plan: bool = option(False, "Print the resolved bake plan as JSON and build nothing.", flag="print")
    label: str | None = option(None, "The image tag label (the IMAGE_LABEL bake variable).")
    builder: str | None = option(None, "The buildx builder to use.")
    sets: tuple[str, ...] = option((), "Override a target value, TARGET.KEY=VALUE (repeatable).", flag="set")
    no_cache: bool = option(False, "Build without the cache.")
    progress: str = option("plain", "The buildx progress output: plain (the default), auto, quiet or rawjson.")
    file: tuple[str, ...] = option((), "An extra bake file applied after docker-bake.hcl (repeatable).",
                                   metavar="PATH")
    allow: tuple[str, ...] = option((), "A buildx entitlement, e.g. network.host (repeatable).")
    cache_to: tuple[str, ...] = option((), "Export the build cache: registry=REF, gha[=SCOPE], local=DIR or "
                                           "inline (repeatable).")
    cache_from: tuple[str, ...] = option((), "Import a build cache: registry=REF, gha[=SCOPE] or local=DIR "
                                             "(repeatable).")
    json: bool = option(False, "Print the bake summary (the build record) as JSON on stdout.")


def bake(root: Path, args: BakeArgs) -> int:
    """``invoke bake``: preflight, build through buildx bake, print a summary and write the
    build record (``--print``: print the resolved plan instead)."""
    from comfyimg.bake import bake as bake_mod  # optional: the docker stack, for this command only
    from comfyimg import render  # optional: start-up
    from comfyimg.audit import report  # optional: start-up
    from comfyimg.bake.record import RECORD  # optional: start-up

    modes = [m for m, on in (("load", args.load), ("push", args.push), ("print", args.print_plan)) if on]
    if len(modes) > 1:
        raise BadInput(f"choose one of --load, --push, --print (got {', '.join(modes)})")
    request = bake_mod.BakeRequest(
        targets=list(args.target) or ["default"], mode=(modes or ["load"])[0], label=args.label,
        builder=args.builder, sets=list(args.sets), no_cache=args.no_cache, progress=args.progress,
        files=[Path(f).resolve() for f in args.file], allow=list(args.allow), cache_to=list(args.cache_to),
        cache_from=list(args.cache_from))
    pins = load_pins(root)
    if request.mode == "print":
        resolved, _, _ = bake_mod.preflight(root, pins, request, progress)
        out().print_json(data=resolved) if not (plain() or args.json) else emit_json(resolved)
        return 0
    built = bake_mod.build(root, pins, request, progress)
    if args.json:  # the build record itself; the build log went to stderr
        print(read_bytes(root / RECORD).decode("utf-8", "replace"), end="")
        return 0

    table = Table("target", "tags", "image id", "duration", "pins", title="bake")
    for b in built:
        table.add_row(b.target, "\n".join(b.tags), (b.image_id or "-")[:19], f"{b.seconds:.1f}s",
                      ", ".join(f"{p.name} {p.version}" for p in b.pins) or "-")
    out().print(table)
    pins = load_pins(root)  # as the build left it (it may have recorded kernel coverage)
    runs = [r for b in built for r in render.runs_for(pins, b.target, render.pins_for(pins, b.target) or [])]
    for line in report.runs_lines(runs):
        out().print(line, soft_wrap=True)
    out().print(f"build record: {RECORD}")
    return 0


BAKE = Command("bake", "Render generated/, preflight, and build the images with docker buildx bake.",
               BakeArgs, bake, "invoke bake [-t TARGET]... [--load|--push|--print] ... [-- TARGET...]")


# --------------------------------------------------------------------------- validate, smoke (nox runs them)


def _probes() -> list[str]:
    from comfyimg.validate import containers  # optional: the docker stack, validate and smoke only
    return sorted(containers.PROBES)


@dataclass(frozen=True)
class ValidateRequest:
    probe: str = option("", "The probe to run inside the image.", positional=True, choices=_probes)
    image: str | None = option(None, "The image to validate (default: the latest build record).")
    target: str | None = option(None, "The bake target to take from the build record and wheels.toml.")
    expect_version: str | None = option(None, "The version to expect instead of the pinned one.")
    require_gpu: bool = option(False, "A GPU check that is skipped fails the validation.")
    gpus: str = option("auto", GPUS)
    cdi_kind: str = option(DEFAULT_CDI_KIND, CDI_KIND)
    comfyui: str = option(COMFYUI_PATH, "The image's ComfyUI, whose own attention path is checked too "
                                        "('none' skips it).", metavar="PATH|none")
    timeout: float = option(VALIDATE_TIMEOUT, TIMEOUT)
    user: str | None = option(None, "Run the probe as this user (default: the image's USER, or comfy when "
                                    "that is root).")
    attest: bool = option(False, "Attach the report to the image's digest in its registry (an in-toto statement, "
                                 "an OCI artifact that refers to the image); needs --image HOST[:PORT]/REPO[:TAG].")
    probe_args: tuple[str, ...] = option((), "Arguments for the probe itself.", flag="", dashes=True)


def validate(root: Path, request: ValidateRequest) -> int:
    """``python -m comfyimg validate PROBE [options] [-- PROBE ARGS]`` (the nox sessions call it)."""
    from comfyimg.validate import containers  # optional: the docker stack, validate and smoke only

    if not request.probe:
        raise BadInput(f"validate: name the probe to run: one of {', '.join(_probes())}")
    comfyui = None if request.comfyui.strip().lower() in ("", "none") else request.comfyui
    _attest_first(request.attest, request.image)
    code = _stoppable(f"validate {request.probe}", "its probe container was", lambda: containers.validate(
        root, request.probe, image=request.image, target=request.target, expect_version=request.expect_version,
        require_gpu=request.require_gpu, probe_args=list(request.probe_args), gpus=request.gpus,
        cdi_kind=request.cdi_kind, comfyui=comfyui, timeout=request.timeout, user=request.user), root)
    return _attest_after(code, request.attest, request.image, root / "reports" / f"{request.probe}.json")


@dataclass(frozen=True)
class SmokeRequest:
    image: str = option("", "The image to smoke-test (required).")
    model: str = option("sdxl", "The model shape to render: sdxl (SDXL-shaped UNet, 4,096 tokens), flux (Flux-shaped "
                                "DiT, 4,608 tokens), wan (Wan 2.1 1.3B, 32,760 tokens) or all of them in turn.",
                        choices=SMOKE_MODELS)
    gpus: str = option("auto", GPUS)
    cdi_kind: str = option(DEFAULT_CDI_KIND, CDI_KIND)
    timeout: float = option(SMOKE_TIMEOUT, "Seconds for each model's smoke; its containers are killed and removed "
                                           "after it.", parse=_seconds)
    steps: int = option(SMOKE_STEPS, f"Sampling steps of each render, 1 to {MAX_STEPS}.", parse=_steps)
    attest: bool = option(False, "Attach the report to the image's digest in its registry (an in-toto statement, "
                                 "an OCI artifact that refers to the image).")


def smoke(root: Path, request: SmokeRequest) -> int:
    """``python -m comfyimg smoke --image IMAGE [options]`` (``nox -s smoke`` calls it)."""
    from comfyimg.validate import smoke as smoke_mod  # optional: the docker stack, validate and smoke only

    if not request.image:
        raise BadInput("smoke: name the image to smoke-test: --image IMAGE")
    _attest_first(request.attest, request.image)
    code = _stoppable("smoke", "its containers were", lambda: smoke_mod.smoke(
        root, request.image, model=request.model, gpus=request.gpus, cdi_kind=request.cdi_kind,
        timeout=request.timeout, steps=request.steps), root)
    return _attest_after(code, request.attest, request.image, root / "reports" / "smoke.json")


VALIDATE = Command("validate", "Run a probe (sage2, sage3) inside the built image, on its GPU: 0 pass, 1 fail.",
                   ValidateRequest, validate)
SMOKE = Command("smoke", "Boot the image as production does and render a workflow with and without SageAttention.",
                SmokeRequest, smoke)


# --------------------------------------------------------------------------- evidence on the digest


def _attest_first(attest: bool, image: str | None) -> None:
    """--attest needs a registry reference: refused (exit 2) before any container runs."""
    if not attest:
        return
    from comfyimg.net.registry import Ref  # optional: httpx, for --attest only

    if not image:
        raise BadInput("--attest needs --image HOST[:PORT]/REPO[:TAG]: the image in the registry to attach to")
    Ref.parse(image)


def _attest_after(code: int, attest: bool, image: str | None, report: Path) -> int:
    """After validate or smoke: attach the report they wrote, pass or fail (a failure is evidence
    too). Their exit code stands unless attaching fails (one line, its own code)."""
    if not attest or code not in (0, FAILED) or not report.exists():
        return code
    attached, message = _ending(lambda: attest_report(report.parent.parent, AttestRequest(
        image=image or "", report=str(report))), prefixed=True)
    return ended(attached, message) if attached else code


@dataclass(frozen=True)
class AttestRequest:
    image: str = option("", "The image in its registry: HOST[:PORT]/REPO[:TAG] (required).")
    report: str = option("", "The report to attach: reports/sage2.json, reports/sage3.json or reports/smoke.json "
                             "(required).", metavar="PATH")
    json: bool = option(False, JSON)


def attest_report(root: Path, request: AttestRequest) -> int:
    """``invoke attest``: attach a reports/<probe>.json to the image's digest."""
    from comfyimg.validate import verify as verify_mod  # optional: httpx and docker, for this command only

    if not request.image or not request.report:
        raise BadInput("attest: give --image HOST[:PORT]/REPO[:TAG] and --report reports/<probe>.json")
    path = Path(request.report)
    done = verify_mod.attach_file(request.image, path if path.is_absolute() else root / path)
    if request.json:
        emit_json(done)
    else:
        out().print(f"attached {done['kind']} report {done['artifact']} to {done['image']} ({done['stored_by']})")
    return 0


@dataclass(frozen=True)
class VerifyRequest:
    image: str = option("", "The image in its registry: HOST[:PORT]/REPO[:TAG][@sha256:DIGEST].", positional=True,
                        metavar="IMAGE")
    arch: str | None = option(None, "The GPU arch to answer for, e.g. sm86.", metavar="smXY")
    gpu: str | None = option(None, "Or the GPU by name, e.g. H100 or RTX 4090.", metavar="NAME")
    require: str | None = option(None, "Exit 1 when the arch falls short of it: static (its kernels run, nothing "
                                       "measured failed) or measured (a report on that arch passed).",
                                 choices=("static", "measured"))
    json: bool = option(False, JSON)


def verify(root: Path, request: VerifyRequest) -> int:
    """``invoke verify``: one table per attention package, the verdict line; exit 1 short of --require."""
    from comfyimg.validate import verify as verify_mod  # optional: httpx and docker, for this command only

    if not request.image:
        raise BadInput("verify: name the image: invoke verify HOST[:PORT]/REPO[:TAG]")
    found = verify_mod.verify(request.image, arch=request.arch, gpu=request.gpu, require=request.require)
    if request.json:
        emit_json(found.as_json())
    else:
        for package in found.packages:
            table = Table("arch", "GPUs", "static verdict", "measured verdict", "answer",
                          title=f"{package.name} {package.version} · {found.image[:60]}")
            for row in package.rows:
                table.add_row(row.arch, ", ".join(row.gpus) or "-", row.static, row.measured, row.answer)
            out().print(table)
        (out() if found.ok else err()).print(found.verdict())
    return 0 if found.ok else FAILED


ATTEST = Command("attest", "Attach a validate or smoke report to the image digest in its registry, as an OCI "
                           "artifact.", AttestRequest, attest_report,
                 "invoke attest --image HOST[:PORT]/REPO[:TAG] --report reports/sage2.json [--json]\n\n"
                 "Environment: COMFYIMG_REGISTRY_USER, COMFYIMG_REGISTRY_PASSWORD (sent to the registry's host "
                 "only), COMFYIMG_REGISTRY_TIMEOUT (s, default 30).")
VERIFY = Command("verify", "Was this image proven on a GPU? Labels and attached reports, per package and arch "
                           "(exit 1: short of what was required, or a report not trusted).", VerifyRequest, verify,
                 "invoke verify IMAGE [--arch smXY | --gpu NAME] [--require static|measured] [--json]\n\n"
                 "Environment: as for invoke attest.")


# --------------------------------------------------------------------------- python -m comfyimg

COMMANDS: dict[str, Command[Any]] = {c.name: c for c in (CHECK, RENDER, AUDIT, BUMP, BAKE, VALIDATE, SMOKE, ATTEST,
                                                           VERIFY)}
INVOKE_COMMANDS = (CHECK, RENDER, AUDIT, BUMP, BAKE, ATTEST, VERIFY)  # tasks.py; nox runs validate and smoke

_QUIET = [False]


def progress(line: str) -> None:
    """Where a long command's progress lines go (the build log, files rendered): stderr, unless -q."""
    if not _QUIET[0]:
        err().print(line)


def version() -> str:
    import importlib.metadata  # optional: --version only (reading the installed metadata costs start-up)

    try:
        return importlib.metadata.version("comfyimg")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def top_help() -> str:
    width = max(len(n) for n in COMMANDS)
    return "\n".join([
        "usage: python -m comfyimg [-q|-v] COMMAND [ARGS]   (or: comfyimg COMMAND; --help after a command)",
        "", "The commands behind `invoke check|render|audit|bump|bake|attest|verify` and `nox -s validate_*|smoke`.", "",
        "commands:", *(f"  {n:<{width}}  {c.summary}" for n, c in COMMANDS.items()), "",
        "options:", "  -h, --help     show this help and exit",
        "  --version      show the version of comfyimg and exit",
        "  -q, --quiet    hide progress lines (the build log, files rendered); warnings and errors stay",
        "  -v, --verbose  also log each HTTP request and other library events on stderr",
    ])


class _Untrusted(logging.Formatter):
    """-v's log lines are untrusted text too: controls made visible, secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return for_terminal(super().format(record))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m comfyimg [-q|-v] COMMAND [ARGS]`` (and the ``comfyimg`` console script)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    while argv and argv[0] in ("-q", "--quiet", "-v", "--verbose"):
        if argv.pop(0) in ("-q", "--quiet"):
            _QUIET[0] = True
        else:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(_Untrusted("%(name)s: %(message)s"))
            logging.basicConfig(level=logging.INFO, handlers=[handler])
    if argv[:1] in (["-h"], ["--help"]):
        out().print(top_help(), soft_wrap=True)
        return 0
    if argv[:1] == ["--version"]:
        out().print(f"comfyimg {version()}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        err().print(f"usage: python -m comfyimg {{{','.join(COMMANDS)}}} [ARGS]  (--help lists them)")
        return BAD_INPUT
    return COMMANDS[argv[0]].main(argv[1:])
