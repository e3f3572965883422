"""Atomic file writes: a failed command leaves every file as it was; bounded reads.

Every file the tools read goes through :func:`read_bytes` (or :func:`read_text`): opened
without blocking, read only when it is a regular file (a FIFO, a device such as
``/dev/zero`` — directly or through a symlink — is refused), at most ``limit`` bytes, once.

A symlink is written through to its target (the link stays a link); several files are
replaced all or nothing (a failure while replacing puts back the ones already replaced);
:func:`exclusive` keeps two commands from editing one file at once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from comfyimg.errors import BadInput, WorkFailed
from comfyimg.untrusted import redact


CHANGED: list[Path] = []  # every file this process replaced or removed, for an honest interrupt message


def changed_statement() -> str:
    """What an interrupted command says about the files: which were changed, or none."""
    if not CHANGED:
        return "no file was changed"
    names = sorted({str(p) for p in CHANGED})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"already replaced before the stop, each whole: {shown}"


def atomic_write(path: Path, data: bytes | str, *, verbatim: bool = False) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory + ``os.replace``."""
    atomic_write_many({path: data}, verbatim={path} if verbatim else ())


def _backup(path: Path) -> str | None:
    """A second name for the current ``path`` (a hard link, else a copy), to put it back."""
    if not path.exists():
        return None
    fd, backup = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old")
    os.close(fd)
    os.unlink(backup)
    try:
        os.link(path, backup)
    except OSError:
        shutil.copy2(path, backup)
    return backup


def atomic_write_many(files: dict[Path, bytes | str], *, verbatim: Collection[Path] = ()) -> None:
    """Write several files, all or nothing. Text passes the one redaction
    (:func:`comfyimg.untrusted.redact`: known secrets, ``user:password@`` in URLs) unless its path
    is ``verbatim`` (wheels.toml: the user's own file, written back as they wrote it): every temp file is written and synced before the
    first replace, and a failure while replacing puts back every file already replaced."""
    staged: list[tuple[str, Path]] = []
    replaced: list[tuple[Path, str | None]] = []
    try:
        for link, data in files.items():
            path = Path(os.path.realpath(link))  # through a symlink, to its target
            if isinstance(data, str):  # text the project writes (records, reports, generated/): never a secret
                data = (data if link in verbatim else redact(data)).encode("utf-8")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        for tmp, path in staged:
            backup = _backup(path)
            replaced.append((path, backup))
            os.replace(tmp, path)
        CHANGED.extend(path for path, _ in replaced)
    except BaseException:
        for path, backup in reversed(replaced):
            try:
                if backup:
                    os.replace(backup, path)
                else:
                    path.unlink(missing_ok=True)
            except OSError:
                pass  # nothing better to do; the first error is the one to report
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        for _, backup in replaced:
            if backup:
                Path(backup).unlink(missing_ok=True)


@contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (its target, through a symlink) for the block;
    another holder is a clear failure, not a wait. A missing file is not locked."""
    target = os.path.realpath(path)
    fd = -1
    for _ in range(5):
        try:
            fd = os.open(target, os.O_RDONLY)
        except OSError:
            yield  # the reader reports a missing or unreadable file
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkFailed(f"{path.name}: another {what} is changing it right now (it holds the lock); "
                             "nothing was written: run this again when that one has finished") from None
        try:
            if os.fstat(fd).st_ino == os.stat(target).st_ino:
                break  # locked the file that is there now, not one replaced meanwhile
        except OSError:
            pass
        os.close(fd)
        fd = -1
    try:
        yield
    finally:
        if fd >= 0:
            os.close(fd)


MAX_INPUT = 16 << 20  # 16 MiB: far above any wheels.toml, bake file or build record


def read_bytes(path: Path, limit: int = MAX_INPUT) -> bytes:
    """The bytes of the regular file ``path`` (through symlinks), at most ``limit``; anything
    else (missing, a directory, a FIFO, a device, too large) is bad input naming the file."""
    where = f"{path.name}:1: file:"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BadInput(f"{where} {path} does not exist") from None
    except IsADirectoryError:
        raise BadInput(f"{where} {path} is a directory; a file belongs there") from None
    except OSError as exc:
        raise BadInput(f"{where} cannot read {path}: {exc.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise BadInput(f"{where} {path} is a directory; a file belongs there")
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise BadInput(f"{where} {path} is {kind}, not a regular file; refusing to read it")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise BadInput(f"{where} cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise BadInput(f"{where} {path} is larger than {limit} bytes; refusing to read it")
    return data


def read_text(path: Path, limit: int = MAX_INPUT) -> str:
    """Read a UTF-8 file (:func:`read_bytes`); an undecodable file is bad input with a line number."""
    data = read_bytes(path, limit)
    if data.startswith(b"\xef\xbb\xbf"):
        raise BadInput(f"{path.name}:1: encoding: the file starts with a byte order mark (BOM), which TOML "
                       "does not allow; save it as UTF-8 without BOM")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInput(f"{path.name}:{line}: encoding: byte 0x{data[exc.start]:02x} is not UTF-8; "
                       "the file must be UTF-8") from None
