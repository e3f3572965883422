"""Issue 12, the classes that need no server: whole-string validation, all-or-nothing
writes, one fit rule, untrusted text. Each case failed on the code before the fixes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from comfyimg import fsutil
from comfyimg.pins import load as pins
from comfyimg import render
from comfyimg.pins.abi import fit, parse_wheel
from comfyimg.bake.bake import BakeRequest, check_options
from comfyimg.errors import BadInput
from comfyimg.untrusted import add_secret, for_markdown_cell, for_terminal, for_xml
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.basepins import BAKE, BASE, edit, sub

WHOLE = [  # (line, old, new, field): the value with a newline after it, or around it
    (3, '"cp312"', '"cp312\\n"', "profiles.cuda.python"),
    (4, '"linux_x86_64"', '"linux_x86_64\\n# x"', "profiles.cuda.platform"),
    (5, '"2.9.0"', '"2.9.0\\n"', "profiles.cuda.torch"),
    (6, '"cu128"', '"cu128\\n"', "profiles.cuda.torch_index"),
    (7, '"12.9"', '"12.9\\n"', "profiles.cuda.cuda"),
    (8, '"sm90"', '"sm90\\n"', "profiles.cuda.archs"),
    (19, '"2.2.0"', '"2.2.0\\n"', "version"),
    (21, '"a', '"\\na', "sha256"),
    (22, '"pixeloven/SageAttention"', '"o/r\\n"', "source.github"),
    (22, 'release = "v1"', 'release = "v1\\n--index-url http://127.0.0.1:9/"', "source.release"),
    (22, 'release = "v1"', 'release = "v1 --pre"', "source.release"),
    (22, 'release = "v1"', 'release = "v1..2"', "source.release"),
    (23, '"complete-cuda"', '"../../etc/x-cuda"', "targets"),
    (24, '"sageattention"', '"sageattention\\n"', "provides"),
    (38, '"sm90"', '"sm90\\n"', "arch"),
    (18, '"sageattention"', '" sageattention"', "name"),
]


@pytest.mark.parametrize(("line", "old", "new", "field"), WHOLE, ids=[f"{w[3]}-{i}" for i, w in enumerate(WHOLE)])
def test_every_string_field_is_validated_whole(line, old, new, field):
    with pytest.raises(BadInput) as exc:
        pins.loads(edit(sub(line, old, new)), Path("wheels.toml"))
    assert re.search(rf"^wheels\.toml:{line}: {re.escape(field)}: \S", str(exc.value), re.M), str(exc.value)


def test_profile_names_are_lowercase_identifiers_so_bake_variables_cannot_collide():
    text = BASE.replace("[profiles.cpu]", "[profiles.CUDA]").replace('torch_index = "cpu"', 'torch_index = "cpu"')
    with pytest.raises(BadInput, match=r"^wheels\.toml:10: profiles\.CUDA: 'CUDA' is not a profile name"):
        pins.loads(text, Path("wheels.toml"))


@pytest.mark.parametrize("case", ["bake-not-utf8", "bake-is-a-directory", "pins-is-a-directory", "deep-nesting"])
def test_bad_files_are_exit_2_with_file_line_field(project_factory, case):
    project = project_factory(BASE, BAKE)
    expect = {"bake-not-utf8": r"^docker-bake\.hcl:3: encoding: byte 0xff",
              "bake-is-a-directory": r"^docker-bake\.hcl:1: file: .* is a directory",
              "pins-is-a-directory": r"^wheels\.toml:1: file: .* is a directory",
              "deep-nesting": r"^wheels\.toml:41: toml: .*nested too deeply"}[case]
    if case == "bake-not-utf8":
        (project.root / "docker-bake.hcl").write_bytes(b'target "core-cuda" {}\n\n# caf\xff\n')
    elif case == "bake-is-a-directory":
        (project.root / "docker-bake.hcl").unlink()
        (project.root / "docker-bake.hcl").mkdir()
    elif case == "pins-is-a-directory":
        project.pins.unlink()
        project.pins.mkdir()
    else:
        project.pins.write_text(BASE + "x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    before = project.snapshot()
    result = project.invoke("check")
    assert_failed_cleanly(result, 2, stderr=expect, before=before, after=project.snapshot())


def test_a_label_with_a_newline_fails_preflight():
    with pytest.raises(BadInput, match="--label"):
        check_options(BakeRequest(label="v1\n"))


# --------------------------------------------------------------------------- all or nothing


def test_a_failed_replace_puts_back_every_file_already_replaced(tmp_path, monkeypatch):
    files = {tmp_path / name: f"old {name}\n" for name in ("a.txt", "b.txt", "c.txt")}
    for path, text in files.items():
        path.write_text(text)
    real_replace, calls = os.replace, []

    def replace(src, dst):  # the disk fails on the second replace, after the first one landed
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space"):
        fsutil.atomic_write_many({p: "new\n" for p in files} | {tmp_path / "d.txt": "new\n"})
    monkeypatch.setattr(os, "replace", real_replace)
    assert {p: p.read_text() for p in files} == files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "c.txt"]  # no temp, no d.txt


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    target = tmp_path / "real" / "pins.toml"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "wheels.toml"
    link.symlink_to(target)
    fsutil.atomic_write(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"


def test_per_arch_only_pins_say_so_in_the_base_image_requirements(project_factory):
    # The arch-independent sageattention pin goes: only the sm90 one is left.
    project = project_factory(edit({no: None for no in range(16, 26)}), BAKE)
    result = project.invoke("render")
    assert result.returncode == 0, result.stderr
    base = (project.root / "generated/requirements/complete-cuda.txt").read_text()
    assert "sageattention @" not in base
    assert "# NOTE: sageattention is pinned per GPU arch only (sm90): this image, built without an arch, has NO sageattention" in base
    assert re.search(r"warning: wheels\.toml:\d+: arch: sageattention in complete-cuda is pinned for sm90 only",
                     result.stderr), result.stderr


# --------------------------------------------------------------------------- one fit rule


def test_pins_and_bump_share_one_fit_rule_for_arch():
    """A per-arch pin pointing at a wheel built for every arch: pins accepted it, bump refused."""
    from comfyimg.bump.select import reject_reason as _reject_reason
    from comfyimg.sources.github import Asset

    text = edit(sub(36, "%2Bcu129.torch2.9.0.sm90", "") | sub(35, "+cu129.torch2.9.0.sm90", "") | {20: None, 18: None,
                19: None, 21: None, 22: None, 23: None, 24: None, 17: None, 16: None})
    with pytest.raises(BadInput, match=r"wheels\.toml:\d+: arch: .*built for every arch, the pin is for sm90"):
        pins.loads(text, Path("wheels.toml"))
    loaded = pins.loads(BASE, Path("wheels.toml"))
    per_arch = loaded.wheels[2]
    every = Asset(1, "sageattention-2.2.0-cp312-cp312-linux_x86_64.whl", 1, None, "u", "b", "", "uploaded")
    assert "built for every arch, the pin is for sm90" in _reject_reason(every, per_arch, loaded.profiles["cuda"])
    wheel = parse_wheel(every.name)
    assert fit(wheel, loaded.profiles["cuda"].abi, "sm90") == ["built for every arch, the pin is for sm90"]


# --------------------------------------------------------------------------- untrusted text


@pytest.mark.parametrize(("raw", "terminal"), [
    ("\x1b]0;pwned\x07title", "\\x1b]0;pwned\\x07title"),
    ("a\rb", "a\\x0db"),
    ("::error::pwned", "\\x3a:error::pwned"),
    ("ok\n  ::set-output name=x::y", "ok\n  \\x3a:set-output name=x::y"),
    ("bidi \u202eevil", "bidi \\u202eevil"),
    ("tab\tand ≠ stay", "tab\tand ≠ stay"),
])
def test_for_terminal(raw, terminal):
    assert for_terminal(raw) == terminal


def test_markdown_cells_and_xml():
    assert for_markdown_cell("a | b\nc") == "a \\| b c"
    assert for_xml("x\x1b[31my\ud800z") == "x[31myz"


def test_secrets_are_redacted_everywhere():
    add_secret("ghp_SECRETsecret123")
    for f in (for_terminal, for_markdown_cell, for_xml):
        assert "ghp_SECRET" not in f("token ghp_SECRETsecret123 leaked") and "***" in f("ghp_SECRETsecret123")


def test_validate_markdown_escapes_untrusted_cells():
    from comfyimg.validate.reports import Outcome, _markdown

    result = {"status": "fail", "reason": "r|x", "checks": [{"name": "a|b\n::x", "status": "fail", "detail": "d\x1b[2J"}]}
    text = _markdown(Outcome("sage2", "img`x", result, 1, False, 1.0))
    row = [ln for ln in text.splitlines() if ln.startswith("| a")][0]
    assert row == "| a\\|b \\x3a:x | fail | d\\x1b[2J |", text
    assert "\x1b" not in text


def test_render_output_unchanged_for_valid_pins(project_factory):
    project = project_factory(BASE, BAKE)
    files = render.render(pins.load(project.pins))
    assert all("NOTE" not in text for text in files.values())
