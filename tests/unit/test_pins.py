"""wheels.toml: the strict loader, its error messages, saving through tomlkit, and `invoke check`."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from comfyimg import render
from comfyimg.pins import edit as pinedit
from comfyimg.pins import load as pins
from comfyimg.errors import BadInput
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.basepins import BAKE, BASE, BASE_LINES, HASH, edit, sub

# id, wheels.toml content, expected line, expected field
MALFORMED = [
    ("syntax-unclosed-table", edit({10: "[profiles.cpu"}), 10, "toml"),
    ("syntax-bare-value", edit({5: "torch = 2.9.0"}), 5, "toml"),
    ("syntax-duplicate-key", edit({19: 'version = "2.2.0"\nversion = "2.2.1"'}), 20, "toml"),
    ("syntax-unterminated-at-end", BASE + 'x = "abc', len(BASE_LINES) + 1, "toml"),
    ("misspelt-profiles-table", edit(sub(10, "profiles.cpu", "profile.cpu")), 10, "profile"),
    # U+2028 and U+0085 are allowed in TOML comments and are not line breaks there
    ("line-separators-in-comment", edit({1: "# test pins \u2028 \x85 \u2029"} | sub(19, "2.2.0", "2.x")), 19, "version"),
    ("empty-file", "", 1, "profiles"),
    ("only-comments", "# nothing here\n", 1, "profiles"),
    ("non-utf8", BASE.encode().replace(b"SageAttention 2", b"SageAttention \xff2"), 16, "encoding"),
    ("utf8-bom", b"\xef\xbb\xbf" + BASE.encode(), 1, "encoding"),
    ("unknown-top-level-key", edit({1: 'colour = "blue"'}), 1, "colour"),
    ("unknown-wheel-key", edit(sub(21, "sha256", "sha265")), 21, "sha265"),
    ("unknown-profile-key", edit({8: 'arches = ["sm80"]'}), 8, "profiles.cuda.arches"),
    ("unknown-source-key", edit(sub(22, "release", "tag")), 22, "source.tag"),
    ("index-source-ftp", edit(sub(22, '{ github = "pixeloven/SageAttention", release = "v1" }', '{ index = "ftp://example.invalid/simple", project = "sageattention" }')), 22, "source.index"),
    ("index-source-bad-project", edit(sub(22, '{ github = "pixeloven/SageAttention", release = "v1" }', '{ index = "https://example.invalid/simple", project = "sage attention" }')), 22, "source.project"),
    ("index-source-no-project", edit(sub(22, '{ github = "pixeloven/SageAttention", release = "v1" }', '{ index = "https://example.invalid/simple" }')), 22, "source.project"),
    ("index-source-mixed", edit(sub(22, '{ github = "pixeloven/SageAttention", release = "v1" }', '{ index = "https://example.invalid/simple", project = "sageattention", github = "a/b" }')), 22, "source"),
    ("index-source-unknown-key", edit(sub(22, '{ github = "pixeloven/SageAttention", release = "v1" }', '{ index = "https://example.invalid/simple", project = "sageattention", tag = "x" }')), 22, "source.tag"),
    ("no-profiles", edit({n: None for n in range(2, 15)}), 1, "profiles"),
    ("type-targets-string", edit(sub(23, '["complete-cuda"]', '"complete-cuda"')), 23, "targets"),
    ("type-version-int", edit(sub(19, '"2.2.0"', "2")), 19, "version"),
    ("type-provides-int", edit(sub(24, '["sageattention"]', "[1]")), 24, "provides"),
    ("type-source-string", edit(sub(22, '{ github = "pixeloven/SageAttention", release = "v1" }', '"v1"')), 22, "source"),
    ("type-wheel-not-array", edit({1: 'wheel = "x"'} | {n: None for n in range(16, 41)}), 1, "wheel"),
    ("missing-url", edit({20: None}), 17, "url"),
    ("missing-name", edit({27: None}), 26, "name"),
    ("empty-targets", edit(sub(23, '["complete-cuda"]', "[]")), 23, "targets"),
    ("sha256-short", edit(sub(21, HASH, "abc123")), 21, "sha256"),
    ("sha256-not-hex", edit(sub(21, HASH, "z" * 64)), 21, "sha256"),
    ("sha256-uppercase", edit(sub(21, HASH, "A" * 64)), 21, "sha256"),
    ("version-invalid", edit(sub(19, "2.2.0", "two.point.oh")), 19, "version"),
    ("version-disagrees-with-file", edit(sub(19, "2.2.0", "2.1.0")), 20, "url"),
    ("url-ftp", edit(sub(20, "https://", "ftp://")), 20, "url"),
    # The URL goes verbatim into a requirements line: no way to smuggle in a --hash or an index.
    ("url-injects-a-hash", edit(sub(20, '.whl"', f'.whl?x=1 --hash=sha256:{"e" * 64}"')), 20, "url"),
    ("url-injects-a-line", edit(sub(20, '.whl"', '.whl?x=1\\n--extra-index-url=https://example.invalid/simple"')), 20, "url"),
    ("url-unparseable", edit(sub(20, "https://example.invalid", "https://[example.invalid")), 20, "url"),
    ("url-relative", edit({20: 'url = "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"'}), 20, "url"),
    ("url-not-a-wheel", edit(sub(20, "-290.129-cp312-cp312-linux_x86_64.whl", ".tar.gz")), 20, "url"),
    ("url-name-disagrees", edit(sub(27, "sageattn3", "sageattn4")), 29, "url"),
    ("abi-other-cuda", edit(sub(20, "290.129", "290.128")), 20, "url"),
    ("abi-other-torch", edit(sub(20, "290.129", "280.129")), 20, "url"),
    ("abi-other-python", edit(sub(20, "cp312-cp312", "cp311-cp311")), 20, "url"),
    ("abi-other-platform", edit(sub(20, "linux_x86_64", "win_amd64")), 20, "url"),
    ("abi-cuda-wheel-on-cpu", edit(sub(23, "complete-cuda", "core-cpu")), 20, "url"),
    ("arch-disagrees-with-file", edit(sub(38, "sm90", "sm80")), 38, "arch"),
    ("arch-missing-for-per-sm-wheel", edit({38: None}), 33, "arch"),
    ("arch-not-in-profile", edit({8: 'archs = ["sm80", "sm89"]'}), 36, "url"),
    ("arch-invalid", edit(sub(38, "sm90", "hopper")), 38, "arch"),
    ("duplicate-pin", edit(sub(27, "sageattn3", "sageattention")
                           | sub(29, "sageattn3-1.0.0", "sageattention-1.0.0")), 27, "name"),
    ("duplicate-url", edit(sub(29, "sageattn3-1.0.0-290.129", "sageattention-2.2.0-290.129")
                           | sub(27, "sageattn3", "sageattention") | sub(28, "1.0.0", "2.2.0")
                           | sub(30, "complete-cuda", "core-cuda")), 29, "url"),
    ("target-not-in-bake", edit(sub(23, "complete-cuda", "complete-cudaa")), 23, "targets"),
    ("target-without-profile", edit(sub(23, "complete-cuda", "complete-rocm")), 23, "targets"),
    ("profile-python-not-tag", edit(sub(3, "cp312", "3.12")), 3, "profiles.cuda.python"),
    ("profile-cuda-invalid", edit(sub(7, "12.9", "12")), 7, "profiles.cuda.cuda"),
    ("profile-torch-invalid", edit(sub(13, "2.9.0", "latest")), 13, "profiles.cpu.torch"),
    ("profile-torch-index-invalid", edit(sub(6, "cu128", "https://x")), 6, "profiles.cuda.torch_index"),
    ("profile-torch-index-other-cuda-major", edit(sub(6, "cu128", "cu130")), 6, "profiles.cuda.torch_index"),
    ("profile-cpu-torch-index-with-cuda", edit(sub(6, "cu128", "cpu")), 6, "profiles.cuda.torch_index"),
    ("profile-cuda-torch-index-without-cuda", edit(sub(14, "cpu", "cu128")), 14, "profiles.cpu.torch_index"),
    ("source-github-not-repo", edit(sub(22, "pixeloven/SageAttention", "pixeloven")), 22, "source.github"),
    ("provides-not-module", edit(sub(24, '"sageattention"', '"sage-attention"')), 24, "provides"),
]


@pytest.fixture
def valid(project_factory):
    project = project_factory(BASE, BAKE)
    render.write(pins.load(project.pins), project.root)
    return project


def test_base_is_valid(valid):
    loaded = pins.load(valid.pins)
    assert [p.key for p in loaded.wheels] == ["sageattention", "sageattn3", "sageattention[sm90]"]
    assert loaded.wheels[1].sha256 is None  # recorded as missing, not invented
    assert loaded.wheels[2].filename == "sageattention-2.2.0+cu129.torch2.9.0.sm90-cp312-cp312-linux_x86_64.whl"
    result = valid.invoke("check")
    assert result.returncode == 0, result.stderr
    assert "sageattn3 has no hash yet" in result.stderr
    sage3 = [ln for ln in result.stderr.splitlines() if "sageattn3" in ln]
    assert sage3 and not any("invoke bump --release" in ln for ln in sage3)  # no source: no bump hint
    # a plain URL pin is first class: bump downloads its URL and records the hash
    assert "invoke bump --verify --name sageattn3" in result.stderr


@pytest.mark.parametrize(("content", "line", "field"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed(project_factory, content, line, field):
    project = project_factory(content, BAKE)
    before = project.snapshot()
    result = project.invoke("check")
    assert_failed_cleanly(result, 2, stderr=rf"^wheels\.toml:{line}: {re.escape(field)}: \S", before=before,
                          after=project.snapshot())


def test_malformed_case_count():
    assert len(MALFORMED) >= 25


def test_missing_file(project_factory):
    project = project_factory(None, BAKE)
    result = project.invoke("check")
    assert_failed_cleanly(result, 2, stderr=r"^wheels\.toml:1: file: .*wheels\.toml does not exist")
    assert not project.pins.exists()


def test_all_errors_reported_at_once(project_factory):
    content = edit(sub(3, "cp312", "3.12") | sub(21, HASH, "abc") | sub(24, '"sageattention"', '"a-b"'))
    with pytest.raises(BadInput) as exc:
        pins.loads(content, Path("wheels.toml"))
    lines = str(exc.value).splitlines()
    assert [ln.split(":")[1] for ln in lines] == ["3", "21", "24"]


def test_check_detects_drift_and_prints_diff(valid):
    req = valid.root / "generated/requirements/complete-cuda.txt"
    req.write_text(req.read_text().replace("a" * 64, "c" * 64))
    before = valid.snapshot()
    result = valid.invoke("check")
    assert result.returncode == 1
    assert "-sageattention @ https://example.invalid" in result.stdout
    assert f"+sageattention @ https://example.invalid/v1/sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl --hash=sha256:{HASH}" in result.stdout
    assert "invoke render" in result.stderr
    assert valid.snapshot() == before


def test_check_detects_missing_and_stale_files(valid):
    (valid.root / "generated/wheels.bake.json").unlink()
    (valid.root / "generated/requirements/old-target.txt").write_text("x\n")
    result = valid.invoke("check")
    assert result.returncode == 1
    assert "generated/wheels.bake.json" in result.stderr and "old-target.txt" in result.stderr
    assert valid.invoke("render").returncode == 0
    assert not (valid.root / "generated/requirements/old-target.txt").exists()
    assert valid.invoke("check").returncode == 0


def test_render_is_deterministic(valid):
    first = valid.snapshot()
    assert valid.invoke("render").returncode == 0
    assert valid.snapshot() == first
    loaded = pins.load(valid.pins)
    assert render.render(loaded) == render.render(pins.load(valid.pins))


def test_requirements_content(valid):
    text = (valid.root / "generated/requirements/complete-cuda.txt").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == [
        f"sageattention @ https://example.invalid/v1/sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl --hash=sha256:{HASH}",
        "sageattn3 @ https://example.invalid/v1/sageattn3-1.0.0-290.129-cp312-cp312-linux_x86_64.whl",
    ]
    assert text.startswith("# GENERATED FILE - do not edit.\n# From wheels.toml by `invoke render`")
    per_arch = (valid.root / "generated/requirements/complete-cuda-sm90.txt").read_text()
    assert "sageattention-2.2.0%2Bcu129.torch2.9.0.sm90" in per_arch
    assert "sageattention-2.2.0-290.129" not in per_arch  # one sageattention per image
    assert '"default": [\n        "sm90"\n      ]' in (valid.root / "generated/wheels.bake.json").read_text()


def test_load_save_roundtrip_is_byte_identical(valid):
    loaded = pins.load(valid.pins)
    before = valid.pins.read_bytes()
    pinedit.save_changes(loaded, {})
    assert valid.pins.read_bytes() == before
    assert pinedit.dumps_with_changes(BASE, {}) == BASE


def test_save_keeps_comments_and_order(valid):
    loaded = pins.load(valid.pins)
    pinedit.save_changes(loaded, {1: {"sha256": "d" * 64}, 0: {"source": {"github": "pixeloven/SageAttention", "release": "v2"}}})
    text = valid.pins.read_text()
    assert "# keep this comment" in text and "# SageAttention 2" in text and "# no sha256: recorded as missing" in text
    assert pins.load(valid.pins).wheels[1].sha256 == "d" * 64
    diff = [ln for ln in difflib.ndiff(BASE.splitlines(), text.splitlines()) if ln[:1] in "+-"]
    assert diff == [
        '- source = { github = "pixeloven/SageAttention", release = "v1" }',
        '+ source = { github = "pixeloven/SageAttention", release = "v2" }',
        f'+ sha256 = "{"d" * 64}"',
    ]


def test_wheel_sub_table_gets_its_own_line_and_keeps_new_keys_out(project_factory):
    """``[wheel.source]`` is as valid as the inline form: errors point into it, and a key
    that bump adds lands in the [[wheel]] table, not in the sub-table."""
    inline = BASE_LINES[21]
    lines = [*BASE_LINES[:21], *BASE_LINES[22:24], "[wheel.source]", 'github = "pixeloven/SageAttention"',
             'release = "v1"', *BASE_LINES[24:]]
    assert inline.startswith("source = {") and lines[23] == "[wheel.source]"
    text = "\n".join(lines) + "\n"
    with pytest.raises(BadInput, match=r"^wheels\.toml:25: source\.github: expected a string"):
        pins.loads(text.replace('github = "pixeloven/SageAttention"', "github = 5"), Path("wheels.toml"))
    changed = pinedit.dumps_with_changes(text, {1: {"sha256": "d" * 64}, 0: {"sha256": "c" * 64}})
    loaded = pins.loads(changed, Path("wheels.toml"))
    assert [p.sha256 for p in loaded.wheels[:2]] == ["c" * 64, "d" * 64]
    assert loaded.wheels[0].source == pins.Source("pixeloven/SageAttention", "v1")


def test_save_keeps_crlf_line_endings(valid):
    crlf = BASE.replace("\n", "\r\n")
    changed = pinedit.dumps_with_changes(crlf, {1: {"sha256": "d" * 64}})
    assert f'sha256 = "{"d" * 64}"\r\n' in changed
    assert "\n" not in changed.replace("\r\n", "")


def test_check_compares_bytes_crlf_and_non_utf8_are_drift(valid):
    req = valid.root / "generated/requirements/complete-cuda.txt"
    req.write_bytes(req.read_bytes().replace(b"\n", b"\r\n"))
    (valid.root / "generated/requirements/old.txt").write_bytes(b"\xff\n")
    result = valid.invoke("check")
    assert_failed_cleanly(result, 1)
    assert "complete-cuda.txt" in result.stderr and "old.txt" in result.stderr
    assert valid.invoke("render").returncode == 0
    assert b"\r\n" not in req.read_bytes()
    assert valid.invoke("check").returncode == 0


def test_save_refuses_invalid_change_and_writes_nothing(valid):
    loaded = pins.load(valid.pins)
    before = valid.snapshot()
    with pytest.raises(BadInput, match="sha256"):
        pinedit.save_changes(loaded, {0: {"sha256": "nope"}})
    assert valid.snapshot() == before


def test_repo_pins_are_valid_against_real_bake_file():
    from tests.lib.project import REPO  # noqa: PLC0415

    loaded = pins.load(REPO / "wheels.toml", bake_targets=render.targets(REPO / "docker-bake.hcl"))
    assert {p.name for p in loaded.wheels} == {"sageattention", "sageattn3"}
    assert all(p.sha256 is None for p in loaded.wheels)  # unknown from here: never invented
    assert render.check(loaded, REPO) == []
