"""Issue 12 against the loopback GitHub (API 127.0.0.1, storage 127.0.0.2, browser downloads
127.0.0.3): secrets, hostile answers, interrupted and concurrent runs. Each case failed on
the code before the fixes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.lib.assertions import assert_failed_cleanly
from tests.lib.bumpproject import LINUX, NEW_SAGE, SAGE, TOKEN, assert_unchanged
from tests.lib.github import asset_sha256 as sha


def release_body(fake, tag: str, **override) -> bytes:
    rel = next(r for r in fake.repos[SAGE] if r.tag == "v2.2.0-build.17")
    return json.dumps({**fake.release_json(SAGE, rel), "tag_name": tag, **override}).encode()


def wait_for(predicate, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


# --------------------------------------------------------------------------- 1: secrets


@pytest.mark.parametrize("bad", ["\n", "\r\n", "é", " "], ids=["lf", "crlf", "non-ascii", "space"])
def test_a_token_that_cannot_be_a_header_is_bad_input_and_never_shown(project, bad):
    before = project.snapshot()
    r = project.bump("--name", "sageattn3", GITHUB_TOKEN=TOKEN + bad)
    assert_unchanged(project, before, r, code=2, message=r"GITHUB_TOKEN contains .*the value is not shown")
    assert TOKEN[4:20] not in r.stdout + r.stderr
    assert project.fake.requests() == []  # nothing was sent, nothing retried


def test_a_server_echoing_the_token_never_gets_it_printed(project):
    project.fake.fault(r"/releases/latest$", status=422,
                       body=json.dumps({"message": f"Validation failed for token {TOKEN}"}).encode())
    before = project.snapshot()
    r = project.bump("--name", "sageattn3")
    assert_unchanged(project, before, r, message=r"HTTP 422 Validation failed for token \*\*\*")


# --------------------------------------------------------------------------- 2: whole strings


def test_a_tag_name_with_a_newline_from_the_api_is_refused(project):
    project.fake.fault(r"/releases/latest$", status=200, body=release_body(project.fake, "v2\n--index-url http://127.0.0.1:9/"))
    before = project.snapshot()
    r = project.bump("--name", "sageattention")
    assert_unchanged(project, before, r, message=r"not a GitHub release object \(its tag_name .* is not a git tag name")


def test_a_null_tag_name_says_so(project):
    project.fake.fault(r"/releases/latest$", status=200, body=release_body(project.fake, None))
    before = project.snapshot()
    r = project.bump("--name", "sageattn3")
    assert_unchanged(project, before, r, message=r"its tag_name is null")
    assert "release None" not in r.stderr


# --------------------------------------------------------------------------- 3: all or nothing


def test_two_bumps_at_once_the_second_is_told_and_no_update_is_lost(project):
    project.fake.fault(r"/SageAttention/releases/latest$", kind="sleep", seconds=3.0, times=1)
    first = subprocess.Popen([sys.executable, "-m", "invoke", "bump", "--name", "sageattn3"], cwd=project.root,
                             env=project.env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: project.fake.requests("api"))
        second = project.bump("--name", "sageattention[sm90]")
    finally:
        out, errs = first.communicate(timeout=60)
    assert first.returncode == 0, out + errs
    assert second.returncode == 1, second.stdout + second.stderr
    assert "another invoke bump is changing it right now" in second.stderr
    text = project.pins.read_text()
    assert 'release = "v2.2.0-build.17"' in text  # the first one's update is there
    assert text.count('release = "v2.2.1-sm.2"') == 0  # the second wrote nothing


def test_an_edit_saved_during_a_bump_is_not_lost(project):
    """Issue 21 class 4: editors take no lock; bump re-reads wheels.toml before replacing it."""
    project.fake.fault(r"/SageAttention/releases/latest$", kind="sleep", seconds=3.0, times=1)
    bump = subprocess.Popen([sys.executable, "-m", "invoke", "bump", "--name", "sageattn3"], cwd=project.root,
                            env=project.env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: project.fake.requests("api"))
        edited = project.pins.read_text().replace("# Test pins", "# Test pins, edited during the bump")
        project.pins.write_text(edited)  # what an editor does: no lock taken
    finally:
        out, errs = bump.communicate(timeout=60)
    assert_failed_cleanly(subprocess.CompletedProcess(bump.args, bump.returncode, out, errs), 1,
                          stderr=r"wheels\.toml: changed since invoke bump read it; nothing was written", hidden=[TOKEN])
    assert project.pins.read_text() == edited


def test_a_symlinked_wheels_toml_is_written_through(project):
    real = project.root / "pins" / "wheels.toml"
    real.parent.mkdir()
    project.pins.rename(real)
    project.pins.symlink_to("pins/wheels.toml")
    r = project.bump("--name", "sageattn3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert project.pins.is_symlink()
    assert 'release = "v2.2.0-build.17"' in real.read_text()


# --------------------------------------------------------------------------- 4: nothing runs forever


def test_a_next_link_that_loops_is_noticed(project):
    url = f"{project.fake.api_url}/repos/{SAGE}/releases?per_page=100"
    project.fake.fault(r"/releases$", status=200, body=b"[]", headers={"Link": f'<{url}>; rel="next"'})
    before = project.snapshot()
    r = project.bump("--pre", "--name", "sageattn3")
    assert_unchanged(project, before, r, message=r'rel="next" links loop back')
    assert len([q for q in project.fake.requests("api") if q.path.endswith("/releases")]) == 1


@pytest.mark.parametrize(("var", "value"), [("COMFYIMG_HTTP_TIMEOUT", "0"), ("COMFYIMG_HTTP_RETRIES", "1e12"),
                                            ("COMFYIMG_HTTP_BACKOFF", "1e12"), ("COMFYIMG_HTTP_RETRIES", "2.5")])
def test_nonsense_http_settings_are_bad_input(project, var, value):
    before = project.snapshot()
    r = project.bump("--name", "sageattn3", **{var: value})
    assert_unchanged(project, before, r, code=2, message=rf"{var}={value!r} is out of range; expected")
    assert "Operation now in progress" not in r.stderr
    assert project.fake.requests() == []


def test_ctrl_c_is_one_line_and_exit_130(project):
    project.fake.fault(r"/releases/latest$", kind="sleep", seconds=20.0)
    before = project.snapshot()
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "bump", "--name", "sageattn3"], cwd=project.root,
                            env=project.env(COMFYIMG_HTTP_TIMEOUT="30"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: project.fake.requests("api"))
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=30)
    assert_unchanged(project, before, subprocess.CompletedProcess(proc.args, proc.returncode, out, errs), 130)
    assert [ln for ln in errs.splitlines() if ln.strip()] == ["interrupted (Ctrl-C); no file was changed"]


# --------------------------------------------------------------------------- 5: untrusted text


def test_hostile_asset_names_are_printed_as_text(project, wheel_dir):
    from tests.lib.github import FakeAsset, FakeRelease

    project.fake.add_release(SAGE, FakeRelease("v9-hostile", [FakeAsset("\x1b]0;pwned\x07x.whl", data=b"x")]))
    before = project.snapshot()
    r = project.bump("--release", "v9-hostile", "--name", "sageattn3")
    assert_unchanged(project, before, r, message="has no asset that fits")
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert "\\x1b]0;pwned\\x07x.whl: not a valid wheel file name" in r.stderr


@pytest.mark.parametrize("name", ["y.whl\n::error::pwned", "z|\r.whl"])
def test_asset_names_with_a_line_break_are_refused_by_the_schema(project, name):
    from tests.lib.github import FakeAsset, FakeRelease

    project.fake.add_release(SAGE, FakeRelease("v9-hostile", [FakeAsset(name, data=b"x")]))
    before = project.snapshot()
    r = project.bump("--release", "v9-hostile", "--name", "sageattn3")
    assert_unchanged(project, before, r, message=r"not a GitHub release object \(assets\[0\]\.name: .* contains a line break")
    assert "\r" not in r.stderr
    assert not [ln for ln in r.stderr.splitlines() if ln.lstrip().startswith("::")]


# --------------------------------------------------------------------------- 7: replaced assets


def test_a_replaced_asset_fails_unless_the_new_bytes_are_accepted(project):
    name = f"sageattention-2.2.1+cu130.torch2.13.0.sm90-{LINUX}.whl"
    r = project.bump("--name", "sageattention[sm90]")  # records the sha256 of the current bytes
    assert r.returncode == 0, r.stdout + r.stderr
    old = sha(project.fake, name)
    assert f'sha256 = "{old}"' in project.pins.read_text()
    rel = next(x for x in project.fake.repos["acme/sage-sm"] if x.tag == "v2.2.1-sm.2")
    asset = next(a for a in rel.assets if a.name == name)
    asset.data = asset.data + b"tampered"  # same release, same URL, other bytes (the API digest follows)
    new = sha(project.fake, name)
    before = project.snapshot()
    r = project.bump("--name", "sageattention[sm90]")
    assert_unchanged(project, before, r, message=rf"replaced under the same URL .*pinned sha256 {old}, now {new}")
    assert "--accept-new-bytes" in r.stderr
    r = project.bump("--name", "sageattention[sm90]", "--accept-new-bytes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'sha256 = "{new}"' in project.pins.read_text()


# --------------------------------------------------------------------------- 8: messages that lead somewhere


def test_a_redirect_loop_names_the_download(project):
    project.fake.fault(r"^storage ", status=302, headers={"Location": "/objects/loop"})
    before = project.snapshot()
    r = project.bump("--verify", "--name", "sageattn3")
    assert_unchanged(project, before, r, message=r"download of sageattn3-1\.0\.1-\S+\.whl: more than 10 redirects")


def test_every_tampered_wheel_is_named(project):
    rel = next(x for x in project.fake.repos[SAGE] if x.tag == "v2.2.0-build.17")
    for a in rel.assets:
        if a.name in (NEW_SAGE, f"sageattn3-1.0.1-290.129-{LINUX}.whl"):
            a.digest = "sha256:" + "0" * 64
    before = project.snapshot()
    r = project.bump("--verify", "--name", "sageattention", "--name", "sageattn3", "--release", "v2.2.0-build.17")
    assert_unchanged(project, before, r, message="digest mismatch")
    assert NEW_SAGE in r.stderr and f"sageattn3-1.0.1-290.129-{LINUX}.whl" in r.stderr


def test_help_names_the_environment_and_plain_tables_are_ascii(project):
    r = project.invoke("--help", "bump")
    assert "GITHUB_TOKEN" in r.stdout and "GITHUB_API_URL" in r.stdout
    shorts = {}
    for name in ("bump", "bake", "check", "render"):  # one meaning per short flag, in every task
        for m in re.finditer(r"^\s+-(\w), --([\w-]+)", project.invoke("--help", name).stdout, re.M):
            shorts.setdefault(m[1], set()).add(m[2])
    assert shorts == {"n": {"name"}, "t": {"target"}, "f": {"file"}}, shorts
    r = project.bump("--dry-run", "--name", "sageattn3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not set("─━│┃┏┓└┘") & set(r.stdout), r.stdout
    assert "| sageattn3" in r.stdout
