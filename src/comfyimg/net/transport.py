"""HTTP to the GitHub API (httpx): where the token goes, retries, and errors as one line.

* The token goes to the API origin (scheme, host, port of the base URL) only.  Redirects
  are followed here, not by httpx, and a hop to any other origin is sent without the
  ``Authorization`` header.  The token is never printed, logged or put in a message.
* Every request has a timeout per read and an overall deadline (retries, redirects,
  headers and body together): a server that drips one byte at a time still ends within
  the deadline.  The socket work runs in a worker thread (:func:`_bounded`) so that the
  caller stops at the deadline whatever the socket does.
* Every body is counted as it is decoded (``iter_bytes``), so a compression bomb stops at
  the byte cap, not when memory runs out; JSON kept in memory has a smaller cap.
* 5xx answers, timeouts and connection errors are retried a bounded number of times with
  exponential backoff; a rate limit (403/429) fails at once with the reset time.
"""

from __future__ import annotations

import queue
import threading
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import httpx

from comfyimg.errors import BadInput, WorkFailed
from comfyimg.untrusted import add_secret, loads_json, one_line

T = TypeVar("T")

API_VERSION = "2022-11-28"
USER_AGENT = "comfyimg-bump"
REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 10
MAX_RETRIES = 10
MAX_BACKOFF = 60.0  # seconds, the longest single wait between attempts
MAX_JSON_BYTES = 32 << 20  # an API answer held in memory (a page of 100 releases is < 1 MiB)
MAX_ERROR_BYTES = 64 << 10  # the body of an error answer, read for its message
MAX_RESET = 366 * 24 * 3600  # a rate-limit reset further away than a year is not believed
DEADLINE_ENV = "COMFYIMG_HTTP_DEADLINE"
MIN_RATE_ENV = "COMFYIMG_HTTP_MIN_RATE"
MAX_BYTES_ENV = "COMFYIMG_HTTP_MAX_BYTES"
TRUST_ENV = "COMFYIMG_HTTP_TRUST_ENV"
# What a person changes when a request fails, ending each network error line.
FIX_CONNECT = ("check the network and the host in the URL; behind a proxy set COMFYIMG_HTTP_TRUST_ENV=1 "
               "to use HTTPS_PROXY/NO_PROXY; tune COMFYIMG_HTTP_TIMEOUT and COMFYIMG_HTTP_RETRIES")
FIX_DNS = ("check the host name and this machine's DNS (offline?); behind a proxy set "
           "COMFYIMG_HTTP_TRUST_ENV=1 to use HTTPS_PROXY")
FIX_5XX = "the server is failing; try again later, or raise COMFYIMG_HTTP_RETRIES"
_DEADLINE_KEY = "comfyimg.deadline"


class Late(WorkFailed):
    """The overall deadline of a request passed."""


class _Stop(Exception):
    pass


def _bounded(deadline: float, produce: Callable[[], Iterator[T]], late: Callable[[], str]) -> Iterator[T]:
    """The items of ``produce()``, made in a worker thread; past ``deadline`` (monotonic) a
    :class:`Late` with ``late()``, whatever the socket under it is doing.  The worker is told
    to stop and closes what it made after that; it never prints."""
    box: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: tuple[str, object]) -> None:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def work() -> None:
        try:
            for item in produce():
                if stop.is_set():
                    getattr(item, "close", lambda: None)()
                    return
                put(("item", item))
            put(("done", None))
        except _Stop:
            pass
        except BaseException as exc:  # handed to the caller, never printed here
            try:
                put(("error", exc))
            except _Stop:
                pass

    threading.Thread(target=work, daemon=True, name="comfyimg-http").start()
    try:
        while True:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise queue.Empty
                kind, value = box.get(timeout=remaining)
            except queue.Empty:
                raise Late(late()) from None
            if kind == "done":
                return
            if kind == "error":
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()


class NotFound(WorkFailed):
    """A 404 from the API."""


def _unresolved(exc: BaseException) -> bool:
    """A DNS failure (getaddrinfo), through httpx's and httpcore's wrapping."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, socket.gaierror) or "Name or service not known" in str(exc) \
                or "Temporary failure in name resolution" in str(exc) or "nodename nor servname" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def origin(url: httpx.URL) -> tuple[str, str, int]:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return (url.scheme, url.host, port)


def _rate_limit_message(resp: httpx.Response, what: str, authenticated: bool) -> str | None:
    headers = resp.headers
    limited = resp.status_code == 429 or (
        resp.status_code == 403
        and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)
    )
    if not limited:
        return None
    when = ""
    if (after := headers.get("retry-after")) and after.strip().isascii() and after.strip().isdigit() \
            and len(after.strip()) <= 9:
        when = f"retry after {int(after)} s"
    elif (reset := headers.get("x-ratelimit-reset")) and reset.strip().isascii() and reset.strip().isdigit():
        wait = int(reset) - int(time.time())
        if len(reset.strip()) > 12 or wait > MAX_RESET:
            when = f"the server gives an implausible reset time ({reset.strip()[:24]})"
        else:
            at = datetime.fromtimestamp(int(reset), tz=UTC)
            when = f"the limit resets at {at:%Y-%m-%d %H:%M:%S} UTC (in {max(0, wait)} s)"
    else:
        when = "no reset time given"
    hint = "" if authenticated else "; set GITHUB_TOKEN (or GH_TOKEN) for a higher limit"
    return f"{what}: GitHub API rate limit exceeded (HTTP {resp.status_code}); {when}{hint}"


def _api_message(resp: httpx.Response, body: bytes) -> str:
    try:
        data = loads_json(body)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return one_line(data["message"])[:200]  # a line break in it never forges a line of ours
    except ValueError:  # not JSON, or the body never arrived
        pass
    return one_line(resp.reason_phrase or "")[:200]


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot go into an ``Authorization`` header; the value itself is never named."""
    if any(c in "\r\n" for c in token):
        return "contains a line break (CR or LF)"
    if not token.isascii():
        return "contains a non-ASCII character"
    if not token.isprintable() or token != token.strip():
        return "contains a control character or surrounding white space"
    return None


def redirect_target(url: httpx.URL, location: str, what: str = "") -> httpx.URL:
    """Where a redirect from ``url`` to ``location`` goes, refused unless it is an http(s) URL
    whose host passes :func:`host_problem` (the one check for every client that follows by hand)."""
    prefix = f"{what}: " if what else ""
    try:
        target = url.join(location)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise WorkFailed(f"{prefix}refusing a redirect to a malformed URL {one_line(location)[:200]!r}") from None
    if target.scheme not in ("http", "https"):
        raise WorkFailed(f"{prefix}refusing a redirect to a {target.scheme!r} URL")
    if why := host_problem(str(target)):
        raise WorkFailed(f"{prefix}refusing a redirect to {one_line(str(target))[:200]!r}: {why}")
    return target


class Transport:
    """GETs against one API origin; use :meth:`get` / :meth:`json`, and :meth:`close`."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 1.0, deadline: float = 120.0, min_rate: float = 500_000.0,
                 max_bytes: int = 4 << 30, transport: httpx.BaseTransport | None = None,
                 trust_env: bool = False, notice: Callable[[str], None] | None = None) -> None:
        base = base_url.rstrip("/")
        try:
            self.base = httpx.URL(base)
        except httpx.InvalidURL as exc:
            raise BadInput(f"GITHUB_API_URL={base!r} is not a valid URL ({exc})") from None
        if self.base.scheme not in ("http", "https") or not self.base.host:
            raise BadInput(f"GITHUB_API_URL={base!r} is not an http(s) URL")
        if why := host_problem(base):
            raise BadInput(f"GITHUB_API_URL={base!r}: {why}")
        if token and (why := token_problem(token)):
            raise BadInput(f"the token {why}; the value is not shown. Set it to the token alone")
        add_secret(token)
        self._token = token or None
        self.timeout = timeout
        self.deadline = deadline
        self.min_rate = min_rate
        self.max_bytes = max_bytes
        self.notice = notice  # told each retry ("retrying in 4 s, attempt 2/4")
        self.retries = min(max(0, int(retries)), MAX_RETRIES)
        self.backoff = min(backoff, MAX_BACKOFF)
        self._api_origin = origin(self.base)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # followed in _send, which decides where the token goes
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            # Off unless COMFYIMG_HTTP_TRUST_ENV=1: on, httpx reads HTTP(S)_PROXY, NO_PROXY, SSL_CERT_FILE
            # and ~/.netrc, so a variable left in a shell could route the token through a proxy or add
            # credentials nobody asked for. A proxy is honoured only when a person asks for it.
            trust_env=trust_env,
        )

    @property
    def authenticated(self) -> bool:
        return self._token is not None

    def close(self) -> None:
        self._http.close()

    def api(self, path: str) -> httpx.URL:
        return httpx.URL(str(self.base) + path)

    def _headers_for(self, url: httpx.URL, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if origin(url) == self._api_origin:
            headers["X-GitHub-Api-Version"] = API_VERSION
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _late(self, url: httpx.URL, what: str, seconds: float | None = None) -> Callable[[], str]:
        limit = self.deadline if seconds is None else seconds
        size = "" if seconds is None else f", its size at {MIN_RATE_ENV} included"
        return lambda: (f"{what}: no complete answer from {url} within the {limit:.0f} s deadline "
                        f"({DEADLINE_ENV}){size}; stopped; raise {DEADLINE_ENV} on a slow link")

    def allow_for(self, resp: httpx.Response, size: int | None) -> None:
        """A download's deadline, scaled to its announced ``size``: the request's deadline plus the
        time the size takes at the floor rate (``COMFYIMG_HTTP_MIN_RATE`` bytes/s)."""
        if size:
            extra = size / self.min_rate
            resp.extensions[_DEADLINE_KEY] = resp.extensions.get(_DEADLINE_KEY, time.monotonic() + self.deadline) + extra
            resp.extensions["comfyimg.allowed"] = self.deadline + extra
            resp.extensions["comfyimg.floor"] = time.monotonic() + self.deadline  # from then on: min_rate

    def _send(self, url: httpx.URL, accept: str, deadline: float, what: str) -> httpx.Response:
        """GET ``url`` following redirects by hand; the token only ever goes to the API origin."""
        for _ in range(MAX_REDIRECTS + 1):
            request = self._http.build_request("GET", url, headers=self._headers_for(url, accept))

            def one(request: httpx.Request = request) -> Iterator[httpx.Response]:
                try:
                    yield self._http.send(request, stream=True)
                except httpx.InvalidURL as exc:  # httpx reads the Location even when not following it
                    raise WorkFailed(f"refusing a redirect to an unusable URL ({exc})") from None

            resp = next(_bounded(deadline, one, self._late(url, what)))
            if resp.status_code in REDIRECTS and "location" in resp.headers:
                resp.close()
                url = redirect_target(url, resp.headers["location"])
                continue
            resp.extensions[_DEADLINE_KEY] = deadline
            resp.extensions["comfyimg.what"] = what
            return resp
        raise WorkFailed(f"more than {MAX_REDIRECTS} redirects, last to {url}")

    def get(self, url: str | httpx.URL, *, accept: str = "application/vnd.github+json",
            what: str) -> httpx.Response:
        """GET with bounded retries; returns an open (streamed) 2xx/3xx/4xx response, whose
        body is read through :meth:`body` within the same deadline."""
        url = httpx.URL(url)
        deadline = time.monotonic() + self.deadline
        last = ""
        fix = FIX_CONNECT
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                pause = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)
                if time.monotonic() + pause >= deadline:
                    raise Late(self._late(url, what)() + f"; last: {last}")
                if self.notice is not None:
                    self.notice(f"{what}: {last}; retrying in {pause:g} s, attempt {attempt + 1}/{attempts}")
                time.sleep(pause)
            try:
                resp = self._send(url, accept, deadline, what)
            except Late:
                raise
            except WorkFailed as exc:  # a redirect loop or a bad redirect: say which request
                raise WorkFailed(f"{what}: {exc} (from {url})") from None
            except httpx.TimeoutException:
                last, fix = f"timed out (no answer within {self.timeout:g} s)", FIX_CONNECT
                continue
            except httpx.TransportError as exc:
                if _unresolved(exc):  # a name that does not resolve will not resolve in 4 s either
                    raise WorkFailed(f"{what}: the host {url.host} does not resolve ({exc}); {FIX_DNS}") from None
                last, fix = f"connection failed ({type(exc).__name__}: {exc})", FIX_CONNECT
                continue
            if resp.status_code >= 500:
                last, fix = f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip(), FIX_5XX
                resp.close()
                continue
            return resp
        raise WorkFailed(f"{what}: {last}, after {attempts} attempt(s); {fix}")

    def body(self, resp: httpx.Response, limit: int | None = None) -> Iterator[bytes]:
        """The decoded body of ``resp`` (from :meth:`get`) in chunks, within the request's
        deadline and at most ``limit`` (default the byte cap) decoded bytes; closes ``resp``."""
        what = resp.extensions.get("comfyimg.what", "request")
        deadline = resp.extensions.get(_DEADLINE_KEY, time.monotonic() + self.deadline)
        cap = min(limit or self.max_bytes, self.max_bytes)
        seen = 0
        late = self._late(resp.url, what, resp.extensions.get("comfyimg.allowed"))
        try:
            floor_from = resp.extensions.get("comfyimg.floor")
            for chunk in _bounded(deadline, resp.iter_bytes, late):
                seen += len(chunk)
                if floor_from is not None and (behind := time.monotonic() - floor_from) > 0 \
                        and seen < behind * self.min_rate:  # a drip under an inflated size: stop now
                    raise WorkFailed(f"{what}: no complete answer from {resp.url} within the {self.deadline:.0f} s deadline "
                                     f"({DEADLINE_ENV}), and {seen} bytes since is under the floor of "
                                     f"{self.min_rate:g} bytes/s ({MIN_RATE_ENV}); stopped; raise "
                                     f"{DEADLINE_ENV} or lower {MIN_RATE_ENV} on a slow link")
                if seen > cap:
                    env = f" ({MAX_BYTES_ENV})" if cap == self.max_bytes else ""
                    raise WorkFailed(f"{what}: the answer from {resp.url} is larger than the "
                                     f"{cap} byte limit{env} (decoded); stopped")
                yield chunk
        finally:
            resp.close()

    def check(self, resp: httpx.Response, what: str) -> None:
        """Raise for a non-2xx response (the body is read for the message)."""
        if resp.status_code < 300:
            return
        try:
            body = self.read(resp, MAX_ERROR_BYTES, what)
        except WorkFailed:
            body = b""  # the status says enough; _api_message does without the body
        if msg := _rate_limit_message(resp, what, self.authenticated):
            raise WorkFailed(msg)
        if resp.status_code == 404:
            raise NotFound(f"{what}: not found (HTTP 404)")
        if resp.status_code in (401, 403):
            if origin(resp.url) != self._api_origin:  # the token never goes there
                hint = "refused by the download host; a signed download URL may have expired, try again"
            elif self.authenticated:
                hint = "the token was refused"
            else:
                hint = "no token set (GITHUB_TOKEN / GH_TOKEN)"
            raise WorkFailed(f"{what}: HTTP {resp.status_code} {_api_message(resp, body)} ({hint})")
        raise WorkFailed(f"{what}: HTTP {resp.status_code} {_api_message(resp, body)}")

    def read(self, resp: httpx.Response, limit: int, what: str, answer: str = "the answer") -> bytes:
        """The whole body of ``resp``, within ``limit`` bytes and the deadline (:meth:`body`);
        a read that times out or breaks is one line naming ``what``."""
        data = bytearray()
        try:
            for chunk in self.body(resp, limit):
                data += chunk
        except httpx.TimeoutException:
            raise WorkFailed(f"{what}: timed out reading {answer}") from None
        except httpx.DecodingError:
            raise WorkFailed(f"{what}: {answer}'s compression is broken") from None
        except httpx.TransportError as exc:
            raise WorkFailed(f"{what}: connection broke while reading ({type(exc).__name__})") from None
        return bytes(data)

    def json(self, url: str | httpx.URL, what: str) -> tuple[object, httpx.Response]:
        resp = self.get(url, what=what)
        self.check(resp, what)
        data = self.read(resp, MAX_JSON_BYTES, what)
        try:
            return loads_json(data), resp
        except ValueError as exc:
            raise WorkFailed(f"{what}: the answer is not usable JSON: {exc}") from None


def host_problem(url: str) -> str | None:
    """Why the host of ``url`` is refused: a host that is not plain ASCII (an IDN, or a
    look-alike such as a Cyrillic letter in ``github.com``) is never contacted."""
    try:
        host = httpx.URL(url).host
    except (httpx.InvalidURL, ValueError, TypeError):
        return "not a valid URL"
    raw = url.split("//", 1)[-1].split("/", 1)[0]
    if not raw.isascii() or host.startswith("xn--") or ".xn--" in host:
        return ("its host is not plain ASCII (an internationalized or look-alike name); "
                "only ASCII host names are used")
    return None
