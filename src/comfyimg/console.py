"""Terminal output: rich on a TTY, plain lines when not on one or when ``CI`` is set."""

from __future__ import annotations

import os
import sys
from functools import cache

from rich.console import Console


def plain() -> bool:
    return bool(os.environ.get("CI")) or not sys.stdout.isatty()


@cache
def out() -> Console:
    if plain():
        return Console(file=sys.stdout, force_terminal=False, no_color=True, highlight=False,
                       soft_wrap=True, width=200)
    return Console(file=sys.stdout, highlight=False)


@cache
def err() -> Console:
    if plain():
        return Console(file=sys.stderr, force_terminal=False, no_color=True, highlight=False,
                       soft_wrap=True, width=200)
    return Console(file=sys.stderr, highlight=False)
