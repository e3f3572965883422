"""The one error type for user-facing failures.

Every command catches :class:`UserError` at the top and prints its message
without a traceback.  ``exit_code`` follows the project convention:
2 for bad input or usage, 1 for work that failed.
"""

from __future__ import annotations

import os


BAD_INPUT = 2
FAILED = 1
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
TERMINATED = 143  # 128 + SIGTERM


class UserError(Exception):
    """A failure a person can act on; ``str(err)`` is the whole message."""

    exit_code = FAILED

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class BadInput(UserError):
    """Invalid files, arguments or usage (exit 2)."""

    exit_code = BAD_INPUT


class WorkFailed(UserError):
    """The input was fine but the work failed (exit 1)."""

    exit_code = FAILED


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
