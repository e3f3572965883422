"""``invoke bump`` run for real (a subprocess) against the fake GitHub on loopback."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from tests.lib.bumpproject import ARCHS, LINUX, NEW_SAGE, PERSM, SAGE, TOKEN, assert_unchanged, wheels_toml
from tests.lib.github import asset_sha256

NEW_SAGE3 = f"sageattn3-1.0.1-290.129-{LINUX}.whl"


sha = asset_sha256


def digest_from(table: str) -> dict[str, str]:
    """The "digest from" column of bump's table, by package (the first line of each row)."""
    rows: dict[str, str] = {}
    column = None
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if column is None:
            column = cells.index("digest from") if cells[0] == "package" and "digest from" in cells else None
        elif len(cells) > column and cells[0] and not set(cells[0]) <= set("-+"):
            rows[cells[0]] = cells[column]
    return rows


def assert_token_safe(project, result) -> None:
    """The token reached the API host only, never the storage host, never the output."""
    assert TOKEN not in result.stdout + result.stderr
    for req in project.fake.requests("storage"):
        assert "authorization" not in req.headers, req
        assert all(TOKEN not in v for v in req.headers.values()), req
    api = project.fake.requests("api")
    assert api and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in api)


# --------------------------------------------------------------------------- success


def test_bump_all_moves_every_sourced_pin(project):
    before = project.pins.read_text()
    r = project.bump()
    assert r.returncode == 0, r.stdout + r.stderr
    after = project.pins.read_text()
    # Comments, order and untouched pins survive; the four fields change.
    for line in before.splitlines():
        if line.startswith("#") or "trailing comment" in line:
            assert line.split("#")[1] in after
    assert 'version = "2.2.1"' in after and 'version = "1.0.1"' in after
    assert f"/v2.2.0-build.17/{NEW_SAGE}" in after
    assert f'sha256 = "{sha(project.fake, NEW_SAGE)}"' in after
    assert f'sha256 = "{sha(project.fake, NEW_SAGE3)}"' in after
    assert 'release = "v2.2.0-build.17"' in after and 'release = "v2.2.1-sm.2"' in after
    assert after.index("name = \"sageattention\"") < after.index("name = \"sageattn3\"")
    assert f'sha256 = "{"a" * 64}"' in after  # the source-less pin is untouched
    # New keys land inside their own table, not under the next table's comment.
    assert "# SageAttention 3.\n[[wheel]]" in after
    assert "# A pin without a source: bump leaves it alone.\n[[wheel]]" in after
    assert not re.search(r"^#.*\nsha256 = ", after, flags=re.M)
    for sm in ARCHS:
        name = f"sageattention-2.2.1+cu130.torch2.13.0.{sm}-{LINUX}.whl"
        assert f'sha256 = "{sha(project.fake, name)}"' in after
    # Generated files are rendered from the new pins.
    req = (project.root / "generated/requirements/complete-cuda.txt").read_text()
    assert f"--hash=sha256:{sha(project.fake, NEW_SAGE)}" in req
    sm90 = (project.root / "generated/requirements/complete-cu130-sm90.txt").read_text()
    assert "sm90" in sm90 and "--hash=sha256:" in sm90
    # The table says where each digest came from, row by row.
    # Each new wheel is downloaded (for its kernels) and checked against what lists it.
    assert digest_from(r.stdout) == {
        "sageattention": "download (= api)", "sageattn3": "download (= SHA256SUMS)",
        "sageattention[sm80]": "download (= api)", "sageattention[sm86]": "download (= SHA256SUMS-sm86)",
        "sageattention[sm89]": "download", "sageattention[sm90]": "download (= api)",
        "sageattention[sm120]": "download (= api)"}
    assert_token_safe(project, r)
    # Each new wheel was downloaded once, to read its kernels, and its coverage recorded.
    wheels = sorted(q.path.rsplit("/", 1)[-1] for q in project.fake.requests("storage") if q.path.endswith(".whl"))
    persm = [f"sageattention-2.2.1+cu130.torch2.13.0.{sm}-{LINUX}.whl" for sm in ARCHS]
    assert wheels == sorted([NEW_SAGE, NEW_SAGE3, *persm])
    assert after.count('coverage_from = {tool = "cuobjdump ') == 7
    assert '{module = "sageattention._fused", sass = ["sm_80"], ptx = ["compute_80"]},' in after
    assert '{module = "fp4attn_cuda", sass = ["sm_120a", "sm_121a"], ptx = []},' in after
    # A second run has nothing to do; it downloads only the wheel whose hash nothing lists
    # (sm89: no API digest, no SUMS), and does not read its kernels again.
    served = len(wheels)
    again = project.bump()
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr
    assert project.pins.read_text() == after
    more = [q.path for q in project.fake.requests("storage") if q.path.endswith(".whl")][served:]
    assert len(more) == 1 and ".sm89-" in more[0]


def test_api_digests_download_each_new_wheel_once_for_its_kernels(project):
    r = project.bump("--name", "sageattention[sm90]", "--name", "sageattention[sm80]")
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = sorted(q.path.rsplit("/", 1)[-1] for q in project.fake.requests("storage"))
    assert wheels == sorted(f"sageattention-2.2.1+cu130.torch2.13.0.{sm}-{LINUX}.whl" for sm in ("sm80", "sm90"))
    assert "download (= api)" in r.stdout  # the one download is checked against the API digest
    text = project.pins.read_text()
    assert text.count('release = "v2.2.1-sm.2"') == 2
    assert_token_safe(project, r)


def test_names_after_double_dash_and_comma(project):
    r = project.bump("--name", "sageattn3,sageattention[sm120]")
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(digest_from(r.stdout)) == {"sageattn3", "sageattention[sm120]"}
    text = project.pins.read_text()
    assert 'release = "v2.2.0-build.17"' in text and text.count('release = "v2.2.1-sm.2"') == 1
    r2 = project.bump("--dry-run", "--", "sageattention[sm86]")
    assert r2.returncode == 0 and set(digest_from(r2.stdout)) == {"sageattention[sm86]"}, r2.stdout
    assert project.pins.read_text() == text


def test_dry_run_prints_table_and_diff_writes_nothing(project):
    before = project.snapshot()
    r = project.bump("--dry-run", "--name", "sageattention")
    assert r.returncode == 0, r.stdout + r.stderr
    assert project.snapshot() == before
    assert "--- a/wheels.toml" in r.stdout and "+++ b/wheels.toml" in r.stdout
    assert "+url = " in r.stdout and "+sha256 = " in r.stdout
    assert "v2.2.0-build.17" in r.stdout and "dry run" in r.stdout
    assert_token_safe(project, r)


def test_pre_takes_the_newest_non_draft_release(project):
    r = project.bump("--pre", "--name", "sageattention", "--name", "sageattn3")
    assert r.returncode == 0, r.stdout + r.stderr
    text = project.pins.read_text()
    assert 'release = "v2.2.2-rc1"' in text and "v2.3.0-draft" not in text
    assert 'version = "2.2.2rc1"' in text


def test_explicit_release(project):
    r = project.bump("--release", "v2.2.0-build.17", "--name", "sageattn3")
    assert r.returncode == 0, r.stdout + r.stderr
    text = project.pins.read_text()
    assert 'release = "v2.2.0-build.17"' in text and "v2.2.1-sm.2" not in text


def test_release_applies_to_every_repo_of_the_chosen_pins(project):
    # "sageattention" names the build-tag pin and the five per-SM pins of another repo.
    before = project.snapshot()
    r = project.bump("--release", "v2.2.0-build.17", "--name", "sageattention")
    assert_unchanged(project, before, r, message=f"{PERSM}: no release with tag 'v2.2.0-build.17'")


def test_explicit_prerelease_needs_pre(project):
    before = project.snapshot()
    r = project.bump("--release", "v2.2.2-rc1", "--name", "sageattention")
    assert_unchanged(project, before, r, code=2, message="prerelease; pass --pre")


def test_verify_downloads_and_agrees(project):
    r = project.bump("--verify", "--name", "sageattention", "--name", "sageattn3")
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = sorted(q.path.rsplit("/", 1)[-1] for q in project.fake.requests("storage")
                    if q.path.endswith(".whl"))
    persm = [f"sageattention-2.2.1+cu130.torch2.13.0.{sm}-{LINUX}.whl" for sm in ARCHS]
    assert wheels == sorted([NEW_SAGE, NEW_SAGE3, *persm])  # each fitting wheel, once
    out = r.stdout
    assert "download (= api)" in out and "download (= SHA256SUMS)" in out
    assert "download (= SHA256SUMS-sm86)" in out
    assert "downloaded sageattention" in r.stderr  # plain progress lines under CI
    assert_token_safe(project, r)


# --------------------------------------------------------------------------- failures


def test_unknown_name_is_bad_input(project):
    before = project.snapshot()
    r = project.bump("--name", "nosuchwheel")
    assert_unchanged(project, before, r, code=2, message="unknown pin name.*nosuchwheel.*known:")
    assert project.fake.requests() == []


def test_sourceless_pin_is_bad_input(project):
    before = project.snapshot()
    r = project.bump("--name", "helper")
    assert_unchanged(project, before, r, code=2, message="helper has no source")


def test_repo_404(project):
    project.pins.write_text(wheels_toml(sage_repo="nobody/missing"))
    project.render()
    before = project.snapshot()
    r = project.bump("--name", "sageattn3")
    assert_unchanged(project, before, r, message="repository nobody/missing not found")


def test_tag_404(project):
    before = project.snapshot()
    r = project.bump("--release", "v9.9.9", "--name", "sageattention")
    assert_unchanged(project, before, r, message=f"{PERSM}|{SAGE}: no release with tag 'v9.9.9'")


def test_rate_limit_gives_reset_time(project):
    reset = int(time.time()) + 600
    project.fake.fault(r"/releases/latest$", status=403, headers={
        "x-ratelimit-limit": "60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    before = project.snapshot()
    r = project.bump()
    assert_unchanged(project, before, r, message=r"rate limit exceeded \(HTTP 403\); the limit resets at "
                                                 r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in \d+ s\)")
    assert len(project.fake.requests("api")) == 1  # no retry hammering


def test_secondary_rate_limit_429_retry_after(project):
    project.fake.fault(r"/releases/tags/", status=429, headers={"retry-after": "37"})
    before = project.snapshot()
    r = project.bump("--release", "v2.2.0-build.17")
    assert_unchanged(project, before, r, message=r"rate limit exceeded \(HTTP 429\); retry after 37 s")


def test_5xx_after_retries(project):
    project.fake.fault(r"/releases/latest$", status=502)
    before = project.snapshot()
    r = project.bump("--name", "sageattention")
    assert_unchanged(project, before, r, message=r"HTTP 502.*after 3 attempt")
    assert len([q for q in project.fake.requests("api") if q.path.endswith("/latest")]) == 3


def test_5xx_then_success_is_retried(project):
    project.fake.fault(r"/releases/latest$", status=503, times=2)
    r = project.bump("--name", "sageattn3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'release = "v2.2.0-build.17"' in project.pins.read_text()


def test_timeout(project):
    project.fake.fault(r"/releases/latest$", kind="sleep", seconds=1.0)
    before = project.snapshot()
    r = project.bump("--name", "sageattention", COMFYIMG_HTTP_TIMEOUT="0.2", COMFYIMG_HTTP_RETRIES="1")
    assert_unchanged(project, before, r, message=r"timed out .*after 2 attempt")


def test_truncated_download(project):
    project.fake.fault(r"^storage /objects/\d+/sageattention-2\.2\.1-290\.129-cp312", kind="truncate")
    before = project.snapshot()
    r = project.bump("--verify", "--name", "sageattention")
    assert_unchanged(project, before, r, message=r"truncated.* of \d+ bytes")
    assert_token_safe(project, r)


def test_digest_mismatch_with_api(project, fake_github, wheel_dir):
    # The asset was replaced in place: the API digest no longer matches its bytes.
    for rel in project.fake.repos[SAGE]:
        for a in rel.assets:
            if a.name == NEW_SAGE and rel.tag == "v2.2.0-build.17":
                a.digest = "sha256:" + "0" * 64
    before = project.snapshot()
    r = project.bump("--verify", "--name", "sageattention")
    assert_unchanged(project, before, r, message=r"digest mismatch: .*API digest says 0{64}")


def test_digest_mismatch_with_sums(project):
    rel = next(r for r in project.fake.repos[SAGE] if r.tag == "v2.2.0-build.17")
    sums = next(a for a in rel.assets if a.name == "SHA256SUMS")
    sums.data = re.sub(rb"^[0-9a-f]{64}(  sageattn3-1\.0\.1-290\.129)", b"f" * 64 + rb"\1", sums.data,
                       flags=re.M)
    before = project.snapshot()
    r = project.bump("--verify", "--name", "sageattn3")
    assert_unchanged(project, before, r, message=r"digest mismatch: .*SHA256SUMS says f{64}")


def test_no_matching_asset_lists_every_asset_and_writes_nothing(project):
    before = project.snapshot()
    r = project.bump("--release", "v2.2.0-nomatch", "--name", "sageattention", "--name", "sageattn3")
    assert_unchanged(project, before, r, message="sageattn3: release v2.2.0-nomatch has no asset that fits")
    msg = r.stderr
    assert f"sageattn3-1.0.1-290.128-{LINUX}.whl: CUDA 12.8 ≠ 12.9" in msg
    assert f"sageattention-2.2.1-290.129-{LINUX}.whl: distribution sageattention ≠ sageattn3" in msg
    assert "SHA256SUMS: not a wheel" in msg and "SageAttention-2.2.1.tar.gz: not a wheel" in msg
    # sageattention alone would have fitted; pins of one release move together or not at all.


def test_ambiguous_assets(project):
    before = project.snapshot()
    r = project.bump("--release", "v2.2.0-ambiguous", "--name", "sageattention")
    assert_unchanged(project, before, r, message="2 assets that fit complete-cuda")
    msg = r.stderr
    assert f"sageattention-2.2.1-290.129-{LINUX}.whl: fits (ambiguous)" in msg
    assert "manylinux_2_28_x86_64.whl: fits (ambiguous)" in msg
    assert f"sageattention-2.2.1-290.128-{LINUX}.whl: CUDA 12.8 ≠ 12.9" in msg
    assert f"sageattention-2.2.1-280.129-{LINUX}.whl: torch 2.8.0 ≠ 2.9.0" in msg
    assert "cp311-cp311-linux_x86_64.whl: python cp311-cp311 ≠ cp312" in msg
    assert "win_amd64.whl: platform win_amd64 ≠ linux_x86_64" in msg


def test_per_sm_decoys_are_explained(project):
    # Make the sm90 pin's match disappear: the error explains every per-SM asset.
    rel = next(r for r in project.fake.repos[PERSM] if r.tag == "v2.2.1-sm.2")
    rel.assets = [a for a in rel.assets if a.name != f"sageattention-2.2.1+cu130.torch2.13.0.sm90-{LINUX}.whl"]
    before = project.snapshot()
    r = project.bump("--name", "sageattention[sm90]")
    assert_unchanged(project, before, r, message=r"sageattention\[sm90\]: release v2.2.1-sm.2 has no asset")
    msg = r.stderr
    assert "+cu128.torch2.13.0.sm90-cp312-cp312-linux_x86_64.whl: CUDA 12.8 ≠ 13.0" in msg
    assert "+cu130.torch2.12.0.sm90-cp312-cp312-linux_x86_64.whl: torch 2.12.0 ≠ 2.13.0" in msg
    assert ".sm100-cp312-cp312-linux_x86_64.whl: built for sm100, the pin is for sm90" in msg


def test_token_not_required(project):
    r = project.bump("--name", "sageattention", GITHUB_TOKEN="", GH_TOKEN="")
    assert r.returncode == 0, r.stdout + r.stderr
    assert all("authorization" not in q.headers for q in project.fake.requests())


def test_gh_token_fallback(project):
    r = project.bump("--name", "sageattn3", GITHUB_TOKEN="", GH_TOKEN=TOKEN)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_token_safe(project, r)


@pytest.mark.parametrize("url", ["ftp://example", "not a url"])
def test_bad_api_url_is_bad_input(project, url):
    before = project.snapshot()
    r = project.bump("--name", "sageattention", GITHUB_API_URL=url)
    assert_unchanged(project, before, r, code=2, message="GITHUB_API_URL")


def test_record_hash_hint_is_a_working_command(project):
    """The hint that wheels.toml/generated files print for an unhashed pin really runs."""
    import shlex

    from comfyimg.pins import load as pins
    from comfyimg.pins.model import record_hash_command

    pin = next(p for p in pins.load(project.pins).wheels if p.arch == "sm90")
    argv = shlex.split(record_hash_command(pin))
    assert argv[:2] == ["invoke", "bump"] and "--verify" in argv
    argv[argv.index("--release") + 1] = "v2.2.1-sm.2"  # the fake's old release has no assets
    r = project.bump(*argv[2:])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "download (= api)" in r.stdout
    assert project.pins.read_text().count('release = "v2.2.1-sm.2"') == 1


# --------------------------------------------------------------------------- odd answers and arguments


@pytest.mark.parametrize("names", [("--name", ""), ("--name", ","), ("--", '""')])
def test_empty_names_are_bad_input_not_all_pins(project, names):
    before = project.snapshot()
    r = project.bump(*names)
    assert_unchanged(project, before, r, code=2, message="pin names given are empty")
    assert project.fake.requests() == []


@pytest.mark.parametrize(("body", "status"), [(b"{}", 200), (b"[]", 200), (b'{"tag_name": "v1", "assets": [1]}', 200)])
def test_an_answer_of_the_wrong_shape_is_a_clear_failure(project, body, status):
    project.fake.fault(r"/releases/latest$", status=status, body=body)
    before = project.snapshot()
    r = project.bump("--name", "sageattn3")
    assert_unchanged(project, before, r, message=r"latest release of .*: the answer is not a GitHub release object")


def test_an_error_answer_cut_short_is_a_clear_failure(project):
    project.fake.fault(r"/releases/latest$", status=404, short=True, body=b'{"message": "Not Found", "x": 1}')
    before = project.snapshot()
    r = project.bump("--name", "sageattn3", COMFYIMG_HTTP_TIMEOUT="2")
    assert_unchanged(project, before, r, message=r"not found|HTTP 404")


def test_403_from_the_download_host_does_not_blame_the_token(project):
    project.fake.fault(r"^storage ", status=403)
    before = project.snapshot()
    r = project.bump("--verify", "--name", "sageattn3")
    assert_unchanged(project, before, r, message=r"HTTP 403 .*refused by the download host")
    assert "token was refused" not in r.stdout + r.stderr
    assert_token_safe(project, r)


@pytest.mark.parametrize(("var", "value"), [("GITHUB_API_URL", "http://[::1"), ("COMFYIMG_HTTP_RETRIES", "nan"),
                                            ("COMFYIMG_HTTP_RETRIES", "inf"), ("COMFYIMG_HTTP_TIMEOUT", "inf")])
def test_bad_environment_values_are_bad_input(project, var, value):
    before = project.snapshot()
    r = project.bump("--name", "sageattn3", **{var: value})
    assert_unchanged(project, before, r, code=2, message=var)


def test_per_arch_keys_keep_their_brackets_in_the_table(project):
    r = project.bump("--name", "sageattention", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sageattention[sm90]" in r.stdout and "sageattention[sm120]" in r.stdout


def test_a_write_that_fails_is_one_line_and_changes_nothing(project):
    """The disk fills up while the bumped files are written: exit 1, no traceback, files as before."""
    import resource

    before = project.snapshot()
    limit = max(len(project.pins.read_bytes()) // 2, 1)
    r = subprocess.run([sys.executable, "-m", "invoke", "bump", "--name", "sageattn3"], cwd=project.root,
                       env=project.env(), text=True, capture_output=True, timeout=60, check=False,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert_unchanged(project, before, r, code=1, message=r"error: \[Errno 27\] File too large")
    assert not list(project.root.rglob("*.tmp")), "no temp file may be left behind"


# --------------------------------------------------------------------------- kernel coverage


def _release_of(project, tmp_path, tag, sage2_modules=None, sage3_object=None, source=None):
    from tests.lib.cudawheels import sage2_wheel, sage3_wheel
    from tests.lib.github import FakeAsset, FakeRelease

    assets = []
    if sage2_modules is not None:
        path = sage2_wheel(tmp_path / tag, sage2_modules, version="2.2.1", source=source)
        assets.append(FakeAsset(path.name, data=path.read_bytes()))
    if sage3_object is not None:
        path = sage3_wheel(tmp_path / tag, sage3_object, version="1.0.1")
        assets.append(FakeAsset(path.name, data=path.read_bytes()))
    project.fake.add_release(SAGE, FakeRelease(tag, assets, published_at="2025-12-01T00:00:00Z"))


def test_a_release_whose_wheel_misses_a_served_arch_is_refused_and_nothing_written(project, tmp_path):
    from tests.lib.cudawheels import SEED_SAGE2

    _release_of(project, tmp_path, "v2.2.0-seedlike", SEED_SAGE2, "r_100a")
    before = project.snapshot()
    r = project.bump("--release", "v2.2.0-seedlike", "--name", "sageattn3")
    assert_unchanged(project, before, r, code=1, message=r"complete-cuda on sm120 \(RTX 50xx\): sageattn3 1\.0\.1 "
                   r"\(sageattn3-1\.0\.1-290\.129-cp312-cp312-linux_x86_64\.whl of v2\.2\.0-seedlike\) cannot run: "
                   r"fp4attn_cuda carries only sm_100a; fp4quant_cuda carries only sm_100a; fix: serves = \[\] in its "
                   r"\[\[wheel\]\] \(wheels\.toml:\d+\), or move it to a wheel built for sm120")
    assert "fp4attn_cuda" in r.stderr and "sm_100a" in r.stderr  # what it carries
    assert "SASS for sm120" in r.stderr  # what is missing
    assert "nothing written" in r.stderr


def test_seed_shaped_sageattention_fails_on_sm120_only(project, tmp_path):
    from tests.lib.cudawheels import SEED_SAGE2

    _release_of(project, tmp_path, "v2.2.0-seedlike", SEED_SAGE2)
    # The build-tag sageattention pin alone (the per-SM pins live in another repo).
    project.pins.write_text(wheels_toml().split("\n# per-SM wheel for")[0])
    project.render()
    before = project.snapshot()
    text = project.pins.read_text()
    r = project.bump("--release", "v2.2.0-seedlike", "--name", "sageattention", "--dry-run")
    assert r.returncode == 1 and project.snapshot() == before, r.stdout + r.stderr
    table = r.stderr
    assert re.search(r"sageattention[\s|]+sm120[\s|]+sageattention-2\.2\.1-290\.129", table), table
    assert "sm80 " not in table.split("kernel coverage")[-1].split("sageattention:")[0]
    assert "sageattention._qattn_sm89: sm_89, sm_100a" in table
    assert project.pins.read_text() == text


def test_a_release_that_covers_every_served_arch_is_recorded(project, tmp_path):
    from tests.lib.cudawheels import FULL_SAGE2

    _release_of(project, tmp_path, "v2.2.0-full", FULL_SAGE2, "r_120a_121a")
    r = project.bump("--release", "v2.2.0-full", "--name", "sageattn3")
    assert r.returncode == 0, r.stdout + r.stderr
    text = project.pins.read_text()
    assert 'release = "v2.2.0-full"' in text and '{module = "fp4quant_cuda", sass = ["sm_120a", "sm_121a"]' in text
    from comfyimg.pins import load as pins

    pin = next(p for p in pins.load(project.pins).wheels if p.name == "sageattn3")
    assert pin.coverage is not None and pin.coverage.sha256 == pin.sha256


def test_recording_the_wheel_a_pin_already_names_records_the_truth_and_check_refuses_it(project, tmp_path):
    """`invoke bump --release v2.2.0-build.16 --verify` on the seed pins: their wheels, by recipe,
    miss sm120; the coverage is recorded as read (with a warning), and check names the arch."""
    from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel, sage3_wheel
    from tests.lib.github import FakeAsset

    rel = next(r for r in project.fake.repos[SAGE] if r.tag == "v2.2.0-build.16")
    for path in (sage2_wheel(tmp_path, SEED_SAGE2), sage3_wheel(tmp_path, "r_100a")):
        rel.assets.append(FakeAsset(path.name, data=path.read_bytes(), id=project.fake._new_id()))
    project.pins.write_text(wheels_toml().split("\n# per-SM wheel for")[0])
    project.render()
    r = project.bump("--release", "v2.2.0-build.16", "--verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"warning: complete-cuda on sm120 \(RTX 50xx\): sageattention 2\.2\.0 \(sageattention-2\.2\.0-290"
                     r"\.129-cp312-cp312-linux_x86_64\.whl of v2\.2\.0-build\.16\) cannot run: .*; fix: serves = ", r.stderr)
    assert re.search(r"warning: complete-cuda on sm120 \(RTX 50xx\): sageattn3 1\.0\.0 .* cannot run: ", r.stderr)
    text = project.pins.read_text()
    assert text.count("coverage_from = ") == 2 and '{module = "fp4attn_cuda", sass = ["sm_100a"], ptx = []}' in text
    check = subprocess.run([sys.executable, "-m", "invoke", "check"], cwd=project.root, env=project.env(),
                           text=True, capture_output=True, timeout=60)
    assert check.returncode == 2, check.stdout + check.stderr
    assert re.search(r"coverage: complete-cuda on sm120 \(RTX 50xx\): sageattention 2\.2\.0 cannot run: .*"
                     r"sageattention\._qattn_sm89 carries only sm_89, sm_100a.*; fix: serves = \[\"sm80\", \"sm86\", "
                     r"\"sm89\", \"sm90\"\] in its \[\[wheel\]\]", check.stderr)
    assert re.search(r"coverage: complete-cuda on sm120 \(RTX 50xx\): sageattn3 1\.0\.0 cannot run: fp4attn_cuda "
                     r"carries only sm_100a; .*fix: serves = \[\] in its", check.stderr)


def test_bump_records_the_dispatch_read_from_the_wheel_and_a_second_verify_changes_nothing(project, tmp_path):
    """The fork's Python in the wheel: bump records where the dispatch came from (the file and its
    sha256, each arm with its line), the verdicts use it (sm100 runnable, sm120 not), and a
    second --verify reads the same and writes nothing."""
    from tests.lib.cudawheels import SEED_SAGE2

    _release_of(project, tmp_path, "v2.2.0-fork", SEED_SAGE2, source="pixeloven-7bd3a0e")
    project.pins.write_text(wheels_toml().split("\n# per-SM wheel for")[0].replace(
        'provides = ["sageattention"]', 'provides = ["sageattention"]\nserves = ["sm75", "sm90", "sm100"]', 1))
    project.render()
    r = project.bump("--release", "v2.2.0-fork", "--name", "sageattention")
    assert r.returncode == 0, r.stdout + r.stderr
    text = project.pins.read_text()
    assert 'dispatch_from = {source = "wheel", file = "sageattention/core.py", sha256 = "' in text
    assert '{archs = ["sm100", "sm120", "sm121"], kernel = "sageattn_qk_int8_pv_fp8_cuda"' in text
    project.render()
    check = subprocess.run([sys.executable, "-m", "invoke", "check"], cwd=project.root, env=project.env(),
                           text=True, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    before = project.snapshot()
    again = project.bump("--release", "v2.2.0-fork", "--name", "sageattention", "--verify")
    assert again.returncode == 0, again.stdout + again.stderr
    assert project.snapshot() == before
