"""The loopback index (tests/lib/index.py) and comfyimg.sources.index's reading of it: PEP 503 HTML
and PEP 691 JSON give the same files, hashes and yanked flags; the name is normalized."""

from __future__ import annotations

import httpx
import pytest

from comfyimg.sources import index as index_mod
from comfyimg.errors import WorkFailed
from comfyimg.net.transport import Transport
from tests.lib.index import PEP691, FakeIndex, IndexFile

A = "sageattention-2.2.0+cu130torch2.11-cp312-cp312-manylinux_2_34_x86_64.whl"
B = "sageattention-2.2.1+cu130.torch2.13.0.sm90-cp312-cp312-linux_x86_64.whl"


@pytest.fixture(params=[False, True], ids=["html", "json"])
def fake(request):
    with FakeIndex(json=request.param) as idx:
        idx.add("SageAttention", IndexFile(A, b"a-bytes"), IndexFile(B, b"b-bytes", yanked=True),
                IndexFile("sageattention-2.2.2.tar.gz", b"sdist", hashed=False))
        yield idx


def test_files_hashes_and_yanked(fake):
    http = Transport(fake.url, retries=0)
    try:
        files = index_mod.project_files(http, fake.simple + "/", "SageAttention")
        got = {f.filename: f for f in files}
        assert list(got) == [A, B, "sageattention-2.2.2.tar.gz"]
        assert got[A].sha256 == fake.file(A).real_sha256() and not got[A].yanked
        assert got[B].yanked
        assert got["sageattention-2.2.2.tar.gz"].sha256 is None
        # the URLs resolve (relative links, '+' quoted) to the bytes
        for name, f in got.items():
            assert "#" not in f.url
            assert httpx.get(f.url).content == fake.file(name).data
        served = fake.log[0].content_type
        assert served == (PEP691 if fake.json else "text/html; charset=utf-8")
    finally:
        http.close()


def test_unnormalized_name_redirects(fake):
    r = httpx.get(f"{fake.simple}/Sage_Attention/", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "/simple/sage-attention/"


def test_missing_project_is_a_clear_failure(fake):
    http = Transport(fake.url, retries=0)
    try:
        with pytest.raises(WorkFailed, match=r"index page .*/simple/nothing/: not found \(HTTP 404\)"):
            index_mod.project_files(http, fake.simple, "nothing")
    finally:
        http.close()


def test_parse_html_resolves_links_and_ignores_bad_fragments():
    page = ('<a href="https://files.example/x/a-1.0-py3-none-any.whl#sha256=' + "A" * 64 + '">a-1.0-py3-none-any.whl</a>'
            '<a href="../b-1.0-py3-none-any.whl#md5=abc" data-yanked>b-1.0-py3-none-any.whl</a><a>no href</a>')
    files = index_mod.parse_html(page, "https://idx.example/simple/a/")
    assert [(f.filename, f.url, f.sha256, f.yanked) for f in files] == [
        ("a-1.0-py3-none-any.whl", "https://files.example/x/a-1.0-py3-none-any.whl", "a" * 64, False),
        ("b-1.0-py3-none-any.whl", "https://idx.example/simple/b-1.0-py3-none-any.whl", None, True)]


def test_parse_json_rejects_other_shapes():
    with pytest.raises(ValueError, match="not a PEP 691"):
        index_mod.parse_json({"projects": []}, "https://idx.example/simple/a/")
