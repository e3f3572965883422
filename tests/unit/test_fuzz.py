"""Issue 21 class 13: a bounded fuzz pass (Hypothesis) over the parsers of untrusted input.
Every input ends in a value or the module's own clear error, never another exception.
Bounded: a fixed example count and a per-example deadline; derandomized so CI is stable."""

from __future__ import annotations

import json
import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfyimg.sources import digests
from comfyimg.pins import load as pins
from comfyimg.pins.abi import InvalidWheelName, parse_wheel
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.sources.github import GitHub, Release
from comfyimg.validate.verdict import label_pins, parse_result
from tests.lib.basepins import BASE_LINES

BOUNDED = settings(max_examples=300, deadline=2000, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30)

TOML_PIECES = st.sampled_from([
    "[profiles.cuda]", "[[wheel]]", "[wheel.source]", 'python = "cp312"', 'python = "cp3\u0661\u0662"',
    'glibc = "\uff12.\uff13\uff19"', 'glibc = "2.39"', 'cuda = "12.9"', 'archs = ["sm80"]', "archs = 5",
    'name = "x"', 'version = "1"', 'url = "https://example.invalid/x-1-py3-none-any.whl"', 'sha256 = 5',
    'targets = ["core-cuda"]', "[profiles.\"a\\nb\"]", "= =", "\x00", "\ufeff", '"""', "[[", "x = [[[[[[1]]]]]]",
])


@BOUNDED
@given(st.lists(TOML_PIECES | st.text(max_size=30), max_size=25), st.integers(0, len(BASE_LINES)))
def test_the_wheels_toml_loader_ends_in_pins_or_bad_input(pieces, at):
    text = "\n".join([*BASE_LINES[:at], *pieces, *BASE_LINES[at:]]) + "\n"
    try:
        loaded = pins.loads(text, Path("wheels.toml"), bake_targets={"core-cuda", "complete-cuda"})
    except BadInput as exc:
        assert all(line.startswith("wheels.toml:") for line in str(exc).splitlines()), str(exc)
    else:
        assert isinstance(loaded, pins.Pins)


release_like = st.fixed_dictionaries(
    {"tag_name": st.text(max_size=20) | json_values},
    optional={"id": json_values, "name": json_values, "draft": json_values, "prerelease": json_values,
              "published_at": json_values,
              "assets": st.lists(st.fixed_dictionaries({}, optional={
                  k: json_values for k in ("id", "name", "size", "digest", "url", "browser_download_url",
                                            "content_type", "state")}), max_size=4) | json_values})


@BOUNDED
@given(release_like | json_values)
def test_the_release_schema_ends_in_a_release_or_one_line(data):
    try:
        release = GitHub._release(data, "release")
    except WorkFailed as exc:
        assert str(exc).startswith("release: ") and "\n" not in str(exc), str(exc)
    else:
        assert isinstance(release, Release)
        for asset in release.assets:
            assert isinstance(asset.size, int) and 0 <= asset.size
            assert "\n" not in asset.name and "\r" not in asset.name


@BOUNDED
@given(st.text(alphabet=string.ascii_letters + string.digits + "-_.+!~" + "\u0661\uff12", max_size=80)
       .map(lambda s: s + ".whl") | st.text(max_size=60))
def test_the_wheel_name_parser_ends_in_a_wheel_or_invalid_wheel_name(name):
    try:
        parse_wheel(name)
    except InvalidWheelName:
        pass


@BOUNDED
@given(st.lists(st.sampled_from(["a" * 64, "A" * 64, "SHA256 (", ") = ", "  ", " *", "\n", "\r\n", "x.whl",
                                 "../", "\u0661" * 64, "#"]) | st.text(max_size=20), max_size=30)
       .map("".join))
def test_the_sha256sums_parser_ends_in_a_mapping(text):
    sums = digests.parse_sums(text)
    assert all(len(v) == 64 and set(v) <= set("0123456789abcdef") for v in sums.values())


@BOUNDED
@given(json_values.map(json.dumps) | st.text(max_size=200)
       | st.integers(0, 200_000).map(lambda n: "[" * n + "]" * n))
def test_the_probe_result_and_label_parsers_end_in_a_value_or_a_reason(text):
    result, why = parse_result(text)
    assert (result is None) != (why is None)
    assert isinstance(label_pins(text), (set, str))


HTML_PIECES = st.sampled_from([
    "<a", "<A ", "<a href=", '"', "'", ">", "</a>", "</A >", "<meta ", 'name="pypi:repository-version" ',
    'content="1.0"', 'content="2.0"', "#sha256=" + "a" * 64, "../files/x-1-py3-none-any.whl", "&amp;", "&#0;",
    "data-yanked", "<!--", "-->", "<div ", "\x00", "\n", "\u202e", "http://[::1", "//other/", "?q=1",
])


@BOUNDED
@given(st.lists(HTML_PIECES | st.text(max_size=20), max_size=40))
def test_the_index_page_parser_ends_in_files_or_a_reason(pieces):
    """Issue 27 item 8: every page ends in a list of files or one ValueError, and every file
    name it gives is one line."""
    from comfyimg.sources.index import parse_html

    try:
        files = parse_html("".join(pieces), "http://127.0.0.1:1/simple/x/")
    except ValueError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert all("\n" not in f.filename and "\r" not in f.filename for f in files)


@BOUNDED
@given(json_values | st.fixed_dictionaries({"meta": json_values, "files": st.lists(json_values, max_size=4)}))
def test_the_pep691_answer_parser_ends_in_files_or_a_reason(data):
    from comfyimg.sources.index import parse_json

    try:
        parse_json(data, "http://127.0.0.1:1/simple/x/")
    except ValueError as exc:
        assert str(exc)


class _Replies:
    """ComfyUI's port, answering every request with the same fuzzed body."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def request(self, method, path, body=None):
        from comfyimg.validate.smoke import Reply

        return Reply(200, self.body, f"{method} {path.split('?')[0]}")

    def get(self, path, params=None):
        return self.request("GET", path)

    def post(self, path, payload):
        return self.request("POST", path)


@BOUNDED
@given(json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200))
def test_comfyuis_answers_end_in_a_render_or_one_line(body):
    """Issue 27 item 8: whatever ComfyUI's port answers (lists where objects belong, truncated
    latents, non-JSON), the smoke's reading of it ends in its result or one of the errors
    render() turns into a one-line problem, never another exception."""
    import time

    from comfyimg.validate import smoke

    http = _Replies(body)
    try:
        entry = smoke.run_prompt(http, lambda: None, {}, time.monotonic() + 0.5)  # type: ignore[arg-type]
        smoke.outputs(http, entry)  # type: ignore[arg-type]
    except (smoke.NoAnswer, RuntimeError, ValueError, KeyError, TypeError, AttributeError, TimeoutError) as exc:
        assert "\n" not in str(exc)


@BOUNDED
@given(st.binary(max_size=120) | st.builds(lambda n, h, d: n.to_bytes(8, "little") + h + d,
                                          st.integers(0, 200), json_values.map(lambda v: json.dumps(v).encode()),
                                          st.binary(max_size=40)))
def test_a_latent_file_ends_in_values_or_one_value_error(data):
    from comfyimg.validate.smoke import latent_values

    try:
        latent_values(data)
    except ValueError as exc:
        assert str(exc)
