"""Issue 21: bounded input files, ASCII-only field patterns, escaped location prefixes.
Each case failed before its fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from comfyimg.pins import load as pins
from comfyimg.errors import BadInput
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.basepins import BAKE, BASE_LINES

TARGETS = {"core-cuda", "complete-cuda", "complete-rocm", "core-cpu"}


def with_line(line_no: int, text: str) -> str:
    lines = list(BASE_LINES)
    lines[line_no - 1] = text
    return "\n".join(lines) + "\n"


def refused(text: str) -> str:
    with pytest.raises(BadInput) as info:
        pins.loads(text, Path("wheels.toml"), bake_targets=TARGETS)
    return str(info.value)


# --------------------------------------------------------------------------- 9: ASCII


@pytest.mark.parametrize(("line", "text", "field"), [
    (3, 'python = "cp3\u0661\u0662"', "python"),  # Arabic-Indic digits
    (7, 'cuda = "\uff11\uff12.\uff19"', "cuda"),  # full-width digits
    (8, 'glibc = "\uff12.\uff13\uff19"', "glibc"),
    (6, 'torch_index = "cu\u0661\u0662\u0668"', "torch_index"),
])
def test_non_ascii_digits_are_refused(line, text, field):
    assert re.search(rf"^wheels\.toml:{line}: profiles\.cuda\.{field}: ", refused(with_line(line, text)), re.M)


def test_a_url_with_a_look_alike_host_is_refused():
    url = 'url = "https://g\u0456thub.com/v1/sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"'
    assert re.search(r"^wheels\.toml:20: url: .*not plain ASCII", refused(with_line(20, url)), re.M)


def test_the_base_is_still_valid():
    assert len(pins.loads("\n".join(BASE_LINES) + "\n", Path("wheels.toml"), bake_targets=TARGETS).wheels) == 3
    assert BAKE


# --------------------------------------------------------------------------- 3: input files


@pytest.fixture
def hostile(project_factory):
    return project_factory("\n".join(BASE_LINES) + "\n", BAKE)


@pytest.mark.parametrize("name", ["wheels.toml", "docker-bake.hcl"])
@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_input_files_are_regular_and_bounded(hostile, name, kind):
    import os

    path = hostile.root / name
    path.unlink()
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as fh:
            fh.truncate(64 << 20)  # sparse: 64 MiB of NUL bytes, over the 16 MiB cap
    r = hostile.invoke("check", timeout=30)
    want = {"dev-zero": "a device or socket, not a regular file", "fifo": "a FIFO, not a regular file",
            "huge": "is larger than 16777216 bytes"}[kind]
    assert_failed_cleanly(r, 2, stderr=rf"^{re.escape(name)}:1: file: .*{want}")


# --------------------------------------------------------------------------- 5: hostile images


def test_probe_output_nested_100000_deep_is_a_clear_failure():
    from comfyimg.validate.verdict import parse_result

    result, why = parse_result("[" * 100_000 + "]" * 100_000)
    assert result is None
    assert why and "nested 100000 deep" in why


@pytest.mark.parametrize(("label", "why"), [
    ('[{"name": "sageattention", "version": "2.2.0", "sha256": 5}]', r"\[0\]\.sha256 is int, not a string or null"),
    ('[{"name": ["x"], "version": "2.2.0", "sha256": null}]', r"\[0\]\.name is list, not a string"),
    ('{"name": "x"}', r"a JSON dict, not a list"),
    ("[" * 100_000, r"nested 100000 deep"),
])
def test_a_hostile_pins_label_is_a_reason_not_a_type_error(label, why):
    from comfyimg.validate.verdict import label_pins

    got = label_pins(label)
    assert isinstance(got, str) and re.search(why, got), got


def test_a_good_pins_label_is_read():
    from comfyimg.validate.verdict import label_pins

    assert label_pins('[{"name": "s", "version": "1", "sha256": null}]') == {("s", "1", None)}


# --------------------------------------------------------------------------- 6: never root unless asked


@pytest.mark.parametrize("image_user", ["", "0", "root", "0:0", "root:root", "0:1000", "00", " 0 ", "ROOT", "root:1000"])
def test_the_probe_never_runs_as_uid_0_unless_asked(image_user):
    from comfyimg.validate.containers import probe_user

    assert probe_user(image_user) == "comfy"
    assert probe_user(image_user, asked="0:0") == "0:0"  # --user 0:0: asked for


@pytest.mark.parametrize("image_user", ["comfy", "1000", "1000:1000", "1000:0", "app"])
def test_a_non_root_image_user_is_kept(image_user):
    from comfyimg.validate.containers import probe_user

    assert probe_user(image_user) == image_user


# --------------------------------------------------------------------------- 10: location prefixes


def test_a_key_with_a_newline_cannot_forge_a_line_and_names_the_right_line():
    lines = list(BASE_LINES)
    forged = "wheels.toml:1: python: all is well"
    lines += ["", f'[profiles."x\\n{forged}"]', 'python = "cp312"']  # the header is on line 42
    message = refused("\n".join(lines) + "\n")
    out = message.splitlines()
    assert forged not in out and not any(ln.startswith(forged) for ln in out), message
    assert all(re.match(r"wheels\.toml:\d+: ", ln) for ln in out), message
    assert re.search(r"^wheels\.toml:42: profiles\.x\\n" + re.escape(forged), message, re.M), message


# --------------------------------------------------------------------------- 8: one line, not a traceback


def _patch_member(wheel: Path, *, flag: int = 0, method: int | None = None) -> Path:
    """The wheel with its .so members marked encrypted (``flag``) or compressed by a method
    zipfile does not know (``method``), in both the local and the central headers."""
    import zipfile

    data = bytearray(wheel.read_bytes())
    with zipfile.ZipFile(wheel) as zf:
        infos = [i for i in zf.infolist() if i.filename.endswith(".so")]
    for info in infos:
        local = info.header_offset
        assert data[local:local + 4] == b"PK\x03\x04"
        data[local + 6] |= flag
        if method is not None:
            data[local + 8:local + 10] = method.to_bytes(2, "little")
        pos = 0
        while (pos := data.find(b"PK\x01\x02", pos)) != -1:
            name_len = int.from_bytes(data[pos + 28:pos + 30], "little")
            if bytes(data[pos + 46:pos + 46 + name_len]).decode() == info.filename:
                data[pos + 8] |= flag
                if method is not None:
                    data[pos + 10:pos + 12] = method.to_bytes(2, "little")
            pos += 4
    wheel.write_bytes(bytes(data))
    return wheel


@pytest.mark.parametrize(("patch", "why"), [({"flag": 1}, "encrypted"), ({"method": 97}, "compression method")],
                         ids=["encrypted", "unsupported-compression"])
def test_an_unreadable_zip_member_in_audit_is_one_line(tmp_path, project_factory, patch, why):
    from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel

    wheel = _patch_member(sage2_wheel(tmp_path, SEED_SAGE2), **patch)
    project = project_factory("\n".join(BASE_LINES) + "\n", BAKE)
    r = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm90")
    assert_failed_cleanly(r, 2, stderr=rf"the zip member cannot be read: .*{why}")


def test_a_hanging_cuobjdump_is_stopped_with_one_line(tmp_path, project_factory):
    from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel

    tool = tmp_path / "cuobjdump"
    tool.write_text('#!/bin/sh\n[ "$1" = --version ] && { echo "Cuda compilation tools, release 13.0, V13.0.1"; '
                    'exit 0; }\nexec sleep 600\n')
    tool.chmod(0o755)
    wheel = sage2_wheel(tmp_path, SEED_SAGE2)
    project = project_factory("\n".join(BASE_LINES) + "\n", BAKE)
    r = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm90", timeout=60,
                       env={"COMFYIMG_CUOBJDUMP": str(tool), "COMFYIMG_CUOBJDUMP_TIMEOUT": "2"})
    assert_failed_cleanly(r, 1, stderr=r"cuobjdump did not finish within 2 s \(COMFYIMG_CUOBJDUMP_TIMEOUT\)")


def test_bake_f_is_bakes_file_option_not_invokes_config_flag(project_factory):
    project = project_factory("\n".join(BASE_LINES) + "\n", BAKE)
    r = project.invoke("bake", "--help")
    assert re.search(r"^\s+-f, --file\b", r.stdout, re.M), r.stdout
    r = project.invoke("bake", "--print", "-f", "missing.hcl", timeout=120)
    assert_failed_cleanly(r, (1, 2), stderr="missing.hcl")
    assert "UnknownFileType" not in r.stderr, r.stderr


# --------------------------------------------------------------------------- 12: bake targets by a parser


def test_a_target_line_inside_a_heredoc_or_comment_is_not_a_target(project_factory):
    bake = BAKE + 'variable "NOTES" {\n  default = <<EOT\ntarget "complete-cu130" {\nEOT\n}\n# target "x" {}\n'
    text = "\n".join(BASE_LINES).replace('targets = ["complete-cuda"]   # no sha256',
                                         'targets = ["complete-cu130"]   # no sha256') + "\n"
    project = project_factory(text, bake)
    r = project.invoke("check")
    assert r.returncode == 2, r.stdout + r.stderr
    assert re.search(r"^wheels\.toml:30: targets: .*complete-cu130", r.stderr, re.M), r.stderr


def test_a_malformed_bake_file_is_bad_input_with_its_line(project_factory):
    project = project_factory("\n".join(BASE_LINES) + "\n", BAKE + 'target "broken" {\n  x = \n')
    r = project.invoke("check")
    assert_failed_cleanly(r, 2, stderr=r"^(error: )?docker-bake\.hcl:\d+: syntax: not valid HCL")


# --------------------------------------------------------------------------- 11: an honest statement


def test_an_interrupt_after_a_replace_says_what_was_replaced(tmp_path):
    from comfyimg import cli, fsutil

    fsutil.CHANGED.clear()
    assert cli.failure(KeyboardInterrupt()) == ("interrupted (Ctrl-C); no file was changed", 130)
    fsutil.atomic_write_many({tmp_path / "generated" / "a.txt": "x"})
    message, code = cli.failure(KeyboardInterrupt())
    assert code == 130 and "every file is as it was" not in message
    assert message == f"interrupted (Ctrl-C); already replaced before the stop, each whole: {tmp_path}/generated/a.txt"
    fsutil.CHANGED.clear()


def test_a_module_that_inflates_past_the_cap_stops_the_audit_before_the_disk_fills(tmp_path, monkeypatch):
    from comfyimg.kernels import read
    from comfyimg.kernels.elf import BadKernels
    from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel

    wheel = sage2_wheel(tmp_path, SEED_SAGE2)  # real objects of 18-30 KB each
    monkeypatch.setattr(read, "MAX_MODULE_BYTES", 10_000)
    with pytest.raises(BadKernels, match=r"sageattention/_\w+\.cpython-312-x86_64-linux-gnu\.so: the zip member "
                                         r"inflates past 10000 bytes"):
        read.read_wheel(wheel)
    monkeypatch.setattr(read, "MAX_MODULE_BYTES", 4 << 30)
    assert {m.name for m in read.read_wheel(wheel).modules} == {f"sageattention.{m}" for m in SEED_SAGE2}
