"""The fake GitHub's standard releases and the throw-away project that ``invoke bump`` runs in
(the HTTP tests' fixtures and the bump benchmarks build on these): releases of real wheels that
mirror both upstream naming conventions, decoys included, and the ``wheels.toml`` they start from."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from comfyimg import render
from comfyimg.pins import load as pins
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.cudawheels import FULL_SAGE2, PER_ARCH_SAGE2, sage2_wheel, sage3_wheel
from tests.lib.github import AUTO, FakeAsset, FakeGitHub, FakeRelease
from tests.lib.pinfile import profile, wheel
from tests.lib.project import Project
from tests.lib.wheels import build_wheel

TOKEN = "ghp_FAKEtoken0123456789SECRETxyzDONOTLEAK"
SAGE = "pixeloven/SageAttention"
PERSM = "acme/sage-sm"
ARCHS = ["sm80", "sm86", "sm89", "sm90", "sm120"]
LINUX = "cp312-cp312-linux_x86_64"
NEW_SAGE = f"sageattention-2.2.1-290.129-{LINUX}.whl"

BAKE_HCL = 'target "complete-cuda" {}\ntarget "complete-cu130" {}\n'


def _persm(version: str, sm: str, cu: str = "130", torch: str = "2.13.0") -> str:
    return f"sageattention-{version}+cu{cu}.torch{torch}.{sm}-{LINUX}.whl"


def wheels_toml(old_sage: str = "v2.2.0-build.16", old_persm: str = "v2.2.0-sm.1",
                sage_repo: str = SAGE) -> str:
    gh = "https://github.com"
    persm = "\n".join(
        wheel("sageattention", "2.2.0", arch=sm, github=PERSM, release=old_persm, targets=["complete-cu130"],
              url=f"{gh}/{PERSM}/releases/download/{old_persm}/{_persm('2.2.0', sm).replace('+', '%2B')}",
              comment=f"per-SM wheel for {sm}")
        for sm in ARCHS)
    sage3 = wheel("sageattn3", "1.0.0", github=sage_repo, release=old_sage, targets=["complete-cuda"],
                  url=f"{gh}/{sage_repo}/releases/download/{old_sage}/sageattn3-1.0.0-290.129-{LINUX}.whl",
                  comment="SageAttention 3.")
    helper = wheel("helper", "0.1.0", "https://example.invalid/helper-0.1.0-py3-none-any.whl",
                   sha256="a" * 64, targets=["complete-cuda"], comment="A pin without a source: bump leaves it alone.")
    return f"""\
# Test pins for invoke bump: every comment here must survive a bump.

[profiles.cuda]
python = "cp312"      # the image's Python
platform = "linux_x86_64"
torch = "2.9.0"
torch_index = "cu128"
cuda = "12.9"
archs = ["sm80", "sm86", "sm89", "sm90", "sm120"]

{profile("cu130", torch="2.13.0", torch_index="cu130", cuda="13.0", archs=ARCHS)}
# SageAttention 2, build-tag convention (290.129 = torch 2.9.0 / CUDA 12.9).
[[wheel]]
name = "sageattention"
version = "2.2.0"   # trailing comment
url = "{gh}/{sage_repo}/releases/download/{old_sage}/sageattention-2.2.0-290.129-{LINUX}.whl"
source = {{ github = "{sage_repo}", release = "{old_sage}" }}
targets = ["complete-cuda"]
provides = ["sageattention"]

{sage3}
{persm}
{helper}"""


# --------------------------------------------------------------------------- wheels


def build_wheel_dir(d: Path) -> Path:
    """Every wheel the fake releases serve, built into ``d``."""
    names = []
    for v in ("2.2.1", "2.2.2rc1", "2.3.0"):
        names += [f"sageattention-{v}-290.129-{LINUX}.whl",
                  f"sageattention-{v}-290.128-{LINUX}.whl",
                  f"sageattention-{v}-280.129-{LINUX}.whl",
                  f"sageattention-{v}-290.129-cp311-cp311-linux_x86_64.whl",
                  f"sageattention-{v}-290.129-cp312-cp312-win_amd64.whl",
                  f"sageattention-{v}-290.129-cp312-cp312-manylinux_2_28_x86_64.whl"]
    for v in ("1.0.1", "1.0.2rc1", "1.1.0"):
        names += [f"sageattn3-{v}-290.129-{LINUX}.whl", f"sageattn3-{v}-290.128-{LINUX}.whl"]
    names += [_persm("2.2.1", sm) for sm in ARCHS + ["sm100"]]
    names += [_persm("2.2.1", "sm90", cu="128"), _persm("2.2.1", "sm90", torch="2.12.0")]
    # The wheels a bump picks carry real compiled modules (bump reads their kernels);
    # the decoys, never downloaded, are plain.
    for v in ("2.2.1", "2.2.2rc1", "2.3.0"):
        sage2_wheel(d, FULL_SAGE2, version=v, filename=f"sageattention-{v}-290.129-{LINUX}.whl")
    for v in ("1.0.1", "1.0.2rc1", "1.1.0"):
        sage3_wheel(d, "r_120a_121a", version=v, filename=f"sageattn3-{v}-290.129-{LINUX}.whl")
    for sm in ARCHS + ["sm100"]:
        sage2_wheel(d, PER_ARCH_SAGE2[sm], version="2.2.1", filename=_persm("2.2.1", sm))
    for filename in names:
        if (d / filename).exists():
            continue
        dist, version = filename.split("-")[:2]
        build_wheel(d, dist, version, filename=filename,
                    files={f"{dist}/__init__.py": f"# {filename}\n" + "x = 1\n" * 200})
    return d


def _asset(wheel_dir: Path, name: str, digest: str | None = AUTO) -> FakeAsset:
    return FakeAsset(name, data=(wheel_dir / name).read_bytes(), digest=digest)


def _sums(name: str, assets: list[FakeAsset], override: dict[str, str] | None = None) -> FakeAsset:
    lines = []
    for a in assets:
        hexed = (override or {}).get(a.name) or hashlib.sha256(a.data or b"").hexdigest()
        lines.append(f"{hexed}  {a.name}\n")
    return FakeAsset(name, data="".join(lines).encode(), content_type="text/plain")


def sage_release(wheel_dir: Path, tag: str, v: str, v3: str, **kw) -> FakeRelease:
    """A build-tag release: the fitting wheels plus a decoy per ABI axis, and a SHA256SUMS.

    The fitting sageattention has an API digest; the fitting sageattn3 has ``digest: null``
    and is listed in SHA256SUMS."""
    wheels = [
        _asset(wheel_dir, f"sageattention-{v}-290.129-{LINUX}.whl"),
        _asset(wheel_dir, f"sageattention-{v}-290.128-{LINUX}.whl"),  # other CUDA
        _asset(wheel_dir, f"sageattention-{v}-280.129-{LINUX}.whl"),  # other torch
        _asset(wheel_dir, f"sageattention-{v}-290.129-cp311-cp311-linux_x86_64.whl"),  # other Python
        _asset(wheel_dir, f"sageattention-{v}-290.129-cp312-cp312-win_amd64.whl"),  # other platform
        _asset(wheel_dir, f"sageattn3-{v3}-290.129-{LINUX}.whl", digest=None),
        _asset(wheel_dir, f"sageattn3-{v3}-290.128-{LINUX}.whl"),
    ]
    sums_override = kw.pop("sums_override", None)
    extra = [FakeAsset(f"SageAttention-{v}.tar.gz", data=b"not a wheel\n", content_type="application/gzip")]
    return FakeRelease(tag, wheels + extra + [_sums("SHA256SUMS", wheels, sums_override)], **kw)


def persm_release(wheel_dir: Path, tag: str, **kw) -> FakeRelease:
    """Per-SM local versions: sm80…sm120 fit; sm86 is digest-null but in SHA256SUMS-sm86,
    sm89 is digest-null and in no SUMS file (must be downloaded)."""
    assets = []
    for sm in ARCHS + ["sm100"]:
        digest = None if sm in ("sm86", "sm89") else AUTO
        assets.append(_asset(wheel_dir, _persm("2.2.1", sm), digest))
    assets.append(_asset(wheel_dir, _persm("2.2.1", "sm90", cu="128")))
    assets.append(_asset(wheel_dir, _persm("2.2.1", "sm90", torch="2.12.0")))
    sm86 = [a for a in assets if ".sm86-" in a.name]
    assets.append(_sums("SHA256SUMS-sm86", sm86))
    return FakeRelease(tag, assets, **kw)


def populate(fake: FakeGitHub, wheel_dir: Path, **sage_kw) -> None:
    """The standard releases (newest first, as GitHub lists them)."""
    fake.add_release(SAGE, sage_release(wheel_dir, "v2.3.0-draft", "2.3.0", "1.1.0", draft=True,
                                        published_at="2026-04-01T00:00:00Z"))
    fake.add_release(SAGE, sage_release(wheel_dir, "v2.2.2-rc1", "2.2.2rc1", "1.0.2rc1",
                                        prerelease=True, published_at="2026-03-01T00:00:00Z"))
    fake.add_release(SAGE, sage_release(wheel_dir, "v2.2.0-build.17", "2.2.1", "1.0.1",
                                        published_at="2026-02-01T00:00:00Z", **sage_kw))
    # No fitting sageattn3 (only its CUDA 12.8 decoy): a bump to it must write nothing at all.
    nomatch = sage_release(wheel_dir, "v2.2.0-nomatch", "2.2.1", "1.0.1",
                           published_at="2026-01-20T00:00:00Z")
    nomatch.assets = [a for a in nomatch.assets if a.name != f"sageattn3-1.0.1-290.129-{LINUX}.whl"]
    fake.add_release(SAGE, nomatch)
    # Two sageattention wheels fit (linux_x86_64 and manylinux_2_28): ambiguous.
    amb = sage_release(wheel_dir, "v2.2.0-ambiguous", "2.2.1", "1.0.1", published_at="2026-01-10T00:00:00Z")
    amb.assets.append(_asset(wheel_dir, "sageattention-2.2.1-290.129-cp312-cp312-manylinux_2_28_x86_64.whl"))
    fake.add_release(SAGE, amb)
    fake.add_release(SAGE, FakeRelease("v2.2.0-build.16", [], published_at="2026-01-01T00:00:00Z"))
    fake.add_release(PERSM, persm_release(wheel_dir, "v2.2.1-sm.2", published_at="2026-02-02T00:00:00Z"))
    fake.add_release(PERSM, FakeRelease("v2.2.0-sm.1", [], published_at="2026-01-02T00:00:00Z"))


# --------------------------------------------------------------------------- project


class BumpProject(Project):
    def __init__(self, root: Path, fake: FakeGitHub) -> None:
        super().__init__(root)
        self.fake = fake

    def env(self, **extra: str | None) -> dict[str, str]:
        """No token or proxy from outside; the fake's API URL, the test token, quick retries."""
        clean: dict[str, str | None] = {k: None for k in (
            "GITHUB_TOKEN", "GH_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
            "http_proxy", "https_proxy", "all_proxy")}
        return super().env(**{**clean, "GITHUB_API_URL": self.fake.api_url, "GITHUB_TOKEN": TOKEN,
                              "COMFYIMG_HTTP_TIMEOUT": "2", "COMFYIMG_HTTP_RETRIES": "2",
                              "COMFYIMG_HTTP_BACKOFF": "0.01", "NO_PROXY": "*", **extra})

    def bump(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.invoke("bump", *args, env=env, timeout=60)

    def render(self) -> None:
        """What `invoke render` does, in-process (the generated files a bump must keep or update)."""
        render.write(pins.load(self.pins), self.root)


def assert_unchanged(project, before, result, code=1, message=None) -> None:
    """A failed bump failed cleanly (tests.lib.assertions) and never showed the token."""
    assert_failed_cleanly(result, code, message=message, before=before, after=project.snapshot(), hidden=[TOKEN])
