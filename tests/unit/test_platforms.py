"""Profiles built for several platforms (x86-64 and aarch64): one pin per platform, the ABI of
each, and `invoke check` refusing a platform with no pin for a package the image installs."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyimg.errors import BadInput
from comfyimg.pins import load as pins
from tests.lib.pinfile import profile, wheel

X86 = "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"
ARM = "sageattention-2.2.0-290.129-cp312-cp312-manylinux_2_34_aarch64.whl"
BOTH = ["linux_x86_64", "linux_aarch64"]


def _toml(*wheels: str, platforms=BOTH) -> str:
    return (profile("cuda", torch="2.9.0", torch_index="cu128", cuda="12.9", archs=["sm90", "sm121"],
                    platforms=platforms)
            + "".join("\n" + w for w in wheels))


def _pin(filename: str, platform: str | None = None, **kw) -> str:
    return wheel("sageattention", "2.2.0", f"https://example.invalid/{filename}", sha256="a" * 64,
                 targets=["complete-cuda"], platform=platform, **kw)


def _error(text: str) -> str:
    with pytest.raises(BadInput) as exc:
        pins.loads(text, Path("wheels.toml"))
    return str(exc.value)


def test_one_pin_per_platform():
    loaded = pins.loads(_toml(_pin(X86), _pin(ARM, "linux_aarch64")), Path("wheels.toml"))
    prof = loaded.profiles["cuda"]
    assert prof.all_platforms == ("linux_x86_64", "linux_aarch64")
    assert prof.abi.platform == "linux_x86_64" and prof.abi_for("linux_aarch64").platform == "linux_aarch64"
    assert [p.filename for p in loaded.for_target("complete-cuda")] == [X86]
    assert [p.filename for p in loaded.for_target("complete-cuda", platform="linux_aarch64")] == [ARM]
    assert [p.key for p in loaded.wheels] == ["sageattention", "sageattention[linux_aarch64]"]


def test_a_single_platform_profile_is_unchanged():
    loaded = pins.loads(_toml(_pin(X86), platforms=()), Path("wheels.toml"))
    assert loaded.profiles["cuda"].all_platforms == ("linux_x86_64",)
    assert loaded.wheels[0].platform == "linux_x86_64"


def test_an_aarch64_only_profile_takes_aarch64_pins_without_the_key():
    loaded = pins.loads(_toml(_pin(ARM), platforms=["linux_aarch64"]), Path("wheels.toml"))
    assert loaded.wheels[0].platform == "linux_aarch64"
    assert loaded.wheels[0].key == "sageattention[linux_aarch64]"


def test_a_platform_without_a_pin_is_refused_with_the_fix():
    msg = _error(_toml(_pin(X86)))
    assert msg.count("\n") == 0
    assert msg.startswith("wheels.toml:9: platform: complete-cuda installs sageattention on linux_x86_64 "
                          "but no pin has it for linux_aarch64")
    assert 'add a [[wheel]] with platform = "linux_aarch64" and targets = ["complete-cuda"]' in msg
    assert "drop linux_aarch64 from profiles.cuda.platforms" in msg


def test_the_aarch64_pin_must_be_an_aarch64_wheel():
    msg = _error(_toml(_pin(X86), _pin(X86.replace("290.129", "290.129"), "linux_aarch64").replace(
        "sageattention-2.2.0-290", "sageattention-2.2.0-291")))
    assert "does not fit complete-cuda (cp312/linux_aarch64/torch 2.9.0/CUDA 12.9)" in msg
    assert "platform linux_x86_64 ≠ linux_aarch64" in msg


def test_glibc_counts_on_aarch64():
    too_new = ARM.replace("manylinux_2_34", "manylinux_2_40")
    msg = _error(_toml(_pin(X86), _pin(too_new, "linux_aarch64")))
    assert "platform manylinux_2_40_aarch64 needs glibc 2.40 > the image's 2.39" in msg


def test_two_pins_for_one_platform_are_duplicates():
    msg = _error(_toml(_pin(X86), _pin(ARM, "linux_aarch64"),
                       _pin(ARM.replace("2_34", "2_28"), "linux_aarch64")))
    assert "duplicate pin of sageattention on linux_aarch64 in complete-cuda" in msg


@pytest.mark.parametrize(("profile_lines", "field", "why"), [
    ('platform = "linux_x86_64"\nplatforms = ["linux_x86_64"]', "profiles.cuda.platforms", "not both"),
    ('platforms = ["linux_x86_64", "linux_armv7l"]', "profiles.cuda.platforms", "'linux_armv7l' is not a platform"),
    ('platform = "win_amd64"', "profiles.cuda.platform", "'win_amd64' is not a platform"),
    ("platforms = []", "profiles.cuda.platforms", "must not be empty"),
])
def test_bad_platforms(profile_lines, field, why):
    text = _toml(_pin(X86), platforms=()).replace('platform = "linux_x86_64"', profile_lines, 1)
    msg = _error(text)
    assert f": {field}: " in msg and why in msg


def test_a_pin_for_a_platform_its_profile_does_not_build():
    msg = _error(_toml(_pin(X86), _pin(ARM, "linux_aarch64"), platforms=()))
    assert "platform: linux_aarch64 is not among profiles.cuda's platforms (linux_x86_64)" in msg


def test_invoke_check_refuses_a_platform_without_a_pin(project_factory):
    project = project_factory(_toml(_pin(X86)), 'target "complete-cuda" {}\n')
    result = project.invoke("check")
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no pin has it for linux_aarch64" in lines[0], result.stderr


def test_render_writes_one_requirements_file_per_platform_and_arch():
    from comfyimg import render

    arm90 = "sageattention-2.2.0+cu129.torch2.9.0.sm90-cp312-cp312-linux_aarch64.whl"
    loaded = pins.loads(_toml(_pin(X86), _pin(ARM, "linux_aarch64"), _pin(arm90, "linux_aarch64", arch="sm90")),
                        Path("wheels.toml"))
    files = {str(k): v for k, v in render.render(loaded).items()}
    assert {k for k in files if k.startswith("generated/requirements/")} == {
        "generated/requirements/complete-cuda.txt", "generated/requirements/complete-cuda-arm64.txt",
        "generated/requirements/complete-cuda-sm90-arm64.txt"}
    arm = files["generated/requirements/complete-cuda-arm64.txt"]
    assert "Image: complete-cuda-arm64; ABI cp312/linux_aarch64/torch 2.9.0/CUDA 12.9" in arm
    assert ARM in arm and X86 not in arm
    assert arm90 in files["generated/requirements/complete-cuda-sm90-arm64.txt"]
    assert X86 in files["generated/requirements/complete-cuda.txt"]
    # A resolved bake target → the pins it installs and the platform its label names.
    for target, want, platform in (("complete-cuda", [X86], "linux_x86_64"), ("complete-cuda-arm64", [ARM], "linux_aarch64"),
                                   ("complete-cuda-sm90-arm64", [arm90], "linux_aarch64")):
        assert [p.filename for p in render.pins_for(loaded, target) or []] == want, target
        assert render.platform_for(loaded, target) == platform
    assert render.pins_for(loaded, "complete-cuda-amd64") is None  # the first platform has no suffix
    assert render.pins_for(loaded, "core-cuda-arm64") is None


def test_runs_on_for_an_arm64_image_without_pins_is_empty_not_an_error():
    """bake prints "runs on" for every image it built: an arm64 core image installs no pin."""
    from comfyimg import render

    loaded = pins.loads(_toml(_pin(X86), _pin(ARM, "linux_aarch64")), Path("wheels.toml"))
    assert render.runs_for(loaded, "core-cuda-arm64", []) == []
    runs = render.runs_for(loaded, "complete-cuda-arm64", render.pins_for(loaded, "complete-cuda-arm64") or [])
    assert [(r.image, r.pin.key) for r in runs] == [("complete-cuda-arm64", "sageattention[linux_aarch64]")]
