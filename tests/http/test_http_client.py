"""The GitHub client in-process, against the fake GitHub on loopback sockets."""

from __future__ import annotations

import hashlib
import socket
import time

import pytest

from comfyimg.errors import BadInput, WorkFailed
from comfyimg.sources.digests import parse_sums
from comfyimg.sources.github import Asset, GitHub
from tests.lib.bumpproject import SAGE, TOKEN
from tests.lib.github import FakeAsset, FakeGitHub, FakeRelease


def client(fake: FakeGitHub, token: str | None = TOKEN, **kw) -> GitHub:
    kw = {"timeout": 2.0, "retries": 2, "backoff": 0.0, **kw}
    return GitHub(fake.api_url, token, **kw)


def test_pagination_follows_link_next(github):
    with client(github) as gh:
        tags = [r.tag for r in gh.releases(SAGE)]
    assert tags == [r.tag for r in github.repos[SAGE]]
    pages = [q for q in github.requests("api") if q.path.endswith("/releases")]
    assert len(pages) == -(-len(tags) // 2) >= 3  # the fake serves 2 per page
    assert [q.query for q in pages][1:] == [f"per_page=2&page={n}" for n in range(2, len(pages) + 1)]


def test_latest_skips_drafts_and_prereleases_unless_pre(github):
    with client(github) as gh:
        assert gh.latest_release(SAGE).tag == "v2.2.0-build.17"
        assert gh.latest_release(SAGE, pre=True).tag == "v2.2.2-rc1"  # newer than latest, not the draft


def test_release_json_shapes(github):
    with client(github) as gh:
        rel = gh.release_by_tag(SAGE, "v2.2.0-build.17")
    assert not rel.draft and not rel.prerelease and rel.published_at
    by_name = {a.name: a for a in rel.assets}
    sage3 = by_name["sageattn3-1.0.1-290.129-cp312-cp312-linux_x86_64.whl"]
    assert sage3.digest is None and sage3.size > 0 and sage3.state == "uploaded"
    sums = by_name["SHA256SUMS"]
    assert sums.content_type == "text/plain" and sums.url.startswith(github.api_url)


def test_download_strips_token_on_cross_host_redirect(github, tmp_path):
    with client(github) as gh:
        rel = gh.latest_release(SAGE)
        asset = rel.assets[0]
        got = gh.download(asset, tmp_path / "a.whl")
    data = (tmp_path / "a.whl").read_bytes()
    assert got.sha256 == hashlib.sha256(data).hexdigest() and got.size == asset.size == len(data)
    api = [q for q in github.requests("api") if "/assets/" in q.path]
    assert api and api[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert api[0].headers["accept"] == "application/octet-stream"
    storage = github.requests("storage")
    assert len(storage) == 1 and "authorization" not in storage[0].headers
    assert all(TOKEN not in v for v in storage[0].headers.values())


def test_token_stays_off_another_port_of_the_same_host(wheel_dir, tmp_path):
    """The origin is scheme + host + port: a redirect to 127.0.0.1:OTHER gets no token."""
    with FakeGitHub(storage_host="127.0.0.1") as fake:
        fake.add_release("o/r", FakeRelease("v1", [FakeAsset("x.bin", data=b"x" * 5000)]))
        with client(fake) as gh:
            asset = gh.latest_release("o/r").assets[0]
            gh.download(asset, tmp_path / "x.bin")
            gh.download(Asset(**{**asset.__dict__, "url": ""}), tmp_path / "y.bin")  # browser URL
        storage = fake.requests("storage")
        assert len(storage) == 2 and all("authorization" not in q.headers for q in storage)


def test_no_token_sends_no_authorization(github):
    with client(github, token=None) as gh:
        gh.latest_release(SAGE)
    assert all("authorization" not in q.headers for q in github.requests())


def test_repr_and_errors_never_show_the_token(github):
    gh = client(github)
    assert TOKEN not in repr(gh) and "token=set" in repr(gh)
    github.fault(r"/releases/latest$", status=401)
    with pytest.raises(WorkFailed) as exc:
        gh.latest_release(SAGE)
    assert "HTTP 401" in str(exc.value) and TOKEN not in str(exc.value) and TOKEN not in repr(exc.value)
    gh.close()


def test_from_env(monkeypatch, github):
    monkeypatch.setenv("GITHUB_API_URL", github.api_url + "/")
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("GH_TOKEN", "gh-fallback")
    monkeypatch.setenv("COMFYIMG_HTTP_RETRIES", "0")
    gh = GitHub.from_env()
    assert gh.authenticated and gh.retries == 0 and str(gh.base) == github.api_url
    monkeypatch.setenv("COMFYIMG_HTTP_TIMEOUT", "soon")
    with pytest.raises(BadInput, match="COMFYIMG_HTTP_TIMEOUT"):
        GitHub.from_env()


def test_connection_errors_are_retried_then_fail():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connection refused
    gh = GitHub(f"http://127.0.0.1:{port}", TOKEN, retries=2, backoff=0.01)
    start = time.monotonic()
    with pytest.raises(WorkFailed, match=r"connection failed \(ConnectError.*after 3 attempt"):
        gh.latest_release("o/r")
    assert time.monotonic() - start < 2


def test_5xx_is_retried_with_backoff(github):
    github.fault(r"/releases/latest$", status=500, times=2)
    with client(github, backoff=0.05) as gh:
        start = time.monotonic()
        assert gh.latest_release(SAGE).tag == "v2.2.0-build.17"
        assert time.monotonic() - start >= 0.05 + 0.1  # 0.05, then 0.1
    assert len([q for q in github.requests("api") if q.path.endswith("/latest")]) == 3


def test_size_disagreeing_with_content_length_fails(github, tmp_path):
    with client(github) as gh:
        asset = gh.latest_release(SAGE).assets[0]
        wrong = Asset(**{**asset.__dict__, "size": asset.size + 10})
        with pytest.raises(WorkFailed, match=r"sends \d+ bytes, the release lists \d+"):
            gh.download(wrong, tmp_path / "w.whl")


def test_truncated_body_fails(github, tmp_path):
    github.fault(r"^storage ", kind="truncate", fraction=0.3)
    with client(github) as gh:
        asset = gh.latest_release(SAGE).assets[0]
        with pytest.raises(WorkFailed, match=r"truncated: .* after \d+ of \d+ bytes"):
            gh.download(asset, tmp_path / "t.whl")


def test_404s_name_the_repo_or_the_tag(github):
    with client(github) as gh:
        with pytest.raises(WorkFailed, match="repository nope/nope not found"):
            gh.release_by_tag("nope/nope", "v1")
        with pytest.raises(WorkFailed, match="no release with tag 'v0'"):
            gh.release_by_tag(SAGE, "v0")
        github.add_repo("empty/repo")
        with pytest.raises(WorkFailed, match="no latest release"):
            gh.latest_release("empty/repo")


def test_rate_limit_without_token_suggests_one(github):
    github.fault(r"/releases/latest$", status=403, headers={"x-ratelimit-remaining": "0",
                                                           "x-ratelimit-reset": str(int(time.time()) + 60)})
    with client(github, token=None) as gh, pytest.raises(WorkFailed, match="set GITHUB_TOKEN"):
        gh.latest_release(SAGE)


def test_asset_digest_parsing():
    base = {"id": 1, "name": "a.whl", "size": 1, "url": "u", "browser_download_url": "b"}
    hexed = "ab" * 32
    assert Asset.from_json({**base, "digest": f"sha256:{hexed.upper()}"}).digest == hexed
    assert Asset.from_json({**base, "digest": None}).digest is None
    assert Asset.from_json({**base, "digest": f"sha512:{hexed}"}).digest is None
    assert Asset.from_json(base).digest is None


def test_parse_sums_formats():
    a, b, c = "a" * 64, "b" * 64, "C" * 64
    text = f"# comment\n{a}  x.whl\n{b} *dist/y.whl\nSHA256 (z.whl) = {c}\ngarbage\n"
    assert parse_sums(text) == {"x.whl": a, "y.whl": b, "z.whl": c.lower()}
