"""Streamed downloads of release assets: to a file, hashing as the bytes arrive (memory
does not grow with the file); fewer bytes than ``Content-Length`` / the asset's ``size``
promise is a failure."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from comfyimg.sources import digests
from comfyimg.sources.digests import Asset
from comfyimg.net.transport import Transport
from comfyimg.errors import WorkFailed
from comfyimg.output import Progress


@dataclass(frozen=True)
class Download:
    path: Path
    sha256: str
    size: int
    seconds: float


def _open(http: Transport, asset: Asset) -> httpx.Response:
    what = f"download of {asset.name}"
    url = asset.url or asset.browser_download_url
    if not url:
        raise WorkFailed(f"{what}: the release lists no URL for it")
    resp = http.get(url, accept="application/octet-stream", what=what)
    http.check(resp, what)
    return resp


def download(http: Transport, asset: Asset, dest: Path,
             progress: Callable[[str, int], Progress] | None = None) -> Download:
    """Stream ``asset`` into ``dest``, hashing as it goes; a short read fails."""
    what = f"download of {asset.name}"
    start = time.monotonic()
    resp = _open(http, asset)
    try:
        announced = resp.headers.get("content-length")
        if resp.headers.get("content-encoding", "identity") != "identity":
            announced = None  # the encoded size; the decoded bytes are what is hashed
        expected = asset.size or None
        if announced is not None and announced.isascii() and announced.isdigit():
            if expected is not None and int(announced) != expected:
                raise WorkFailed(f"{what}: the server sends {int(announced)} bytes, "
                                 f"the release lists {expected}")
            expected = int(announced)
        http.allow_for(resp, expected)  # the deadline grows with the size, at the floor rate
        sink = progress(asset.name, expected or 0) if progress else Progress()
        digest = digests.Hasher()
        try:
            with open(dest, "wb") as fh:
                for chunk in http.body(resp):  # decoded, counted, within the deadline
                    fh.write(chunk)
                    digest.update(chunk)
                    sink.advance(len(chunk))
        except WorkFailed:
            sink.close()
            raise
        except httpx.TimeoutException:
            sink.close()
            raise WorkFailed(f"{what}: timed out after {digest.size} of "
                             f"{expected if expected is not None else '?'} bytes") from None
        except httpx.DecodingError:
            sink.close()
            raise WorkFailed(f"{what}: the download's compression is broken") from None
        except httpx.TransportError as exc:
            sink.close()
            raise WorkFailed(f"{what}: truncated: the connection broke after {digest.size} of "
                             f"{expected if expected is not None else '?'} bytes "
                             f"({type(exc).__name__})") from None
    finally:
        resp.close()
    sink.close()
    if expected is not None and digest.size < expected:
        raise WorkFailed(f"{what}: truncated: received {digest.size} of {expected} bytes")
    if expected is not None and digest.size > expected:
        raise WorkFailed(f"{what}: too long: received {digest.size} bytes, {digest.size - expected} more "
                         f"than the {expected} promised")
    seconds = time.monotonic() - start
    sink.done(digest.size, seconds)
    return Download(dest, digest.hexdigest(), digest.size, seconds)


def fetch_small(http: Transport, asset: Asset, limit: int = 1 << 20) -> bytes:
    """The bytes of a small asset (a checksum file), at most ``limit``."""
    what = f"download of {asset.name}"
    if asset.size > limit:
        raise WorkFailed(f"{what}: {asset.size} bytes is too large for a checksum file")
    resp = _open(http, asset)
    try:
        data = bytearray()
        for chunk in http.body(resp, limit):
            data += chunk
    except (httpx.TransportError, httpx.DecodingError) as exc:
        raise WorkFailed(f"{what}: broke after {len(data)} bytes ({type(exc).__name__})") from None
    finally:
        resp.close()
    if asset.size and len(data) != asset.size:
        raise WorkFailed(f"{what}: truncated: received {len(data)} of {asset.size} bytes")
    return bytes(data)
