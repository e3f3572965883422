"""Which kernel runs on which GPU, read from the wheel's own Python (comfyimg.kernels.dispatch): the
three real sources that ship "sageattention 2.2.0", in wheels with real CUDA objects, and bad
or hostile Python that must fall back to the table with the reason."""

from __future__ import annotations

import json
import re
import resource
import time
import zipfile

import pytest

from comfyimg.audit import coverage, record, report
from comfyimg.kernels import dispatch
from comfyimg.kernels import rules as kernels
from comfyimg.kernels.read import read_wheel
from comfyimg.pins import load as pins
from tests.lib import vendored_sage_files
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel, sage3_wheel
from tests.lib.pinfile import BAKE_COMPLETE_CUDA as BAKE
from tests.lib.pinfile import PROFILE_CUDA as PROFILE
from tests.lib.pinfile import pin_toml, recorded

TAG, MAIN, FORK = "v2.2.0", "d1a57a5", "pixeloven-7bd3a0e"
FP8 = ("sageattention._fused", "sageattention._qattn_sm89")


def read(source: str) -> dispatch.WheelDispatch:
    return dispatch.analyse(vendored_sage_files(source), "sageattention", "sageattn")


def branch(source: str, arch: str) -> dispatch.Branch | None:
    return read(source).branch(arch)


# --------------------------------------------------------------------------- the three sources


@pytest.mark.parametrize("source, arch, kernel, modules", [
    (FORK, "sm70", "sageattn_qk_int8_pv_fp16_triton", ()),
    (FORK, "sm75", "sageattn_qk_int8_pv_fp16_triton", ()),
    (FORK, "sm80", "sageattn_qk_int8_pv_fp16_cuda", ("sageattention._qattn_sm80",)),
    (FORK, "sm86", "sageattn_qk_int8_pv_fp16_cuda", ("sageattention._qattn_sm80",)),
    (FORK, "sm87", "sageattn_qk_int8_pv_fp16_cuda", ("sageattention._qattn_sm80",)),
    (FORK, "sm89", "sageattn_qk_int8_pv_fp8_cuda", FP8),
    (FORK, "sm90", "sageattn_qk_int8_pv_fp8_cuda_sm90", ("sageattention._fused", "sageattention._qattn_sm90")),
    (FORK, "sm100", "sageattn_qk_int8_pv_fp8_cuda", FP8),
    (FORK, "sm120", "sageattn_qk_int8_pv_fp8_cuda", FP8),
    (FORK, "sm121", "sageattn_qk_int8_pv_fp8_cuda", FP8),
    (MAIN, "sm80", "sageattn_qk_int8_pv_fp16_cuda", ("sageattention._qattn_sm80",)),
    (MAIN, "sm86", "sageattn_qk_int8_pv_fp16_triton", ()),
    (MAIN, "sm89", "sageattn_qk_int8_pv_fp8_cuda", FP8),
    (MAIN, "sm90", "sageattn_qk_int8_pv_fp8_cuda_sm90", ("sageattention._fused", "sageattention._qattn_sm90")),
    (MAIN, "sm120", "sageattn_qk_int8_pv_fp8_cuda", FP8),
    (MAIN, "sm121", "sageattn_qk_int8_pv_fp8_cuda", FP8),
    (TAG, "sm86", "sageattn_qk_int8_pv_fp16_triton", ()),
    (TAG, "sm120", "sageattn_qk_int8_pv_fp8_cuda", FP8),
])
def test_each_source_sends_each_arch_to_its_kernel_and_modules(source, arch, kernel, modules):
    b = branch(source, arch)
    assert b is not None and b.kernel == kernel and b.modules == modules
    if not modules:  # a kernel that reaches no compiled module is Triton
        assert b.triton


@pytest.mark.parametrize("source, arch", [(TAG, "sm75"), (TAG, "sm87"), (TAG, "sm100"), (TAG, "sm121"),
                                          (MAIN, "sm70"), (MAIN, "sm100"), (FORK, "sm61"), (FORK, "sm103")])
def test_the_final_raise_refuses_every_other_arch(source, arch):
    b = branch(source, arch)
    assert b is not None and b.kernel is None and "Unsupported CUDA architecture" in b.text


def test_the_table_agrees_with_what_d1a57a5_reads():
    """The table was derived from thu-ml d1a57a5 by hand; reading that source gives the same."""
    table = kernels.rules_for("sageattention", "2.2.0")
    wheel = read(MAIN).rules("2.2.0")
    assert table is not None
    assert set(wheel.dispatch) == set(table.dispatch)
    for arch, path in table.dispatch.items():
        assert (wheel.dispatch[arch].kernel, set(wheel.dispatch[arch].modules)) == (path.kernel, set(path.modules))
    assert wheel.imports == table.imports == ("sageattention._fused",)


def test_the_seed_recipe_dispatch_in_the_table_is_the_forks():
    """kernels.json's recipe for the seed wheel carries the fork's dispatch, as read here."""
    recipe = kernels.table()["recipes"]["sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"]
    fork = read(FORK)
    assert recipe["dispatch_from"]["sha256"] == fork.sha256
    assert recipe["dispatch"] == record.dispatch_records(fork)


# --------------------------------------------------------------------------- verdicts on real wheels


def audit(path, archs):
    found = read_wheel(path)
    how = found.dispatch["sageattention"]
    return kernels.judge_all(found.modules, archs, dispatch.rules("sageattention", "2.2.0", how)), how


def test_the_fork_seed_wheel_runs_on_t4_and_b200_not_on_rtx50_or_spark(tmp_path):
    vs, how = audit(sage2_wheel(tmp_path, SEED_SAGE2, source=FORK),
                    ["sm75", "sm80", "sm86", "sm89", "sm90", "sm100", "sm120", "sm121"])
    assert isinstance(how, dispatch.WheelDispatch)
    assert {a for a, v in vs.items() if v.runnable} == {"sm75", "sm80", "sm86", "sm89", "sm90", "sm100"}
    assert vs["sm75"].by == "triton"
    line = read(FORK).branch("sm100").line  # type: ignore[union-attr]
    assert vs["sm100"].why == (f"this wheel's sageattention/core.py sends sm100 to sageattn_qk_int8_pv_fp8_cuda "
                               f"(core.py:{line}), which needs _fused and _qattn_sm89; both carry sm_100a")
    assert "_qattn_sm89: needs SASS for sm120" in vs["sm120"].why


def test_the_same_objects_under_the_tag_are_refused_on_t4_and_b200(tmp_path):
    vs, _ = audit(sage2_wheel(tmp_path, SEED_SAGE2, source=TAG), ["sm75", "sm86", "sm100"])
    assert not vs["sm75"].runnable and not vs["sm100"].runnable
    assert "refused: this wheel's sageattention/core.py raises at core.py:" in vs["sm100"].why
    assert vs["sm86"].by == "triton"


def test_sm86_needs_qattn_sm80_on_the_fork_not_on_the_tag(tmp_path):
    without = {"_qattn_sm89": "r_89_100a", "_fused": "r_80_89_90a_100a"}
    fork, _ = audit(sage2_wheel(tmp_path / "fork", without, source=FORK), ["sm86"])
    tag, _ = audit(sage2_wheel(tmp_path / "tag", without, source=TAG), ["sm86"])
    assert not fork["sm86"].runnable and "sageattention._qattn_sm80: not in the wheel" in fork["sm86"].why
    assert tag["sm86"].runnable and tag["sm86"].by == "triton"
    with_it, _ = audit(sage2_wheel(tmp_path / "with", SEED_SAGE2, source=FORK), ["sm86"])
    assert with_it["sm86"].runnable and with_it["sm86"].needs == ("sageattention._qattn_sm80",)


def test_sm121_is_refused_by_the_tag_and_runs_on_d1a57a5(tmp_path):
    spark = {"_qattn_sm89": "r_120a_121a", "_fused": "r_120a_121a"}
    tag, _ = audit(sage2_wheel(tmp_path / "tag", spark, source=TAG), ["sm120", "sm121"])
    main, _ = audit(sage2_wheel(tmp_path / "main", spark, source=MAIN), ["sm120", "sm121"])
    assert tag["sm120"].runnable and not tag["sm121"].runnable
    assert "Unsupported CUDA architecture" in tag["sm121"].why
    assert main["sm120"].runnable and main["sm121"].runnable


def test_sage3_stays_on_the_table_and_says_so(tmp_path):
    path = sage3_wheel(tmp_path, "r_120a_121a")
    found = read_wheel(path)
    how = found.dispatch["sageattn3"]
    assert isinstance(how, dispatch.FromTable) and "gates its arch in compiled code" in how.why
    vs = kernels.judge_all(found.modules, ["sm100", "sm120"], dispatch.rules("sageattn3", "1.0.0", how))
    assert vs["sm120"].runnable and not vs["sm100"].runnable
    assert vs["sm100"].why.startswith("by the table for sageattn3 1.0.0")


def test_the_real_sage3_python_has_no_arch_gate(tmp_path):
    from tests.lib import VENDOR

    root = VENDOR / "sageattn3-pixeloven-7bd3a0e"
    wheel = tmp_path / "w.zip"
    with zipfile.ZipFile(wheel, "w") as zf:
        for p in root.rglob("*.py"):
            zf.writestr(p.relative_to(root).as_posix(), p.read_bytes())
        zf.writestr("sageattn3/gate.py", "import torch\nok = torch.cuda.get_device_capability() >= (12, 0)\n")
    with zipfile.ZipFile(wheel) as zf:
        gates = dispatch.python_gates(zf, "sageattn3")
    assert gates == ["sageattn3/gate.py:2: ok = torch.cuda.get_device_capability() >= (12, 0)"]


# --------------------------------------------------------------------------- bad and hostile Python

RUNTIME = """\
import torch
def _k80(q, k, v): ...
def _k90(q, k, v): ...
KERNELS = {"sm80": _k80, "sm90": _k90}
def sageattn(q, k, v, **kw):
    major, minor = torch.cuda.get_device_capability(q.device)
    return KERNELS[f"sm{major}{minor}"](q, k, v)
"""
NOT_CAPABILITY = """\
import os
def _k(q, k, v): ...
def sageattn(q, k, v):
    arch = os.environ["ARCH"]
    if arch == "sm80":
        return _k(q, k, v)
    raise ValueError(arch)
"""


@pytest.mark.parametrize("core, reason", [
    ("def sageattn(q, k, v:\n    pass\n", "sageattention/core.py:1: a syntax error"),
    ("def other(q, k, v): ...\n", "sageattention/__init__.py does not define or import sageattn()"),
    (RUNTIME, "sageattn() has no if/elif chain on the GPU arch"),
    (NOT_CAPABILITY, "arch is not computed from torch.cuda.get_device_capability"),
    ("x = " + "(" * 1000 + "1" + ")" * 1000 + "\n", "too many nested parentheses"),
    ("x = " + "-" * 100_000 + "1\n", "nested too deeply"),
    ("x = " + "[" * 150 + "]" * 150 + "\n" + "#" * 70_000 + "\n", "nested over 120 levels deep"),
    ("x = " + "[" * 250 + "]" * 250 + "\n", "too many nested parentheses"),
    ("x = " + "not " * 5_000 + "1\n", "nested too deeply"),
    ("x = [" + "1," * 140_000 + "]\n", "sageattention/core.py is over 256 KiB"),
    ("x = [" + "1," * 110_000 + "]\n", "sageattention/core.py has over 100000 syntax nodes"),
    ("x = 1\0", "sageattention/core.py: a syntax error: source code string cannot contain null bytes"),
])
def test_bad_python_falls_back_to_the_table_with_the_reason(tmp_path, core, reason):
    files = dict(vendored_sage_files(FORK))
    files["sageattention/core.py"] = core.encode()
    path = sage2_wheel(tmp_path, SEED_SAGE2, python=files)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    vs, how = audit(path, ["sm75", "sm100", "sm90"])
    assert time.monotonic() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 400_000  # kB
    assert isinstance(how, dispatch.FromTable) and reason in how.why
    prefix = "by the table for sageattention 2.2.0 (thu-ml d1a57a5), not read from this wheel: "
    assert vs["sm100"].why.startswith(prefix + how.why)
    assert not vs["sm75"].runnable and not vs["sm100"].runnable  # the table's dispatch
    assert vs["sm90"].runnable


CYCLE = """\
import torch
from .a import kernel
def _archs():
    major, minor = torch.cuda.get_device_capability(0)
    return f"sm{major}{minor}"
def sageattn(q, k, v):
    arch = _archs()
    if arch == "sm90":
        return kernel(q, k, v)
    raise ValueError(arch)
"""


@pytest.mark.parametrize("extra, reason", [
    ({"sageattention/a.py": b"from .b import kernel\n", "sageattention/b.py": b"from .a import kernel\n"},
     "cannot follow kernel to its definition"),
    ({"sageattention/a.py": b"from .b import kernel\n",
      "sageattention/b.py": b"from . import _x\ndef kernel(q, k, v):\n    return helper(q)\n"
                            b"def helper(q):\n    return helper(_x.f(q))\n"}, None),
])
def test_import_and_call_cycles_end(extra, reason):
    files = {"sageattention/__init__.py": b"from .core import sageattn\n",
             "sageattention/core.py": CYCLE.encode(), **extra}
    start = time.monotonic()
    if reason:
        with pytest.raises(dispatch.Unreadable, match=reason):
            dispatch.analyse(files, "sageattention", "sageattn")
    else:
        d = dispatch.analyse(files, "sageattention", "sageattn")
        assert d.branch("sm90").modules == ("sageattention._x",)  # type: ignore[union-attr]
    assert time.monotonic() - start < 2


def test_a_follow_that_never_ends_is_cut_off(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatch, "MAX_VISITS", 50)
    with pytest.raises(dispatch.Unreadable, match="took over 50 steps"):
        read(FORK)


# --------------------------------------------------------------------------- invoke audit --json


@pytest.fixture
def project(project_factory):
    return project_factory(None)


def test_audit_json_carries_kernel_modules_file_and_line(tmp_path, project):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2, source=FORK)
    r = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm75", "--arch", "sm100", "--arch", "sm120",
                       "--json")
    assert r.returncode == 1, r.stderr  # sm120 has no kernel image
    report = json.loads(r.stdout)
    assert report["dispatch_from"]["source"] == "wheel"
    assert report["dispatch_from"]["file"] == "sageattention/core.py"
    sm100 = report["archs"]["sm100"]
    assert sm100["kernel"] == "sageattn_qk_int8_pv_fp8_cuda" and sm100["runnable"]
    assert sm100["modules"] == ["sageattention._fused", "sageattention._qattn_sm89"]
    assert sm100["file"] == "sageattention/core.py" and sm100["line"] == read(FORK).branch("sm100").line  # type: ignore[union-attr]
    assert report["archs"]["sm75"]["by"] == "triton"
    assert report["archs"]["sm120"]["line"] == sm100["line"] and not report["archs"]["sm120"]["runnable"]
    text = project.invoke("audit", "--wheel", str(wheel), "--arch", "sm100", "--arch", "sm103")
    assert text.returncode == 1, text.stderr
    assert "sm100: runnable: this wheel's sageattention/core.py sends sm100 to sageattn_qk_int8_pv_fp8_cuda" \
        in " ".join(text.stdout.split())
    assert "sm103: NOT runnable: refused: this wheel's sageattention/core.py raises at core.py:" \
        in " ".join(text.stdout.split())


# --------------------------------------------------------------------------- recorded in wheels.toml


def _fork_project(tmp_path, project_factory, serves):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2, source=FORK)
    project = project_factory(None, bake_hcl=BAKE)
    text = PROFILE + pin_toml("sageattention", "2.2.0", wheel, extra=f"serves = {json.dumps(serves)}\n")
    return project, recorded(text, project.pins, wheel)


def test_the_recorded_dispatch_round_trips_and_lets_the_fork_serve_t4_and_b200(tmp_path, project_factory):
    project, text = _fork_project(tmp_path, project_factory, ["sm75", "sm100"])
    assert 'dispatch_from = {source = "wheel", file = "sageattention/core.py"' in text
    assert '{archs = ["sm100", "sm120", "sm121"], kernel = "sageattn_qk_int8_pv_fp8_cuda"' in text
    project.pins.write_text(text)
    assert project.invoke("render").returncode == 0
    r = project.invoke("check")
    assert r.returncode == 0, r.stdout + r.stderr
    loaded = pins.load(project.pins)
    assert isinstance(loaded.wheels[0].coverage.dispatch, dispatch.WheelDispatch)
    assert loaded.wheels[0].coverage.dispatch.sha256 == read(FORK).sha256
    audit = json.loads(project.invoke("audit", "--json", "--arch", "sm75", "--arch", "sm100").stdout)
    assert audit["pins"]["sageattention"]["archs"]["sm100"]["runnable"] is True
    assert audit["pins"]["sageattention"]["archs"]["sm100"]["line"] == read(FORK).branch("sm100").line  # type: ignore[union-attr]
    assert audit["pins"]["sageattention"]["dispatch_from"]["source"] == "wheel"
    args = coverage.probe_args(loaded, "sageattention", loaded.wheels)
    assert args == ["--serves", "sm75,sm100", "--needs", "sm75=", "--needs",
                    "sm100=sageattention._fused,sageattention._qattn_sm89",
                    "--kernel", "sm75=sageattn_qk_int8_pv_fp16_triton", "--kernel", "sm100=sageattn_qk_int8_pv_fp8_cuda"]


def test_the_probe_is_told_what_a_served_gpu_needs_even_where_the_wheel_has_no_code_for_it(tmp_path,
                                                                                            project_factory):
    # The seed's wheel on an RTX 50xx (sm120): the fork sends it to the fp8 CUDA kernel, and the
    # wheel has no sm120 code. The probe gets that kernel's modules from the host (it then fails
    # naming them), not its own table's guess and not nothing (which would read as Triton).
    project, text = _fork_project(tmp_path, project_factory, ["sm100", "sm120"])
    project.pins.write_text(text)
    loaded = pins.load(project.pins)
    assert not coverage.verdicts(loaded.wheels[0], ["sm120"])["sm120"].runnable
    args = coverage.probe_args(loaded, "sageattention", loaded.wheels)
    assert args == ["--serves", "sm100,sm120",
                    "--needs", "sm100=sageattention._fused,sageattention._qattn_sm89",
                    "--needs", "sm120=sageattention._fused,sageattention._qattn_sm89",
                    "--kernel", "sm100=sageattn_qk_int8_pv_fp8_cuda", "--kernel", "sm120=sageattn_qk_int8_pv_fp8_cuda"]


def test_a_wheels_toml_without_dispatch_from_is_judged_by_the_table(tmp_path, project_factory):
    project, text = _fork_project(tmp_path, project_factory, ["sm100"])
    old = text.split("dispatch_from")[0].rstrip() + "\n"
    project.pins.write_text(old)
    assert project.invoke("render").returncode == 0
    r = project.invoke("check")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "on sm100 (B200): sageattention 2.2.0 cannot run: sageattention refuses sm100 at run time" in r.stderr
    assert pins.load(project.pins).wheels[0].coverage.dispatch is None


@pytest.mark.parametrize("change, field", [
    ('source = "wheel"', 'dispatch_from.source'),
    ('kernel = "sageattn_qk_int8_pv_fp16_triton"', 'kernel'),
    ('archs = ["sm70", "sm75"]', 'archs'),
])
def test_a_bad_dispatch_record_is_bad_input_naming_the_field(tmp_path, project_factory, change, field):
    project, text = _fork_project(tmp_path, project_factory, ["sm100"])
    bad = {'source = "wheel"': 'source = "guess"',
           'kernel = "sageattn_qk_int8_pv_fp16_triton"': 'kernel = 7',
           'archs = ["sm70", "sm75"]': 'archs = ["sm70", "gpu75"]'}[change]
    assert change in text
    project.pins.write_text(text.replace(change, bad, 1))
    r = project.invoke("check")
    assert_failed_cleanly(r, 2, stderr=rf"wheels\.toml:\d+: [a-z_\[\]0-9.]*{re.escape(field)}")


# --------------------------------------------------------------------------- any arch


def test_serves_and_arch_take_any_arch_the_rules_know(tmp_path, project_factory):
    project, text = _fork_project(tmp_path, project_factory, ["sm75", "sm87", "sm100", "sm103", "sm121"])
    project.pins.write_text(text)
    loaded = pins.load(project.pins)
    assert coverage.serves(loaded, loaded.wheels[0]) == ("sm75", "sm87", "sm100", "sm103", "sm121")
    vs = coverage.verdicts(loaded.wheels[0], coverage.serves(loaded, loaded.wheels[0]))
    assert [a for a, v in vs.items() if v.runnable] == ["sm75", "sm87", "sm100"]
    assert "raises at core.py:172" in vs["sm103"].why
    assert "sm103" in report.markdown(loaded)  # the docs show every served arch
    project.pins.write_text(text.replace('serves = ["sm75"', 'serves = ["sm90a", "sm75"'))
    r = project.invoke("check")
    assert_failed_cleanly(r, 2, stderr=re.escape("'sm90a' is not a GPU arch"))


# --------------------------------------------------------------------------- a name bound to its fake


def test_the_tags_sm90_kernel_calls_a_register_fake_implementation(tmp_path):
    """thu-ml v2.2.0's sm90_compile.py defines the custom op, then its register_fake
    implementation under the same name (d1a57a5 renamed it ..._fake_impl): the name core.py
    calls is the fake, so no kernel runs on sm90."""
    vs, _ = audit(sage2_wheel(tmp_path / "tag", SEED_SAGE2, source=TAG), ["sm89", "sm90"])
    assert vs["sm89"].runnable
    assert not vs["sm90"].runnable
    assert "calls qk_int8_sv_f8_accum_f32_fuse_v_scale_attn_inst_buf, which this wheel binds to its " \
           "torch.library.register_fake implementation (sageattention/sm90_compile.py:77)" in vs["sm90"].why
    main, _ = audit(sage2_wheel(tmp_path / "main", SEED_SAGE2, source=MAIN), ["sm90"])
    assert main["sm90"].runnable and main["sm90"].needs == ("sageattention._fused", "sageattention._qattn_sm90")


def test_real_torch_binds_the_name_to_the_fake_and_the_op_never_runs():
    """The mechanism, with the real torch.library: a later @register_fake def of the same name
    rebinds it; calling it leaves the output unwritten."""
    torch = pytest.importorskip("torch")
    ns = f"comfyimg_test_{time.monotonic_ns()}"

    def impl(x, out):
        out.copy_(x * 2)

    impl.__annotations__ = {"x": torch.Tensor, "out": torch.Tensor, "return": None}  # this file defers annotations
    double = torch.library.custom_op(f"{ns}::double", mutates_args=("out",), device_types="cpu")(impl)

    real = double

    @torch.library.register_fake(f"{ns}::double")
    def double(x, out):  # noqa: F811 - the upstream shape
        return None

    out = torch.zeros(3)
    double(torch.ones(3), out)
    assert out.tolist() == [0.0, 0.0, 0.0]  # the fake ran: nothing written
    real(torch.ones(3), out)
    assert out.tolist() == [2.0, 2.0, 2.0]
