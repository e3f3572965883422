"""Saving changes to ``wheels.toml``: comments, order and line endings kept.

tomlkit's public API only (``parse``, item ``[]``/``pop``, ``dumps``): a new key is placed by
a line edit (:func:`comfyimg.tomllines.entry_end`) right after the entry's last key, not after
the comments that introduce the next ``[[wheel]]``, which is where tomlkit would append it.
The result is always checked against the intended values; where a line edit cannot be placed
safely, tomlkit's own placement is used (valid, only less tidy).
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from typing import Any

import tomlkit

from pathlib import Path

from comfyimg.errors import BadInput, WorkFailed
from comfyimg.fsutil import atomic_write, read_text
from comfyimg.pins.lines import entry_end, line_index
from comfyimg.pins.load import loads
from comfyimg.pins.model import Pins


def _item(value: Any) -> Any:
    """A tomlkit item for ``value``; a plain dict becomes an inline table."""
    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        inline.update(value)
        return inline
    return value


def _plain(value: Any) -> Any:
    return value.unwrap() if hasattr(value, "unwrap") else value


def _expected(text: str, changes: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    data = tomllib.loads(text)
    for index, fields in changes.items():
        entry = data["wheel"][index]
        for key, value in fields.items():
            if value is None:
                entry.pop(key, None)
            elif isinstance(value, dict) and isinstance(entry.get(key), dict):
                entry[key].update(_plain(value))
            else:
                entry[key] = _plain(value)
    return data


def _key_line(key: str, value: Any) -> str:
    doc = tomlkit.document()
    doc.add(key, _item(value))
    return doc.as_string()


def _insert_new_keys(text: str, changes: Mapping[int, Mapping[str, Any]]) -> tuple[str, set[tuple[int, str]]]:
    """Insert each key that an entry does not have yet as lines after the entry's last key."""
    entries = tomllib.loads(text).get("wheel", [])
    placed: set[tuple[int, str]] = set()
    for index in sorted(changes, reverse=True):  # bottom-up: earlier line numbers stay valid
        new = {k: v for k, v in changes[index].items() if v is not None and k not in entries[index]}
        end = entry_end(text, ("wheel", index)) if new else None
        if end is None:
            continue
        lines = text.split("\n")
        added = "".join(_key_line(k, v) for k, v in new.items()).rstrip("\n").split("\n")
        text = "\n".join([*lines[:end], *added, *lines[end:]])
        placed |= {(index, k) for k in new}
    return text, placed


def _apply(text: str, changes: Mapping[int, Mapping[str, Any]], skip: set[tuple[int, str]]) -> str:
    doc = tomlkit.parse(text)
    for index, fields in changes.items():
        table = doc["wheel"][index]
        for key, value in fields.items():
            if (index, key) in skip:
                continue
            if value is None:
                table.pop(key, None)
            elif isinstance(value, dict) and isinstance(table.get(key), dict):
                for sub_key, sub_value in value.items():  # edit in place: keeps its layout
                    table[key][sub_key] = sub_value
            else:
                table[key] = _item(value)
    return tomlkit.dumps(doc)


def dumps_with_changes(text: str, changes: Mapping[int, Mapping[str, Any]]) -> str:
    """Apply ``{wheel index: {key: value}}`` to the TOML text, keeping comments and order.

    A value of ``None`` removes the key; a dict value becomes an inline table.
    """
    crlf = "\r\n" in text and "\n" not in text.replace("\r\n", "")
    base = text.replace("\r\n", "\n") if crlf else text
    want = _expected(base, changes)
    inserted, placed = _insert_new_keys(base, changes)
    try:
        new_text = _apply(inserted, changes, placed)
        tidy = tomllib.loads(new_text) == want
    except (tomllib.TOMLDecodeError, tomlkit.exceptions.TOMLKitError):
        tidy = False
    if not tidy:  # the line edit could not be placed: tomlkit's own placement
        new_text = _apply(base, changes, set())
    if crlf:  # keep a CRLF file CRLF
        new_text = new_text.replace("\n", "\r\n")
    return new_text


def drop_pending_notes(text: str, table: tuple[Any, ...]) -> str:
    """``text`` without the comment that says ``table``'s hash or commit is "not recorded yet"
    (from that line through its "Record it with:" line) in the comments just above its header:
    once recorded, that comment would be false."""
    header = line_index(text).get(table)
    if header is None:
        return text
    lines = text.split("\n")
    top = header - 1  # 0-based index of the header line; walk up its comment block
    while top > 0 and lines[top - 1].lstrip().startswith("#"):
        top -= 1
    block = range(top, header - 1)
    start = next((i for i in block if "not recorded yet" in lines[i]), None)
    if start is None:
        return text
    end = next((i for i in range(start, header - 1) if "record it with:" in lines[i].lower()), start)
    return "\n".join(lines[:start] + lines[end + 1:])


def reloaded(new_text: str, path: Path, *, bake_targets: set[str] | None = None,
             failed: str | None = None) -> Pins:
    """The pins of an edited ``wheels.toml`` text, checked as the file itself is. Invalid: the
    loader's :class:`BadInput`, or with ``failed`` a :class:`WorkFailed` that starts with it
    (the edit a command made is at fault, not the user's file)."""
    try:
        return loads(new_text, path, bake_targets=bake_targets)
    except BadInput as exc:
        if failed is None:
            raise
        raise WorkFailed(f"{failed}:\n{exc}") from None


def diff(text: str, new_text: str, name: str) -> str:
    """The unified diff of an edit of the file ``name`` (``--dry-run``)."""
    return "".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        f"a/{name}", f"b/{name}"))


def save_changes(pins: Pins, changes: Mapping[int, Mapping[str, Any]], *,
                 bake_targets: set[str] | None = None, failed: str | None = None) -> Pins:
    """Validate the changed file *before* writing it (see :func:`reloaded`), then write it atomically."""
    text = read_text(pins.path)
    new_text = dumps_with_changes(text, changes)
    new_pins = reloaded(new_text, pins.path, bake_targets=bake_targets, failed=failed)
    if new_text != text:
        atomic_write(pins.path, new_text, verbatim=True)
    return new_pins
