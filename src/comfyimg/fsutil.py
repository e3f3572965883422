"""Atomic file writes: a failed command leaves every file as it was."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import BadInput


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + ``os.replace``."""
    atomic_write_many({path: data})


def atomic_write_many(files: dict[Path, bytes | str]) -> None:
    """Write several files: every temp file is written and synced before the first replace,
    so an error while staging leaves all of them untouched."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            if isinstance(data, str):
                data = data.encode("utf-8")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def read_text(path: Path) -> str:
    """Read a UTF-8 file; a missing or undecodable file is bad input with a line number."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path.name}:1: file: {path} does not exist") from None
    except OSError as exc:
        raise BadInput(f"{path.name}:1: file: cannot read {path}: {exc.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        raise BadInput(f"{path.name}:1: encoding: the file starts with a byte order mark (BOM), which TOML "
                       "does not allow; save it as UTF-8 without BOM")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInput(f"{path.name}:{line}: encoding: byte 0x{data[exc.start]:02x} is not UTF-8; "
                       "the file must be UTF-8") from None
