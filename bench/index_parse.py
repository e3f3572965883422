"""The index page parser's cost on 32 MiB pages (issue 27, item 4): a real-shaped PEP 503 page
and the hostile shapes that made html.parser quadratic, parsed by
``comfyimg.sources.index.parse_html`` (a linear scan). html.parser is timed on a small
hostile page for comparison (its 32 MiB run would take hours).

    .venv/bin/python bench/index_parse.py

Prints one line per page: its size, the seconds, and the outcome (files found, or the one-line
refusal).
"""

from __future__ import annotations

import html.parser
import time

from comfyimg.sources.index import parse_html

MIB = 1 << 20
SIZE = 32 * MIB
BASE = "http://127.0.0.1:1/simple/sageattention/"


def fill(unit: str, size: int = SIZE) -> str:
    return unit * (size // len(unit))


PAGES = {
    "real-shaped (anchors)": "<html><body>\n" + fill(
        '<a href="../../files/sageattention-2.2.0-cp312-cp312-linux_x86_64.whl#sha256=' + "a" * 64
        + '" data-requires-python="&gt;=3.9">sageattention-2.2.0-cp312-cp312-linux_x86_64.whl</a><br/>\n'),
    "unclosed <div (html.parser: quadratic)": fill("<div "),
    "unclosed <a href=x>, no </a>": fill('<a href="x">'),
    "unclosed quote in <a": '<a href="' + fill("x"),
    "<meta  without > in the head": fill("<meta "),
}


def timed(label: str, page: str) -> None:
    start = time.perf_counter()
    try:
        outcome = f"{len(parse_html(page, BASE))} files"
    except ValueError as exc:
        outcome = f"refused: {exc}"
    print(f"{label:42} {len(page) / MIB:5.1f} MiB  {time.perf_counter() - start:6.2f} s  {outcome}")


def html_parser(page: str) -> float:
    start = time.perf_counter()
    parser = html.parser.HTMLParser()
    parser.feed(page)
    parser.close()
    return time.perf_counter() - start


def main() -> None:
    for label, page in PAGES.items():
        timed(label, page)
    for kib in (25, 50):
        page = fill("<div ", kib * 1024)
        print(f"html.parser, unclosed <div, {kib} KiB{'':13} {html_parser(page):6.2f} s")


if __name__ == "__main__":
    main()
