"""The registry client (net/registry.py) against loopback servers. Where the password goes: a
registry on 127.0.0.1 that answers 401 with a Bearer challenge, and token services on its own
host and on another (127.0.0.2): the password goes to the registry's own token service only,
another host's gets an anonymous request (public images), the token is never printed. Bounds: a
blob with no length is read only up to its cap, and one that drips ends at the deadline."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from comfyimg.errors import WorkFailed
from comfyimg.net.registry import Ref, Registry
from comfyimg.untrusted import redact

TOKEN = "tok-0123456789abcdef"
PASSWORD = "hunter2-secret-password"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {}, "layers": []}).encode()


class Seen:
    def __init__(self) -> None:
        self.token_auth: list[str | None] = []


def _serve(host: str, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def registry_with(request):
    servers: list[ThreadingHTTPServer] = []

    def make(realm_host: str, token_status: int = 200) -> tuple[str, Seen]:
        seen = Seen()

        class Tokens(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                seen.token_auth.append(self.headers.get("Authorization"))
                body = json.dumps({"token": TOKEN}).encode()
                self.send_response(token_status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        tokens = _serve(realm_host, Tokens)
        servers.append(tokens)
        realm = f"http://{realm_host}:{tokens.server_address[1]}/token"

        class Reg(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate",
                                     f'Bearer realm="{realm}",service="reg",scope="repository:r:pull"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.send_header("Content-Length", str(len(MANIFEST)))
                self.end_headers()
                self.wfile.write(MANIFEST)

        reg = _serve("127.0.0.1", Reg)
        servers.append(reg)
        return f"127.0.0.1:{reg.server_address[1]}", seen

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_password_goes_to_the_registrys_own_token_service(registry_with, monkeypatch):
    host, seen = registry_with("127.0.0.1")
    monkeypatch.setenv("COMFYIMG_REGISTRY_USER", "me")
    monkeypatch.setenv("COMFYIMG_REGISTRY_PASSWORD", PASSWORD)
    with Registry(host) as reg:
        found = reg.manifest(Ref.parse(f"{host}/r:x"))
    assert found.body["schemaVersion"] == 2
    assert seen.token_auth == ["Basic bWU6aHVudGVyMi1zZWNyZXQtcGFzc3dvcmQ="]  # me:PASSWORD
    assert redact(f"token {TOKEN} password {PASSWORD}") == "token *** password ***"


def test_another_hosts_token_service_gets_an_anonymous_request(registry_with, monkeypatch):
    host, seen = registry_with("127.0.0.2")
    monkeypatch.setenv("COMFYIMG_REGISTRY_USER", "me")
    monkeypatch.setenv("COMFYIMG_REGISTRY_PASSWORD", PASSWORD)
    with Registry(host) as reg:
        reg.manifest(Ref.parse(f"{host}/r:x"))
    assert seen.token_auth == [None], "the password must not leave for another host"


def test_a_refused_token_is_one_line_that_names_the_variables(registry_with, monkeypatch):
    host, _ = registry_with("127.0.0.2", token_status=403)
    monkeypatch.delenv("COMFYIMG_REGISTRY_USER", raising=False)
    monkeypatch.delenv("COMFYIMG_REGISTRY_PASSWORD", raising=False)
    with Registry(host) as reg, pytest.raises(WorkFailed) as caught:
        reg.manifest(Ref.parse(f"{host}/r:x"))
    message = str(caught.value)
    assert "token service refused (HTTP 403); set COMFYIMG_REGISTRY_USER and COMFYIMG_REGISTRY_PASSWORD" in message
    assert "\n" not in message


class Chunked(BaseHTTPRequestHandler):
    """A registry whose blob is an endless chunked body (no Content-Length), or one that drips."""

    protocol_version = "HTTP/1.1"
    drip = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for _ in range(10_000):
                chunk = b"x" * (1 if self.drip else 64 << 10)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                if self.drip:
                    time.sleep(0.5)
        except OSError:  # the client stopped reading: what the test wants
            pass


class Drip(Chunked):
    drip = True


@pytest.mark.parametrize(("handler", "said"), [
    (Chunked, r"the answer from 127\.0\.0\.1:\d+ is larger than the 1048576 byte limit; stopped"),
    (Drip, r"no complete answer from .* within 2 s; stopped"),
], ids=["endless", "drip"])
def test_a_blob_without_a_length_is_read_within_its_cap_and_the_deadline(handler, said):
    server = _serve("127.0.0.1", handler)
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        with Registry(host, deadline=2) as reg, pytest.raises(WorkFailed, match=said):
            reg.blob("r", "sha256:" + "0" * 64, 1 << 20, "attached report")
    finally:
        server.shutdown()
        server.server_close()
