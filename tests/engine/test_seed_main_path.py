"""The maintainer's first real step (issue 28): a clone with the seed ``wheels.toml``, a loopback
GitHub serving wheels shaped like the seed's own recipe (``sageattention`` without sm120 code,
``sageattn3`` built for sm_100a only), then the README's main path: ``invoke bump --release
v2.2.0-build.16 --verify``, ``invoke check``, ``invoke bake`` and ``invoke audit`` all succeed,
and audit says which GPUs each image runs its attention packages on."""

from __future__ import annotations

import json
import re

import pytest

from tests.lib.bumpproject import BumpProject
from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel, sage3_wheel
from tests.lib.engine import LABEL, OVERRIDE, PROJECTS
from tests.lib.github import FakeAsset, FakeGitHub, FakeRelease
from tests.lib.project import REPO, make_project

pytestmark = pytest.mark.engine

SEED_REPO = "pixeloven/SageAttention"


@pytest.fixture
def seed_project(tmp_path):
    """The repository's own wheels.toml and build files; the seed release on a loopback GitHub."""
    wheels = tmp_path / "wheels"
    built = [sage2_wheel(wheels, SEED_SAGE2, source="pixeloven-7bd3a0e"), sage3_wheel(wheels, "r_100a")]
    with FakeGitHub() as fake:
        fake.add_release(SEED_REPO, FakeRelease("v2.2.0-build.16", [FakeAsset(p.name, data=p.read_bytes())
                                                                     for p in built],
                                                published_at="2026-01-01T00:00:00Z"))
        root = make_project(PROJECTS / f"{LABEL}-seed", (REPO / "wheels.toml").read_text(encoding="utf-8"),
                            copy=("services", OVERRIDE, "generated"))
        yield BumpProject(root, fake)


def test_the_seed_pins_bump_check_bake_and_say_where_they_run(seed_project):
    project = seed_project
    bumped = project.bump("--release", "v2.2.0-build.16", "--verify")
    assert bumped.returncode == 0, bumped.stdout + bumped.stderr
    assert "warning" not in bumped.stderr, bumped.stderr  # the seed promises only what its wheels do
    text = project.pins.read_text()
    assert len(re.findall(r'^sha256 = "[0-9a-f]{64}"$', text, re.M)) == 2
    # Both wheels' kernels are read and recorded, sageattn3's too though it serves no GPU.
    assert text.count("coverage_from = ") == 2 and '{module = "fp4attn_cuda", sass = ["sm_100a"]' in text
    # The comments that said the hashes were not recorded went with them; ComfyUI's stays (no commit yet).
    assert text.count("not recorded yet") == 1 and "--name sageattention" not in text
    assert "# SageAttention 3: its kernel runs on sm120/sm121 only" in text  # the rest is kept

    check = project.invoke("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "coverage" not in check.stderr, check.stderr

    # bake: its preflight (hashes, kernel coverage of what each image serves) passes; the plan
    # carries the runs-on label. (The stand-in base has Python 3.11; the seed's wheels are cp312.)
    baked = project.invoke("bake", "-t", "complete-cuda", "--print", "--file", OVERRIDE, timeout=120)
    assert baked.returncode == 0, baked.stdout + baked.stderr
    assert "warning" not in baked.stderr, baked.stderr
    labels = json.loads(baked.stdout)["target"]["complete-cuda"]["labels"]
    assert json.loads(labels["io.comfyimg.runs-on"]) == {
        "sageattention": {"runs_on": ["sm80", "sm86", "sm89", "sm90"], "falls_back": ["sm120"]},
        "sageattn3": {"runs_on": [], "falls_back": ["sm80", "sm86", "sm89", "sm90", "sm120"]}}

    # The build itself, on the stand-in core: the preflight passes (nothing refused, the seed's
    # coverage already recorded) and buildx runs the complete stage; there pip refuses the cp312
    # wheels, because the stand-in's Python is 3.11 (the real core's is 3.12).
    built = project.invoke("bake", "-t", "complete-cuda", "--file", OVERRIDE, "--allow", "network.host",
                           "--label", f"{LABEL}-seed", timeout=600)
    assert "coverage:" not in built.stderr and "sha256:" not in built.stderr, built.stderr[-2000:]
    assert re.search(r"^#\d+ \[[\w-]+ \d+/\d+\] RUN .*pip install .*--require-hashes", built.stderr, re.M), \
        built.stderr[-2000:]
    assert built.returncode == 1 and "not a supported wheel on this platform" in built.stderr, built.stderr[-2000:]

    audit = project.invoke("audit")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    shown = audit.stdout.replace("\n  ", " ")
    assert ("complete-cuda: sageattention 2.2.0 runs on sm80 (A100), sm86 (A10 / RTX 30xx), "
            "sm89 (L4 / RTX 40xx), sm90 (H100 / H200)") in audit.stdout
    assert re.search(r"falls back to PyTorch attention on sm120 \(RTX 50xx\): not in serves; "
                     r".*sageattention\._qattn_sm89 carries only sm_89, sm_100a", shown), audit.stdout
    assert "complete-cuda: sageattn3 1.0.0 runs on no GPU\n" in audit.stdout  # read from the wheel
    assert re.search(r"falls back to PyTorch attention on sm120 \(RTX 50xx\): not in serves; fp4attn_cuda carries "
                     r"only sm_100a", shown), audit.stdout
    report = json.loads(project.invoke("audit", "--json").stdout)
    sage = next(i for i in report["images"] if i["pin"] == "sageattention")
    assert sage["image"] == "complete-cuda" and sage["runs_on"] == ["sm80", "sm86", "sm89", "sm90"]
    assert list(sage["falls_back"]) == ["sm120"]
