"""An OCI distribution registry, as far as evidence needs one: resolve an image reference to
its digest, read its manifest, config and labels, push a small artifact that refers to it, and
list what refers to it.

Why this and not a registry library: ``oras`` 0.2.43 (PyPI) pushes a manifest with a
``subject`` but neither lists referrers (no ``/referrers`` call) nor keeps the tag-schema
fallback index for registries without that API, sets no ``artifactType``, refuses to upload an
index, and reads through ``requests`` with no byte cap or overall deadline. The engine's own
tools (``docker buildx imagetools``) cannot push an arbitrary artifact. So the few calls of the
distribution spec live here, on httpx, with the rules of :mod:`comfyimg.net.transport`: every
request has an overall deadline (:func:`transport._bounded`), every body a byte cap counted as
it is decoded, and the password goes only to the registry (or its token realm on the same host).

Both ways a registry can keep referrers (OCI distribution spec 1.1):

* **referrers API** (``GET /v2/<name>/referrers/<digest>``): a registry that has it answers the
  push of a manifest with a ``subject`` with an ``OCI-Subject`` header and lists it there;
* **tag schema** (``<name>:sha256-<hex>``, an image index of the referrers): kept by the client
  where the registry has no API (Debian's docker-registry, distribution 2.8).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx

from comfyimg.errors import BadInput, WorkFailed
from comfyimg.net.transport import _bounded, host_problem, redirect_target
from comfyimg.untrusted import add_secret, loads_json, one_line

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # of b"{}"
ACCEPT = ", ".join((INDEX, MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
MAX_MANIFEST = 4 << 20  # the spec's suggested limit for a manifest a registry must accept
MAX_ERROR = 16 << 10
USER_ENV, PASSWORD_ENV = "COMFYIMG_REGISTRY_USER", "COMFYIMG_REGISTRY_PASSWORD"
TIMEOUT_ENV = "COMFYIMG_REGISTRY_TIMEOUT"

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$", re.ASCII)
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$", re.ASCII)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", re.ASCII)
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::\d{1,5})?$", re.ASCII)
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(text: object) -> bool:
    return isinstance(text, str) and bool(_DIGEST.match(text))


@dataclass(frozen=True)
class Ref:
    """``HOST[:PORT]/REPO[:TAG][@sha256:HEX]``: an image in a registry (a host is required:
    the evidence lives in a registry, never in a name Docker would complete)."""

    host: str
    repo: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> Ref:
        raw = text.strip()
        fix = "give HOST[:PORT]/REPO[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/comfyui:cuda"
        digest = None
        if "@" in raw:
            raw, digest = raw.split("@", 1)
            if not is_digest(digest):
                raise BadInput(f"image {one_line(text)!r}: the digest is not sha256:<64 hex digits>; {fix}")
        host, _, rest = raw.partition("/")
        if not rest or not ("." in host or ":" in host or host == "localhost") or not _HOST.match(host):
            raise BadInput(f"image {one_line(text)!r}: no registry host; {fix}")
        repo, tag = rest, None
        if ":" in rest.rsplit("/", 1)[-1]:
            repo, tag = rest.rsplit(":", 1)
            if not _TAG.match(tag):
                raise BadInput(f"image {one_line(text)!r}: {one_line(tag)!r} is not a valid tag; {fix}")
        if not _REPO.match(repo):
            raise BadInput(f"image {one_line(text)!r}: {one_line(repo)!r} is not a valid repository name; {fix}")
        if tag is None and digest is None:
            tag = "latest"
        return cls(host, repo, tag, digest)

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return f"{self.host}/{self.repo}" + (f":{self.tag}" if self.tag else "") + (
            f"@{self.digest}" if self.digest else "")

    def at(self, digest: str) -> Ref:
        return Ref(self.host, self.repo, None, digest)


def fallback_tag(digest: str) -> str:
    """The tag-schema fallback's tag of the referrers of ``digest``: ``sha256-<hex>``."""
    return digest.replace(":", "-", 1)


@dataclass(frozen=True)
class Manifest:
    digest: str  # of the bytes read
    media_type: str
    size: int
    body: dict


class Registry:
    """One registry host, anonymous or with ``COMFYIMG_REGISTRY_USER``/``_PASSWORD`` (HTTP Basic,
    or exchanged for a Bearer token at the realm the registry names, on the same host)."""

    def __init__(self, host: str, *, timeout: float | None = None, deadline: float = 300.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        scheme = "http" if host.split(":")[0] in _LOOPBACK or host.startswith("[::1]") else "https"
        self.base = f"{scheme}://{host}"
        if why := host_problem(self.base):
            raise BadInput(f"registry {one_line(host)!r}: {why}")
        self.host = host
        self.deadline = deadline
        self.timeout = timeout or _env_seconds(TIMEOUT_ENV, 30.0)
        user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
        add_secret(password)
        self._basic = (user, password) if user and password else None
        self._auth: str | None = None
        self._http = httpx.Client(timeout=httpx.Timeout(self.timeout), follow_redirects=False,
                                  headers={"User-Agent": "comfyimg"}, transport=transport, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one request

    def _late(self, url: str, what: str) -> Callable[[], str]:
        return lambda: f"{what}: no complete answer from {url} within {self.deadline:g} s; stopped"

    def _send(self, method: str, url: str, what: str, *, headers: dict[str, str] | None = None,
              content: bytes | None = None, cap: int = MAX_MANIFEST) -> tuple[httpx.Response, bytes]:
        """One request (auth challenge answered once, redirects followed without the
        credentials to another origin), its body read within ``cap`` bytes and the deadline."""
        deadline = time.monotonic() + self.deadline
        origin = httpx.URL(self.base)
        target = httpx.URL(url)
        challenged = False
        for _ in range(6):
            sent = dict(headers or {})
            same = (target.scheme, target.host, target.port) == (origin.scheme, origin.host, origin.port)
            if same and self._auth:
                sent["Authorization"] = self._auth
            request = self._http.build_request(method, target, headers=sent, content=content)

            def one(request: httpx.Request = request) -> Iterator[httpx.Response]:
                yield self._http.send(request, stream=True)

            try:
                resp = next(_bounded(deadline, one, self._late(str(target), what)))
            except httpx.TimeoutException:
                raise WorkFailed(f"{what}: {self.host} did not answer within {self.timeout:g} s "
                                 f"({TIMEOUT_ENV})") from None
            except httpx.TransportError as exc:
                raise WorkFailed(f"{what}: cannot reach {self.host} ({type(exc).__name__})") from None
            if resp.status_code == 401 and same and not challenged:
                challenged = True
                challenge = resp.headers.get("www-authenticate", "")
                resp.close()
                self._auth = self._answer(challenge, what, deadline)
                continue
            if resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                resp.close()
                target = redirect_target(target, resp.headers["location"], what)
                continue
            if method == "HEAD":
                resp.close()
                return resp, b""
            body = self._read(resp, cap if resp.status_code < 300 else MAX_ERROR, what, deadline)
            return resp, body
        raise WorkFailed(f"{what}: too many redirects or challenges from {self.host}")

    def _read(self, resp: httpx.Response, cap: int, what: str, deadline: float) -> bytes:
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            resp.close()
            raise WorkFailed(f"{what}: {self.host} offers {int(declared)} bytes, more than the {cap} byte limit; "
                             f"not read")
        data = bytearray()
        try:
            for chunk in _bounded(deadline, resp.iter_bytes, self._late(str(resp.url), what)):
                data += chunk
                if len(data) > cap:
                    raise WorkFailed(f"{what}: the answer from {self.host} is larger than the {cap} byte limit; "
                                     f"stopped")
        except httpx.HTTPError as exc:
            raise WorkFailed(f"{what}: reading the answer from {self.host} failed ({type(exc).__name__})") from None
        finally:
            resp.close()
        return bytes(data)

    def _answer(self, challenge: str, what: str, deadline: float) -> str:
        """The Authorization header for a 401's challenge: Basic with the credentials, or a Bearer
        token from the realm the registry names: anonymous (public images), or with the
        credentials only when the realm is on the registry's own host (the password goes nowhere
        else)."""
        scheme, _, params = challenge.partition(" ")
        basic = None
        if self._basic is not None:
            basic = "Basic " + base64.b64encode(f"{self._basic[0]}:{self._basic[1]}".encode()).decode()
        if scheme.lower() == "basic":
            if basic is None:
                raise WorkFailed(f"{what}: {self.host} wants credentials (HTTP 401); set {USER_ENV} and "
                                 f"{PASSWORD_ENV}")
            return basic
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        try:
            realm = httpx.URL(fields.get("realm", ""))
        except httpx.InvalidURL:
            realm = httpx.URL("")
        if scheme.lower() != "bearer" or realm.scheme not in ("https", httpx.URL(self.base).scheme) \
                or not realm.host or host_problem(str(realm)):
            raise WorkFailed(f"{what}: {self.host} asks for credentials by an unknown scheme or at an unusable "
                             f"token URL; refused")
        own = (realm.scheme, realm.host) == (httpx.URL(self.base).scheme, httpx.URL(self.base).host)
        headers = {"Authorization": basic} if basic and own else {}
        query = {k: v for k, v in fields.items() if k in ("service", "scope")}
        request = self._http.build_request("GET", realm, params=query, headers=headers)
        try:
            resp = next(_bounded(deadline, lambda: iter([self._http.send(request, stream=True)]),
                                 self._late(str(realm), what)))
        except httpx.HTTPError as exc:
            raise WorkFailed(f"{what}: the token request failed ({type(exc).__name__})") from None
        body = self._read(resp, MAX_ERROR, what, deadline)
        if resp.status_code != 200:
            hint = "" if basic else f"; set {USER_ENV} and {PASSWORD_ENV} if the image is private"
            raise WorkFailed(f"{what}: {self.host}'s token service refused (HTTP {resp.status_code}){hint}")
        try:
            answer = loads_json(body)
        except ValueError:
            answer = None
        token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token or "\n" in token or not token.isascii():
            raise WorkFailed(f"{what}: {self.host}'s token answer has no usable token")
        add_secret(token)
        return f"Bearer {token}"

    def _fail(self, resp: httpx.Response, body: bytes, what: str) -> WorkFailed:
        message = ""
        try:
            answer = loads_json(body)
        except ValueError:
            answer = None
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            message = f": {one_line(errors[0].get('code', ''))} {one_line(errors[0].get('message', ''))[:160]}"
        return WorkFailed(f"{what}: HTTP {resp.status_code} from {self.host}{message}")

    def _url(self, repo: str, kind: str, reference: str = "") -> str:
        return f"{self.base}/v2/{repo}/{kind}/{reference}".rstrip("/")

    # ------------------------------------------------------------------ reads

    def manifest(self, ref: Ref, what: str | None = None) -> Manifest:
        """The manifest of ``ref``; its digest is the one of the bytes read."""
        what = what or f"manifest of {ref}"
        resp, body = self._send("GET", self._url(ref.repo, "manifests", ref.reference), what,
                                headers={"Accept": ACCEPT})
        if resp.status_code == 404:
            raise WorkFailed(f"{what}: not in the registry (HTTP 404)")
        if resp.status_code != 200:
            raise self._fail(resp, body, what)
        digest = digest_of(body)
        if ref.digest and digest != ref.digest:
            raise WorkFailed(f"{what}: the registry's bytes hash to {digest}, not {ref.digest}")
        try:
            manifest = loads_json(body)
        except ValueError as exc:
            raise WorkFailed(f"{what}: not JSON ({exc})") from None
        if not isinstance(manifest, dict):
            raise WorkFailed(f"{what}: a JSON {type(manifest).__name__}, not a manifest")
        media = manifest.get("mediaType") or resp.headers.get("content-type", "").split(";")[0]
        return Manifest(digest, str(media), len(body), manifest)

    def blob(self, repo: str, digest: str, cap: int, what: str) -> bytes:
        """A blob, read within ``cap`` bytes, checked against its digest."""
        if not is_digest(digest):
            raise WorkFailed(f"{what}: {one_line(digest)[:80]!r} is not a sha256 digest")
        resp, body = self._send("GET", self._url(repo, "blobs", digest), what, cap=cap)
        if resp.status_code != 200:
            raise self._fail(resp, body, what)
        if digest_of(body) != digest:
            raise WorkFailed(f"{what}: the bytes do not hash to {digest}")
        return body

    def image_config(self, ref: Ref, platform: tuple[str, str] = ("linux", "amd64")) -> tuple[str, dict]:
        """(the digest ``ref`` resolves to, the image config of its ``platform`` manifest)."""
        found = self.manifest(ref)
        manifest = found.body
        if found.media_type in (INDEX, DOCKER_LIST) or "manifests" in manifest:
            entries = [m for m in manifest.get("manifests") or [] if isinstance(m, dict)
                       and (m.get("platform") or {}).get("os") == platform[0]
                       and (m.get("platform") or {}).get("architecture") == platform[1]]
            if not entries:
                raise WorkFailed(f"{ref}: no {platform[0]}/{platform[1]} image in its index")
            manifest = self.manifest(ref.at(str(entries[0].get("digest")))).body
        config = manifest.get("config") or {}
        data = self.blob(ref.repo, str(config.get("digest")), MAX_MANIFEST, f"image config of {ref}")
        try:
            parsed = loads_json(data)
        except ValueError as exc:
            raise WorkFailed(f"image config of {ref}: not JSON ({exc})") from None
        return found.digest, parsed if isinstance(parsed, dict) else {}

    def referrers(self, ref: Ref, digest: str, artifact_type: str | None = None) -> tuple[list[dict], str]:
        """The descriptors that refer to ``digest``, and how they were found: ``"referrers API"``
        or ``"tag schema"`` (the fallback, where the registry has no API)."""
        what = f"referrers of {ref.repo}@{digest}"
        url = self._url(ref.repo, "referrers", digest)
        resp, body = self._send("GET", url + (f"?artifactType={artifact_type}" if artifact_type else ""), what,
                                headers={"Accept": INDEX})
        if resp.status_code == 200 and resp.headers.get("content-type", "").startswith(INDEX):
            return _manifests(body, what), "referrers API"
        if resp.status_code not in (200, 404, 405):
            raise self._fail(resp, body, what)
        try:
            index = self.manifest(Ref(ref.host, ref.repo, fallback_tag(digest), None), what).body
        except WorkFailed as exc:
            if "HTTP 404" in str(exc):
                return [], "tag schema"
            raise
        return _manifests(json.dumps(index).encode(), what), "tag schema"

    # ------------------------------------------------------------------ writes

    def put_blob(self, repo: str, data: bytes, what: str) -> str:
        digest = digest_of(data)
        head, _ = self._send("HEAD", self._url(repo, "blobs", digest), what, cap=0)
        if head.status_code == 200:
            return digest
        resp, body = self._send("POST", self._url(repo, "blobs", "uploads/"), what)
        if resp.status_code != 202 or "location" not in resp.headers:
            raise self._fail(resp, body, what)
        location = httpx.URL(self.base).join(resp.headers["location"])
        if (location.scheme, location.host, location.port) != (httpx.URL(self.base).scheme, httpx.URL(self.base).host,
                                                                httpx.URL(self.base).port):
            raise WorkFailed(f"{what}: {self.host} sends the upload to another host; refused")
        url = location.copy_merge_params({"digest": digest})
        resp, body = self._send("PUT", str(url), what, content=data,
                                headers={"Content-Type": "application/octet-stream"})
        if resp.status_code != 201:
            raise self._fail(resp, body, what)
        return digest

    def put_manifest(self, repo: str, reference: str | None, manifest: dict,
                     what: str) -> tuple[str, int, httpx.Headers]:
        """PUT ``manifest`` under ``reference`` (None: its own digest): (digest, size, headers)."""
        data = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        reference = reference or digest_of(data)
        resp, body = self._send("PUT", self._url(repo, "manifests", reference), what, content=data,
                                headers={"Content-Type": str(manifest["mediaType"])})
        if resp.status_code != 201:
            raise self._fail(resp, body, what)
        return digest_of(data), len(data), resp.headers

    def attach(self, ref: Ref, subject: Manifest, artifact_type: str, payload: bytes, payload_type: str,
               annotations: dict[str, str]) -> tuple[str, str]:
        """Push ``payload`` as an OCI 1.1 artifact whose ``subject`` is ``subject``; on a registry
        without the referrers API, add it to the tag-schema index too. (artifact digest, how)."""
        what = f"attach to {ref.repo}@{subject.digest}"
        layer = self.put_blob(ref.repo, payload, what)
        self.put_blob(ref.repo, b"{}", what)
        manifest = {
            "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2},
            "layers": [{"mediaType": payload_type, "digest": layer, "size": len(payload)}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest, "size": subject.size},
            "annotations": annotations,
        }
        digest, size, headers = self.put_manifest(ref.repo, None, manifest, what)
        if headers.get("oci-subject") == subject.digest:
            return digest, "referrers API"
        descriptor = {"mediaType": MANIFEST, "digest": digest, "size": size, "artifactType": artifact_type,
                      "annotations": annotations}
        tag = fallback_tag(subject.digest)
        try:
            index = self.manifest(Ref(ref.host, ref.repo, tag, None), what).body
        except WorkFailed as exc:
            if "HTTP 404" not in str(exc):
                raise
            index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}
        kept = [m for m in index.get("manifests") or [] if isinstance(m, dict) and m.get("digest") != digest]
        self.put_manifest(ref.repo, tag, {"schemaVersion": 2, "mediaType": INDEX, "manifests": [*kept, descriptor]},
                          what)
        return digest, "tag schema"


def _manifests(body: bytes, what: str) -> list[dict]:
    try:
        index = loads_json(body)
    except ValueError as exc:
        raise WorkFailed(f"{what}: the referrers index is not JSON ({exc})") from None
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list):
        raise WorkFailed(f"{what}: the referrers index has no list of manifests")
    return [m for m in entries if isinstance(m, dict)]


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise BadInput(f"{name}={one_line(raw)[:40]!r}: give seconds between 0 and 3600")
    return value
