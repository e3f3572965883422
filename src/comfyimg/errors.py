"""The error types of user-facing failures, each carrying its exit code.

``cli`` catches them at the top and prints the message without a traceback; the code is the
class's ``exit_code`` (as cibuildwheel's ``errors.py``): 2 for bad input or usage, 1 for work
that failed, 130 for Ctrl-C, 128 + the signal for SIGTERM (143) and SIGHUP (129).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
import signal


BAD_INPUT = 2
FAILED = 1
INTERRUPTED = 128 + signal.SIGINT  # 130, as a shell reports Ctrl-C


class UserError(Exception):
    """A failure a person can act on; ``str(err)`` is the whole message."""

    exit_code = FAILED

    def __init__(self, message: str, *, exit_code: int | None = None, shown: Sequence[object] = ()) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.shown = list(shown)  # shown on stderr before the message (warnings, a table)


class BadInput(UserError):
    """Invalid files, arguments or usage (exit 2)."""

    exit_code = BAD_INPUT


class WorkFailed(UserError):
    """The input was fine but the work failed (exit 1)."""

    exit_code = FAILED


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds like Ctrl-C, so every ``finally`` (temporary
    directories, partial downloads, probe containers) runs; exit 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def seconds_from_env(name: str, default: float, error: type[Exception] = BadInput) -> float:
    """A timeout setting ``$NAME`` in seconds, 1 to 3600 (``default`` when unset); anything else,
    NaN included, is ``error`` naming the setting and its value."""
    raw = os.environ.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 1 <= value <= 3600:  # NaN fails this too
        raise error(f"{name}={raw!r} is out of range; expected seconds from 1 to 3600")
    return value
