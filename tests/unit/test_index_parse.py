"""The index page parser (issue 27, items 4 and 6): linear on hostile pages, malformed tags one
line, and PEP 629/691 major versions other than 1 refused."""

from __future__ import annotations

import time

import pytest

from comfyimg.sources.index import parse_html, parse_json

BASE = "http://127.0.0.1:1/simple/sageattention/"
SHA = "ab" * 32


def test_a_real_shaped_page_gives_every_file_with_its_hash():
    page = ('<!DOCTYPE html><html><head><meta name="pypi:repository-version" content="1.1"></head><body>\n'
            f'<a href="../../files/sageattention-2.2.0-cp312-cp312-linux_x86_64.whl#sha256={SHA}" '
            'data-requires-python="&gt;=3.9">sageattention-2.2.0-cp312-cp312-linux_x86_64.whl</a><br/>\n'
            "<A HREF='sageattention-2.1.0.tar.gz' data-yanked>sageattention-2.1.0.tar.gz</A>\n</body></html>")
    files = parse_html(page, BASE)
    assert [(f.filename, f.url, f.sha256, f.yanked) for f in files] == [
        ("sageattention-2.2.0-cp312-cp312-linux_x86_64.whl",
         "http://127.0.0.1:1/files/sageattention-2.2.0-cp312-cp312-linux_x86_64.whl", SHA, False),
        ("sageattention-2.1.0.tar.gz", f"{BASE}sageattention-2.1.0.tar.gz", None, True)]


@pytest.mark.parametrize("page,refused", [
    ("<div " * 400_000, None),  # html.parser: minutes at 300 KB
    ('<a href="x">' * 400_000, "has no </a>"),
    ('<a href="' + "x" * 2_000_000, "does not close"),
    ("<meta " * 400_000, None),
    ("<a " + "<a " * 600_000 + ">", "has no </a>"),
])
def test_hostile_pages_are_linear_and_malformed_tags_one_line(page, refused):
    started = time.monotonic()
    if refused:
        with pytest.raises(ValueError, match=refused):
            parse_html(page, BASE)
    else:
        assert parse_html(page, BASE) == []
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("version", ["2.0", "0.9", "x"])
def test_an_unsupported_major_api_version_is_refused(version):
    with pytest.raises(ValueError, match="API version 1.x only"):
        parse_html(f'<meta name="pypi:repository-version" content="{version}"><a href="a.whl">a.whl</a>', BASE)
    with pytest.raises(ValueError, match="API version 1.x only"):
        parse_json({"meta": {"api-version": version}, "files": []}, BASE)


def test_a_newer_minor_version_is_read():
    assert parse_json({"meta": {"api-version": "1.4"}, "files": [{"filename": "a.whl", "url": "a.whl"}]}, BASE)
