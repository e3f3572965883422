"""A fake GitHub release API on real loopback sockets (stdlib ``http.server``).

* The API server on 127.0.0.1 answers ``/repos/{o}/{r}``, ``…/releases`` (paginated with a
  ``Link`` header), ``…/releases/latest``, ``…/releases/tags/{tag}``,
  ``…/releases/assets/{id}`` and ``…/commits/{tag}`` (a release's ``commit``) in GitHub's
  JSON shapes.
* ``browser_download_url`` points at a third server on **127.0.0.3** (github.com's role,
  another origin than the API, as on GitHub): ``/{o}/{r}/releases/download/{tag}/{name}``.
* Asset bytes are never served by the API server: with ``Accept: application/octet-stream``
  it answers ``302`` to a second server on **127.0.0.2** (the storage host), like GitHub's
  redirect to its object store.  The storage host must never see the token.
* Every request is logged (server, path, headers, body bytes sent) for assertions, and
  faults can be injected per path: a status (5xx, rate limit), a delay, a truncated body,
  a slowloris (``drip``: the body, or with ``headers=True`` the header lines, one byte per
  ``seconds``, for up to ``DRIP_FOR`` seconds) and a compression bomb (``bomb``: ``body``
  sent with ``Content-Encoding: gzip``, see :func:`gzip_bomb`).

Used by ``tests/http`` and by ``bench/bump_*.py``.
"""

from __future__ import annotations

import hashlib
import json
import zlib
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

AUTO = "auto"
DRIP_FOR = 120.0  # seconds a drip goes on at most (the client should give up long before)


def gzip_bomb(decoded: int, byte: bytes = b"[") -> bytes:
    """A gzip stream of ``decoded`` copies of ``byte`` (1 GiB of one byte is about 1 MiB)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = byte * (1 << 20)
    parts = [z.compress(block) for _ in range(decoded >> 20)]
    parts.append(z.compress(byte * (decoded & ((1 << 20) - 1))))
    return b"".join(parts) + z.flush()


@dataclass
class FakeAsset:
    name: str
    path: Path | None = None  # served from disk (large files)
    data: bytes | None = None  # or from memory
    digest: str | None = AUTO  # AUTO: the real "sha256:…"; None: null; else given verbatim
    state: str = "uploaded"
    content_type: str = "application/octet-stream"
    id: int = 0

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.data or b"")

    def sha256(self) -> str:
        h = hashlib.sha256()
        if self.path is not None:
            with open(self.path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(self.data or b"")
        return h.hexdigest()


@dataclass
class FakeRelease:
    tag: str
    assets: list[FakeAsset]
    draft: bool = False
    prerelease: bool = False
    published_at: str | None = "2026-01-01T00:00:00Z"
    name: str = ""
    id: int = 0
    commit: str | None = None  # the commit its tag points at (GET …/commits/{tag})


@dataclass
class Fault:
    pattern: str  # re.search on "SERVER PATH", e.g. "api /repos/o/r/releases/latest"
    kind: str  # "status" | "sleep" | "truncate" (storage bytes cut short) | "drip" | "bomb"
    times: int = 1_000_000
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    fraction: float = 0.5
    body: bytes | None = None  # "status": the raw body (default {"message": "fault N"})
    short: bool = False  # "status": announce the whole body, send half of it, close
    drip_headers: bool = False  # "drip": drip the header lines instead of the body


@dataclass
class Logged:
    server: str  # "api", "web" (browser downloads) or "storage"
    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGitHub/1.0"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        fake: FakeGitHub = self.server.fake  # type: ignore[attr-defined]
        role: str = self.server.role  # type: ignore[attr-defined]
        try:
            fake._handle(role, self)
        except (BrokenPipeError, ConnectionResetError):
            pass


class FakeGitHub:
    def __init__(self, per_page: int = 2, api_host: str = "127.0.0.1",
                 storage_host: str = "127.0.0.2", web_host: str = "127.0.0.3") -> None:
        self.per_page_max = per_page
        self.repos: dict[str, list[FakeRelease]] = {}
        self.log: list[Logged] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._next_id = 1000
        self._api = _Server((api_host, 0), _Handler)
        self._api.fake, self._api.role = self, "api"  # type: ignore[attr-defined]
        self._storage = _Server((storage_host, 0), _Handler)
        self._storage.fake, self._storage.role = self, "storage"  # type: ignore[attr-defined]
        self._web = _Server((web_host, 0), _Handler)
        self._web.fake, self._web.role = self, "web"  # type: ignore[attr-defined]
        self.api_url = f"http://{api_host}:{self._api.server_address[1]}"
        self.web_url = f"http://{web_host}:{self._web.server_address[1]}"
        self.storage_url = f"http://{storage_host}:{self._storage.server_address[1]}"
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- setup

    def add_repo(self, repo: str) -> None:
        self.repos.setdefault(repo, [])

    def add_release(self, repo: str, release: FakeRelease) -> FakeRelease:
        """Append ``release``; list releases newest first (GitHub's order)."""
        with self._lock:
            release.id = release.id or self._new_id()
            for asset in release.assets:
                asset.id = asset.id or self._new_id()
            self.repos.setdefault(repo, []).append(release)
        return release

    def fault(self, pattern: str, kind: str = "status", **kwargs: object) -> Fault:
        f = Fault(pattern, kind, **kwargs)  # type: ignore[arg-type]
        self.faults.append(f)
        return f

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def start(self) -> FakeGitHub:
        for srv in (self._api, self._storage, self._web):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in (self._api, self._storage, self._web):
            srv.shutdown()
            srv.server_close()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- queries for tests

    def requests(self, server: str | None = None) -> list[Logged]:
        with self._lock:
            return [r for r in self.log if server is None or r.server == server]

    def storage_bytes(self) -> int:
        return sum(r.body_bytes for r in self.requests("storage"))

    def asset_bytes_served(self, suffix: str = ".whl") -> int:
        """Bytes of files ending in ``suffix`` sent by either server."""
        return sum(r.body_bytes for r in self.requests() if r.path.endswith(suffix))

    # ----------------------------------------------------------------- JSON shapes

    def asset_json(self, repo: str, rel: FakeRelease, a: FakeAsset) -> dict:
        digest = f"sha256:{a.sha256()}" if a.digest == AUTO else a.digest
        return {
            "url": f"{self.api_url}/repos/{repo}/releases/assets/{a.id}",
            "id": a.id,
            "node_id": f"RA_{a.id}",
            "name": a.name,
            "label": "",
            "uploader": {"login": "builder", "id": 1, "type": "Bot"},
            "content_type": a.content_type,
            "state": a.state,
            "size": a.size,
            "digest": digest,
            "download_count": 0,
            "created_at": rel.published_at,
            "updated_at": rel.published_at,
            "browser_download_url": f"{self.web_url}/{repo}/releases/download/{rel.tag}/{a.name}",
        }

    def release_json(self, repo: str, rel: FakeRelease) -> dict:
        base = f"{self.api_url}/repos/{repo}/releases/{rel.id}"
        return {
            "url": base,
            "assets_url": f"{base}/assets",
            "upload_url": f"{base}/assets{{?name,label}}",
            "html_url": f"{self.web_url}/{repo}/releases/tag/{rel.tag}",
            "id": rel.id,
            "node_id": f"RE_{rel.id}",
            "author": {"login": "builder", "id": 1, "type": "Bot"},
            "tag_name": rel.tag,
            "target_commitish": "main",
            "name": rel.name or rel.tag,
            "draft": rel.draft,
            "prerelease": rel.prerelease,
            "created_at": rel.published_at,
            "published_at": None if rel.draft else rel.published_at,
            "assets": [self.asset_json(repo, rel, a) for a in rel.assets],
            "tarball_url": f"{self.api_url}/repos/{repo}/tarball/{rel.tag}",
            "zipball_url": f"{self.api_url}/repos/{repo}/zipball/{rel.tag}",
            "body": f"Release {rel.tag}",
        }

    # ----------------------------------------------------------------- serving

    def _send(self, h: BaseHTTPRequestHandler, entry: Logged, status: int, body: bytes = b"",
              headers: dict[str, str] | None = None, content_type: str = "application/json") -> None:
        entry.status = status
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
        entry.body_bytes += len(body)

    def _json(self, h: BaseHTTPRequestHandler, entry: Logged, data: object, status: int = 200,
              headers: dict[str, str] | None = None) -> None:
        self._send(h, entry, status, json.dumps(data).encode(), headers)

    def _not_found(self, h: BaseHTTPRequestHandler, entry: Logged) -> None:
        self._json(h, entry, {"message": "Not Found",
                              "documentation_url": "https://docs.github.com/rest", "status": "404"}, 404)

    def _fault_for(self, key: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.times > 0 and re.search(f.pattern, key):
                    f.times -= 1
                    return f
        return None

    def _handle(self, role: str, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        entry = Logged(role, h.command, path, parts.query, {k.lower(): v for k, v in h.headers.items()})
        with self._lock:
            self.log.append(entry)
        fault = self._fault_for(f"{role} {path}")
        if fault and fault.kind == "drip":
            return self._drip(h, entry, fault)
        if fault and fault.kind == "bomb":
            return self._send(h, entry, 200, fault.body or b"", {"Content-Encoding": "gzip"})
        if fault and fault.kind == "sleep":
            time.sleep(fault.seconds)
        elif fault and fault.kind == "status":
            body = fault.body if fault.body is not None else json.dumps({"message": f"fault {fault.status}"}).encode()
            if fault.short:
                entry.status = fault.status
                h.send_response(fault.status)
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body[: len(body) // 2])
                h.wfile.flush()
                h.close_connection = True
            else:
                self._send(h, entry, fault.status, body, fault.headers)
            return
        if role == "storage":
            self._storage_get(h, entry, path, fault)
        elif role == "web":
            self._web_get(h, entry, path)
        else:
            self._api_get(h, entry, path, parts.query)

    def _drip(self, h: BaseHTTPRequestHandler, entry: Logged, fault: Fault) -> None:
        """One byte per ``fault.seconds``: of endless header lines, or of a body that never ends."""
        entry.status = 200
        end = time.monotonic() + DRIP_FOR
        if fault.drip_headers:
            h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            unit = b"a"
        else:
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Connection", "close")  # the body ends when the connection does
            h.end_headers()
            unit = b" "
        h.close_connection = True
        while time.monotonic() < end:
            h.wfile.write(unit)
            h.wfile.flush()
            entry.body_bytes += 1
            time.sleep(fault.seconds)

    def _find(self, repo: str) -> list[FakeRelease] | None:
        return self.repos.get(repo)

    def _api_get(self, h: BaseHTTPRequestHandler, entry: Logged, path: str, query: str) -> None:
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)", path):
            if self._find(m[1]) is None:
                return self._not_found(h, entry)
            return self._json(h, entry, {"id": 1, "full_name": m[1], "private": False})
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/releases", path):
            releases = self._find(m[1])
            if releases is None:
                return self._not_found(h, entry)
            q = parse_qs(query)
            per_page = min(int(q.get("per_page", ["30"])[0]), self.per_page_max)
            page = int(q.get("page", ["1"])[0])
            chunk = releases[(page - 1) * per_page: page * per_page]
            last = max(1, -(-len(releases) // per_page))
            links = []
            base = f"{self.api_url}/repos/{m[1]}/releases?per_page={per_page}"
            if page < last:
                links.append(f'<{base}&page={page + 1}>; rel="next"')
                links.append(f'<{base}&page={last}>; rel="last"')
            if page > 1:
                links.append(f'<{base}&page=1>; rel="first"')
                links.append(f'<{base}&page={page - 1}>; rel="prev"')
            headers = {"Link": ", ".join(links)} if links else {}
            return self._json(h, entry, [self.release_json(m[1], r) for r in chunk], headers=headers)
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/releases/latest", path):
            releases = self._find(m[1]) or []
            for rel in releases:
                if not rel.draft and not rel.prerelease:
                    return self._json(h, entry, self.release_json(m[1], rel))
            return self._not_found(h, entry)
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/releases/tags/(.+)", path):
            for rel in self._find(m[1]) or []:
                if rel.tag == m[2] and not rel.draft:
                    return self._json(h, entry, self.release_json(m[1], rel))
            return self._not_found(h, entry)
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/commits/([^/]+)", path):
            for rel in self._find(m[1]) or []:
                if rel.tag == m[2] and rel.commit:
                    return self._json(h, entry, {"sha": rel.commit, "commit": {"message": f"release {rel.tag}"}})
            return self._json(h, entry, {"message": f"No commit found for SHA: {m[2]}"}, 422)
        if m := re.fullmatch(r"/repos/([^/]+/[^/]+)/releases/assets/(\d+)", path):
            for rel in self._find(m[1]) or []:
                for a in rel.assets:
                    if a.id == int(m[2]):
                        if "application/octet-stream" in entry.headers.get("accept", ""):
                            return self._redirect(h, entry, a)
                        return self._json(h, entry, self.asset_json(m[1], rel, a))
            return self._not_found(h, entry)
        return self._not_found(h, entry)

    def _web_get(self, h: BaseHTTPRequestHandler, entry: Logged, path: str) -> None:
        if m := re.fullmatch(r"/([^/]+/[^/]+)/releases/download/([^/]+)/([^/]+)", path):
            for rel in self._find(m[1]) or []:
                if rel.tag == m[2]:
                    for a in rel.assets:
                        if a.name == m[3]:
                            return self._redirect(h, entry, a)
        return self._send(h, entry, 404, b"Not Found", content_type="text/plain")

    def _redirect(self, h: BaseHTTPRequestHandler, entry: Logged, a: FakeAsset) -> None:
        location = (f"{self.storage_url}/objects/{a.id}/{a.name}"
                    f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=fakesig{a.id}")
        self._send(h, entry, 302, b"", {"Location": location}, content_type="text/html")

    def _storage_get(self, h: BaseHTTPRequestHandler, entry: Logged, path: str,
                     fault: Fault | None) -> None:
        m = re.fullmatch(r"/objects/(\d+)/(.+)", path)
        asset = None
        if m:
            for releases in self.repos.values():
                for rel in releases:
                    for a in rel.assets:
                        if a.id == int(m[1]):
                            asset = a
        if asset is None:
            return self._send(h, entry, 404, b"no such object", content_type="text/plain")
        size = asset.size
        limit = int(size * fault.fraction) if fault and fault.kind == "truncate" else size
        entry.status = 200
        h.send_response(200)
        h.send_header("Content-Type", asset.content_type)
        h.send_header("Content-Length", str(size))
        h.end_headers()
        if asset.path is not None:
            with open(asset.path, "rb") as fh:
                remaining = limit
                while remaining > 0:
                    chunk = fh.read(min(1 << 20, remaining))
                    if not chunk:
                        break
                    h.wfile.write(chunk)
                    entry.body_bytes += len(chunk)
                    remaining -= len(chunk)
        else:
            h.wfile.write((asset.data or b"")[:limit])
            entry.body_bytes += limit
        if limit < size:
            h.wfile.flush()
            h.close_connection = True


__all__ = ["AUTO", "gzip_bomb", "FakeAsset", "FakeGitHub", "FakeRelease", "Fault", "Logged", "asset_sha256"]


def asset_sha256(fake: FakeGitHub, name: str) -> str:
    """The sha256 of the bytes the fake serves for the asset ``name`` (in-memory assets)."""
    for releases in fake.repos.values():
        for rel in releases:
            for a in rel.assets:
                if a.name == name:
                    return hashlib.sha256(a.data).hexdigest()  # type: ignore[arg-type]
    raise KeyError(name)
