"""`invoke bump --profile NAME [--torch V] [--cuda V] [--python cpXY]` against a loopback GitHub:
a profile and every pin of it move together, each pin to the newest file that fits the moved
profile, verified and recorded, in one edit, or nothing is written (each pin that has no file
is named, with why). `--dry-run` shows the diff."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from tests.lib.bumpproject import TOKEN, BumpProject, assert_unchanged
from tests.lib.cudawheels import FULL_SAGE2, SEED_SAGE2, sage2_wheel, sage3_wheel
from tests.lib.github import FakeAsset, FakeGitHub, FakeRelease
from tests.lib.pinfile import profile, wheel
from tests.lib.project import make_project

SAGE = "pixeloven/SageAttention"
LINUX = "cp312-cp312-linux_x86_64"
OLD = "290.129"  # torch 2.9.0 / CUDA 12.9
NEW = "2110.130"  # torch 2.11.0 / CUDA 13.0
HELPER_SHA = "a" * 64


def _asset(path):
    return FakeAsset(path.name, data=path.read_bytes())


def _release(tmp_path, tag, build, *, sage2=True, sage3=True, published="2026-01-01T00:00:00Z", decoys=()):
    """A release of real wheels (nvcc-built kernels) named with ``build`` (torch/CUDA)."""
    where = tmp_path / tag
    assets = []
    if sage2:
        assets.append(_asset(sage2_wheel(where, FULL_SAGE2, filename=f"sageattention-2.2.0-{build}-{LINUX}.whl")))
    if sage3:
        assets.append(_asset(sage3_wheel(where, "r_120a_121a", filename=f"sageattn3-1.0.0-{build}-{LINUX}.whl")))
    for name in decoys:  # same distribution, other ABIs
        assets.append(_asset(sage2_wheel(where / "decoys", SEED_SAGE2, filename=name)))
    return FakeRelease(tag, assets, published_at=published)


def _toml(old_tag="v2.2.0-build.16") -> str:
    gh = "https://github.com"
    return ("# profile-move test pins: every comment here must survive\n\n"
            + profile("cuda", torch="2.9.0", torch_index="cu128", cuda="12.9",
                      archs=["sm80", "sm86", "sm89", "sm90", "sm120"])
            + "\n" + profile("cpu", torch="2.9.0", torch_index="cpu") + "\n"
            + wheel("sageattention", "2.2.0", f"{gh}/{SAGE}/releases/download/{old_tag}/sageattention-2.2.0-{OLD}-{LINUX}.whl",
                    github=SAGE, release=old_tag, targets=["complete-cuda"], comment="SageAttention 2.")
            + "\n" + wheel("sageattn3", "1.0.0", f"{gh}/{SAGE}/releases/download/{old_tag}/sageattn3-1.0.0-{OLD}-{LINUX}.whl",
                           github=SAGE, release=old_tag, targets=["complete-cuda"], comment="SageAttention 3.",
                           provides=["sageattn3", "fp4attn_cuda", "fp4quant_cuda"])
            + "\n" + wheel("helper", "0.1.0", "https://example.invalid/helper-0.1.0-py3-none-any.whl",
                           sha256=HELPER_SHA, targets=["complete-cuda"], comment="Pure Python, no source: it stays."))


@pytest.fixture
def moving(tmp_path):
    """A project at torch 2.9.0 / CUDA 12.9; GitHub has the old release and a newer one."""
    with FakeGitHub() as fake:
        fake.add_release(SAGE, _release(tmp_path, "v2.2.0-build.20", NEW, published="2026-03-01T00:00:00Z",
                                        decoys=[f"sageattention-2.2.0-2120.130-{LINUX}.whl",
                                                f"sageattention-2.2.0-{NEW}-cp313-cp313-linux_x86_64.whl"]))
        fake.add_release(SAGE, _release(tmp_path, "v2.2.0-build.16", OLD))
        root = make_project(tmp_path / "project", _toml(), 'target "complete-cuda" {}\ntarget "complete-cpu" {}\n')
        project = BumpProject(root, fake)
        project.render()
        yield project


def _profile(project):
    return tomllib.loads(project.pins.read_text())["profiles"]["cuda"]


def _pins(project):
    return {w["name"]: w for w in tomllib.loads(project.pins.read_text())["wheel"]}


def test_a_profile_and_every_pin_of_it_move_together(moving):
    r = moving.bump("--profile", "cuda", "--torch", "2.11.0", "--cuda", "13.0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _profile(moving) == {"python": "cp312", "platform": "linux_x86_64", "torch": "2.11.0",
                                "torch_index": "cu130", "cuda": "13.0",
                                "archs": ["sm80", "sm86", "sm89", "sm90", "sm120"]}
    pins = _pins(moving)
    for name in ("sageattention", "sageattn3"):
        assert pins[name]["url"].endswith(f"/v2.2.0-build.20/{name}-{'2.2.0' if name == 'sageattention' else '1.0.0'}-{NEW}-{LINUX}.whl")
        assert pins[name]["source"]["release"] == "v2.2.0-build.20"
        assert re.fullmatch(r"[0-9a-f]{64}", pins[name]["sha256"])
        assert pins[name]["coverage_from"]["sha256"] == pins[name]["sha256"]  # verified and recorded
    assert pins["helper"]["sha256"] == HELPER_SHA and "example.invalid" in pins["helper"]["url"]
    text = moving.pins.read_text()
    assert "# profile-move test pins: every comment here must survive" in text and "# SageAttention 3." in text
    assert "profile: torch 2.9.0 → 2.11.0" in r.stdout and "profile: torch_index cu128 → cu130" in r.stdout
    assert TOKEN not in r.stdout + r.stderr
    check = moving.invoke("check")
    assert check.returncode == 0, check.stdout + check.stderr
    requirements = (moving.root / "generated" / "requirements" / "complete-cuda.txt").read_text()
    assert f"sageattention-2.2.0-{NEW}" in requirements


def test_dry_run_shows_the_diff_and_writes_nothing(moving):
    before = moving.snapshot()
    r = moving.bump("--profile", "cuda", "--torch", "2.11.0", "--cuda", "13.0", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert moving.snapshot() == before
    assert '-torch = "2.9.0"' in r.stdout and '+torch = "2.11.0"' in r.stdout
    assert '+cuda = "13.0"' in r.stdout and '+torch_index = "cu130"' in r.stdout
    assert re.search(rf"\+url = .*/v2\.2\.0-build\.20/sageattn3-1\.0\.0-{NEW}-", r.stdout)
    assert "dry run: 2 pin(s) and the profile would change; nothing written" in r.stdout
    data = json.loads(moving.bump("--profile", "cuda", "--torch", "2.11.0", "--cuda", "13.0", "--dry-run",
                                  "--json").stdout)
    assert data["profile"]["torch"] == {"old": "2.9.0", "new": "2.11.0"} and data["changed"] is True
    assert moving.snapshot() == before


def test_no_file_for_the_moved_profile_writes_nothing_and_names_each_pin(moving):
    before = moving.snapshot()
    r = moving.bump("--profile", "cuda", "--torch", "2.13.0", "--cuda", "13.0")
    assert_unchanged(moving, before, r, code=1)
    for name in ("sageattention", "sageattn3"):
        assert re.search(rf"^{name}: no release of {SAGE} has a file that fits complete-cuda \(cp312/linux_x86_64/"
                         r"torch 2\.13\.0/CUDA 13\.0\); newest release v2\.2\.0-build\.20: ", r.stderr, re.M), r.stderr
    assert "torch 2.11.0 ≠ 2.13.0" in r.stderr  # why the newest release's files do not fit
    assert "nothing written: a profile moves with all its pins or not at all" in r.stderr


def test_one_pin_without_a_fitting_file_stops_the_whole_move(moving, tmp_path):
    moving.fake.repos[SAGE][0].assets = [a for a in moving.fake.repos[SAGE][0].assets
                                         if not a.name.startswith("sageattn3-")]
    before = moving.snapshot()
    r = moving.bump("--profile", "cuda", "--torch", "2.11.0", "--cuda", "13.0")
    assert_unchanged(moving, before, r, code=1)
    assert re.search(r"^sageattn3: no release of .* newest release v2\.2\.0-build\.20: no sageattn3 file$",
                     r.stderr, re.M), r.stderr
    assert not re.search(r"^sageattention:", r.stderr, re.M)  # it has a file: only the one without is named


def test_each_pin_takes_the_newest_release_that_has_its_file(moving, tmp_path):
    """sageattn3 for torch 2.11 exists only in an older release: each pin moves to its own newest fit."""
    newest = moving.fake.repos[SAGE][0]
    newest.assets = [a for a in newest.assets if not a.name.startswith("sageattn3-")]
    moving.fake.add_release(SAGE, _release(tmp_path, "v2.2.0-build.18", NEW, sage2=False,
                                           published="2026-02-01T00:00:00Z"))
    moving.fake.repos[SAGE].sort(key=lambda rel: rel.published_at or "", reverse=True)
    r = moving.bump("--profile", "cuda", "--torch", "2.11.0", "--cuda", "13.0")
    assert r.returncode == 0, r.stdout + r.stderr
    pins = _pins(moving)
    assert pins["sageattention"]["source"]["release"] == "v2.2.0-build.20"
    assert pins["sageattn3"]["source"]["release"] == "v2.2.0-build.18"


@pytest.mark.parametrize("args, message", [
    (["--profile", "nope", "--torch", "2.11.0"], r"--profile nope: wheels\.toml has no \[profiles\.nope\]; profiles: cpu, cuda"),
    (["--torch", "2.11.0"], r"--torch move a profile: name it with --profile NAME"),
    (["--profile", "cuda"], r"give --torch, --cuda, --python or --torch-index"),
    (["--profile", "cpu", "--cuda", "13.0"], r"--cuda: \[profiles\.cpu\] is a CPU profile"),
    (["--profile", "cuda", "--cuda", "13"], r"--cuda '13' is not a CUDA version"),
    (["--profile", "cuda", "--python", "3.13"], r"--python '3\.13' is not a CPython tag"),
    (["--profile", "cuda", "--torch", "2.11.0+cu130"], r"--torch '2\.11\.0\+cu130' is not a plain torch version"),
    (["--profile", "cuda", "--torch", "2.11.0", "--name", "sageattention"], r"it takes no pin names"),
])
def test_bad_profile_moves_are_bad_input(moving, args, message):
    before = moving.snapshot()
    r = moving.bump(*args)
    assert_unchanged(moving, before, r, code=2, message=message)
    assert not moving.fake.requests("api"), "bad input is refused before GitHub is asked"

