"""Saving changes to ``wheels.toml`` through tomlkit: comments, order and line endings kept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from .fsutil import atomic_write, read_text
from .pins import Pins, loads


def dumps_with_changes(text: str, changes: Mapping[int, Mapping[str, Any]]) -> str:
    """Apply ``{wheel index: {key: value}}`` to the TOML text, keeping comments and order.

    A value of ``None`` removes the key; a dict value becomes an inline table.
    """
    doc = tomlkit.parse(text)
    for index, fields in changes.items():
        table = doc["wheel"][index]
        for key, value in fields.items():
            if value is None:
                table.pop(key, None)
            elif isinstance(value, dict):
                if isinstance(table.get(key), dict):  # edit in place: keeps its layout
                    for sub_key, sub_value in value.items():
                        table[key][sub_key] = sub_value
                else:
                    inline = tomlkit.inline_table()
                    inline.update(value)
                    _set_key(table, key, inline)
            else:
                _set_key(table, key, value)
    new_text = tomlkit.dumps(doc)
    if "\r\n" in text and "\n" not in text.replace("\r\n", ""):  # keep a CRLF file CRLF
        new_text = new_text.replace("\r\n", "\n").replace("\n", "\r\n")
    return new_text


def _set_key(table: Any, key: str, value: Any) -> None:
    """Set ``key``; a new key goes after the table's last key, not after the trailing
    comments and blank lines that introduce the next ``[[wheel]]``."""
    # Plain keys only: a key added after a [wheel.source] sub-table would land inside it.
    keys = [k.key for k, v in table.value.body
            if k is not None and not isinstance(v, (Table, AoT))]
    if key not in table and keys:
        table.value._insert_after(keys[-1], key, value)
    else:
        table[key] = value


def save_changes(pins: Pins, changes: Mapping[int, Mapping[str, Any]], *,
                 bake_targets: set[str] | None = None) -> Pins:
    """Validate the changed file *before* writing it, then write it atomically."""
    text = read_text(pins.path)
    new_text = dumps_with_changes(text, changes)
    new_pins = loads(new_text, pins.path, bake_targets=bake_targets)
    if new_text != text:
        atomic_write(pins.path, new_text)
    return new_pins
