"""A package index as a source of wheels: the PEP 503 simple page (HTML) or its PEP 691
JSON form, read into the :class:`~comfyimg.releases.Release` shape that ``invoke bump``
selects from.

* ``GET {index}/{normalized project}/`` with ``Accept`` preferring PEP 691 JSON; the
  answer's ``Content-Type`` decides which of the two is parsed.
* Each file's sha256 comes from the ``#sha256=`` fragment (HTML) or ``hashes.sha256``
  (JSON); it is the file's ``digest``, checked against the bytes whenever they are
  downloaded (``--verify``, or to read kernel coverage).
* PEP 592 yanked files (``data-yanked``, ``"yanked"``) are listed with the state
  ``yanked``, so selection rejects them by name instead of silently dropping them.
* The page is read through :mod:`comfyimg.transport` (retries, timeouts; no token leaves
  the API origin) and is capped at :data:`MAX_PAGE` bytes.
"""

from __future__ import annotations

import html.parser
import json
from dataclasses import dataclass

import httpx
from packaging.utils import canonicalize_name

from comfyimg.sources.digests import SHA256_HEX
from comfyimg.sources.github import Asset, Release
from comfyimg.net.transport import Transport
from comfyimg.errors import WorkFailed
from comfyimg.untrusted import strip_credentials

PEP691 = "application/vnd.pypi.simple.v1+json"
PEP503_HTML = "application/vnd.pypi.simple.v1+html"
ACCEPT = f"{PEP691}, {PEP503_HTML};q=0.2, text/html;q=0.01"
MAX_PAGE = 32 << 20  # a project page larger than this is not a wheel index page


@dataclass(frozen=True)
class IndexFile:
    filename: str
    url: str  # absolute, without the fragment
    sha256: str | None
    yanked: bool


def page_url(index: str, project: str) -> str:
    return f"{index.rstrip('/')}/{canonicalize_name(project)}/"


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), ""

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, self._text.strip()))
            self._open = None


def _split_hash(url: httpx.URL) -> tuple[str, str | None]:
    """(the URL without its fragment, the sha256 named by ``#sha256=…`` or None)."""
    fragment = url.fragment
    bare = str(url.copy_with(fragment=None))
    name, _, value = fragment.partition("=")
    if name == "sha256" and SHA256_HEX.fullmatch(value.lower()):
        return bare, value.lower()
    return bare, None


def parse_html(text: str, base: str) -> list[IndexFile]:
    """The files of a PEP 503 project page (relative links resolved against ``base``)."""
    parser = _Links()
    parser.feed(text)
    parser.close()
    files = []
    base_url = httpx.URL(base)
    for attrs, text_ in parser.anchors:
        href = attrs.get("href")
        if not href:
            continue
        try:
            url = base_url.join(href)
        except httpx.InvalidURL:
            continue
        bare, sha256 = _split_hash(url)
        filename = text_ or bare.rsplit("/", 1)[-1]
        files.append(IndexFile(filename, bare, sha256, "data-yanked" in attrs))
    return files


def parse_json(data: object, base: str) -> list[IndexFile]:
    """The files of a PEP 691 project answer."""
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ValueError("not a PEP 691 project answer (no 'files' list)")
    base_url = httpx.URL(base)
    files = []
    for entry in data["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str) \
                or not isinstance(entry.get("url"), str):
            raise ValueError("a file entry without a 'filename' and 'url' string")
        bare, from_fragment = _split_hash(base_url.join(entry["url"]))
        hashes = entry.get("hashes")
        sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
        sha256 = sha256.lower() if isinstance(sha256, str) and SHA256_HEX.fullmatch(sha256.lower()) \
            else from_fragment
        yanked = entry.get("yanked", False)
        files.append(IndexFile(entry["filename"], bare, sha256, yanked is not False and yanked is not None))
    return files


def _read(http: Transport, url: str, what: str) -> tuple[bytes, str, str]:
    """(the body, the final URL after redirects, the Content-Type)."""
    resp = http.get(url, accept=ACCEPT, what=what)
    http.check(resp, what)
    body = http.read(resp, MAX_PAGE, what, "the page")  # within the deadline; closes the response
    return body, str(resp.url), resp.headers.get("content-type", "")


def project_files(http: Transport, index: str, project: str) -> list[IndexFile]:
    """Every file the index lists for ``project``."""
    url = page_url(index, project)
    what = f"index page {url}"
    body, final, raw_type = _read(http, url, what)
    ctype = raw_type.split(";", 1)[0].strip().lower()  # it decides: JSON (PEP 691) or HTML (PEP 503)
    try:
        if ctype == PEP691 or ctype.endswith("+json") or ctype == "application/json":
            return parse_json(json.loads(body), final)
        return parse_html(body.decode("utf-8", "replace"), final)
    except (ValueError, RecursionError) as exc:
        raise WorkFailed(f"{what}: cannot read the {'JSON' if 'json' in ctype else 'HTML'} page: {exc}") from None


def as_release(files: list[IndexFile], index: str, project: str) -> Release:
    """The files as the assets of one pseudo-release, which ``invoke bump`` selects from."""
    assets = tuple(
        Asset(id=n, name=f.filename, size=0, digest=f.sha256, url=f.url, browser_download_url=strip_credentials(f.url),
              content_type="", state="yanked" if f.yanked else "uploaded", digest_from="index")
        for n, f in enumerate(files, 1))
    return Release(id=0, tag=f"index page {page_url(index, project)}", name=project, draft=False,
                   prerelease=False, published_at=None, assets=assets)


__all__ = ["ACCEPT", "IndexFile", "PEP691", "as_release", "page_url", "parse_html", "parse_json",
           "project_files"]
