"""The one "failed cleanly" assertion: the exit code, a message a person can act on, no
traceback, nothing leaked, and every file as it was (as pip's ``assert_all_changes``)."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping


def assert_failed_cleanly(result, code: int | Collection[int], *, message: str | None = None,
                          stderr: str | None = None, before: Mapping[str, bytes] | None = None,
                          after: Mapping[str, bytes] | None = None, hidden: Iterable[str] = ()) -> None:
    """``result`` has ``returncode``, ``stdout`` and ``stderr`` (a CompletedProcess or alike).
    ``code``: the exit code (or the codes allowed). ``message``: a regular expression the output
    must contain; ``stderr``: one that stderr itself must contain (multiline: ``^`` starts any
    line). ``before``/``after``: snapshots of the project's files (``Project.snapshot()``), which
    must be equal. ``hidden``: strings (a token) that must not appear in the output."""
    output = (result.stdout or "") + (result.stderr or "")
    assert result.returncode in ((code,) if isinstance(code, int) else code), output
    assert "Traceback" not in output, output
    if message is not None:
        assert re.search(message, output), output
    if stderr is not None:
        assert re.search(stderr, result.stderr or "", re.M), result.stderr
    if before is not None or after is not None:
        assert before == after, "a failed command changed files"
    for secret in hidden:
        assert secret not in output, "a secret was printed"
