"""Where a key of a TOML file stands: table/key paths → line numbers, and the collector of
``FILE:LINE: field: message`` errors that the loader reports all at once."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from comfyimg.errors import BadInput
from comfyimg.untrusted import one_line

_KEY_PART = re.compile(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', re.ASCII)


def _basic(escaped: str) -> str:
    """A TOML basic string's value (escapes such as ``\\n`` decoded), as tomllib reads it."""
    try:
        return str(tomllib.loads(f'k = "{escaped}"')["k"])
    except tomllib.TOMLDecodeError:
        return escaped


def _split_key(key: str) -> list[str]:
    parts = _KEY_PART.findall(key)
    return [_basic(a) if a else (b or c) for a, b, c in parts]


def line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map each table/key path to the line it starts on (``[[wheel]]`` entries by index)."""
    lines: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    counts: dict[tuple[Any, ...], int] = {}

    def in_current_entry(key: tuple[Any, ...]) -> tuple[Any, ...]:
        # [wheel.source] after a [[wheel]] belongs to that entry: ("wheel", N, "source").
        for n in range(len(key) - 1, 0, -1):
            if key[:n] in counts:
                return key[:n] + (counts[key[:n]],) + key[n:]
        return key

    for no, raw in enumerate(text.split("\n"), 1):  # TOML lines end at \n only (tomllib counts so)
        s = raw.strip()
        if m := re.match(r"^\[\[\s*([^\]]+?)\s*\]\]", s):
            key = tuple(_split_key(m[1]))
            counts[key] = counts.get(key, -1) + 1
            table = key + (counts[key],)
            lines.setdefault(table, no)
        elif m := re.match(r"^\[\s*([^\]]+?)\s*\]", s):
            table = in_current_entry(tuple(_split_key(m[1])))
            lines.setdefault(table, no)
        elif m := re.match(r"""^("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_.\-"' ]+?)\s*=""", s):
            lines.setdefault(table + tuple(_split_key(m[1])), no)
    return lines


def entry_end(text: str, table: tuple[Any, ...]) -> int | None:
    """The number of the last line of ``table``'s own keys (its header line when it has none):
    the place for a new key, before the blank lines and comments that introduce what follows
    and before any sub-table. None when ``table`` has no header in ``text``."""
    start = line_index(text).get(table)
    if start is None:
        return None
    lines = text.split("\n")
    last = start
    for no in range(start + 1, len(lines) + 1):
        s = lines[no - 1].strip()
        if s.startswith("["):  # the next table header (a sub-table or the next entry)
            break
        if s and not s.startswith("#"):
            last = no
    return last


class Errors:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = line_index(text)
        self.items: list[tuple[int, str]] = []

    def line(self, *path: Any) -> int:
        """The line of ``path``, else of its nearest ancestor; a table known only through
        its children (``[profile.cpu]`` for ``profile``) gets its first child's line."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
            if below := [no for key, no in self.lines.items() if key[:n] == path[:n]]:
                return min(below)
        return 1

    def add(self, path: tuple[Any, ...], field: str, message: str) -> None:
        # Escaped like all untrusted text: a key holding a newline cannot forge a line.
        self.items.append((self.line(*path), one_line(f"{field}: {message}")))

    def raise_if_any(self) -> None:
        if self.items:
            msgs = [f"{one_line(self.path.name)}:{line}: {msg}" for line, msg in sorted(self.items)]
            raise BadInput("\n".join(msgs))
