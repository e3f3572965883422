"""GitHub REST client for releases and their assets (httpx).

* Base URL from ``GITHUB_API_URL`` (default ``https://api.github.com``, the GitHub Actions
  convention); token from ``GITHUB_TOKEN`` or ``GH_TOKEN`` (optional).
* Every request has a timeout; 5xx answers, timeouts and connection errors are retried a
  bounded number of times with exponential backoff; a rate limit (403/429) fails at once
  with the reset time from the headers.
* The token goes to the API origin (scheme, host, port of the base URL) only.  Redirects
  are followed here, not by httpx, and a hop to any other origin is sent without the
  ``Authorization`` header.  The token is never printed, logged or put in a message.
* Downloads stream to a file, hashing as they go (memory does not grow with the file),
  and fail when fewer bytes arrive than ``Content-Length`` / the asset's ``size`` promise.

Tuning for tests and slow links, all optional: ``COMFYIMG_HTTP_TIMEOUT`` (seconds per
connect/read, default 30), ``COMFYIMG_HTTP_RETRIES`` (extra attempts, default 3),
``COMFYIMG_HTTP_BACKOFF`` (first backoff in seconds, doubling, default 1).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import httpx

from . import digests
from .errors import BadInput, WorkFailed

DEFAULT_API = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = "comfyimg-bump"
REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 10
CHUNK = 1 << 20  # reads of small assets; downloads take what the socket gives (≤ 64 KiB)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Asset:
    id: int
    name: str
    size: int
    digest: str | None  # sha256 hex from the API's "sha256:…" digest, else None
    url: str  # API URL; with Accept: application/octet-stream it redirects to the bytes
    browser_download_url: str
    content_type: str
    state: str

    @classmethod
    def from_json(cls, data: dict) -> Asset:
        return cls(
            id=int(data.get("id", 0)),
            name=str(data["name"]),
            size=int(data.get("size") or 0),
            digest=digests.from_api(data.get("digest")),
            url=str(data.get("url") or ""),
            browser_download_url=str(data.get("browser_download_url") or ""),
            content_type=str(data.get("content_type") or ""),
            state=str(data.get("state") or "uploaded"),
        )


@dataclass(frozen=True)
class Release:
    id: int
    tag: str
    name: str
    draft: bool
    prerelease: bool
    published_at: str | None
    assets: tuple[Asset, ...]

    @classmethod
    def from_json(cls, data: dict) -> Release:
        return cls(
            id=int(data.get("id", 0)),
            tag=str(data["tag_name"]),
            name=str(data.get("name") or ""),
            draft=bool(data.get("draft")),
            prerelease=bool(data.get("prerelease")),
            published_at=data.get("published_at"),
            assets=tuple(Asset.from_json(a) for a in data.get("assets") or ()),
        )


@dataclass(frozen=True)
class Download:
    path: Path
    sha256: str
    size: int
    seconds: float


class NotFound(WorkFailed):
    """A 404 from the API."""


# --------------------------------------------------------------------------- helpers


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return (url.scheme, url.host, port)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise BadInput(f"{name}={raw!r} must be a finite number, not negative")
    return value


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _rate_limit_message(resp: httpx.Response, what: str, authenticated: bool) -> str | None:
    headers = resp.headers
    limited = resp.status_code == 429 or (
        resp.status_code == 403
        and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)
    )
    if not limited:
        return None
    when = ""
    if (after := headers.get("retry-after")) and after.strip().isdigit():
        when = f"retry after {int(after)} s"
    elif (reset := headers.get("x-ratelimit-reset")) and reset.strip().isdigit():
        at = datetime.fromtimestamp(int(reset), tz=timezone.utc)
        wait = max(0, int(reset) - int(time.time()))
        when = f"the limit resets at {at:%Y-%m-%d %H:%M:%S} UTC (in {wait} s)"
    else:
        when = "no reset time given"
    hint = "" if authenticated else "; set GITHUB_TOKEN (or GH_TOKEN) for a higher limit"
    return f"{what}: GitHub API rate limit exceeded (HTTP {resp.status_code}); {when}{hint}"


def _api_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return data["message"][:200]
    except (ValueError, httpx.StreamError):  # not JSON, or the body never arrived
        pass
    return resp.reason_phrase or ""


# --------------------------------------------------------------------------- client

ProgressFactory = Callable[[str, int], "Progress"]


class Progress:
    """Download progress sink; the default prints nothing."""

    def advance(self, n: int) -> None:  # pragma: no cover - trivial
        pass

    def done(self, size: int, seconds: float) -> None:  # pragma: no cover - trivial
        pass

    def close(self) -> None:  # pragma: no cover - trivial
        """Called last, also when the download failed."""


class GitHub:
    """A small GitHub REST client for releases; use as a context manager."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, retries: int = 3, backoff: float = 1.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        base = (base_url or DEFAULT_API).rstrip("/")
        try:
            self.base = httpx.URL(base)
        except httpx.InvalidURL as exc:
            raise BadInput(f"GITHUB_API_URL={base!r} is not a valid URL ({exc})") from None
        if self.base.scheme not in ("http", "https") or not self.base.host:
            raise BadInput(f"GITHUB_API_URL={base!r} is not an http(s) URL")
        self._token = token or None
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self._api_origin = _origin(self.base)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # followed in _send, which decides where the token goes
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            trust_env=False,  # no proxy or .netrc credentials sneaking in
        )

    @classmethod
    def from_env(cls, **kwargs: object) -> GitHub:
        token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN") or None
        return cls(
            os.environ.get("GITHUB_API_URL") or DEFAULT_API,
            token,
            timeout=_env_float("COMFYIMG_HTTP_TIMEOUT", 30.0),
            retries=int(_env_float("COMFYIMG_HTTP_RETRIES", 3)),
            backoff=_env_float("COMFYIMG_HTTP_BACKOFF", 1.0),
            **kwargs,  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:  # never the token
        return f"GitHub({str(self.base)!r}, token={'set' if self._token else 'none'})"

    @property
    def authenticated(self) -> bool:
        return self._token is not None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- transport

    def _headers_for(self, url: httpx.URL, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if _origin(url) == self._api_origin:
            headers["X-GitHub-Api-Version"] = API_VERSION
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _send(self, url: httpx.URL, accept: str) -> httpx.Response:
        """GET ``url`` following redirects by hand; the token only ever goes to the API origin."""
        for _ in range(MAX_REDIRECTS + 1):
            request = self._http.build_request("GET", url, headers=self._headers_for(url, accept))
            resp = self._http.send(request, stream=True)
            if resp.status_code in REDIRECTS and "location" in resp.headers:
                location = resp.headers["location"]
                resp.close()
                url = url.join(location)
                if url.scheme not in ("http", "https"):
                    raise WorkFailed(f"refusing a redirect to a {url.scheme!r} URL")
                continue
            return resp
        raise WorkFailed(f"more than {MAX_REDIRECTS} redirects")

    def _get(self, url: str | httpx.URL, *, accept: str = "application/vnd.github+json",
             what: str) -> httpx.Response:
        """GET with bounded retries; returns an open (streamed) 2xx/3xx/4xx response."""
        url = httpx.URL(url)
        last = ""
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                resp = self._send(url, accept)
            except httpx.TimeoutException:
                last = f"timed out (no answer within {self.timeout:g} s)"
                continue
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
                continue
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip()
                resp.close()
                continue
            return resp
        raise WorkFailed(f"{what}: {last}, after {attempts} attempt(s)")

    def _check(self, resp: httpx.Response, what: str) -> None:
        """Raise for a non-2xx response (the body is read for the message)."""
        if resp.status_code < 300:
            return
        try:
            resp.read()
        except httpx.TransportError:
            pass  # the status says enough; _api_message does without the body
        finally:
            resp.close()
        if msg := _rate_limit_message(resp, what, self.authenticated):
            raise WorkFailed(msg)
        if resp.status_code == 404:
            raise NotFound(f"{what}: not found (HTTP 404)")
        if resp.status_code in (401, 403):
            if _origin(resp.url) != self._api_origin:  # the token never goes there
                hint = "refused by the download host; a signed download URL may have expired, try again"
            elif self.authenticated:
                hint = "the token was refused"
            else:
                hint = "no token set (GITHUB_TOKEN / GH_TOKEN)"
            raise WorkFailed(f"{what}: HTTP {resp.status_code} {_api_message(resp)} ({hint})")
        raise WorkFailed(f"{what}: HTTP {resp.status_code} {_api_message(resp)}")

    def _json(self, url: str | httpx.URL, what: str) -> tuple[object, httpx.Response]:
        resp = self._get(url, what=what)
        self._check(resp, what)
        try:
            resp.read()
        except httpx.TimeoutException:
            raise WorkFailed(f"{what}: timed out reading the answer") from None
        except httpx.TransportError as exc:
            raise WorkFailed(f"{what}: connection broke while reading ({type(exc).__name__})") from None
        finally:
            resp.close()
        try:
            return resp.json(), resp
        except ValueError:
            raise WorkFailed(f"{what}: the answer is not JSON") from None

    @staticmethod
    def _release(data: object, what: str) -> Release:
        """A release from the API's JSON; any other shape is a clear failure, not a traceback."""
        try:
            if isinstance(data, dict):
                return Release.from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
        raise WorkFailed(f"{what}: the answer is not a GitHub release object")

    def _api(self, path: str) -> httpx.URL:
        return httpx.URL(str(self.base) + path)

    # ----------------------------------------------------------------- releases

    @staticmethod
    def _repo_path(repo: str) -> str:
        owner, name = repo.split("/", 1)
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def _explain_404(self, repo: str, err: NotFound, missing: str) -> WorkFailed:
        try:
            self._json(self._api(self._repo_path(repo)), f"repository {repo}")
        except NotFound:
            who = "with the token given" if self.authenticated else "without a token (private?)"
            return WorkFailed(f"repository {repo} not found on {self.base.host} {who} (HTTP 404)")
        return WorkFailed(f"{repo}: {missing} (HTTP 404)")

    def release_by_tag(self, repo: str, tag: str) -> Release:
        path = f"{self._repo_path(repo)}/releases/tags/{quote(tag, safe='')}"
        try:
            data, _ = self._json(self._api(path), f"release {tag} of {repo}")
        except NotFound as err:
            raise self._explain_404(repo, err, f"no release with tag {tag!r}") from None
        return self._release(data, f"release {tag} of {repo}")

    def releases(self, repo: str, per_page: int = 100) -> Iterator[Release]:
        """Every release, newest first, following ``Link: rel="next"``."""
        url: httpx.URL | None = self._api(f"{self._repo_path(repo)}/releases?per_page={per_page}")
        pages = 0
        while url is not None:
            pages += 1
            try:
                data, resp = self._json(url, f"releases of {repo} (page {pages})")
            except NotFound as err:
                raise self._explain_404(repo, err, "no releases") from None
            if not isinstance(data, list):
                raise WorkFailed(f"releases of {repo}: expected a JSON list")
            for item in data:
                yield self._release(item, f"releases of {repo} (page {pages})")
            nxt = resp.links.get("next", {}).get("url")
            url = resp.url.join(nxt) if nxt else None

    def latest_release(self, repo: str, *, pre: bool = False) -> Release:
        """The latest release; with ``pre``, the newest non-draft one, prereleases included."""
        if pre:
            for release in self.releases(repo):
                if not release.draft:
                    return release
            raise WorkFailed(f"{repo} has no published release")
        try:
            data, _ = self._json(self._api(f"{self._repo_path(repo)}/releases/latest"),
                                 f"latest release of {repo}")
        except NotFound as err:
            raise self._explain_404(
                repo, err, "no latest release (none published, or only prereleases: try --pre)"
            ) from None
        return self._release(data, f"latest release of {repo}")

    # ----------------------------------------------------------------- downloads

    def _open_asset(self, asset: Asset) -> httpx.Response:
        what = f"download of {asset.name}"
        if asset.url:
            resp = self._get(asset.url, accept="application/octet-stream", what=what)
        elif asset.browser_download_url:
            resp = self._get(asset.browser_download_url, accept="application/octet-stream", what=what)
        else:
            raise WorkFailed(f"{what}: the release lists no URL for it")
        self._check(resp, what)
        return resp

    def download(self, asset: Asset, dest: Path,
                 progress: Callable[[str, int], Progress] | None = None) -> Download:
        """Stream ``asset`` into ``dest``, hashing as it goes; a short read fails."""
        what = f"download of {asset.name}"
        start = time.monotonic()
        resp = self._open_asset(asset)
        try:
            announced = resp.headers.get("content-length")
            expected = asset.size or None
            if announced is not None and announced.isdigit():
                if expected is not None and int(announced) != expected:
                    raise WorkFailed(f"{what}: the server sends {int(announced)} bytes, "
                                     f"the release lists {expected}")
                expected = int(announced)
            sink = progress(asset.name, expected or 0) if progress else Progress()
            digest = digests.Hasher()
            try:
                with open(dest, "wb") as fh:
                    for chunk in resp.iter_raw():  # ≤ 64 KiB each: memory stays flat
                        fh.write(chunk)
                        digest.update(chunk)
                        sink.advance(len(chunk))
            except httpx.TimeoutException:
                sink.close()
                raise WorkFailed(f"{what}: timed out after {digest.size} of "
                                 f"{expected if expected is not None else '?'} bytes") from None
            except httpx.TransportError as exc:
                sink.close()
                raise WorkFailed(f"{what}: truncated: the connection broke after {digest.size} of "
                                 f"{expected if expected is not None else '?'} bytes "
                                 f"({type(exc).__name__})") from None
        finally:
            resp.close()
        sink.close()
        if expected is not None and digest.size != expected:
            raise WorkFailed(f"{what}: truncated: received {digest.size} of {expected} bytes")
        seconds = time.monotonic() - start
        sink.done(digest.size, seconds)
        return Download(dest, digest.hexdigest(), digest.size, seconds)

    def fetch_small(self, asset: Asset, limit: int = 1 << 20) -> bytes:
        """The bytes of a small asset (a checksum file), at most ``limit``."""
        what = f"download of {asset.name}"
        if asset.size > limit:
            raise WorkFailed(f"{what}: {asset.size} bytes is too large for a checksum file")
        resp = self._open_asset(asset)
        try:
            data = bytearray()
            for chunk in resp.iter_raw(CHUNK):
                data += chunk
                if len(data) > limit:
                    raise WorkFailed(f"{what}: larger than {limit} bytes")
        except httpx.TransportError as exc:
            raise WorkFailed(f"{what}: broke after {len(data)} bytes ({type(exc).__name__})") from None
        finally:
            resp.close()
        if asset.size and len(data) != asset.size:
            raise WorkFailed(f"{what}: truncated: received {len(data)} of {asset.size} bytes")
        return bytes(data)


__all__ = ["Asset", "Download", "GitHub", "NotFound", "Progress", "Release", "_human"]
