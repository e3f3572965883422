"""Table-driven tests of the ABI model: every naming convention, accepted and rejected."""

import pytest

from comfyimg.pins.abi import ImageABI, mismatches, parse_wheel

CUDA129 = ImageABI("cp312", "linux_x86_64", "2.9.0", "12.9", ("sm80", "sm86", "sm89", "sm90", "sm120"))
CU130 = ImageABI("cp312", "linux_x86_64", "2.13.0", "13.0")
CPU = ImageABI("cp312", "linux_x86_64", "2.9.0", None)
OLD_GLIBC = ImageABI("cp312", "linux_x86_64", "2.9.0", "12.9", glibc=(2, 28))
# The same profile on arm64 (GH200, GB10): Ubuntu 24.04's glibc 2.39 there too.
ARM = ImageABI("cp312", "linux_aarch64", "2.9.0", "12.9", ("sm90", "sm121"))
ARM_OLD_GLIBC = ImageABI("cp312", "linux_aarch64", "2.9.0", "12.9", glibc=(2, 28))

PARSE = [
    # filename, torch, cuda, sm
    ("sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl", "2.9.0", "12.9", None),
    ("sageattn3-1.0.0-290.129-cp312-cp312-linux_x86_64.whl", "2.9.0", "12.9", None),
    ("sageattention-2.2.0-280.128-cp311-cp311-win_amd64.whl", "2.8.0", "12.8", None),
    ("sageattention-2.2.0-2100.130-cp312-cp312-linux_x86_64.whl", "2.10.0", "13.0", None),
    ("sageattention-2.2.0+cu130.torch2.13.0.sm90-cp312-cp312-linux_x86_64.whl", "2.13.0", "13.0", "sm90"),
    ("sageattention-2.2.0+cu130.torch2.13.0.sm120-cp312-cp312-linux_x86_64.whl", "2.13.0", "13.0", "sm120"),
    ("sageattention-2.2.0+cu128torch2.8.0-cp312-cp312-linux_x86_64.whl", "2.8.0", "12.8", None),
    ("sageattention-2.2.0+cu128torch2.8-cp312-cp312-linux_x86_64.whl", "2.8", "12.8", None),
    ("sageattention-2.2.0+cu130torch2.11-cp312-cp312-manylinux_2_34_x86_64.whl", "2.11", "13.0", None),
    ("sageattention-1.0.6-py3-none-any.whl", None, None, None),
    ("flash_attn-2.8.3-cp39-abi3-manylinux_2_28_x86_64.whl", None, None, None),
    ("sageattention-2.2.0-1-cp312-cp312-linux_x86_64.whl", None, None, None),  # plain build number
]


@pytest.mark.parametrize(("filename", "torch", "cuda", "sm"), PARSE)
def test_parse(filename, torch, cuda, sm):
    wheel = parse_wheel(filename)
    assert (str(wheel.torch) if wheel.torch else None, wheel.cuda, wheel.sm) == (torch, cuda, sm)


FIT = [
    # filename, image, expected reasons (empty: fits)
    ("sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl", CUDA129, []),
    ("sageattention-2.2.0-290.128-cp312-cp312-linux_x86_64.whl", CUDA129, ["CUDA 12.8 ≠ 12.9"]),
    ("sageattention-2.2.0-280.129-cp312-cp312-linux_x86_64.whl", CUDA129, ["torch 2.8.0 ≠ 2.9.0"]),
    ("sageattention-2.2.0-290.129-cp311-cp311-linux_x86_64.whl", CUDA129, ["python cp311-cp311 ≠ cp312"]),
    ("sageattention-2.2.0-290.129-cp312-cp312-win_amd64.whl", CUDA129, ["platform win_amd64 ≠ linux_x86_64"]),
    ("sageattention-2.2.0-290.129-cp312-cp312-linux_aarch64.whl", CUDA129, ["platform linux_aarch64 ≠ linux_x86_64"]),
    ("sageattention-2.2.0-280.128-cp311-cp311-win_amd64.whl", CUDA129,
     ["python cp311-cp311 ≠ cp312", "platform win_amd64 ≠ linux_x86_64", "torch 2.8.0 ≠ 2.9.0", "CUDA 12.8 ≠ 12.9"]),
    ("sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl", CPU, ["CUDA 12.9 wheel on a CPU image"]),
    ("sageattention-2.2.0+cu130.torch2.13.0.sm90-cp312-cp312-linux_x86_64.whl", CU130, []),
    ("sageattention-2.2.0+cu130.torch2.13.0.sm100-cp312-cp312-linux_x86_64.whl", CU130, []),  # no arch list: any
    ("sageattention-2.2.0+cu129.torch2.9.0.sm100-cp312-cp312-linux_x86_64.whl", CUDA129,
     ["sm100 not among the image's archs sm80, sm86, sm89, sm90, sm120"]),
    ("sageattention-2.2.0+cu130.torch2.12.0.sm90-cp312-cp312-linux_x86_64.whl", CU130, ["torch 2.12.0 ≠ 2.13.0"]),
    ("sageattention-2.2.0+cu128torch2.8.0-cp312-cp312-linux_x86_64.whl", CUDA129,
     ["torch 2.8.0 ≠ 2.9.0", "CUDA 12.8 ≠ 12.9"]),
    # abi3: built for an older CPython, fits newer ones; not the reverse
    ("flash_attn-2.8.3-cp39-abi3-manylinux_2_28_x86_64.whl", CUDA129, []),
    ("flash_attn-2.8.3-cp313-abi3-manylinux_2_28_x86_64.whl", CUDA129, ["python cp313-abi3 ≠ cp312"]),
    # manylinux: up to the image's glibc (Ubuntu 24.04: 2.39)
    ("x-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", CUDA129, []),
    ("x-1.0-cp312-cp312-manylinux1_x86_64.whl", CUDA129, []),
    ("x-1.0-cp312-cp312-manylinux_2_39_x86_64.whl", CUDA129, []),
    ("x-1.0-cp312-cp312-manylinux_2_40_x86_64.whl", CUDA129,
     ["platform manylinux_2_40_x86_64 needs glibc 2.40 > the image's 2.39"]),
    ("x-1.0-cp312-cp312-manylinux_2_34_x86_64.whl", OLD_GLIBC,
     ["platform manylinux_2_34_x86_64 needs glibc 2.34 > the image's 2.28"]),
    ("x-1.0-cp312-cp312-musllinux_1_2_x86_64.whl", CUDA129, ["platform musllinux_1_2_x86_64 ≠ linux_x86_64"]),
    ("x-1.0-cp312-cp312-manylinux_2_12_x86_64.whl", CUDA129, []),  # PEP 600 tags below 2_17 on x86_64
    ("x-1.0-cp312-cp312-manylinux_2_5_x86_64.whl", CUDA129, []),
    # torch versions compare as PEP 440 versions: 2.8 is 2.8.0
    ("sageattention-2.2.0+cu128torch2.8-cp312-cp312-linux_x86_64.whl",
     ImageABI("cp312", "linux_x86_64", "2.8.0", "12.8"), []),
    ("sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl", ImageABI("cp312", "linux_x86_64", "2.9", "12.9"), []),
    # Comfy-Org's index: +cu130torch2.11 names torch major.minor and fits every 2.11.x
    ("sageattention-2.2.0+cu130torch2.11-cp312-cp312-manylinux_2_34_x86_64.whl",
     ImageABI("cp312", "linux_x86_64", "2.11.1", "13.0"), []),
    ("sageattention-2.2.0+cu130torch2.11-cp312-cp312-manylinux_2_34_x86_64.whl", CU130,
     ["torch 2.11 ≠ 2.13.0"]),
    ("sageattention-2.2.0+cu130torch2.11-cp312-cp312-manylinux_2_34_x86_64.whl",
     ImageABI("cp312", "linux_x86_64", "2.11.0", "12.9"), ["CUDA 13.0 ≠ 12.9"]),
    # aarch64: linux_aarch64 and manylinux_2_XX_aarch64 up to the image's glibc; PEP 600 starts at 2_17
    ("sageattention-2.2.0-290.129-cp312-cp312-linux_aarch64.whl", ARM, []),
    ("sageattention-2.2.0+cu129.torch2.9.0.sm90-cp312-cp312-linux_aarch64.whl", ARM, []),
    ("sageattention-2.2.0+cu129.torch2.9.0.sm121-cp312-cp312-manylinux_2_34_aarch64.whl", ARM, []),
    ("x-1.0-cp312-cp312-manylinux_2_39_aarch64.whl", ARM, []),
    ("x-1.0-cp312-cp312-manylinux_2_17_aarch64.manylinux2014_aarch64.whl", ARM, []),
    ("x-1.0-cp312-cp312-manylinux2014_aarch64.whl", ARM, []),
    ("x-1.0-cp312-cp312-manylinux_2_40_aarch64.whl", ARM,
     ["platform manylinux_2_40_aarch64 needs glibc 2.40 > the image's 2.39"]),
    ("x-1.0-cp312-cp312-manylinux_2_34_aarch64.whl", ARM_OLD_GLIBC,
     ["platform manylinux_2_34_aarch64 needs glibc 2.34 > the image's 2.28"]),
    ("x-1.0-cp312-cp312-manylinux_2_28_aarch64.whl", ARM_OLD_GLIBC, []),
    ("x-1.0-cp312-cp312-manylinux_2_12_aarch64.whl", ARM, ["platform manylinux_2_12_aarch64 ≠ linux_aarch64"]),
    ("x-1.0-cp312-cp312-manylinux1_aarch64.whl", ARM, ["platform manylinux1_aarch64 ≠ linux_aarch64"]),
    ("x-1.0-cp312-cp312-musllinux_1_2_aarch64.whl", ARM, ["platform musllinux_1_2_aarch64 ≠ linux_aarch64"]),
    ("sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl", ARM, ["platform linux_x86_64 ≠ linux_aarch64"]),
    ("x-1.0-cp312-cp312-manylinux_2_28_x86_64.whl", ARM, ["platform manylinux_2_28_x86_64 ≠ linux_aarch64"]),
    ("x-1.0-cp312-cp312-manylinux_2_28_aarch64.whl", CUDA129, ["platform manylinux_2_28_aarch64 ≠ linux_x86_64"]),
    ("sageattention-2.2.0+cu129.torch2.9.0.sm100-cp312-cp312-linux_aarch64.whl", ARM,
     ["sm100 not among the image's archs sm90, sm121"]),
    ("flash_attn-2.8.3-cp39-abi3-manylinux_2_28_aarch64.whl", ARM, []),
    ("sageattention-1.0.6-py3-none-any.whl", ARM, []),
    # pure python fits anywhere
    ("sageattention-1.0.6-py3-none-any.whl", CUDA129, []),
    ("sageattention-1.0.6-py3-none-any.whl", CPU, []),
    ("x-1.0-py2-none-any.whl", CUDA129, ["python py2-none ≠ cp312"]),
]


@pytest.mark.parametrize(("filename", "image", "reasons"), FIT, ids=[f[0] + "@" + f[1].describe() for f in FIT])
def test_fit(filename, image, reasons):
    assert mismatches(parse_wheel(filename), image) == reasons


@pytest.mark.parametrize("filename", [
    "sageattention-2.2.0.tar.gz",
    "sageattention-2.2.0-cp312-linux_x86_64.whl",
    "sageattention-not_a_version-cp312-cp312-linux_x86_64.whl",
    "sageattention-2.2.0-x1-cp312-cp312-linux_x86_64.whl",  # build tag must start with a digit
])
def test_parse_rejects(filename):
    with pytest.raises(ValueError, match="not a valid wheel file name"):
        parse_wheel(filename)


def test_a_bad_wheel_name_has_its_own_error_type():
    from comfyimg.pins.abi import InvalidWheelName

    with pytest.raises(InvalidWheelName):
        parse_wheel("sageattention.tar.gz")
    assert issubclass(InvalidWheelName, ValueError)
