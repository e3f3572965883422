"""A package index on a real loopback socket (stdlib ``http.server``): PEP 503 project pages
in HTML, and PEP 691 JSON when the client asks for it (``Accept:
application/vnd.pypi.simple.v1+json``) and ``json`` is on.

* ``/simple/`` lists the projects; ``/simple/{normalized}/`` lists a project's files,
  each linked as ``../../files/{quoted name}#sha256={hex}`` (relative, as real indexes do).
* ``/files/{name}`` serves the bytes.
* Per file: ``yanked`` (PEP 592 ``data-yanked`` / ``"yanked"``), ``sha256`` to announce a
  hash other than the bytes' (a file replaced or corrupted behind the index's back), and
  ``hashed=False`` to announce none.
* Every request is logged (path, ``Accept``, the ``Content-Type`` served) for assertions.

Used by ``tests/http/test_http_bump_index.py``.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

PEP691 = "application/vnd.pypi.simple.v1+json"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class IndexFile:
    name: str
    data: bytes
    yanked: bool | str = False  # True, or the reason (a string)
    sha256: str | None = None  # announced; None: the bytes' own
    hashed: bool = True  # announce a hash at all

    def real_sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def announced(self) -> str | None:
        return (self.sha256 or self.real_sha256()) if self.hashed else None


@dataclass
class Served:
    path: str
    accept: str
    content_type: str = ""


@dataclass
class FakeIndex:
    json: bool = False  # offer PEP 691 JSON to clients that ask for it
    projects: dict[str, list[IndexFile]] = field(default_factory=dict)
    log: list[Served] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def simple(self) -> str:
        return f"{self.url}/simple"

    def add(self, project: str, *files: IndexFile) -> None:
        self.projects.setdefault(normalize(project), []).extend(files)

    def file(self, name: str) -> IndexFile:
        return next(f for files in self.projects.values() for f in files if f.name == name)

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{quote(name)}"

    # ------------------------------------------------------------------ pages

    def _html(self, project: str, files: list[IndexFile]) -> bytes:
        links = []
        for f in files:
            href = f"../../files/{quote(f.name)}"
            if sha := f.announced():
                href += f"#sha256={sha}"
            yanked = ""
            if f.yanked:
                reason = f.yanked if isinstance(f.yanked, str) else ""
                yanked = f' data-yanked="{html.escape(reason)}"'
            links.append(f'    <a href="{html.escape(href)}"{yanked}>{html.escape(f.name)}</a><br/>')
        body = "\n".join(links)
        return (f"<!DOCTYPE html>\n<html>\n  <head><meta name=\"pypi:repository-version\" content=\"1.0\">"
                f"<title>Links for {project}</title></head>\n  <body>\n    <h1>Links for {project}</h1>\n"
                f"{body}\n  </body>\n</html>\n").encode()

    def _json(self, project: str, files: list[IndexFile]) -> bytes:
        entries = []
        for f in files:
            sha = f.announced()
            entries.append({"filename": f.name, "url": f"../../files/{quote(f.name)}",
                            "hashes": {"sha256": sha} if sha else {}, "yanked": f.yanked})
        return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": entries}).encode()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = urlsplit(h.path).path
        accept = h.headers.get("Accept", "")
        entry = Served(unquote(path), accept)
        with self._lock:
            self.log.append(entry)
        status, ctype, body = 404, "text/plain", b"not found\n"
        if path == "/simple/":
            status, ctype = 200, "text/html"
            body = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(self.projects)).encode()
        elif m := re.fullmatch(r"/simple/([^/]+)/", path):
            project = m[1]
            if project != normalize(project):  # PEP 503: redirect to the normalized name
                status, ctype, body = 301, "text/plain", b""
                h.send_response(301)
                h.send_header("Location", f"/simple/{normalize(project)}/")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            if project in self.projects:
                files = self.projects[project]
                if self.json and PEP691 in accept:
                    status, ctype, body = 200, PEP691, self._json(project, files)
                else:
                    status, ctype, body = 200, "text/html; charset=utf-8", self._html(project, files)
        elif m := re.fullmatch(r"/files/([^/]+)", path):
            name = unquote(m[1])
            hit = [f for files in self.projects.values() for f in files if f.name == name]
            if hit:
                status, ctype, body = 200, "application/octet-stream", hit[0].data
        entry.content_type = ctype
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeIndex:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                index.handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
