"""A wheel's kernels, read with NVIDIA's cuobjdump from real nvcc-built objects
(tests/fixtures/cuda-objects), judged with NVIDIA's rules and the package table."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from comfyimg.kernels import dispatch
from comfyimg.kernels import rules as kernels
from comfyimg.kernels.cuobjdump import read_module
from comfyimg.kernels.read import read_wheel
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.cudawheels import (FULL_SAGE2, LISTING, PER_ARCH_SAGE2, SEED_SAGE2, objects_dir, sage2_wheel,
                                  sage3_wheel)
from tests.lib.wheels import build_wheel

ALL = ["sm80", "sm86", "sm89", "sm90", "sm100", "sm120", "sm121"]


def listing() -> dict[str, tuple[set[str], set[str]]]:
    """listing.txt: file -> (SASS, PTX), counting targets, not entries."""
    files: dict[str, tuple[set[str], set[str]]] = {}
    current = None
    for line in LISTING.read_text().splitlines():
        if m := re.match(r"^== (\S+)$", line):
            current = files.setdefault(m[1], (set(), set()))
        elif m := re.match(r"^(ELF|PTX) file\s+\d+: \S+\.(sm_\d+[af]?)\.(cubin|ptx)$", line):
            assert current is not None
            if m[1] == "ELF":
                current[0].add(m[2])
            else:
                current[1].add(m[2].replace("sm_", "compute_"))
    return files


def judge_wheel(path: Path, archs=ALL) -> dict[str, kernels.Verdict]:
    found = read_wheel(path)
    dist, version = path.name.split("-")[:2]
    return kernels.judge_all(found.modules, archs, kernels.rules_for(dist, version))


def runnable(verdicts) -> list[str]:
    return [a for a, v in verdicts.items() if v.runnable]


# --------------------------------------------------------------------------- the reader


def targets_in_name(name: str) -> tuple[set[str], set[str]]:
    """``r_89_120f_ptx80.so`` -> ({sm_89, sm_120f}, {compute_80}): what build.sh compiled."""
    tokens = name.removesuffix(".so").removeprefix("r_").split("_")
    return ({f"sm_{t}" for t in tokens if not t.startswith("ptx")},
            {f"compute_{t[3:]}" for t in tokens if t.startswith("ptx")})


def test_the_reader_finds_exactly_the_targets_each_fixture_was_compiled_for():
    objects = sorted(p.name for p in objects_dir().glob("*.so"))
    assert sorted(listing()) == objects and len(objects) >= 15
    for name in objects:
        mod = read_module(objects_dir() / name, name, name)
        assert (set(mod.sass), set(mod.ptx)) == targets_in_name(name), name


def test_the_reader_agrees_with_the_listing_except_where_list_elf_drops_the_family_f():
    # cuobjdump --list-elf names the sm_120f cubin "...sm_120.cubin"; the reader reads its header.
    expected = listing()
    assert expected["r_120f.so"] == ({"sm_120"}, set()) and expected["r_100f.so"] == ({"sm_100"}, set())
    assert expected["r_ptx120f.so"] == (set(), {"compute_120f"})  # --list-ptx keeps the f
    differ = {}
    for name in expected:
        mod = read_module(objects_dir() / name, name, name)
        if (set(mod.sass), set(mod.ptx)) != expected[name]:
            differ[name] = mod.sass
    assert differ == {"r_100f.so": ("sm_100f",), "r_120f.so": ("sm_120f",)}


@pytest.mark.parametrize(("obj", "yes", "no"), [
    ("r_120f", ["sm120", "sm121"], ["sm100", "sm103", "sm90", "sm130"]),
    ("r_100f", ["sm100", "sm103"], ["sm90", "sm110", "sm120", "sm121"]),
])
def test_a_family_specific_cubin_runs_on_its_family_from_its_minor_on(tmp_path, obj, yes, no):
    modules = {m: obj for m in ("_qattn_sm80", "_qattn_sm89", "_qattn_sm90", "_fused")}
    found = read_wheel(sage2_wheel(tmp_path, modules))
    v = kernels.judge_all(found.modules, yes + no, None)  # every module with GPU code is needed
    assert runnable(v) == yes
    assert all(v[a].by == "sass" for a in yes)
    family = f"sm_{obj[2:]}"
    for arch in no:
        assert all(m.carries == family for m in v[arch].missing), v[arch]  # labelled with its f


def test_family_specific_ptx_is_jit_compiled_only_inside_its_family(tmp_path):
    modules = {m: "r_ptx120f" for m in ("_qattn_sm80", "_qattn_sm89", "_qattn_sm90", "_fused")}
    found = read_wheel(sage2_wheel(tmp_path, modules))
    assert {m.ptx for m in found.modules} == {("compute_120f",)}
    v = kernels.judge_all(found.modules, ["sm90", "sm100", "sm120", "sm121", "sm130"], None)
    assert runnable(v) == ["sm120", "sm121"]
    assert v["sm121"].by == "ptx-jit"
    assert "compute_120f" in v["sm130"].why


def test_a_wheel_lists_every_compiled_module_under_its_import_name(tmp_path):
    found = read_wheel(sage2_wheel(tmp_path, SEED_SAGE2))
    assert {m.name: (m.sass, m.ptx) for m in found.modules} == {
        "sageattention._fused": (("sm_80", "sm_89", "sm_90a", "sm_100a"), ()),
        "sageattention._qattn_sm80": (("sm_80",), ()),
        "sageattention._qattn_sm89": (("sm_89", "sm_100a"), ()),
        "sageattention._qattn_sm90": (("sm_90a",), ()),
    }
    assert re.fullmatch(r"cuobjdump 13\.\d+\.\d+", found.tool)
    assert len(found.sha256) == 64


# --------------------------------------------------------------------------- NVIDIA's rules


@pytest.mark.parametrize(("target", "yes", "no"), [
    ("sm_80", ["sm80", "sm86", "sm87", "sm89"], ["sm90", "sm100", "sm120"]),
    ("sm_86", ["sm86", "sm89"], ["sm80", "sm90"]),
    ("sm_90a", ["sm90"], ["sm80", "sm100", "sm120"]),
    ("sm_120a", ["sm120"], ["sm121", "sm100", "sm90"]),
    ("sm_120f", ["sm120", "sm121"], ["sm100", "sm90"]),
    ("sm_100f", ["sm100", "sm103"], ["sm120", "sm90"]),
    ("compute_80", ["sm80", "sm86", "sm90", "sm100", "sm120", "sm121"], ["sm75"]),
    ("compute_90a", ["sm90"], ["sm100", "sm120"]),
    ("compute_120f", ["sm120", "sm121"], ["sm130", "sm100"]),
])
def test_nvidia_compatibility_rules(target, yes, no):
    t = kernels.Target.parse(target)
    assert str(t) == target
    assert [a for a in yes if kernels.runs_on(t, a)] == yes
    assert [a for a in no if kernels.runs_on(t, a)] == []


# --------------------------------------------------------------------------- wheels


def test_a_wheel_shaped_like_the_seed_recipe_runs_on_sm80_86_89_90_not_sm120(tmp_path):
    v = judge_wheel(sage2_wheel(tmp_path, SEED_SAGE2), ["sm80", "sm86", "sm89", "sm90", "sm120"])
    assert runnable(v) == ["sm80", "sm86", "sm89", "sm90"]
    assert v["sm86"].by == "triton"
    assert all(v[a].by == "sass" for a in ("sm80", "sm89", "sm90"))
    sm120 = v["sm120"]
    assert {m.module for m in sm120.missing} == {"sageattention._qattn_sm89", "sageattention._fused"}
    assert "sm_89, sm_100a" in sm120.why and "SASS for sm120" in sm120.why


def test_sage3_with_sm_100a_only_runs_nowhere(tmp_path):
    v = judge_wheel(sage3_wheel(tmp_path, "r_100a"))
    assert runnable(v) == []
    assert "refuses sm100 at run time" in v["sm100"].why  # the SASS is there; the kernel refuses
    assert "refuses sm90" in v["sm90"].why
    assert v["sm120"].missing and "sm_100a" in v["sm120"].why


def test_sm_120a_runs_on_sm120_not_sm121(tmp_path):
    v = judge_wheel(sage3_wheel(tmp_path, "r_89_120a"), ["sm120", "sm121"])
    assert v["sm120"].runnable and v["sm120"].by == "sass"
    assert not v["sm121"].runnable and "sm_89, sm_120a" in v["sm121"].why


def test_ptx_compute_80_runs_on_sm90_and_sm120_by_jit(tmp_path):
    modules = {m: "r_80_ptx80" for m in ("_qattn_sm80", "_qattn_sm89", "_qattn_sm90", "_fused")}
    v = judge_wheel(sage2_wheel(tmp_path, modules), ["sm80", "sm90", "sm120"])
    assert v["sm80"].by == "sass"
    for arch in ("sm90", "sm120"):
        assert v[arch].runnable and v[arch].by == "ptx-jit", v[arch]
        assert "first call compiles" in v[arch].why


def test_a_per_arch_wheel_covers_only_its_arch(tmp_path):
    v = judge_wheel(sage2_wheel(tmp_path, PER_ARCH_SAGE2["sm90"]), ["sm80", "sm86", "sm89", "sm90", "sm120"])
    assert runnable(v) == ["sm86", "sm90"]
    assert v["sm86"].by == "triton" and "no compiled module needed" in v["sm86"].why  # sm86 is Triton in 2.2.0
    v = judge_wheel(sage2_wheel(tmp_path / "89", PER_ARCH_SAGE2["sm89"]), ["sm80", "sm89", "sm90", "sm120"])
    assert runnable(v) == ["sm89"]


def test_a_fat_wheel_covers_every_arch_of_the_profile(tmp_path):
    v = judge_wheel(sage2_wheel(tmp_path, FULL_SAGE2), ["sm80", "sm86", "sm89", "sm90", "sm120", "sm121"])
    assert runnable(v) == ["sm80", "sm86", "sm89", "sm90", "sm120"]
    assert v["sm121"].missing  # _qattn_sm89 has sm_120a only


def test_a_wheel_without_compiled_modules_is_triton_only(tmp_path):
    path = build_wheel(tmp_path, "sageattention", "1.0.6",
                       files={"sageattention/__init__.py": "def sageattn(*a, **k): ...\n"})
    v = judge_wheel(path)
    assert runnable(v) == ALL
    assert all(x.by == "triton" and x.why.startswith("Triton only") for x in v.values())


def test_sage2_2_2_0_refuses_archs_outside_its_dispatch(tmp_path):
    v = judge_wheel(sage2_wheel(tmp_path, PER_ARCH_SAGE2["sm100"]), ["sm100"])
    assert not v["sm100"].runnable and "Unsupported CUDA architecture: sm100" in v["sm100"].why


def test_a_sage2_wheel_without_fused_fails_to_import_everywhere(tmp_path):
    v = judge_wheel(sage2_wheel(tmp_path, {"_qattn_sm90": "r_90a"}), ["sm86", "sm90"])
    assert runnable(v) == [] and "sageattention._fused is not in the wheel" in v["sm90"].why


# --------------------------------------------------------------------------- bad input


def _audit(project, *args):
    return project.invoke("audit", *args)


@pytest.fixture
def project(project_factory):
    return project_factory(None)


def test_audit_json_maps_each_arch_to_runnable_and_why(tmp_path, project):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2)
    r = _audit(project, "--wheel", str(wheel), "--arch", "sm90", "--arch", "sm120", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    obj = json.loads(r.stdout)
    assert obj["archs"]["sm90"]["runnable"] is True and obj["archs"]["sm120"]["runnable"] is False
    assert "no kernel image" in obj["archs"]["sm120"]["why"]
    assert obj["modules"][0] == {"module": "sageattention._fused", "sass": ["sm_80", "sm_89", "sm_90a", "sm_100a"],
                                 "ptx": []}
    ok = _audit(project, "--wheel", str(wheel), "--arch", "sm80", "--arch", "sm86")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "sm80: runnable" in ok.stdout


def _bad(project, path, member_pattern):
    r = _audit(project, "--wheel", str(path), "--arch", "sm90")
    assert_failed_cleanly(r, 2, stderr=member_pattern)


def test_a_truncated_so_is_bad_input_naming_the_member(tmp_path, project):
    data = (objects_dir() / "r_90a.so").read_bytes()
    path = build_wheel(tmp_path, "sageattention", "2.2.0", files={
        "sageattention/__init__.py": "", "sageattention/_qattn_sm90.cpython-312-x86_64-linux-gnu.so": data[:len(data) // 2]})
    _bad(project, path, r"sageattention/_qattn_sm90\.cpython-312-x86_64-linux-gnu\.so: truncated")


def test_a_corrupt_fatbin_is_bad_input_naming_the_member(tmp_path, project):
    data = bytearray((objects_dir() / "r_90a.so").read_bytes())
    at = data.find(bytes.fromhex("50ed55ba"))  # the fatbin's magic
    data[at:at + 4] = b"\0\0\0\0"
    path = build_wheel(tmp_path, "sageattention", "2.2.0", files={
        "sageattention/__init__.py": "", "sageattention/_fused.cpython-312-x86_64-linux-gnu.so": bytes(data)})
    _bad(project, path, r"sageattention/_fused\.cpython-312-x86_64-linux-gnu\.so: cuobjdump cannot read its "
                        r"fatbin: Invalid fatbin header")


def test_a_member_that_is_not_elf_is_bad_input(tmp_path, project):
    path = build_wheel(tmp_path, "sageattention", "2.2.0", files={"sageattention/_fused.abi3.so": "not elf"})
    _bad(project, path, r"sageattention/_fused\.abi3\.so: not an ELF file")


def test_a_corrupt_zip_member_is_bad_input_naming_it(tmp_path, project):
    path = sage2_wheel(tmp_path, {"_fused": "r_80"})
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("sageattention/_fused.cpython-312-x86_64-linux-gnu.so")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 1000
    raw[start:start + 64] = bytes(64)  # damage the compressed data
    path.write_bytes(bytes(raw))
    _bad(project, path, r"sageattention/_fused\.cpython-312-x86_64-linux-gnu\.so: the zip member cannot be read")


def test_a_truncated_wheel_is_bad_input(tmp_path, project):
    path = sage2_wheel(tmp_path, {"_fused": "r_80"})
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    _bad(project, path, r"sageattention-2\.2\.0-290\.129-cp312-cp312-linux_x86_64\.whl: not a readable wheel")


@pytest.mark.parametrize(("args", "message"), [
    (("--wheel", "nope.whl", "--arch", "sm90"), "nope.whl: Invalid wheel filename"),
    (("--wheel", "x-1.0-py3-none-any.whl", "--arch", "sm90"), "no such file"),
    (("--wheel", "x-1.0-py3-none-any.whl", "--arch", "ampere"), "'ampere' is not a GPU arch"),
])
def test_audit_bad_arguments_are_bad_input(project, args, message):
    r = _audit(project, *args)
    assert r.returncode == 2 and message in r.stderr, r.stdout + r.stderr


def test_the_fork_on_dgx_spark_with_sm_120f_modules_says_so(tmp_path):
    # The fork sends sm120 and sm121 to the fp8 CUDA kernel (_qattn_sm89 and _fused): sm_120f
    # cubins serve both, and the verdict names the family target, not the listing's "sm_120".
    modules = {"_qattn_sm80": "r_80", "_qattn_sm89": "r_120f", "_qattn_sm90": "r_90a", "_fused": "r_120f"}
    found = read_wheel(sage2_wheel(tmp_path, modules, source="pixeloven-7bd3a0e"))
    rules = dispatch.rules("sageattention", "2.2.0", found.dispatch.get("sageattention"))
    v = kernels.judge_all(found.modules, ["sm100", "sm120", "sm121"], rules)
    assert runnable(v) == ["sm120", "sm121"]
    assert v["sm121"].why.endswith("both carry sm_120f"), v["sm121"].why
    assert "the wheel carries sm_120f" in v["sm100"].why
