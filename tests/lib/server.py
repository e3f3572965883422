"""One static file server on a real loopback socket (stdlib ``http.server``), shared by the
engine tests and the build benchmarks: it serves a directory and records every path asked for."""

from __future__ import annotations

import functools
import http.server
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def do_GET(self):  # noqa: N802 - http.server's name
        self.requests.append(urllib.parse.unquote(self.path))
        super().do_GET()

    def log_message(self, *args):  # noqa: D102 - keep pytest output clean
        pass


@dataclass
class StaticServer:
    root: Path
    url: str
    requests: list[str]
    _server: http.server.ThreadingHTTPServer = field(repr=False)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve(root: Path, port: int = 0) -> StaticServer:
    """Serve ``root`` on 127.0.0.1 (``port`` 0: any free one) until :meth:`StaticServer.stop`."""
    root.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return StaticServer(root, f"http://127.0.0.1:{server.server_address[1]}", requests, server)
