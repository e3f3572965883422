"""Terminal output: rich on a TTY, plain lines when not on one or when ``CI`` is set."""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table


def plain() -> bool:
    return bool(os.environ.get("CI")) or not sys.stdout.isatty()


def _console(file: TextIO) -> Console:
    # markup=False: what we print is data (pin keys like sageattention[sm90], URLs,
    # build logs), never rich markup, and "[sm90]" must not vanish as a style tag.
    if plain():
        return Console(file=file, force_terminal=False, no_color=True, highlight=False,
                       soft_wrap=True, width=200, markup=False)
    return Console(file=file, highlight=False, markup=False)


@cache
def out() -> Console:
    return _console(sys.stdout)


@cache
def err() -> Console:
    return _console(sys.stderr)


def table(*columns: str, fancy: box.Box | None = box.HEAVY_HEAD, **kwargs: object) -> Table:
    """A result table: ``fancy`` borders on a terminal, none at all (no box drawing) in plain mode."""
    if plain():
        kwargs.setdefault("show_edge", False)
        return Table(*columns, box=None, **kwargs)  # type: ignore[arg-type]
    return Table(*columns, box=fancy, **kwargs)  # type: ignore[arg-type]
