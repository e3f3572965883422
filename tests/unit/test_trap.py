"""A kernel that is present is not a kernel that works (issue 29): the audit disassembles the code
the driver picks for each GPU the dispatch sends to a module and refuses a trap where the work
should be. Real nvcc objects (tests/fixtures/cuda-trap: an FP8 MMA guarded by
``#if __CUDA_ARCH__ >= 890``, a breakpoint below) in wheels whose dispatch sends sm89 to them."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess

import pytest

from comfyimg.audit import coverage
from comfyimg.kernels import rules as kernels
from comfyimg.kernels.cuobjdump import cuobjdump
from comfyimg.kernels.read import read_wheel
from comfyimg.kernels.sass import names_kernel
from comfyimg.pins import load as pins
from tests.lib import vendored_sage_files
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.cudawheels import SEED_SAGE2, TRAP_OBJECTS, sage2_wheel, trap_wheel
from tests.lib.pinfile import BAKE_COMPLETE_CUDA as BAKE
from tests.lib.pinfile import PROFILE_CUDA as PROFILE
from tests.lib.pinfile import pin_toml, recorded

# The modules v2.2.0's Python imports besides _qattn_sm89 (cuda-objects fixtures, no guard).
V220_REST = {"_qattn_sm80": "r_80", "_qattn_sm90": "r_90a", "_fused": "r_80_89_90a_100a"}


@pytest.fixture
def project(project_factory):
    return project_factory(None)


@pytest.mark.parametrize(("obj", "target", "instruction"), [("t_80", "sm_80", "BPT.TRAP"),
                                                            ("t_ptx80", "compute_80", "brkpt")])
def test_a_kernel_compiled_out_below_its_guard_is_refused_on_sm89_in_one_line(tmp_path, project, obj, target,
                                                                               instruction):
    wheel = trap_wheel(tmp_path, obj)
    r = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm89")
    assert_failed_cleanly(r, 1)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("sm89:")]
    assert len(lines) == 1, r.stdout
    assert re.search(rf"^sm89: NOT runnable: .*compiled out for sm89: sageattention\._qattn_sm89's kernel "
                     rf"qk_fp8_attn, built for {target}, holds {instruction}", lines[0]), lines[0]
    j = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm89", "--json")
    assert j.returncode == 1, j.stdout + j.stderr
    sm89 = json.loads(j.stdout)["archs"]["sm89"]
    assert sm89["runnable"] is False
    assert [(c["module"], c["target"], c["kernel"], c["named"], c["compiled_out"]) for c in sm89["code"]] == [
        ("sageattention._qattn_sm89", target, "qk_fp8_attn", True, True)]
    assert sm89["code"][0]["instruction"].startswith(instruction)


def test_the_same_kernel_built_for_sm_89_too_runs_on_sm89_by_its_fp8_mma(tmp_path, project):
    wheel = trap_wheel(tmp_path, "t_80_89")
    r = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm89", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    sm89 = json.loads(r.stdout)["archs"]["sm89"]
    assert sm89["runnable"] is True
    code = sm89["code"][0]
    assert (code["target"], code["kernel"], code["trapped"], code["compiled_out"]) == ("sm_89", "qk_fp8_attn", [], False)
    assert code["instruction"].startswith("QMMA") and "E4M3" in code["instruction"]  # the FP8 MMA itself


def test_the_compute_80_ptx_holds_the_breakpoint_in_its_text():
    """The guard is resolved when the PTX is generated: JIT-compiling it for sm89 cannot bring the MMA back."""
    tool, _ = cuobjdump()
    ptx = subprocess.run([tool, "-ptx", str(TRAP_OBJECTS / "t_ptx80.so")], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    body = ptx.split(".entry qk_fp8_attn(", 1)[1].split(".entry", 1)[0]
    assert re.search(r"^\s*brkpt;", body, re.M) and "mma" not in body


def test_only_the_code_picked_for_a_dispatched_arch_is_disassembled(tmp_path):
    """The dispatch sends only sm89 to _qattn_sm89; on sm89 the driver picks sm_89 over sm_80,
    so the sm_80 cubin (picked for no GPU the dispatch sends there) is not read."""
    found = read_wheel(trap_wheel(tmp_path, "t_80_89"))
    (mod,) = found.modules
    assert [c.target for c in mod.code] == ["sm_89"]  # the sm_80 cubin is never picked for sm89


def test_without_a_kernel_named_by_the_python_a_module_is_refused_only_when_every_entry_point_traps(tmp_path):
    """v2.2.0's own Python calls pybind functions (qk_int8_sv_f8_accum_f32_…) whose kernels have
    other names: one trapping entry point among working ones is noted, not refused; a module
    whose every entry point traps is."""
    python = dict(vendored_sage_files("v2.2.0"))
    mixed = trap_wheel(tmp_path / "mixed", "t_80", python=python, modules=V220_REST)
    audit = coverage.audit_wheel(tmp_path, mixed, ["sm89"])
    v = audit.verdicts["sm89"]
    assert v.runnable, v.why
    (name, read), *_ = [(n, r) for n, r in v.code if n == "sageattention._qattn_sm89"]
    assert (read.named, read.kernels, read.trapped, read.compiled_out) == (False, 2, ("qk_fp8_attn",), False)
    only = trap_wheel(tmp_path / "only", "t_only_80", python=python, modules=V220_REST)
    v = coverage.audit_wheel(tmp_path, only, ["sm89"]).verdicts["sm89"]
    assert not v.runnable
    assert ("compiled out for sm89: sageattention._qattn_sm89's kernel qk_fp8_attn, built for sm_80, holds "
            "BPT.TRAP 0x1, as every one of its 1 entry point(s) does,") in v.why


@pytest.mark.parametrize("source", ["v2.2.0", "d1a57a5", "pixeloven-7bd3a0e"])
def test_the_three_vendored_sources_keep_their_verdicts(tmp_path, source):
    """The cuda-objects fixtures' trivial kernel holds no trap: the code read changes no verdict
    (the same wheel judged with and without what the disassembly found)."""
    archs = ["sm75", "sm80", "sm86", "sm89", "sm90", "sm100", "sm120", "sm121"]
    a = coverage.audit_wheel(tmp_path, sage2_wheel(tmp_path, SEED_SAGE2, source=source), archs)
    read = [c for m in a.found.modules for c in m.code]
    assert read and not any(c.trapped for c in read)
    unread = [dataclasses.replace(m, code=()) for m in a.found.modules]
    before = kernels.judge_all(unread, archs, a.rules)
    assert {x: (v.runnable, v.why) for x, v in a.verdicts.items()} == {x: (v.runnable, v.why) for x, v in before.items()}
    assert any(v.runnable for v in before.values()) and not all(v.runnable for v in before.values())


def test_the_result_is_recorded_with_the_coverage_and_check_refuses_it(tmp_path, project_factory):
    wheel = trap_wheel(tmp_path, "t_80")
    project = project_factory(None, bake_hcl=BAKE)
    text = recorded(PROFILE + pin_toml("sageattention", "2.2.0", wheel).replace(
        'provides = ["sageattention"]', 'provides = ["sageattention"]\nserves = ["sm89"]'), project.pins, wheel)
    assert re.search(r'code = \[\{target = "sm_80", kernels = 1, named = true, trapped = \["qk_fp8_attn"\], '
                     r'kernel = "qk_fp8_attn", instruction = "BPT.TRAP 0x1"\}\]', text), text
    project.pins.write_text(text)
    loaded = pins.load(project.pins)
    (mod,) = loaded.wheels[0].coverage.modules
    assert mod.code[0].compiled_out
    errors, _ = coverage.problems(loaded)
    assert len(errors) == 1 and "complete-cuda on sm89 (L4 / RTX 40xx): sageattention 2.2.0 cannot run: " in errors[0] and "compiled out for sm89" in errors[0], errors
    bad = text.replace('kernels = 1, named = true', 'kernels = "one", named = true')
    project.pins.write_text(bad)
    r = project.invoke("check")
    assert_failed_cleanly(r, 2, stderr=r"wheels\.toml:\d+: coverage\[0\]\.code\[0\]\.kernels: expected a count")


@pytest.mark.parametrize(("symbol", "attr", "named"), [
    ("qk_fp8_attn", "qk_fp8_attn", True),
    ("_Z11qk_fp8_attnPfPKjS1_", "qk_fp8_attn", True),
    ("_ZN3mma11qk_fp8_attnEv", "qk_fp8_attn", True),
    ("_Z12qk_fp8_attn2Pf", "qk_fp8_attn", False),
    ("qk_fp8_attn_inst_buf", "qk_fp8_attn", False),
])
def test_a_kernel_is_named_by_its_extern_c_name_or_the_identifier_inside_its_mangled_name(symbol, attr, named):
    assert names_kernel(symbol, attr) is named


def test_a_hanging_disassembly_is_stopped_with_one_line(tmp_path, project):
    """cuobjdump lists the module, then hangs in -sass; its child (as nvdisasm would be) holds the
    output open, so the whole process group is stopped at the timeout."""
    real, _ = cuobjdump()
    tool = tmp_path / "cuobjdump"
    tool.write_text(f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -sass ] && {{ sleep 600; exit 0; }}; done\n'
                    f'exec "{real}" "$@"\n')
    tool.chmod(0o755)
    wheel = trap_wheel(tmp_path, "t_80")
    r = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm89", timeout=60,
                       env={"COMFYIMG_CUOBJDUMP": str(tool), "COMFYIMG_CUOBJDUMP_TIMEOUT": "2"})
    assert_failed_cleanly(r, 1, stderr=r"_qattn_sm89\.cpython-312-x86_64-linux-gnu\.so: cuobjdump did not finish "
                                       r"disassembling within 2 s \(COMFYIMG_CUOBJDUMP_TIMEOUT\)")
