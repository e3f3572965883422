"""CPU tests of the SageAttention probes (src/comfyimg/validate/probes/sage2.py, sage3.py).

The probes run as subprocesses with this interpreter's (CPU) torch against fake installs
(make_fakes.py), with CUDA_VISIBLE_DEVICES="" so the no-GPU path is taken even on a machine
with a GPU. The GPU path: test_probes_gpu.py (marked ``gpu``), with the same assertion helper
(runner.assert_probe).
"""
from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys

import pytest

from comfyimg.kernels import rules
from tests.probes.runner import PROBES, PYPI_106, SAGE2, SAGE3, assert_probe, probe_command, run_probe


def _load(name: str):
    """A probe module, imported as the host imports the contract: a module of the package."""
    return importlib.import_module(f"comfyimg.validate.probes.{name}")


# --- command line ----------------------------------------------------------


@pytest.mark.parametrize("probe", [SAGE2, SAGE3], ids=["sage2", "sage3"])
def test_help_works(probe):
    argv, cwd = probe_command(probe)
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert proc.returncode == 0
    assert "usage:" in proc.stdout
    assert "--expect-version" in proc.stdout
    assert "--require-gpu" in proc.stdout


@pytest.mark.parametrize("probe", [SAGE2, SAGE3], ids=["sage2", "sage3"])
def test_bad_usage_exits_2(probe):
    argv, cwd = probe_command(probe)
    proc = subprocess.run([*argv, "--no-such-option"], capture_output=True, text=True, cwd=cwd,
                          timeout=60)
    assert proc.returncode == 2


# --- sage2 without a GPU ---------------------------------------------------


def test_sage2_good_install_passes_with_gpu_skipped(fake_root):
    r = run_probe(SAGE2, fake_root / "good", "--expect-version", "2.2.0")
    assert_probe(r, "pass", 0)
    j = r.json
    assert j["probe"] == "sage2"
    assert j["device"] is None
    assert j["gpu_checks"] == "skipped"
    assert "gpu: skipped" in j["reason"]
    assert j["package"] == {"name": "sageattention", "expected": "2.2.0", "installed": "2.2.0"}
    assert r.check("gpu")["status"] == "skip"
    install = [c for c in j["checks"] if c["kind"] == "install"]
    assert install and all(c["status"] == "pass" for c in install)
    assert {c["name"] for c in install} >= {
        "version", "import", "exports", "extension:sageattention._qattn_sm80", "extension:sageattention._qattn_sm89",
        "extension:sageattention._qattn_sm90", "extension:sageattention._fused"}
    assert j["environment"]["extensions_loaded"] == {
        "sageattention._qattn_sm80": True, "sageattention._qattn_sm89": True,
        "sageattention._qattn_sm90": True, "sageattention._fused": True}
    assert j["bench"] is None


def test_sage2_require_gpu_turns_missing_gpu_into_failure(fake_root):
    r = run_probe(SAGE2, fake_root / "good", "--expect-version", "2.2.0", "--require-gpu")
    assert_probe(r, "fail", 1)
    assert r.check("gpu")["status"] == "fail"
    assert "require-gpu" in r.json["reason"]
    assert r.json["gpu_checks"] == "skipped"


def test_sage2_wrong_version_fails(fake_root):
    r = run_probe(SAGE2, fake_root / "old_version", "--expect-version", "2.2.0")
    assert_probe(r, "fail", 1)
    assert r.check("version")["status"] == "fail"
    assert "installed 2.1.1, expected 2.2.0" in r.json["reason"]
    assert r.json["package"]["installed"] == "2.1.1"


@pytest.mark.parametrize(("expected", "status", "code"), [
    ("2.2.0", "pass", 0),                            # public version matches a local build
    ("2.2.0+cu130.torch2.13.0.sm90", "pass", 0),     # exact local label
    ("2.2.0+cu128.torch2.9.0.sm90", "fail", 1),      # another build of the same version
])
def test_sage2_local_version_label(fake_root, expected, status, code):
    r = run_probe(SAGE2, fake_root / "local_version", "--expect-version", expected)
    assert_probe(r, status, code)


def test_sage2_not_installed_fails(fake_root):
    r = run_probe(SAGE2, fake_root / "nothing", "--expect-version", "2.2.0")
    assert_probe(r, "fail", 1)
    assert "not installed" in r.check("version")["detail"]


def test_sage2_missing_export_fails(fake_root):
    r = run_probe(SAGE2, fake_root / "missing_export", "--expect-version", "2.2.0")
    assert_probe(r, "fail", 1)
    c = r.check("exports")
    assert c["status"] == "fail"
    assert c["missing"] == ["sageattn_qk_int8_pv_fp8_cuda_sm90"]


def test_sage2_export_list_is_an_option(fake_root):
    """PyPI 1.0.6 exports fewer kernels and has no compiled extensions."""
    r = run_probe(SAGE2, fake_root / "missing_export", "--expect-version", "2.2.0", *PYPI_106)
    assert_probe(r, "pass", 0)
    assert not [c for c in r.json["checks"] if c["name"].startswith("extension:")]


def test_sage2_missing_arch_extension_fails_even_though_import_works(fake_root):
    # The host's expectation (from the pin's coverage): the image serves sm80 and sm90.
    r = run_probe(SAGE2, fake_root / "no_sm90", "--expect-version", "2.2.0", "--serves", "sm80,sm90",
                  "--needs", "sm80=sageattention._qattn_sm80", "--needs",
                  "sm90=sageattention._qattn_sm90,sageattention._fused")
    assert_probe(r, "fail", 1)
    assert r.check("import")["status"] == "pass"
    c = r.check("extension:sageattention._qattn_sm90")
    assert c["status"] == "fail"
    assert c["error_kind"] == "not-found"
    assert r.json["environment"]["sageattention_core_flags"]["SM90_ENABLED"] is False


def test_sage2_without_expectations_only_reports_modules_no_gpu_at_hand_needs(fake_root):
    """--image alone: no GPU here needs _qattn_sm90, so its absence is reported, not failed
    (a per-arch wheel is a correct wheel)."""
    r = run_probe(SAGE2, fake_root / "no_sm90", "--expect-version", "2.2.0")
    assert_probe(r, "pass", 0)
    c = r.check("extension:sageattention._qattn_sm90")
    assert c["status"] == "skip" and c["required"] is False and "not needed" in c["detail"]
    assert r.check("extension:sageattention._fused")["status"] == "pass"  # imported by sageattention itself


def _args(**kw):
    import argparse  # noqa: PLC0415

    return argparse.Namespace(**{"serves": None, "needs": [], **kw})


def test_the_probe_requires_what_the_gpu_at_hand_needs_from_the_table():
    lib = _load("table")
    rules = lib.package_rules("sageattention", "2.2.0+cu130.torch2.13.0.sm90")
    assert rules is not None and lib.package_rules("sageattention", "1.0.6") is None
    need = lambda sm, **kw: lib.required_modules(rules, _args(**kw), {"sm": sm, "name": "GPU"})  # noqa: E731
    assert need("sm90") == ["sageattention._fused", "sageattention._qattn_sm90"]
    assert need("sm86") == ["sageattention._fused"]  # Triton on sm86
    assert need("sm120") == ["sageattention._fused", "sageattention._qattn_sm89"]
    assert need("sm90", needs=[("sm90", ["x._y"])]) == ["sageattention._fused", "x._y"]  # the host's word wins
    assert lib.required_modules(rules, _args(serves=["sm80", "sm90"]), None) == [
        "sageattention._fused", "sageattention._qattn_sm80", "sageattention._qattn_sm90"]


def test_a_gpu_the_image_does_not_serve_fails_naming_both():
    lib = _load("table")
    report = _load("report").Report("sage2", "sageattention", None)
    assert not lib.serves_check(report, {"sm": "sm90", "name": "NVIDIA H200"}, ["sm80", "sm86", "sm89", "sm120"])
    assert report.checks[-1]["status"] == "fail"
    assert report.checks[-1]["detail"].startswith("this image serves sm80, sm86, sm89, sm120; this GPU is sm90")
    assert lib.serves_check(report, {"sm": "sm90", "name": "H200"}, ["sm90"])
    assert lib.serves_check(report, {"sm": "sm90", "name": "H200"}, None)  # no expectation given


@pytest.mark.parametrize(("variant", "module", "kind", "words"), [
    ("undefined_symbol", "_qattn_sm90", "abi-mismatch", ("broken wheel", "different torch")),
    ("missing_cudart", "_qattn_sm89", "missing-library", ("broken wheel", "libcudart.so.12")),
])
def test_sage2_an_extension_that_cannot_load_is_a_broken_wheel(fake_root, variant, module, kind, words):
    r = run_probe(SAGE2, fake_root / variant, "--expect-version", "2.2.0")
    assert_probe(r, "fail", 1)
    c = r.check(f"extension:sageattention.{module}")
    assert c["status"] == "fail"
    assert c["error_kind"] == kind
    assert all(w in c["detail"] for w in words), c["detail"]


def test_sage2_missing_driver_is_not_a_wheel_defect(fake_root):
    r = run_probe(SAGE2, fake_root / "no_driver", "--expect-version", "2.2.0")
    assert_probe(r, "pass", 0)
    c = r.check("extension:sageattention._qattn_sm90")
    assert c["status"] == "skip"
    assert c["error_kind"] == "no-driver"
    assert "not a wheel defect" in c["detail"]
    assert "extension:sageattention._qattn_sm90" in r.json["reason"]


def test_sage2_missing_driver_with_require_gpu_fails(fake_root):
    r = run_probe(SAGE2, fake_root / "no_driver", "--expect-version", "2.2.0", "--require-gpu")
    assert_probe(r, "fail", 1)
    assert r.check("extension:sageattention._qattn_sm90")["status"] == "fail"


def test_sage2_toplevel_import_needing_driver_is_skip(fake_root):
    r = run_probe(SAGE2, fake_root / "no_driver_toplevel", "--expect-version", "2.2.0")
    assert_probe(r, "skip", 3)
    assert r.check("import")["error_kind"] == "no-driver"


def test_sage2_segfault_at_import_never_passes(fake_root):
    r = run_probe(SAGE2, fake_root / "segv", "--expect-version", "2.2.0")
    assert r.rc != 0, r
    if r.json is not None:  # the probe isolates the import, so it can report the crash itself
        assert r.json["status"] == "fail"
        assert "SIGSEGV" in r.json["reason"]
        assert r.rc == 1


def test_sage2_import_that_ends_the_interpreter_is_reported_not_silent(fake_root):
    """os._exit(0) at import: without isolation the probe would end with status 0 and no JSON."""
    r = run_probe(SAGE2, fake_root / "exits", "--expect-version", "2.2.0")
    assert_probe(r, "fail", 1)
    assert r.check("import-isolated")["status"] == "fail"
    assert "ended the interpreter with exit status 0" in r.check("import-isolated")["detail"], r


def test_sage2_stdout_is_one_json_object_despite_noisy_import(fake_root):
    r = run_probe(SAGE2, fake_root / "noisy", "--expect-version", "2.2.0")
    assert_probe(r, "pass", 0)
    assert r.stdout.count("\n") == 1 and r.stdout.endswith("}\n")
    assert "hello from sageattention on stdout" in r.stderr
    assert "C-level write to fd 1" in r.stderr
    json.loads(r.stdout)


# --- sage3 without a GPU ---------------------------------------------------


def test_sage3_good_install_without_gpu_is_skip(fake_root):
    r = run_probe(SAGE3, fake_root / "sage3_good", "--expect-version", "1.0.0")
    assert_probe(r, "skip", 3)
    j = r.json
    assert j["probe"] == "sage3"
    assert j["package"]["name"] == "sageattn3"
    assert j["gpu_checks"] == "skipped"
    assert all(c["status"] == "pass" for c in j["checks"] if c["kind"] == "install")
    assert r.check("extension:fp4attn_cuda")["status"] == "pass"
    assert r.check("extension:fp4quant_cuda")["status"] == "pass"
    assert r.check("exports")["status"] == "pass"


def test_sage3_require_gpu_fails_without_gpu(fake_root):
    r = run_probe(SAGE3, fake_root / "sage3_good", "--expect-version", "1.0.0", "--require-gpu")
    assert_probe(r, "fail", 1)


@pytest.mark.parametrize(("variant", "args", "needle"), [
    ("sage3_no_fp4quant", [], "fp4quant_cuda"),
    ("sage3_not_callable", [], "sageattn3_blackwell is missing or not callable"),
    ("sage3_undefined_symbol", [], "undefined symbol"),
    ("sage3_good", ["--expect-version", "1.0.1"], "installed 1.0.0, expected 1.0.1"),
    ("nothing", [], "not installed"),
])
def test_sage3_broken_install_fails_even_without_gpu(fake_root, variant, args, needle):
    r = run_probe(SAGE3, fake_root / variant, *(args or ["--expect-version", "1.0.0"]))
    assert_probe(r, "fail", 1)
    assert needle in r.json["reason"]


def test_sage3_unsupported_gpu_reasons():
    """sm100 (B200) gets its own message; Hopper is told to use SageAttention 2."""
    s3 = _load("sage3")
    assert s3.unsupported_reason({"name": "NVIDIA RTX PRO 6000", "sm": "sm120"}) is None
    assert s3.unsupported_reason({"name": "RTX 5090", "sm": "sm121"}) is None
    b200 = s3.unsupported_reason({"name": "NVIDIA B200", "sm": "sm100"})
    assert "not supported by SageAttention 3 kernels (sm100)" in b200
    h100 = s3.unsupported_reason({"name": "NVIDIA H100", "sm": "sm90"})
    assert "sm90" in h100 and "SageAttention 2" in h100


# --- pure helpers ----------------------------------------------------------


@pytest.mark.parametrize(("installed", "expected", "ok"), [
    ("2.2.0", "2.2.0", True),
    ("2.2.0+cu130.torch2.13.0.sm90", "2.2.0", True),
    ("2.2.0+cu130.torch2.13.0.sm90", "2.2.0+cu130.torch2.13.0.sm90", True),
    ("2.2.0+cu130.torch2.13.0.sm90", "2.2.0+cu130.torch2.13.0.sm89", False),
    ("2.2.0", "2.2.0+cu130.torch2.13.0.sm90", False),
    ("2.2.1", "2.2.0", False),
    ("1.0.6", "2.2.0", False),
])
def test_version_matches(installed, expected, ok):
    lib = _load("imports")
    assert lib.version_matches(installed, expected) is ok


@pytest.mark.parametrize(("exc", "kind"), [
    (ImportError("libcuda.so.1: cannot open shared object file: No such file or directory"), "no-driver"),
    (ImportError("/x/_qattn_sm90.so: undefined symbol: _ZN3c104cuda9SetDeviceEi"), "abi-mismatch"),
    (ImportError("libcudart.so.12: cannot open shared object file: No such file or directory"), "missing-library"),
    (ImportError("/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found"),
     "incompatible-library"),
    (ModuleNotFoundError("No module named 'sageattention._qattn_sm90'", name="sageattention._qattn_sm90"),
     "not-found"),
    (ModuleNotFoundError("No module named 'triton'", name="triton"), "missing-dependency"),
    (RuntimeError("something else"), "error"),
])
def test_classify_import_error(exc, kind):
    s2 = _load("sage2")
    got, detail = s2.classify_import_error(exc, "sageattention._qattn_sm90")
    assert got == kind
    assert str(exc) in detail


@pytest.mark.parametrize("script", ["sage2.py", "sage3.py", "comfyui.py"])
def test_probes_share_their_modules_and_run_from_a_copied_folder(tmp_path, fake_root, script):
    """The probes' common code lives once, in the modules next to them; copying the
    folder (as the image mount does) is all a probe needs, run as `python -m probes.NAME` from above it."""
    import shutil  # noqa: PLC0415

    for path in PROBES.glob("*.py"):
        if path.name != "report.py":
            assert "class Report" not in path.read_text(), path
    folder = tmp_path / "probes"
    shutil.copytree(PROBES, folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(rules.TABLE, tmp_path / "kernels.json")  # beside the folder, as validate mounts it
    argv, cwd = probe_command(folder / script)
    r = subprocess.run([*argv, "--help"], capture_output=True, text=True,
                       cwd=cwd, env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
    assert r.returncode == 0 and f"usage: {script}" in r.stdout, r.stderr
    if script == "sage2.py":  # and the package table beside it is what it reads
        r = run_probe(folder / script, fake_root / "no_sm90", "--expect-version", "2.2.0", "--serves", "sm90")
        assert_probe(r, "fail", 1, reason="_qattn_sm90")


@pytest.mark.parametrize("probe", sorted(PROBES.glob("*.py")), ids=lambda p: p.name)
def test_probes_import_only_the_standard_library_torch_and_each_other(probe):
    siblings = {p.stem for p in PROBES.glob("*.py")}
    tree = ast.parse(probe.read_text())
    names = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module.split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    foreign = sorted(n for n in names if n not in sys.stdlib_module_names and n not in siblings
                     and n not in ("torch", "comfy", "safetensors"))
    # comfy: the image's ComfyUI (comfyui.py, smoke_model.py); safetensors: ComfyUI's own dependency,
    # with which smoke_model.py writes the checkpoint ComfyUI's loaders read
    assert foreign == [], f"{probe.name} imports {foreign}"


def test_gpu_checks_not_run_when_install_fails_early(fake_root):
    r = run_probe(SAGE2, fake_root / "segv", "--expect-version", "2.2.0")
    assert r.json is not None, r  # a crash while importing is still a JSON verdict
    assert r.json["status"] == "fail" and r.json["gpu_checks"] == "not-run", r


@pytest.mark.parametrize(("script", "option", "value", "said"), [
    ("sage2.py", "--dtypes", "fp16,fp8", "unknown dtype 'fp8' (use fp16, bf16)"),
    ("sage3.py", "--dtypes", "int8", "unknown dtype 'int8' (use fp16, bf16)"),
    ("comfyui.py", "--dtypes", "fp32", "unknown dtype 'fp32' (use fp16, bf16)"),
    ("sage2.py", "--layouts", "HND,BHSD", "unknown layout 'BHSD' (use HND, NHD)"),
])
def test_a_bad_dtype_or_layout_is_a_usage_error_of_the_shared_arguments(script, option, value, said):
    argv, cwd = probe_command(PROBES / script)
    proc = subprocess.run([*argv, option, value], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert said in proc.stderr.splitlines()[-1], proc.stderr


@pytest.mark.parametrize("script", ["sage2.py", "sage3.py", "comfyui.py"])
def test_every_probe_takes_the_shared_require_gpu(script):
    argv, cwd = probe_command(PROBES / script)
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, cwd=cwd, timeout=60)
    assert "--require-gpu" in proc.stdout and "--dtypes" in proc.stdout


def test_the_bench_waits_for_its_gate_and_gives_up_after_the_wait(tmp_path):
    bench = _load("benchmark")
    gate = tmp_path / "comfyui-ended"
    assert bench.wait_for(str(gate), 0.3) is None
    gate.write_text("")
    waited = bench.wait_for(str(gate), 5)
    assert waited is not None and waited < 1


def test_the_kernel_the_host_read_from_the_wheel_decides_the_dispatch_check():
    """A B200 (sm100) with the fork's wheel: the table says refused; the host, having read the
    wheel's own dispatch, says sageattn_qk_int8_pv_fp8_cuda with _qattn_sm89 and _fused."""
    import types  # noqa: PLC0415

    probe, report_mod = _load("sage2"), _load("report")
    rules = _load("table").package_rules("sageattention", "2.2.0")
    fp8 = ["sageattention._qattn_sm89", "sageattention._fused"]
    sage = types.SimpleNamespace(sageattn_qk_int8_pv_fp8_cuda=print)
    loaded = {m: (True, None) for m in fp8}
    b200 = {"sm": "sm100", "name": "NVIDIA B200"}

    def check(needs, kernels, ext=loaded, device=b200):
        report = report_mod.Report("sage2", "sageattention", "2.2.0")
        probe.dispatch_check(report, sage, device, ext, rules, needs, kernels)
        return report.checks[-1]

    assert check({}, {})["status"] == "fail"  # the table: refused
    ok = check({"sm100": fp8}, {"sm100": "sageattn_qk_int8_pv_fp8_cuda"})
    assert ok["status"] == "pass" and ok["kernel"] == "sageattn_qk_int8_pv_fp8_cuda"
    gone = check({"sm100": fp8}, {"sm100": "sageattn_qk_int8_pv_fp8_cuda"},
                 ext={**loaded, "sageattention._qattn_sm89": (False, "not found")})
    assert gone["status"] == "fail" and "needs sageattention._qattn_sm89, which does not load" in gone["detail"]
    spark = check({}, {"sm121": ""}, device={"sm": "sm121", "name": "NVIDIA GB10"})
    assert spark["status"] == "fail" and "this wheel's sageattn refuses sm121" in spark["detail"]
    # Where the check's answer came from: the host's word, or the probe's own table as fallback.
    assert ok["dispatch_from"] == "host" and "kernels.json" not in ok["detail"]
    sage.sageattn_qk_int8_pv_fp8_cuda_sm90 = print
    table = check({}, {}, device={"sm": "sm90", "name": "NVIDIA H200"}, ext={
        "sageattention._qattn_sm90": (True, None), "sageattention._fused": (True, None)})
    assert table["status"] == "pass" and table["dispatch_from"] == "table"
    assert table["detail"].endswith("(by kernels.json, the probe's fallback: the host passed no --kernel/--needs "
                                    "for sm90)")


@pytest.mark.parametrize("value, ok", [("sm100=sageattn_qk_int8_pv_fp8_cuda", True), ("sm121=", True),
                                       ("gpu1=x", False), ("sm90=a.b", False)])
def test_the_kernel_argument_is_validated(value, ok):
    import argparse  # noqa: PLC0415

    args = _load("args")
    if ok:
        assert args.kernel_arg(value)[0] == value.split("=")[0]
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            args.kernel_arg(value)
