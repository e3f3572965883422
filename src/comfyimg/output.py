"""Terminal output: rich on a TTY, plain lines when not on one or when ``CI`` is set."""

from __future__ import annotations

import os
import sys
from functools import cache
from collections.abc import Callable
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from comfyimg.untrusted import for_terminal


class SafeTable(Table):
    """A rich ``Table`` whose title, headers and string cells are untrusted text: controls made
    visible, secrets redacted (:mod:`comfyimg.untrusted`). Every table of the package is one."""

    def __init__(self, *headers: str, title: str | None = None, **kwargs: Any) -> None:
        super().__init__(*(for_terminal(h) for h in headers),
                         title=None if title is None else for_terminal(title), **kwargs)

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        super().add_row(*(for_terminal(c) if isinstance(c, str) else c for c in cells), **kwargs)


class _Console(Console):
    """Every string it prints (messages, log lines) is untrusted text: controls made visible,
    secrets redacted; tables are :class:`SafeTable`, whose cells are treated the same way."""

    def print(self, *objects: object, **kwargs: object) -> None:
        """Tables: ASCII lines in CI and logs, and never folded below their content's width
        (on an 80-column terminal, a tag stays whole and the terminal wraps the line)."""

        objects = tuple(for_terminal(o) if isinstance(o, str) else o for o in objects)
        width = self.width
        for obj in objects:
            if isinstance(obj, Table):
                if plain():
                    obj.box = box.ASCII if obj.box else None
                need = Measurement.get(self, self.options.update(width=1_000), obj).maximum
                width = max(width, need)
        saved, self.width = self.width, width  # print() never renders wider than the console
        try:
            super().print(*objects, **kwargs)  # type: ignore[arg-type]
        finally:
            self.width = saved


# Where a long command's progress lines go (the build log, files rendered, coverage recorded):
# the domain function takes one and ``cli`` passes ``err().print``; only cli prints.
Say = Callable[[str], None]


def plain() -> bool:
    return bool(os.environ.get("CI")) or not sys.stdout.isatty()


def _console(file: TextIO) -> Console:
    # markup=False: what we print is data (pin keys like sageattention[sm90], URLs,
    # build logs), never rich markup, and "[sm90]" must not vanish as a style tag.
    if plain():
        return _Console(file=file, force_terminal=False, no_color=True, highlight=False,
                        soft_wrap=True, width=200, markup=False)
    return _Console(file=file, highlight=False, markup=False)


@cache
def out() -> Console:
    return _console(sys.stdout)


@cache
def err() -> Console:
    return _console(sys.stderr)


# --------------------------------------------------------------------------- bytes and progress


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KB``, ``200.0 MB`` (powers of 1000)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class Progress:
    """Download progress sink; this one prints nothing."""

    def advance(self, n: int) -> None:
        pass

    def done(self, size: int, seconds: float) -> None:
        pass

    def close(self) -> None:
        """Called last, also when the download failed."""


def _done_line(name: str, size: int, seconds: float) -> str:
    rate = size / seconds if seconds > 0 else 0
    return f"downloaded {name}: {human_bytes(size)} in {seconds:.2f} s ({human_bytes(rate)}/s)"


class _PlainProgress(Progress):
    def __init__(self, name: str, total: int) -> None:
        self.name = name
        err().print(f"downloading {name} ({human_bytes(total) if total else 'size unknown'})")

    def done(self, size: int, seconds: float) -> None:
        err().print(_done_line(self.name, size, seconds))


class _RichProgress(Progress):
    def __init__(self, name: str, total: int) -> None:
        # rich.progress only for a download on a terminal: ~7 ms off the audit's start-up (bench/audit_wheel.py)
        import rich.progress as rp  # optional: a download bar only, never on the audit's path

        self.bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(),
                               rp.TransferSpeedColumn(), rp.TimeRemainingColumn(), console=err(), transient=True)
        self.bar.start()
        self.name = name
        self.task = self.bar.add_task(for_terminal(name), total=total or None)

    def advance(self, n: int) -> None:
        self.bar.advance(self.task, n)

    def close(self) -> None:
        self.bar.stop()

    def done(self, size: int, seconds: float) -> None:
        err().print(_done_line(self.name, size, seconds))


def progress_factory() -> type[Progress]:
    """Download progress: a bar on a terminal, two plain lines otherwise."""
    return _PlainProgress if plain() else _RichProgress
