"""Where hashes are checked: every sha256 of a wheel passes through here.

* :func:`from_api` reads GitHub's ``"digest": "sha256:…"`` field of a release asset;
* :func:`parse_sums` reads ``SHA256SUMS*`` files (GNU and BSD style);
* :class:`Hasher` hashes bytes as a download streams them to disk;
* :class:`Digests` finds an asset's sha256 (API digest, else a SUMS file, else download and
  hash) and compares the three, failing with an explanation when they disagree;
* :func:`replaced_in_place` decides whether a release asset changed under the same URL.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from packaging.utils import canonicalize_name

from comfyimg.errors import WorkFailed
from comfyimg.untrusted import one_line

T = TypeVar("T")


class Asset(Protocol):
    """What a digest needs of a release asset (``bump.github.Asset`` is one)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def digest(self) -> str | None: ...
    @property
    def url(self) -> str: ...
    @property
    def browser_download_url(self) -> str: ...
    @property
    def digest_from(self) -> str: ...


class Release(Protocol):
    @property
    def tag(self) -> str: ...
    @property
    def assets(self) -> Sequence[Asset]: ...


class Downloaded(Protocol):
    @property
    def sha256(self) -> str: ...


class Downloader(Protocol):
    """Fetches an asset's bytes (``bump.github.GitHub`` is one); digests never names the client."""

    def fetch_small(self, asset: Any) -> bytes: ...
    def download(self, asset: Any, dest: Path, progress: Any = None) -> Downloaded: ...
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_BSD = re.compile(r"SHA256 \((?P<name>.+)\) = (?P<hex>[0-9a-fA-F]{64})")
_GNU = re.compile(r"(?P<hex>[0-9a-fA-F]{64})\s+\*?(?P<name>.+)", re.ASCII)


def from_api(raw: object) -> str | None:
    """The sha256 hex of an API ``digest`` (``"sha256:…"``); None for null or another algorithm."""
    if isinstance(raw, str) and raw.lower().startswith("sha256:"):
        hexed = raw.split(":", 1)[1].strip().lower()
        return hexed if SHA256_HEX.fullmatch(hexed) else None
    return None


def parse_sums(text: str) -> dict[str, str]:
    """``sha256sum`` output (``HEX  name`` / ``HEX *name``) or BSD style → {file name: hex}."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _BSD.fullmatch(line) or _GNU.fullmatch(line)
        if m:
            sums[m["name"].strip().rsplit("/", 1)[-1]] = m["hex"].lower()
    return sums


class Hasher:
    """sha256 of what streams through :meth:`update`, with the byte count."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._h.update(chunk)
        self.size += len(chunk)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class DigestMismatch(WorkFailed):
    """A downloaded asset does not hash to what the API or a SUMS file says."""


_VOUCHERS = {"api": "the API digest", "index": "the index's sha256",
             "wheels.toml": "the sha256 pinned in wheels.toml"}


def _mismatch(asset: str, tag: str, got: str, who: str, says: str) -> WorkFailed:
    return DigestMismatch(f"digest mismatch: {asset} of release {tag} hashes to {got}, but {who} says {says}"
                      + (" (the asset was replaced or corrupted)" if who in _VOUCHERS.values() else ""))


@dataclass
class Digests:
    """Finds sha256s for the assets of one release, fetching SUMS files at most once."""

    client: Downloader
    release: Release
    workdir: Path
    verify: bool
    progress: object = None  # download progress factory (console.progress_factory())
    _sums: dict[str, tuple[str, str]] | None = None  # file -> (hex, sums asset name)

    def sums(self) -> dict[str, tuple[str, str]]:
        if self._sums is None:
            merged: dict[str, tuple[str, str]] = {}
            for asset in self.release.assets:
                if not asset.name.upper().startswith("SHA256SUMS"):
                    continue
                text = self.client.fetch_small(asset).decode("utf-8", "replace")
                for name, hexed in parse_sums(text).items():
                    if name in merged and merged[name][0] != hexed:
                        raise WorkFailed(
                            f"digest mismatch: {merged[name][1]} and {asset.name} of release "
                            f"{self.release.tag} disagree on {name}")
                    merged.setdefault(name, (hexed, asset.name))
            self._sums = merged
        return self._sums

    def find(self, asset: Asset, wants: Callable[[str], bool] = lambda sha256: False,
             read: Callable[[Path], T] | None = None) -> tuple[str, str, T | None]:
        """(sha256, where it came from, ``read(the downloaded file)`` when ``wants(sha256)``).

        A wheel whose content is wanted (its kernels) is downloaded once, streaming, and read
        from that one download, which is checked against the API digest as any download is."""
        if not self.verify:
            known = (asset.digest, asset.digest_from) if asset.digest else self.sums().get(asset.name)
            if known and not wants(known[0]):
                return known[0], known[1], None
        part = self.workdir / f"asset-{asset.id}.part"
        found = None
        try:
            got = self.client.download(asset, part, progress=self.progress)
            if asset.name.endswith(".whl"):
                wheel_identity(part, asset.name)
            if read is not None and wants(got.sha256):
                found = read(part)
        finally:
            part.unlink(missing_ok=True)  # only the hash (and what was read) is kept
        agree: list[str] = []
        if asset.digest:
            if asset.digest != got.sha256:
                who = _VOUCHERS.get(asset.digest_from, asset.digest_from)
                raise _mismatch(asset.name, self.release.tag, got.sha256, who, asset.digest)
            agree.append(asset.digest_from)
        if (self.verify or not asset.digest) and (listed := self.sums().get(asset.name)):
            if listed[0] != got.sha256:
                raise _mismatch(asset.name, self.release.tag, got.sha256, listed[1], listed[0])
            agree.append(listed[1])
        return got.sha256, "download" + (f" (= {', '.join(agree)})" if agree else ""), found


MAX_METADATA = 1 << 20  # bytes of a METADATA file read (the header is at its top)


def wheel_identity(path: Path, filename: str) -> None:
    """The wheel at ``path`` is the distribution its file name says (the pin's: selection checked
    the name): its ``*.dist-info`` folder and its METADATA ``Name:`` must say the same, else
    WorkFailed (another distribution's bytes behind a pin's URL are refused, never recorded)."""
    expected = canonicalize_name(filename.split("-", 1)[0])
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.count("/") == 1
                     and i.filename.split("/", 1)[0].endswith(".dist-info") and i.filename.endswith("/METADATA")]
            if not infos:
                return  # not ours to judge here: the kernel reader and pip refuse a wheel without one
            folders = {canonicalize_name(i.filename.split("/", 1)[0].removesuffix(".dist-info").rsplit("-", 1)[0])
                       for i in infos}
            with zf.open(infos[0]) as fh:
                head = fh.read(MAX_METADATA).decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError):
        return  # an unreadable zip fails where it is read for its kernels, or at install
    named = next((ln.split(":", 1)[1].strip() for ln in head.splitlines()
                  if ln.lower().startswith("name:")), None)
    said = {*folders, *([canonicalize_name(named)] if named else [])}
    if said != {expected}:
        others = ", ".join(sorted(said - {expected})) or "?"
        raise WorkFailed(f"{one_line(filename)[:200]}: the wheel's dist-info and METADATA name "
                         f"{one_line(others)[:100]}, not {expected} (its file name and pin); refused: "
                         "another distribution's bytes are never recorded for this pin")


def replaced_in_place(old_url: str, old_sha256: str | None, new_url: str, new_sha256: str) -> bool:
    """The same URL now serves other bytes than the ones pinned."""
    return bool(old_sha256) and old_url == new_url and old_sha256 != new_sha256
