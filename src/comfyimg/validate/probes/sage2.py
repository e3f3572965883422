#!/usr/bin/env python3
"""Validation probe for SageAttention 2 (module ``sageattention``).

Runs INSIDE an image, as a script next to its sibling modules (probe_*.py, kernels.json):
standard library + torch only, nothing from comfyimg. One JSON object on stdout; exit 0
pass (GPU checks may be skipped without a GPU: ``gpu_checks`` "skipped";
``--require-gpu`` makes that a failure), 1 fail (broken install, wrong version or kernel
for this GPU, bad numerics, probe error), 2 usage (argparse; no JSON), 3 skip (``import
sageattention`` itself needs the NVIDIA driver and no GPU is visible). A crash (signal, no
JSON) is a failure for the caller.

Why more than an import: a broken build imports fine. SageAttention swallows a
missing per-arch extension at import time (``core.SM90_ENABLED = False``) and
only fails on the first call ("SM90 kernel is not available"); a kernel that
writes nothing returns uninitialised memory. So the probe checks the installed
version, the exported kernels, that each compiled extension loads, that the
kernel ``sageattn`` dispatches to on this GPU is compiled in, and the numerics
of real calls against an fp32 SDPA reference. Optionally it times sageattn vs
SDPA (reported, never assumed).

Run ``python -m probes.sage2 --help`` (from the folder above ``probes``) for the options.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys


from .args import LAYOUTS, add_expectation_args, choice_list, common_parser, csv_list, int_list
from .benchmark import bench_from_args
from .imports import classify_import_error, import_crash_check, import_module_check
from .numerics import LONG_SEQ_LENS, long_sequence_checks, numerics_checks, start
from .report import Report, main
from .table import package_rules, required_modules, serves_check, table_modules

PROBE = "sage2"
DIST = "sageattention"
MODULE = "sageattention"

# Public kernels exported by SageAttention 2.2.0 (PyPI 1.0.6 has only the first two).
DEFAULT_EXPORTS = (
    "sageattn",
    "sageattn_varlen",
    "sageattn_qk_int8_pv_fp16_triton",
    "sageattn_qk_int8_pv_fp16_cuda",
    "sageattn_qk_int8_pv_fp8_cuda",
    "sageattn_qk_int8_pv_fp8_cuda_sm90",
)
# Which compiled module each GPU needs, and which GPUs sageattn refuses, come from the package
# table next to this file (kernels.json: SageAttention 2.2.0's dispatch), which the host reads too.

DEFAULT_MIN_COSINE = 0.99
DEFAULT_MAX_REL_L1 = 0.1

# ----------------------------------------------------------------------------
# SageAttention 2 specifics
# ----------------------------------------------------------------------------


def sage2_exception_hint(exc: BaseException) -> str | None:
    text = str(exc)
    m = re.search(r"SM(\d+) kernel is not available", text)
    if m:
        return (f"the wheel was built without the sm{m.group(1)} extension; SageAttention hid this at import "
                "time and only fails at the first call")
    if "Unsupported CUDA architecture" in text:
        return "SageAttention 2 has no kernel for this GPU"
    return None


def call_sageattn(fn, q, k, v, layout):
    return fn(q, k, v, tensor_layout=layout, is_causal=False)


def dispatch_check(report: Report, sage, device: dict, ext_status: dict, rules: dict | None,
                   needs: dict, kernels: dict | None = None) -> None:
    """Does the kernel that sageattn calls on this GPU load? The kernel and its modules come from
    the host (--kernel/--needs: the wheel's own dispatch, read from its Python), else the table."""
    sm = device["sm"]
    source = "host" if (kernels and sm in kernels) or sm in needs else "table"
    said = ("" if source == "host" else
            f" (by kernels.json, the probe's fallback: the host passed no --kernel/--needs for {sm})")
    if kernels and sm in kernels:
        if not kernels[sm]:
            report.add("dispatch", "fail", f"{sm} ({device['name']}): this wheel's sageattn refuses {sm} "
                       "(its own dispatch, read by the host from the wheel's Python)", kind="gpu", sm=sm)
            return
        table_path = (rules or {}).get("dispatch", {}).get(sm) or {}
        same = table_path.get("kernel") == kernels[sm]
        rules = {"dispatch": {sm: {"kernel": kernels[sm], "modules": needs.get(sm, []),
                                   **({"flag": table_path["flag"]} if same and "flag" in table_path else {})}}}
    if rules is None:
        report.add("dispatch", "skip", f"kernels.json does not know {DIST} {report.package['installed']}: "
                   "no GPU -> kernel -> extension check", kind="gpu", sm=sm)
        return
    path = rules["dispatch"].get(sm)
    if path is None:
        report.add("dispatch", "fail", f"{sm} ({device['name']}): " + rules["refused"].format(arch=sm) + said,
                   kind="gpu", sm=sm, dispatch_from=source)
        return
    kernel, flag = path["kernel"], path.get("flag")
    modules = needs.get(sm, path["modules"])
    problems = []
    if not callable(getattr(sage, kernel, None)):
        problems.append(f"kernel {kernel} is not exported")
    if not path["modules"]:
        try:
            importlib.import_module("triton")
        except BaseException as exc:  # noqa: BLE001
            problems.append(f"{kernel} is a Triton kernel but triton cannot be imported: {exc}")
    for ext in modules:
        if ext in ext_status:
            loaded, why = ext_status[ext]
        else:
            try:
                importlib.import_module(ext)
                loaded, why = True, None
            except BaseException as exc:  # noqa: BLE001
                loaded, why = False, classify_import_error(exc, ext)[1]
        if not loaded:
            problems.append(f"needs {ext}, which does not load ({why})")
    core = sys.modules.get(f"{MODULE}.core")
    if core is not None and flag and hasattr(core, flag) and not getattr(core, flag):
        problems.append(f"{MODULE}.core.{flag} is False")
    detail = (f"{sm} ({device['name']}): sageattn dispatches to {kernel}"
              + (f" [{', '.join(modules)}]" if modules else " [Triton]"))
    ext = ", ".join(modules) or None
    if problems:
        report.add("dispatch", "fail", detail + " but " + "; ".join(problems) +
                   " -- sageattn will fail on this GPU at the first call" + said, kind="gpu", sm=sm, kernel=kernel,
                   extension=ext, dispatch_from=source)
    else:
        report.add("dispatch", "pass", detail + ", compiled in" + said, kind="gpu", sm=sm, kernel=kernel,
                   extension=ext, dispatch_from=source)


def build_parser() -> argparse.ArgumentParser:
    p = common_parser("sage2.py", "Validate an installed SageAttention 2 (module sageattention). Prints one JSON "
                      "object on stdout; exit 0 pass, 1 fail, 3 skipped (nothing verifiable without a GPU driver), "
                      "2 usage error.", dist=DIST, example="2.2.0", kernel="sageattn",
                      min_cosine=DEFAULT_MIN_COSINE, max_rel_l1=DEFAULT_MAX_REL_L1)
    p.add_argument("--exports", type=csv_list, default=list(DEFAULT_EXPORTS), metavar="NAMES",
                   help="comma-separated callables the package must export (PyPI 1.0.6: sageattn,sageattn_varlen)")
    p.add_argument("--extensions", type=csv_list, default=None, metavar="MODULES",
                   help="comma-separated compiled extension modules that must load ('' for none, as in 1.0.6); "
                        "default: what this GPU needs (--needs, else kernels.json), the rest only reported")
    add_expectation_args(p)
    p.add_argument("--no-dispatch-check", action="store_true",
                   help="skip the GPU -> kernel -> extension check (for builds such as PyPI 1.0.6 that have one "
                        "Triton path for every GPU)")
    p.add_argument("--layouts", type=choice_list(LAYOUTS, "layout"), default=list(LAYOUTS), metavar="LAYOUTS",
                   help="tensor layouts to check (HND, NHD)")
    p.add_argument("--long-seq-lens", type=int_list, default=list(LONG_SEQ_LENS), metavar="LENS",
                   help="long-sequence rows: comma-separated token counts (batch 1, --long-heads heads, head dim "
                        "128, each of --dtypes, HND) against an fp32 reference computed in query blocks; '' for none. "
                        "A row that does not fit the GPU's memory is skip, never pass")
    p.add_argument("--long-heads", type=int, default=4, help="heads of the long-sequence rows")
    return p


def probe_body(args, report: Report) -> None:
    torch, device, no_gpu = start(report, DIST, args.expect_version)
    if torch is None:
        return
    rules = package_rules(DIST, report.package["installed"])
    gpu = device is not None

    if args.extensions is not None:
        required, optional = list(args.extensions), []
    else:
        required = required_modules(rules, args, device)
        optional = [m for m in table_modules(rules) if m not in required]
    if not import_crash_check(report, [MODULE, *required, *optional], args.import_timeout):
        return
    sage, kind, _ = import_module_check(report, "import", MODULE, gpu, args.require_gpu)
    if sage is None:
        if kind == "no-driver" and report.failed() == []:
            report.whole_skip_reason = (f"import {MODULE} needs the NVIDIA driver and no GPU is visible "
                                        f"({no_gpu}); nothing could be verified beyond the version")
        return

    missing = [n for n in args.exports if not callable(getattr(sage, n, None))]
    if missing:
        report.add("exports", "fail", f"missing or not callable: {', '.join(missing)}", exports=args.exports,
                   missing=missing)
    else:
        report.add("exports", "pass", f"all exported: {', '.join(args.exports)}", exports=args.exports,
                   missing=[])

    ext_status: dict[str, tuple[bool, str | None]] = {}
    for ext in required:
        mod, _kind, check = import_module_check(report, f"extension:{ext}", ext, gpu, args.require_gpu)
        ext_status[ext] = (mod is not None, None if mod is not None else check["detail"])
    where = f"on {device['sm']}" if gpu else "by the archs this image serves"
    for ext in optional:
        # Not needed here: its absence (a per-arch wheel) is reported; a module that is there
        # but broken (ABI, missing library) is still a broken wheel.
        try:
            importlib.import_module(ext)
        except ModuleNotFoundError as exc:
            if classify_import_error(exc, ext)[0] == "not-found":
                ext_status[ext] = (False, "not in the installed package")
                report.add(f"extension:{ext}", "skip", f"not in the installed package; not needed {where}",
                           module=ext, loaded=False, error_kind="not-found", required=False)
                continue
        except BaseException:  # noqa: BLE001 - judged below, as a required module is
            pass
        mod, _kind, check = import_module_check(report, f"extension:{ext}", ext, gpu, args.require_gpu,
                                                required=False)
        ext_status[ext] = (mod is not None, None if mod is not None else check["detail"])
    core = sys.modules.get(f"{MODULE}.core")
    flags = {f: bool(getattr(core, f)) for f in ("SM80_ENABLED", "SM89_ENABLED", "SM90_ENABLED")
             if core is not None and hasattr(core, f)}
    report.environment["sageattention_core_flags"] = flags or None
    report.environment["extensions_loaded"] = {e: ok for e, (ok, _) in ext_status.items()}

    if not gpu:
        report.no_gpu(no_gpu, args.require_gpu)
        return
    report.add("gpu", "pass", f"{device['name']} ({device['sm']})", kind="gpu")
    if not serves_check(report, device, args.serves):
        return

    if args.no_dispatch_check:
        report.add("dispatch", "skip", "--no-dispatch-check given", kind="gpu", sm=device["sm"])
    else:
        dispatch_check(report, sage, device, ext_status, rules, dict(args.needs), dict(args.kernel))

    fn = getattr(sage, "sageattn", None)
    if not callable(fn):
        report.add("numerics", "fail", "sageattn is not exported; nothing to call", kind="gpu")
        return
    numerics_checks(report, torch, fn, call_sageattn, args, layouts=args.layouts,
                    hint_for_exception=sage2_exception_hint)
    long_sequence_checks(report, torch, fn, call_sageattn, args, hint_for_exception=sage2_exception_hint)
    bench_from_args(report, torch, fn, call_sageattn, args, label="sageattn")

if __name__ == "__main__":
    sys.exit(main(PROBE, DIST, build_parser, probe_body))
