"""Network use a person can follow (issue 28, item 7): a name that does not resolve is not
retried, each retry is announced, every network error ends with the setting that fixes it,
and proxies are honoured only with COMFYIMG_HTTP_TRUST_ENV=1."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from comfyimg.errors import WorkFailed
from comfyimg.sources.github import GitHub
from tests.lib.bumpproject import SAGE, TOKEN


def test_a_name_that_does_not_resolve_is_not_retried():
    told: list[str] = []
    gh = GitHub("http://comfyimg-no-such-host.invalid", TOKEN, retries=3, backoff=2.0, notice=told.append)
    start = time.monotonic()
    with pytest.raises(WorkFailed, match=r"does not resolve .*check the host name and this machine's DNS"):
        gh.latest_release("o/r")
    assert time.monotonic() - start < 2 and told == []


def test_each_retry_is_announced_and_the_error_names_the_fix(github):
    github.fault(r"/releases/latest$", status=503, times=10)
    told: list[str] = []
    with GitHub(github.api_url, TOKEN, timeout=2.0, retries=2, backoff=0.01, notice=told.append) as gh:
        with pytest.raises(WorkFailed, match=r"after 3 attempt\(s\); the server is failing; .*COMFYIMG_HTTP_RETRIES"):
            gh.latest_release(SAGE)
    assert [m.split(": ", 1)[1] for m in told] == ["HTTP 503 Service Unavailable; retrying in 0.01 s, attempt 2/3",
                                                   "HTTP 503 Service Unavailable; retrying in 0.02 s, attempt 3/3"]


def test_a_refused_connection_names_the_settings_that_fix_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gh = GitHub(f"http://127.0.0.1:{port}", TOKEN, retries=0)
    with pytest.raises(WorkFailed, match="COMFYIMG_HTTP_TRUST_ENV=1 .*COMFYIMG_HTTP_TIMEOUT"):
        gh.latest_release("o/r")


class Proxy:
    """A loopback 'proxy' that records the request lines it gets and answers 502."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.lines: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.lines.append(conn.recv(4096).split(b"\r\n", 1)[0].decode())
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass


@pytest.mark.parametrize("trust", ["0", "1"])
def test_proxies_are_honoured_only_when_asked(github, monkeypatch, trust):
    proxy = Proxy()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("GITHUB_API_URL", github.api_url)
    monkeypatch.setenv("COMFYIMG_HTTP_TRUST_ENV", trust)
    monkeypatch.setenv("COMFYIMG_HTTP_RETRIES", "0")
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    with GitHub.from_env() as gh:
        if trust == "1":
            with pytest.raises(WorkFailed, match="HTTP 502"):
                gh.latest_release(SAGE)
            assert proxy.lines and proxy.lines[0].startswith(f"GET {github.api_url}/repos/")
        else:
            assert gh.latest_release(SAGE).tag
            assert proxy.lines == []
    proxy.sock.close()
