"""HTTP to the GitHub API (httpx): where the token goes, retries, and errors as one line.

* The token goes to the API origin (scheme, host, port of the base URL) only.  Redirects
  are followed here, not by httpx, and a hop to any other origin is sent without the
  ``Authorization`` header.  The token is never printed, logged or put in a message.
* Every request has a timeout; 5xx answers, timeouts and connection errors are retried a
  bounded number of times with exponential backoff; a rate limit (403/429) fails at once
  with the reset time from the headers.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx

from comfyimg.errors import BadInput, WorkFailed
from comfyimg.untrusted import add_secret

API_VERSION = "2022-11-28"
USER_AGENT = "comfyimg-bump"
REDIRECTS = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 10
MAX_RETRIES = 10
MAX_BACKOFF = 60.0  # seconds, the longest single wait between attempts


class NotFound(WorkFailed):
    """A 404 from the API."""


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
    if (after := headers.get("retry-after")) and after.strip().isdigit():
        when = f"retry after {int(after)} s"
    elif (reset := headers.get("x-ratelimit-reset")) and reset.strip().isdigit():
        at = datetime.fromtimestamp(int(reset), tz=UTC)
        wait = max(0, int(reset) - int(time.time()))
        when = f"the limit resets at {at:%Y-%m-%d %H:%M:%S} UTC (in {wait} s)"
    else:
        when = "no reset time given"
    hint = "" if authenticated else "; set GITHUB_TOKEN (or GH_TOKEN) for a higher limit"
    return f"{what}: GitHub API rate limit exceeded (HTTP {resp.status_code}); {when}{hint}"


def _api_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return data["message"][:200]
    except (ValueError, httpx.StreamError):  # not JSON, or the body never arrived
        pass
    return resp.reason_phrase or ""


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot go into an ``Authorization`` header; the value itself is never named."""
    if any(c in "\r\n" for c in token):
        return "contains a line break (CR or LF)"
    if not token.isascii():
        return "contains a non-ASCII character"
    if not token.isprintable() or token != token.strip():
        return "contains a control character or surrounding white space"
    return None


class Transport:
    """GETs against one API origin; use :meth:`get` / :meth:`json`, and :meth:`close`."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 30.0,
                 retries: int = 3, backoff: float = 1.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        base = base_url.rstrip("/")
        try:
            self.base = httpx.URL(base)
        except httpx.InvalidURL as exc:
            raise BadInput(f"GITHUB_API_URL={base!r} is not a valid URL ({exc})") from None
        if self.base.scheme not in ("http", "https") or not self.base.host:
            raise BadInput(f"GITHUB_API_URL={base!r} is not an http(s) URL")
        if token and (why := token_problem(token)):
            raise BadInput(f"the token {why}; the value is not shown. Set it to the token alone")
        add_secret(token)
        self._token = token or None
        self.timeout = timeout
        self.retries = min(max(0, int(retries)), MAX_RETRIES)
        self.backoff = min(backoff, MAX_BACKOFF)
        self._api_origin = origin(self.base)
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,  # followed in _send, which decides where the token goes
            headers={"User-Agent": USER_AGENT},
            transport=transport,
            trust_env=False,  # no proxy or .netrc credentials sneaking in
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

    def _send(self, url: httpx.URL, accept: str) -> httpx.Response:
        """GET ``url`` following redirects by hand; the token only ever goes to the API origin."""
        for _ in range(MAX_REDIRECTS + 1):
            request = self._http.build_request("GET", url, headers=self._headers_for(url, accept))
            resp = self._http.send(request, stream=True)
            if resp.status_code in REDIRECTS and "location" in resp.headers:
                location = resp.headers["location"]
                resp.close()
                url = url.join(location)
                if url.scheme not in ("http", "https"):
                    raise WorkFailed(f"refusing a redirect to a {url.scheme!r} URL")
                continue
            return resp
        raise WorkFailed(f"more than {MAX_REDIRECTS} redirects, last to {url}")

    def get(self, url: str | httpx.URL, *, accept: str = "application/vnd.github+json",
            what: str) -> httpx.Response:
        """GET with bounded retries; returns an open (streamed) 2xx/3xx/4xx response."""
        url = httpx.URL(url)
        last = ""
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF))
            try:
                resp = self._send(url, accept)
            except WorkFailed as exc:  # a redirect loop or a bad redirect: say which request
                raise WorkFailed(f"{what}: {exc} (from {url})") from None
            except httpx.TimeoutException:
                last = f"timed out (no answer within {self.timeout:g} s)"
                continue
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__}: {exc})"
                continue
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip()
                resp.close()
                continue
            return resp
        raise WorkFailed(f"{what}: {last}, after {attempts} attempt(s)")

    def check(self, resp: httpx.Response, what: str) -> None:
        """Raise for a non-2xx response (the body is read for the message)."""
        if resp.status_code < 300:
            return
        try:
            resp.read()
        except httpx.TransportError:
            pass  # the status says enough; _api_message does without the body
        finally:
            resp.close()
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
            raise WorkFailed(f"{what}: HTTP {resp.status_code} {_api_message(resp)} ({hint})")
        raise WorkFailed(f"{what}: HTTP {resp.status_code} {_api_message(resp)}")

    def json(self, url: str | httpx.URL, what: str) -> tuple[object, httpx.Response]:
        resp = self.get(url, what=what)
        self.check(resp, what)
        try:
            resp.read()
        except httpx.TimeoutException:
            raise WorkFailed(f"{what}: timed out reading the answer") from None
        except httpx.TransportError as exc:
            raise WorkFailed(f"{what}: connection broke while reading ({type(exc).__name__})") from None
        finally:
            resp.close()
        try:
            return resp.json(), resp
        except ValueError:
            raise WorkFailed(f"{what}: the answer is not JSON") from None
        except RecursionError:
            raise WorkFailed(f"{what}: the answer is JSON nested too deeply to be a GitHub answer") from None
