"""GitHub REST calls for releases and their assets: the models and the three queries.

* Base URL from ``GITHUB_API_URL`` (default ``https://api.github.com``, the GitHub Actions
  convention); token from ``GITHUB_TOKEN`` or ``GH_TOKEN`` (optional).
* Where the token goes, retries and error lines: :mod:`comfyimg.transport`; streamed,
  hashed downloads: :mod:`comfyimg.download`.

Tuning for tests and slow links, all optional: ``COMFYIMG_HTTP_TIMEOUT`` (seconds per
connect/read, default 30), ``COMFYIMG_HTTP_DEADLINE`` (seconds for one whole request,
retries, headers and body included, default 120, 1 to 3600; a download gets its announced
size at ``COMFYIMG_HTTP_MIN_RATE`` bytes/s on top, default 500000), ``COMFYIMG_HTTP_TRUST_ENV``
(1: honour proxy settings; default 0), ``COMFYIMG_HTTP_MAX_BYTES``
(decoded bytes of one answer, default 4 GiB, 1 KiB to 64 GiB; JSON answers are held to
32 MiB), ``COMFYIMG_HTTP_RETRIES`` (extra attempts, default 3),
``COMFYIMG_HTTP_BACKOFF`` (first backoff in seconds, doubling, default 1).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from comfyimg.sources import digests
from comfyimg.sources import download as download_mod
from comfyimg.sources.download import Download
from comfyimg.net.transport import NotFound, Transport, token_problem
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.output import Progress
from comfyimg.pins.fields import tag_problem
from comfyimg.untrusted import add_secret

DEFAULT_API = "https://api.github.com"


# --------------------------------------------------------------------------- model


# The one schema of the API's JSON: every field read through these, a bad shape is a
# ValueError naming the field (``assets[3].size: ...``), turned into one line by GitHub._release.

MAX_ID = 2**53  # GitHub ids are JSON numbers JavaScript can hold
MAX_SIZE = 1 << 40  # 1 TiB: larger is not an asset size
MAX_TEXT = 4096


def _int(data: dict, key: str, where: str, *, low: int = 0, high: int = MAX_ID, default: int = 0) -> int:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (isinstance(value, float) and (not math.isfinite(value) or value != int(value))):
        raise ValueError(f"{where}{key}: {str(value)[:40]!r} is not a whole number")
    if not low <= value <= high:
        raise ValueError(f"{where}{key}: {value:g} is out of range; expected a whole number from {low} to {high}")
    return int(value)


def _str(data: dict, key: str, where: str, *, required: bool = False, line: bool = True) -> str:
    value = data.get(key)
    if value is None:
        if required:
            raise ValueError(f"{where}{key}: missing or null")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{where}{key}: {type(value).__name__}, not a string")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{where}{key}: longer than {MAX_TEXT} characters")
    if line and any(c in value for c in "\r\n\x00\u2028\u2029\x85"):
        raise ValueError(f"{where}{key}: {value[:60]!r} contains a line break or NUL")
    return value


def _bool(data: dict, key: str, where: str) -> bool:
    value = data.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"{where}{key}: {str(value)[:40]!r} is not true or false")
    return value


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
    digest_from: str = "api"  # who vouches for ``digest``: "api", "index", …

    @classmethod
    def from_json(cls, data: object, where: str = "") -> Asset:
        if not isinstance(data, dict):
            raise ValueError(f"{where.rstrip('.')}: {type(data).__name__}, not an object")
        return cls(
            id=_int(data, "id", where),
            name=_str(data, "name", where, required=True),
            size=_int(data, "size", where, high=MAX_SIZE),
            digest=digests.from_api(_str(data, "digest", where) or None),
            url=_str(data, "url", where),
            browser_download_url=_str(data, "browser_download_url", where),
            content_type=_str(data, "content_type", where),
            state=_str(data, "state", where) or "uploaded",
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
        tag = data.get("tag_name")
        if not isinstance(tag, str):
            raise ValueError(f"its tag_name is {'null' if tag is None else type(tag).__name__}, not a string")
        if why := tag_problem(tag):
            raise ValueError(f"its tag_name {tag!r} is not a git tag name: it {why}")
        assets = data.get("assets") or []
        if not isinstance(assets, list):
            raise ValueError(f"assets: {type(assets).__name__}, not a list")
        return cls(
            id=_int(data, "id", ""),
            tag=tag,
            name=_str(data, "name", ""),
            draft=_bool(data, "draft", ""),
            prerelease=_bool(data, "prerelease", ""),
            published_at=_str(data, "published_at", "") or None,
            assets=tuple(Asset.from_json(a, f"assets[{i}].") for i, a in enumerate(assets)),
        )


# --------------------------------------------------------------------------- client


# name: (default, smallest, largest, whole numbers only)
SETTINGS = {
    "COMFYIMG_HTTP_TIMEOUT": (30.0, 0.1, 600.0, False),
    "COMFYIMG_HTTP_RETRIES": (3, 0, 10, True),
    "COMFYIMG_HTTP_BACKOFF": (1.0, 0.0, 60.0, False),
    "COMFYIMG_HTTP_DEADLINE": (120.0, 1.0, 3600.0, False),
    "COMFYIMG_HTTP_MIN_RATE": (500_000.0, 1_000.0, 1e10, False),
    "COMFYIMG_HTTP_TRUST_ENV": (0, 0, 1, True),
    "COMFYIMG_HTTP_MAX_BYTES": (4 << 30, 1 << 10, 64 << 30, True),
}
MAX_PAGES = 50  # 5,000 releases at 100 a page


def _setting(name: str) -> float:
    default, low, high, whole = SETTINGS[name]
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise BadInput(f"{name}={raw!r} is out of range; expected {kind} from {low:g} to {high:g}")
    return int(value) if whole else value


class GitHub:
    """A small GitHub REST client for releases; use as a context manager."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, retries: int = 3, backoff: float = 1.0,
                 deadline: float = 120.0, min_rate: float = 500_000.0, max_bytes: int = 4 << 30,
                 transport: httpx.BaseTransport | None = None, trust_env: bool = False,
                 notice: Callable[[str], None] | None = None) -> None:
        self.http = Transport(base_url or DEFAULT_API, token, timeout=timeout, retries=retries,
                              backoff=backoff, deadline=deadline, min_rate=min_rate, max_bytes=max_bytes,
                              transport=transport, trust_env=trust_env, notice=notice)
        self.base = self.http.base
        self.retries = self.http.retries

    @classmethod
    def from_env(cls, **kwargs: object) -> GitHub:
        var = "GITHUB_TOKEN" if os.environ.get("GITHUB_TOKEN") else "GH_TOKEN"
        token = os.environ.get(var) or None
        add_secret(token)
        if token and (why := token_problem(token)):
            raise BadInput(f"{var} {why}; the value is not shown. Set {var} to the token alone")
        return cls(
            os.environ.get("GITHUB_API_URL") or DEFAULT_API,
            token,
            timeout=_setting("COMFYIMG_HTTP_TIMEOUT"),
            retries=int(_setting("COMFYIMG_HTTP_RETRIES")),
            backoff=_setting("COMFYIMG_HTTP_BACKOFF"),
            deadline=_setting("COMFYIMG_HTTP_DEADLINE"),
            min_rate=_setting("COMFYIMG_HTTP_MIN_RATE"),
            trust_env=bool(_setting("COMFYIMG_HTTP_TRUST_ENV")),
            max_bytes=int(_setting("COMFYIMG_HTTP_MAX_BYTES")),
            **kwargs,  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:  # never the token
        return f"GitHub({str(self.base)!r}, token={'set' if self.authenticated else 'none'})"

    @property
    def authenticated(self) -> bool:
        return self.http.authenticated

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GitHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _release(data: object, what: str) -> Release:
        """A release from the API's JSON; any other shape is a clear failure, not a traceback."""
        why = ""
        try:
            if isinstance(data, dict):
                return Release.from_json(data)
        except ValueError as exc:
            why = f" ({exc})"
        raise WorkFailed(f"{what}: the answer is not a GitHub release object{why}")

    # ----------------------------------------------------------------- releases

    @staticmethod
    def _repo_path(repo: str) -> str:
        owner, name = repo.split("/", 1)
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    def _explain_404(self, repo: str, err: NotFound, missing: str) -> WorkFailed:
        try:
            self.http.json(self.http.api(self._repo_path(repo)), f"repository {repo}")
        except NotFound:
            who = "with the token given" if self.authenticated else "without a token (private?)"
            return WorkFailed(f"repository {repo} not found on {self.base.host} {who} (HTTP 404)")
        return WorkFailed(f"{repo}: {missing} (HTTP 404)")

    def release_by_tag(self, repo: str, tag: str) -> Release:
        if why := tag_problem(tag):
            raise BadInput(f"--release {tag!r} is not a git tag name: it {why}")
        path = f"{self._repo_path(repo)}/releases/tags/{quote(tag, safe='')}"
        try:
            data, _ = self.http.json(self.http.api(path), f"release {tag} of {repo}")
        except NotFound as err:
            raise self._explain_404(repo, err, f"no release with tag {tag!r}") from None
        got = self._release(data, f"release {tag} of {repo}")
        if got.tag != tag:
            raise WorkFailed(f"release {tag} of {repo}: asked for release {tag}, the server answered "
                             f"{got.tag!r}; nothing was written")
        return got

    def releases(self, repo: str, per_page: int = 100) -> Iterator[Release]:
        """Every release, newest first, following ``Link: rel="next"``."""
        url: httpx.URL | None = self.http.api(f"{self._repo_path(repo)}/releases?per_page={per_page}")
        pages = 0
        seen: set[str] = set()
        while url is not None:
            pages += 1
            if str(url) in seen:
                raise WorkFailed(f"releases of {repo}: the server's rel=\"next\" links loop back to "
                                 f"{url} (page {pages}); stopped")
            if pages > MAX_PAGES:
                raise WorkFailed(f"releases of {repo}: more than {MAX_PAGES} pages of releases; stopped "
                                 "(name the release with --release TAG)")
            seen.add(str(url))
            try:
                data, resp = self.http.json(url, f"releases of {repo} (page {pages})")
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
            data, _ = self.http.json(self.http.api(f"{self._repo_path(repo)}/releases/latest"),
                                 f"latest release of {repo}")
        except NotFound as err:
            raise self._explain_404(
                repo, err, "no latest release (none published, or only prereleases: try --pre)"
            ) from None
        return self._release(data, f"latest release of {repo}")

    # ----------------------------------------------------------------- downloads

    def download(self, asset: Asset, dest: Path,
                 progress: Callable[[str, int], Progress] | None = None) -> Download:
        return download_mod.download(self.http, asset, dest, progress)

    def fetch_small(self, asset: Asset, limit: int = 1 << 20) -> bytes:
        return download_mod.fetch_small(self.http, asset, limit)


@contextlib.contextmanager
def borrowed(client: GitHub | None, notice: Callable[[str], None] | None = None) -> Iterator[GitHub]:
    """``client`` as it is (the caller closes it), or one from the environment, closed at the end;
    ``notice`` is told each retry."""
    if client is not None:
        yield client
        return
    with GitHub.from_env(notice=notice) as own:
        yield own


__all__ = ["Asset", "Download", "GitHub", "NotFound", "Release"]
