"""Issue 21, class 1 and 2: every request has an overall deadline and a decoded-byte cap; the
API's JSON goes through one schema. Against the loopback GitHub with its faults (drip: one
byte every 0.5 s; bomb: a gzip body that inflates to 1 GiB). Each failed before the fix: a
drip ran past the test's 60 s, the bomb took the bump past 1 GB."""

from __future__ import annotations

import json
import resource  # noqa: F401 - used in the measuring child below
import sys
import time

import pytest

from tests.lib.assertions import assert_failed_cleanly
from tests.lib.bumpproject import SAGE, assert_unchanged
from tests.lib.github import gzip_bomb

QUICK = {"COMFYIMG_HTTP_DEADLINE": "4", "COMFYIMG_HTTP_TIMEOUT": "2"}


def timed_bump(project, *args, **env):
    start = time.monotonic()
    r = project.bump(*args, **{**QUICK, **env})
    return r, time.monotonic() - start


@pytest.mark.parametrize(("pattern", "headers"), [
    (r"^api /repos/.*/releases/latest$", False),
    (r"^api /repos/.*/releases/latest$", True),
    (r"^storage /objects/\d+/SHA256SUMS$", False),
    (r"^storage /objects/\d+/sageattn3-.*\.whl$", False),
], ids=["api-body", "api-headers", "sha256sums", "wheel"])
def test_a_server_that_drips_forever_is_stopped_at_the_deadline(project, pattern, headers):
    project.fake.fault(pattern, kind="drip", seconds=0.5, drip_headers=headers)
    before = project.snapshot()
    r, took = timed_bump(project, "--name", "sageattn3", "--verify")
    assert_unchanged(project, before, r, message=r"no complete answer from http://127\.0\.0\.\d:\d+/\S+ "
                                                 r"within the 4 s deadline \(COMFYIMG_HTTP_DEADLINE\)")
    assert took < 4 + 8, f"took {took:.1f} s"  # the deadline plus the start-up of invoke


def test_a_gzip_bomb_stops_at_the_cap_and_memory_stays_flat(project):
    project.fake.fault(r"^api /repos/.*/releases/latest$", kind="bomb", body=gzip_bomb(1 << 30))
    before = project.snapshot()
    # A child that runs the bump and reports the largest resident size of its children.
    measure = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
               "sys.exit(r.returncode)")
    r = project.run(sys.executable, "-c", measure, sys.executable, "-m", "invoke", "bump", "--name", "sageattn3",
                    env={**project.env(), **QUICK, "COMFYIMG_HTTP_DEADLINE": "60"}, timeout=90)
    assert_unchanged(project, before, r, message=r"latest release of .*: the answer from http://127\.0\.0\.1:\d+/\S+ "
                                                 r"is larger than the 33554432 byte limit \(decoded\)")
    peak_mb = int(r.stderr.split("maxrss_kb")[1].split()[0]) / 1024
    assert peak_mb < 600, f"peak {peak_mb:.0f} MB"


def test_the_byte_cap_applies_to_downloads_and_names_the_setting(project):
    before = project.snapshot()
    r, _ = timed_bump(project, "--name", "sageattn3", "--verify", COMFYIMG_HTTP_MAX_BYTES="8192")  # the wheel: 12 KB
    assert_unchanged(project, before, r, message=r"download of sageattn3-\S+\.whl: the answer from \S+ is larger "
                                                 r"than the 8192 byte limit \(COMFYIMG_HTTP_MAX_BYTES\)")


@pytest.mark.parametrize(("var", "value"), [("COMFYIMG_HTTP_DEADLINE", "0"), ("COMFYIMG_HTTP_DEADLINE", "inf"),
                                            ("COMFYIMG_HTTP_MAX_BYTES", "10"), ("COMFYIMG_HTTP_MAX_BYTES", "1e30")])
def test_the_limits_are_checked(project, var, value):
    before = project.snapshot()
    r = project.bump("--name", "sageattn3", **{var: value})
    assert_unchanged(project, before, r, code=2, message=rf"{var}='{value}' is out of range")
    assert project.fake.requests() == []


# --------------------------------------------------------------------------- 2 / 7: the schema


def release_body(fake, **override) -> bytes:
    rel = next(r for r in fake.repos[SAGE] if r.tag == "v2.2.0-build.17")
    return json.dumps({**fake.release_json(SAGE, rel), **override}).encode()


def asset_body(fake, **override) -> bytes:
    rel = next(r for r in fake.repos[SAGE] if r.tag == "v2.2.0-build.17")
    data = fake.release_json(SAGE, rel)
    data["assets"][0].update(override)
    return json.dumps(data).encode()


@pytest.mark.parametrize(("raw", "message"), [
    (b'"size": Infinity', r"non-finite number Infinity"),
    (b'"size": 1e400', r"assets\[0\]\.size: .*whole number"),
    (b'"size": -5', r"assets\[0\]\.size: .*from 0"),
    (b'"name": "a\\nb.whl"', r"assets\[0\]\.name: .*line break"),
    (b'"id": true', r"assets\[0\]\.id: .*whole number"),
])
def test_an_asset_of_a_bad_shape_is_refused_with_a_line(project, raw, message):
    key = raw.split(b":")[0]
    body = release_body(project.fake)
    data = json.loads(body)
    first = json.dumps(data["assets"][0]).encode()
    field = key.strip(b'"').decode()
    old = json.dumps({field: data["assets"][0][field]})[1:-1].encode()
    patched = body.replace(first, first.replace(old, raw), 1)
    project.fake.fault(r"/releases/latest$", status=200, body=patched)
    before = project.snapshot()
    r = project.bump("--name", "sageattn3")
    assert_unchanged(project, before, r, message=message)


def test_the_release_answered_must_be_the_release_asked_for(project):
    project.fake.fault(r"/releases/tags/", status=200, body=release_body(project.fake, tag_name="v2.2.0-build.20"))
    before = project.snapshot()
    r = project.bump("--name", "sageattn3", "--release", "v2.2.0-build.17")
    assert_unchanged(project, before, r, message=r"asked for release v2\.2\.0-build\.17, the server answered "
                                                 r"'v2\.2\.0-build\.20'")


@pytest.mark.parametrize("tag", ["../../../x", "v1..2", "v1.lock", "v1\nx", "a b"])
def test_release_is_checked_as_a_tag_name_before_any_request(project, tag):
    before = project.snapshot()
    r = project.bump("--name", "sageattn3", "--release", tag)
    assert_unchanged(project, before, r, code=2, message=r"--release .* is not a git tag name")
    assert project.fake.requests() == []


def test_a_huge_rate_limit_reset_is_a_line(project):
    project.fake.fault(r"/releases/latest$", status=403,
                       headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "99999999999999999999"})
    before = project.snapshot()
    r = project.bump("--name", "sageattn3")
    assert_unchanged(project, before, r, message=r"rate limit exceeded .*implausible reset time")


def test_a_redirect_to_a_data_url_is_a_line(project):
    project.fake.fault(r"/releases/latest$", status=302, headers={"Location": "data:text/plain,hello"})
    before = project.snapshot()
    r = project.bump("--name", "sageattn3")
    assert_unchanged(project, before, r, message=r"latest release of .*: refusing a redirect to an unusable URL")


def test_an_api_url_with_a_look_alike_host_is_refused(project):
    before = project.snapshot()
    r = project.bump("--name", "sageattn3", GITHUB_API_URL="https://api.g\u0456thub.com")
    assert_unchanged(project, before, r, code=2, message=r"host is not plain ASCII")


# --------------------------------------------------------------------------- 11: signals


@pytest.mark.parametrize(("sig", "code", "said"), [
    ("SIGINT", 130, "interrupted (Ctrl-C)"), ("SIGTERM", 143, "stopped by SIGTERM"), ("SIGHUP", 129, "stopped by SIGHUP")])
def test_a_signal_during_a_download_is_one_line_and_leaves_no_temporary_file(project, tmp_path, sig, code, said):
    import signal
    import subprocess

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    project.fake.fault(r"^storage /objects/\d+/sageattn3-.*\.whl$", kind="drip", seconds=0.2)
    before = project.snapshot()
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "bump", "--name", "sageattn3", "--verify"],
                            cwd=project.root, env={**project.env(), "TMPDIR": str(tmp)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not [q for q in project.fake.requests("storage") if q.body_bytes > 2]:
            assert time.monotonic() < deadline and proc.poll() is None, "the download never started"
            time.sleep(0.05)
        assert list(tmp.glob("comfyimg-bump-*/asset-*.part")), "no partial download to clean up"
        proc.send_signal(getattr(signal, sig))
        out, errs = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert_failed_cleanly(subprocess.CompletedProcess(proc.args, proc.returncode, out, errs), code)
    assert [ln for ln in errs.splitlines() if not ln.startswith("downloading ")] == [f"{said}; no file was changed"]
    assert list(tmp.iterdir()) == []
    assert project.snapshot() == before
