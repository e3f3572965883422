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

import html
import re
import urllib.parse
from dataclasses import dataclass

from packaging.utils import canonicalize_name

from comfyimg.sources.digests import SHA256_HEX
from comfyimg.sources.github import Asset, Release
from comfyimg.net.transport import Transport
from comfyimg.errors import WorkFailed
from comfyimg.untrusted import loads_json, one_line, strip_credentials

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


# The anchors of a PEP 503 page, found by a linear scan instead of html.parser, which goes
# quadratic on hostile pages (a 300 KB page of unclosed tags took minutes): each regex search
# starts where the last one ended and never looks back, so the whole page is read a bounded
# number of times (bench/index_parse.py: the cost on a 32 MiB page). A tag that does not close
# stops the scan as a malformed page: one line, never a hang.
_A_OPEN = re.compile(r"<a(?=[\s>/])", re.I)
_TAG_REST = re.compile(r"""(?:[^>"']|"[^"]*"|'[^']*')*>""")  # alternatives by first char: no backtracking
_A_CLOSE = re.compile(r"</a\s*>", re.I)
_ATTR = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_META_VERSION = re.compile(r"""<meta\s[^>]{0,200}?name\s*=\s*["']pypi:repository-version["'][^>]{0,200}>""", re.I)
_CONTENT = re.compile(r"""content\s*=\s*["']([^"']*)["']""", re.I)
SUPPORTED_MAJOR = 1  # PEP 629 / PEP 691: a client refuses a major version it does not know


def anchors(text: str) -> list[tuple[dict[str, str | None], str]]:
    """Each ``<a …>text</a>`` of the page: (its attributes, lower-cased names; its text)."""
    found: list[tuple[dict[str, str | None], str]] = []
    pos = 0
    while m := _A_OPEN.search(text, pos):
        rest = _TAG_REST.match(text, m.end())
        if rest is None:
            raise ValueError(f"an <a> tag at offset {m.start()} does not close")
        attrs: dict[str, str | None] = {}
        for name, value in _ATTR.findall(text, m.end(), rest.end() - 1):
            if value[:1] in ("'", '"'):
                value = value[1:-1]
            attrs[name.lower()] = html.unescape(value) if value else None
        close = _A_CLOSE.search(text, rest.end())
        if close is None:
            raise ValueError(f"the <a> at offset {m.start()} has no </a>")
        found.append((attrs, html.unescape(text[rest.end():close.start()]).strip()))
        pos = close.end()
    return found


def check_api_version(version: object, where: str) -> None:
    """PEP 629 (``pypi:repository-version``) and PEP 691 (``meta.api-version``): a major version
    other than 1 is refused; a minor one above ours is read (the PEPs say: warn, go on)."""
    if version is None:
        return
    major = str(version).split(".", 1)[0].strip()
    if not major.isdigit() or int(major) != SUPPORTED_MAJOR:
        raise ValueError(f"{where} {one_line(str(version))[:40]}: this client reads API version "
                         f"{SUPPORTED_MAJOR}.x only (PEP 629/691)")


def _resolve(base: str, href: str, folders: dict[str, str] | None = None) -> tuple[str, str | None]:
    """(``href`` resolved against ``base``, without its fragment; the sha256 named by
    ``#sha256=…`` or None). urllib's join, once per folder of a page (``folders``): httpx's
    join costs 0.4 ms a link, 60 s on a 32 MiB page."""
    path, _, fragment = href.strip().partition("#")
    folder, slash, name = path.rpartition("/")
    folder += slash or "./"
    if folders is not None and name not in ("", ".", "..") and "?" not in path and ":" not in name:
        if folder not in folders:
            folders[folder] = urllib.parse.urljoin(base, folder)
        bare = folders[folder] + name
    else:
        bare = urllib.parse.urldefrag(urllib.parse.urljoin(base, path))[0]
    name, _, value = fragment.partition("=")
    if name == "sha256" and SHA256_HEX.fullmatch(value.lower()):
        return bare, value.lower()
    return bare, None


def parse_html(text: str, base: str) -> list[IndexFile]:
    """The files of a PEP 503 project page (relative links resolved against ``base``)."""
    meta = _META_VERSION.search(text, 0, 65536)  # in the head; bounded, so never quadratic
    if meta is not None:
        content = _CONTENT.search(meta.group(0))
        check_api_version(content.group(1) if content else "", "pypi:repository-version")
    files = []
    folders: dict[str, str] = {}
    for attrs, text_ in anchors(text):
        href = attrs.get("href")
        if not href:
            continue
        try:
            bare, sha256 = _resolve(base, href, folders)
        except ValueError:  # a malformed URL (an unbalanced IPv6 bracket): not a file of ours
            continue
        filename = one_line(text_ or bare.rsplit("/", 1)[-1])[:300]  # printed in tables and errors: one line
        files.append(IndexFile(filename, bare, sha256, "data-yanked" in attrs))
    return files


def parse_json(data: object, base: str) -> list[IndexFile]:
    """The files of a PEP 691 project answer."""
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ValueError("not a PEP 691 project answer (no 'files' list)")
    meta = data.get("meta")
    check_api_version(meta.get("api-version") if isinstance(meta, dict) else None, "meta.api-version")
    files = []
    for entry in data["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str) \
                or not isinstance(entry.get("url"), str):
            raise ValueError("a file entry without a 'filename' and 'url' string")
        try:
            bare, from_fragment = _resolve(base, entry["url"])
        except ValueError:
            raise ValueError(f"file {one_line(entry['filename'])[:200]}: its url is not a URL") from None
        hashes = entry.get("hashes")
        sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
        sha256 = sha256.lower() if isinstance(sha256, str) and SHA256_HEX.fullmatch(sha256.lower()) \
            else from_fragment
        yanked = entry.get("yanked", False)
        files.append(IndexFile(one_line(entry["filename"])[:300], bare, sha256, yanked is not False and yanked is not None))
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
            return parse_json(loads_json(body), final)
        return parse_html(body.decode("utf-8", "replace"), final)
    except (ValueError, RecursionError) as exc:
        raise WorkFailed(f"{what}: cannot read the {'JSON' if 'json' in ctype else 'HTML'} page: "
                         f"{one_line(str(exc))[:300]}") from None


def as_release(files: list[IndexFile], index: str, project: str) -> Release:
    """The files as the assets of one pseudo-release, which ``invoke bump`` selects from."""
    assets = tuple(
        Asset(id=n, name=f.filename, size=0, digest=f.sha256, url=f.url, browser_download_url=strip_credentials(f.url),
              content_type="", state="yanked" if f.yanked else "uploaded", digest_from="index")
        for n, f in enumerate(files, 1))
    return Release(id=0, tag=f"index page {page_url(index, project)}", name=project, draft=False,
                   prerelease=False, published_at=None, assets=assets)


__all__ = ["ACCEPT", "IndexFile", "PEP691", "SUPPORTED_MAJOR", "anchors", "as_release", "check_api_version", "page_url", "parse_html", "parse_json",
           "project_files"]
