"""``invoke bump`` (a subprocess) for a profile built for x86-64 and aarch64: a loopback GitHub and
a loopback index hold x86-64 and aarch64 wheels with real compiled modules (aarch64 ELFs carrying
nvcc fatbins) and decoys; each platform's pin gets its own newest fitting file, sha256 and
kernel coverage. A release or index without an aarch64 file writes nothing and says so."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from comfyimg.pins import load as pins_mod
from tests.lib.bumpproject import BumpProject, assert_unchanged
from tests.lib.cudawheels import PER_ARCH_SAGE2, sage2_wheel
from tests.lib.github import FakeAsset, FakeRelease
from tests.lib.index import FakeIndex, IndexFile
from tests.lib.pinfile import profile, wheel
from tests.lib.project import make_project
from tests.lib.wheels import build_wheel

REPO_GH = "acme/sage-multi"
BAKE_HCL = 'target "complete-cuda" {}\n'
CP = "cp312-cp312"


def gh_name(version: str, plat: str) -> str:
    return f"sageattention-{version}-290.129-{CP}-{plat}.whl"


def ix_name(version: str, plat: str) -> str:
    return f"sageattention-{version}+cu129torch2.9-{CP}-{plat}.whl"


X86, ARM = "linux_x86_64", "manylinux_2_34_aarch64"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """The fitting files carry real modules (x86-64 ELFs, aarch64 ELFs); the decoys are plain."""
    d = tmp_path_factory.mktemp("multi")
    for name in (gh_name, ix_name):
        for v in ("2.2.0", "2.2.1"):
            sage2_wheel(d, PER_ARCH_SAGE2["sm90"], version=v, filename=name(v, X86))
            sage2_wheel(d, PER_ARCH_SAGE2["sm90"], version=v, filename=name(v, ARM), aarch64=True)
    for decoy in (f"sageattention-2.2.1-280.129-{CP}-{ARM}.whl",  # other torch
                  f"sageattention-2.2.1-290.129-{CP}-musllinux_1_2_aarch64.whl",  # musl
                  f"sageattention-2.2.1-290.129-{CP}-manylinux_2_40_aarch64.whl",  # glibc newer than 2.39
                  ix_name("2.2.1", "manylinux_2_40_aarch64")):
        build_wheel(d, "sageattention", "2.2.1", filename=decoy,
                    files={"sageattention/__init__.py": f"# {decoy}\n"})
    return d


def _toml(old_gh: str = "v1", index: FakeIndex | None = None) -> str:
    text = profile("cuda", torch="2.9.0", torch_index="cu128", cuda="12.9", archs=["sm90", "sm121"],
                   platforms=["linux_x86_64", "linux_aarch64"])
    gh = f"https://github.com/{REPO_GH}/releases/download/{old_gh}"
    for plat, platform in ((X86, None), (ARM, "linux_aarch64")):
        if index is None:
            text += "\n" + wheel("sageattention", "2.2.0", f"{gh}/{gh_name('2.2.0', plat)}", github=REPO_GH,
                                 release=old_gh, platform=platform, targets=["complete-cuda"],
                                 extra='serves = ["sm90"]\n')
        else:
            src = f'{{ index = "{index.simple}", project = "sageattention" }}'
            text += "\n" + wheel("sageattention", "2.2.0+cu129torch2.9", index.file_url(ix_name("2.2.0", plat)),
                                 source=src, platform=platform, targets=["complete-cuda"], extra='serves = ["sm90"]\n')
    return text


def _asset(d: Path, name: str) -> FakeAsset:
    return FakeAsset(name, data=(d / name).read_bytes())


def _release(d: Path, tag: str, *, aarch64: bool = True, published: str) -> FakeRelease:
    names = [gh_name("2.2.1", X86), f"sageattention-2.2.1-280.129-{CP}-{ARM}.whl",
             f"sageattention-2.2.1-290.129-{CP}-musllinux_1_2_aarch64.whl",
             f"sageattention-2.2.1-290.129-{CP}-manylinux_2_40_aarch64.whl"]
    if aarch64:
        names.append(gh_name("2.2.1", ARM))
    return FakeRelease(tag, [_asset(d, n) for n in names], published_at=published)


@pytest.fixture
def github(fake_github, wheels):
    fake_github.add_release(REPO_GH, _release(wheels, "v3-x86-only", aarch64=False, published="2026-03-01T00:00:00Z"))
    fake_github.add_release(REPO_GH, _release(wheels, "v2", published="2026-02-01T00:00:00Z"))
    fake_github.add_release(REPO_GH, FakeRelease("v1", [], published_at="2026-01-01T00:00:00Z"))
    return fake_github


def _pins(project: BumpProject) -> dict[str, pins_mod.Pin]:
    return {p.key: p for p in pins_mod.load(project.pins).wheels}


def _check_both(project: BumpProject, want: dict[str, str], sha: dict[str, str]) -> None:
    pins = _pins(project)
    assert set(pins) == {"sageattention", "sageattention[linux_aarch64]"}
    for key, filename in want.items():
        pin = pins[key]
        assert pin.filename == filename, key
        assert pin.sha256 == sha[filename], key
        assert pin.coverage is not None and pin.coverage.sha256 == pin.sha256, key  # read from its bytes
        assert {m.name: m.sass for m in pin.coverage.modules}["sageattention._qattn_sm90"] == ("sm_90a",)
    assert pins["sageattention"].platform == "linux_x86_64"
    assert pins["sageattention[linux_aarch64]"].platform == "linux_aarch64"
    arm_req = (project.root / "generated/requirements/complete-cuda-arm64.txt").read_text()
    assert f"--hash=sha256:{pins['sageattention[linux_aarch64]'].sha256}" in arm_req


def test_bump_from_github_records_one_pin_per_platform(tmp_path, github, wheels):
    project = BumpProject(make_project(tmp_path / "p", _toml(), BAKE_HCL), github)
    project.render()
    r = project.bump("--release", "v2")
    assert r.returncode == 0, r.stdout + r.stderr
    files = {n: hashlib.sha256((wheels / n).read_bytes()).hexdigest()
             for n in (gh_name("2.2.1", X86), gh_name("2.2.1", ARM))}
    _check_both(project, {"sageattention": gh_name("2.2.1", X86),
                          "sageattention[linux_aarch64]": gh_name("2.2.1", ARM)}, files)


def test_a_release_without_an_aarch64_file_writes_nothing_and_says_so(tmp_path, github):
    project = BumpProject(make_project(tmp_path / "p", _toml(), BAKE_HCL), github)
    project.render()
    before = project.snapshot()
    r = project.bump("--release", "v3-x86-only")
    assert_unchanged(project, before, r, 1, r"sageattention\[linux_aarch64\]: release v3-x86-only has no asset that "
                                            r"fits complete-cuda \(cp312/linux_aarch64/torch 2\.9\.0/CUDA 12\.9\)")
    assert f"{gh_name('2.2.1', X86)}: platform linux_x86_64 ≠ linux_aarch64" in r.stderr
    assert "musllinux_1_2_aarch64 ≠ linux_aarch64" in r.stderr
    assert "manylinux_2_40_aarch64 needs glibc 2.40 > the image's 2.39" in r.stderr
    assert "torch 2.8.0 ≠ 2.9.0" in r.stderr


@pytest.fixture(params=["html", "json"])
def index(request, wheels):
    with FakeIndex(json=request.param == "json") as fake:
        names = [ix_name(v, p) for v in ("2.2.0", "2.2.1") for p in (X86, ARM)]
        names.append(ix_name("2.2.1", "manylinux_2_40_aarch64"))
        fake.add("sageattention", *[IndexFile(n, (wheels / n).read_bytes()) for n in names])
        yield fake


def test_bump_from_an_index_picks_the_newest_file_per_platform(tmp_path, fake_github, index):
    project = BumpProject(make_project(tmp_path / "p", _toml(index=index), BAKE_HCL), fake_github)
    project.render()
    r = project.bump()
    assert r.returncode == 0, r.stdout + r.stderr
    files = {n: index.file(n).real_sha256() for n in (ix_name("2.2.1", X86), ix_name("2.2.1", ARM))}
    _check_both(project, {"sageattention": ix_name("2.2.1", X86),
                          "sageattention[linux_aarch64]": ix_name("2.2.1", ARM)}, files)


def test_an_index_without_an_aarch64_file_writes_nothing_and_says_so(tmp_path, fake_github, index):
    index.projects["sageattention"] = [f for f in index.projects["sageattention"] if "aarch64" not in f.name
                                       or "2_40" in f.name]
    project = BumpProject(make_project(tmp_path / "p", _toml(index=index), BAKE_HCL), fake_github)
    project.render()
    before = project.snapshot()
    r = project.bump()
    assert_unchanged(project, before, r, 1, r"sageattention\[linux_aarch64\]: .* has no asset that fits complete-cuda "
                                            r"\(cp312/linux_aarch64/")
    assert "manylinux_2_40_aarch64 needs glibc 2.40 > the image's 2.39" in r.stderr
