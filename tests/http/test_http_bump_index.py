"""``invoke bump`` run for real (a subprocess) against a package index on loopback
(tests/lib/index.py): PEP 503 HTML and PEP 691 JSON, real-shaped names (Comfy-Org's
``+cu130torch2.11`` on ``manylinux_2_34``, pixeloven's per-arch ``+cu130.torch2.11.0.smXX``),
decoys on every ABI axis, a yanked file, a prerelease, and files whose bytes do not match
the hash the index announces. Also plain URL pins (no source) bumped by name with --verify."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from comfyimg.pins import load as pins_mod
from tests.lib.bumpproject import ARCHS, BumpProject, assert_unchanged
from tests.lib.cudawheels import FULL_SAGE2, PER_ARCH_SAGE2, sage2_wheel
from tests.lib.index import PEP691, FakeIndex, IndexFile
from tests.lib.pinfile import profile, wheel
from tests.lib.project import make_project
from tests.lib.wheels import build_wheel

CP = "cp312-cp312"
COMFY = "manylinux_2_34_x86_64"
BAKE_HCL = 'target "complete-cu130" {}\ntarget "complete-cpu" {}\n'


def comfy(version: str, local: str = "cu130torch2.11", py: str = CP, plat: str = COMFY) -> str:
    """Comfy-Org's index naming."""
    return f"sageattention-{version}+{local}-{py}-{plat}.whl"


def per_arch(version: str, sm: str) -> str:
    """pixeloven/SageAttention-Wheels naming: one wheel per arch."""
    return f"sageattention-{version}+cu130.torch2.11.0.{sm}-{CP}-linux_x86_64.whl"


NEW = comfy("2.2.1")
OLD = comfy("2.2.0")
YANKED = comfy("2.3.0")
PRE = comfy("2.4.0rc1")
HELPER = "helper-0.1.0-py3-none-any.whl"


def _plain(d: Path, filename: str) -> Path:
    dist, version = filename.split("-")[:2]
    return build_wheel(d, dist, version, filename=filename,
                       files={f"{dist}/__init__.py": f"# {filename}\n" + "x = 1\n" * 50})


@pytest.fixture(scope="module")
def index_wheels(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("index-wheels")
    sage2_wheel(d, FULL_SAGE2, version="2.2.1", filename=NEW)
    for sm in ARCHS + ["sm100"]:
        sage2_wheel(d, PER_ARCH_SAGE2[sm], version="2.2.1", filename=per_arch("2.2.1", sm))
        _plain(d, per_arch("2.2.0", sm))
    for name in (OLD, YANKED, PRE, HELPER,
                 comfy("2.2.1", "cu128torch2.11"),  # other CUDA
                 comfy("2.2.1", "cu130torch2.10"),  # other torch
                 comfy("2.2.1", py="cp311-cp311"),  # other Python
                 comfy("2.2.1", plat="manylinux_2_40_x86_64")):  # glibc newer than the image's
        _plain(d, name)
    return d


def _populate(index: FakeIndex, d: Path) -> None:
    files = [IndexFile(p.name, p.read_bytes()) for p in sorted(d.glob("sageattention-*.whl"))]
    for f in files:
        if f.name == YANKED:
            f.yanked = "broken build"
    index.add("sageattention", *files)
    index.add("helper", IndexFile(HELPER, (d / HELPER).read_bytes()))
    (d / "sdist.tar.gz").write_bytes(b"not a wheel\n")
    index.add("sageattention", IndexFile("sageattention-2.2.1.tar.gz", b"not a wheel\n"))


def wheels_toml(index: FakeIndex, *, helper_sha: str | None = None, pinned_sha: str | None = None) -> str:
    src = f'{{ index = "{index.simple}", project = "sageattention" }}'
    persm = "\n".join(
        wheel("sageattention", "2.2.0", index.file_url(per_arch("2.2.0", sm)), arch=sm, source=src,
              targets=["complete-cu130"], comment=f"pixeloven style, {sm}")
        for sm in ARCHS)
    helper = wheel("helper", "0.1.0", index.file_url(HELPER), sha256=helper_sha, targets=["complete-cpu"],
                   comment="A plain URL pin (no source).")
    comfy = wheel("sageattention", "2.2.0", index.file_url(OLD), sha256=pinned_sha, source=src,
                  targets=["complete-cu130"], comment="Comfy-Org style, from its simple index.")
    return f"""\
# Index pins.
{profile("cu130", torch="2.11.0", torch_index="cu130", cuda="13.0", archs=ARCHS)}
{profile("cpu", torch="2.11.0", torch_index="cpu")}
{comfy}
{persm}
{helper}"""


@pytest.fixture(params=["html", "json"])
def index(request, index_wheels):
    with FakeIndex(json=request.param == "json") as fake:
        _populate(fake, index_wheels)
        yield fake


@pytest.fixture
def project(tmp_path, index, fake_github) -> BumpProject:
    proj = BumpProject(make_project(tmp_path / "project", wheels_toml(index), BAKE_HCL), fake_github)
    proj.render()
    return proj


def _by_key(project: BumpProject) -> dict[str, pins_mod.Pin]:
    return {p.key: p for p in pins_mod.load(project.pins).wheels}


def test_bump_picks_newest_fitting_file_with_the_index_hash(project, index):
    r = project.bump()
    assert r.returncode == 0, r.stdout + r.stderr
    pins = _by_key(project)
    sage = pins["sageattention"]
    # the newest fitting file: not the yanked 2.3.0, not the 2.4.0rc1, no decoy
    assert sage.filename == NEW
    assert sage.version == "2.2.1"
    assert sage.sha256 == index.file(NEW).real_sha256()
    assert sage.url.startswith(index.url + "/files/")
    assert "#" not in sage.url  # the fragment is not part of the pin
    assert sage.source == pins_mod.IndexSource(index.simple, "sageattention")
    assert sage.coverage is not None and sage.coverage.sha256 == sage.sha256  # read from the bytes
    for sm in ARCHS:
        pin = pins[f"sageattention[{sm}]"]
        assert pin.filename == per_arch("2.2.1", sm)
        assert pin.sha256 == index.file(per_arch("2.2.1", sm)).real_sha256()
    assert pins["helper"].sha256 is None  # a plain URL pin is bumped only by name
    pages = [e for e in index.log if e.path.startswith("/simple/")]
    assert pages and all(PEP691 in e.accept for e in pages)  # PEP 691 asked for, HTML accepted
    served = PEP691 if index.json else "text/html; charset=utf-8"
    assert {e.content_type for e in pages} == {served}
    assert not any(e.path == f"/files/{YANKED}" for e in index.log)
    # A second bump: up to date, nothing downloaded again (the hashes come from the index)
    index.log.clear()
    before = project.snapshot()
    r = project.bump()
    assert r.returncode == 0, r.stdout + r.stderr
    assert project.snapshot() == before
    assert not [e for e in index.log if e.path.startswith("/files/")]


def test_pre_takes_the_prerelease(project):
    r = project.bump("--pre", "--name", "sageattention", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert PRE.replace("+", "%2B") in r.stdout or PRE in r.stdout


def test_only_a_yanked_file_fits(project, index):
    index.projects["sageattention"] = [f for f in index.projects["sageattention"]
                                       if f.name in (YANKED, OLD) or "cu128" in f.name]
    index.file(OLD).yanked = True
    before = project.snapshot()
    r = project.bump("--name", "sageattention")
    assert_unchanged(project, before, r, 1, r"no asset that fits")
    assert re.search(re.escape(YANKED) + r": yanked \(PEP 592\)", r.stderr), r.stderr
    assert re.search(re.escape(comfy("2.2.1", "cu128torch2.11")) + r": CUDA 12\.8 ≠ 13\.0", r.stderr)


@pytest.mark.parametrize("verify", [True, False], ids=["verify", "coverage-read"])
def test_bytes_that_do_not_match_the_index_hash_fail(project, index, verify):
    """The index's sha256 is checked whenever the bytes are downloaded: with --verify, and when
    coverage must be read from them (no coverage recorded yet)."""
    index.file(NEW).sha256 = "0" * 64
    before = project.snapshot()
    r = project.bump(*(["--verify"] if verify else []))
    assert_unchanged(project, before, r, 1, r"digest mismatch: " + re.escape(NEW) + r" .*hashes to "
               + index.file(NEW).real_sha256() + r", but the index's sha256 says 0{64} \(the asset was replaced")


def test_a_replaced_file_fails_unless_accepted(project, index, index_wheels, tmp_path):
    assert project.bump().returncode == 0
    old_sha = index.file(NEW).real_sha256()
    other = sage2_wheel(tmp_path / "other", {**FULL_SAGE2, "_extra": "r_80"}, version="2.2.1", filename=NEW)
    index.file(NEW).data = other.read_bytes()
    new_sha = index.file(NEW).real_sha256()
    assert new_sha != old_sha
    before = project.snapshot()
    r = project.bump()
    assert_unchanged(project, before, r, 1, re.escape(NEW) + r" was replaced under the same URL.*pinned sha256 "
               + old_sha + r", now " + new_sha + r"[\s\S]*--accept-new-bytes")
    r = project.bump("--accept-new-bytes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _by_key(project)["sageattention"].sha256 == new_sha


def test_plain_url_pin_by_name_with_verify(project, index):
    before = project.snapshot()
    r = project.bump("--name", "helper")
    assert_unchanged(project, before, r, 2, r"helper has no source.*invoke bump --verify --name helper")
    r = project.bump("--verify", "--name", "helper")
    assert r.returncode == 0, r.stdout + r.stderr
    pins = _by_key(project)
    assert pins["helper"].sha256 == index.file(HELPER).real_sha256()
    assert pins["sageattention"].filename == OLD  # only the pin named
    assert any(e.path == f"/files/{HELPER}" for e in index.log)
    # the bytes change behind the URL: a failure, as for a release asset
    index.file(HELPER).data = b"PK-other-bytes"
    before = project.snapshot()
    r = project.bump("--verify", "--name", "helper")
    assert_unchanged(project, before, r, 1, r"helper-0\.1\.0-py3-none-any\.whl was replaced under the same URL")


def test_plain_url_pin_records_coverage(tmp_path, index, fake_github):
    """A plain URL pin that serves GPUs: --verify records its sha256 and its kernel coverage."""
    text = (profile("cu130", torch="2.11.0", torch_index="cu130", cuda="13.0", archs=ARCHS) + "\n"
            + wheel("sageattention", "2.2.1", index.file_url(NEW), targets=["complete-cu130"]))
    proj = BumpProject(make_project(tmp_path / "p", text, BAKE_HCL), fake_github)
    r = proj.bump("--verify", "--name", "sageattention")
    assert r.returncode == 0, r.stdout + r.stderr
    sage = _by_key(proj)["sageattention"]
    assert sage.sha256 == index.file(NEW).real_sha256()
    assert sage.coverage is not None and sage.coverage.sha256 == sage.sha256
    assert {m.name for m in sage.coverage.modules} == {f"sageattention.{m}" for m in FULL_SAGE2}


def test_a_url_serving_another_distributions_wheel_is_refused(project, index, tmp_path):
    """The helper pin's URL serves a wheel whose dist-info and METADATA say `other` (issue 27,
    item 6): refused, one line, nothing written, never recorded with a warning."""
    impostor = build_wheel(tmp_path / "impostor", "other", "0.1.0", filename=HELPER,
                           files={"other/__init__.py": "x = 1\n"})
    index.file(HELPER).data = impostor.read_bytes()
    before = project.snapshot()
    r = project.bump("--verify", "--name", "helper")
    assert_unchanged(project, before, r, 1, r"helper-0\.1\.0-py3-none-any\.whl: the wheel's dist-info and METADATA "
                                            r"name other, not helper .*refused")


def test_a_profile_move_asks_the_index_and_names_each_pin_without_a_fitting_file(project):
    """`bump --profile cu130 --torch 2.10.0`: the index has a Comfy-Org file for torch 2.10 but
    no per-arch one; nothing is written and each per-arch pin is named with why."""
    before = project.snapshot()
    r = project.bump("--profile", "cu130", "--torch", "2.10.0")
    assert_unchanged(project, before, r, code=1)
    for sm in ARCHS:
        assert re.search(rf"^sageattention\[{sm}\]: release index page .* has no asset that fits complete-cu130 "
                         rf"\(cp312/linux_x86_64/torch 2\.10\.0/CUDA 13\.0, {sm}\)", r.stderr, re.M), r.stderr
    assert not re.search(r"^sageattention: ", r.stderr, re.M)  # its torch 2.10 file fits
