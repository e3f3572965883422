#!/usr/bin/env python3
"""Validation probe for SageAttention 3 (module ``sageattn3``, Blackwell FP4).

Runs INSIDE an image, as a script next to its sibling modules (probe_*.py, kernels.json):
standard library + torch only, nothing from comfyimg. One JSON object on stdout; exits:

  0  pass  - install checks passed and, on an sm120/sm121 GPU, the numerics
             against fp32 SDPA passed
  1  fail  - broken install (wrong version, sageattn3 / fp4attn_cuda /
             fp4quant_cuda do not import, sageattn3_blackwell not callable),
             bad numerics, probe error; also no GPU with --require-gpu
  2  usage - bad command line (argparse; no JSON)
  3  skip  - the install checks passed but this machine cannot run the
             kernels: no GPU, or a GPU other than sm120/sm121. SageAttention 3's
             kernels exist only for sm120/sm121 (RTX 50xx, RTX PRO 6000
             Blackwell, GB10); a B200 (sm100) is NOT supported ("only supports
             Blackwell GPUs or newer" at call time), nor are Hopper/Ampere/Ada.

A crash (signal, no JSON on stdout) must be treated as a failure by the caller.

Numerics: HND layout only (the kernel has no NHD path), k is passed as a clone
because sageattn3_blackwell subtracts k's mean in place. FP4 (E2M1) with
per-16-element FP8 block scales typically reaches cosine ~0.98 against fp32,
so the defaults are cosine >= 0.95 and relative L1 <= 0.35 (for a cosine c the
relative L2 error is about sqrt(2(1-c)) = 0.32 at c = 0.95); garbage output
(uninitialised memory, the query returned, NaN) is far outside both.

Run ``python -m probes.sage3 --help`` (from the folder above ``probes``) for the options.
"""
from __future__ import annotations

import argparse
import sys


from .args import add_expectation_args, common_parser, csv_list
from .benchmark import bench_from_args
from .imports import import_crash_check, import_module_check
from .numerics import numerics_checks, start
from .report import Report, main
from .table import newest_rules, serves_check

PROBE = "sage3"
DIST = "sageattn3"
MODULE = "sageattn3"

# From the package table next to this file (kernels.json), which the host reads too.
_RULES = newest_rules(DIST) or {"import": [], "dispatch": {}, "entry": "sageattn3_blackwell"}
DEFAULT_EXTENSIONS = tuple(_RULES["import"])  # fp4attn_cuda, fp4quant_cuda
ENTRY = _RULES["entry"]
SUPPORTED_SM = tuple(_RULES["dispatch"])  # sm120, sm121: the kernel refuses every other GPU

DEFAULT_MIN_COSINE = 0.95
DEFAULT_MAX_REL_L1 = 0.35

# ----------------------------------------------------------------------------
# SageAttention 3 specifics
# ----------------------------------------------------------------------------


def sage3_exception_hint(exc: BaseException) -> str | None:
    if "only supports Blackwell" in str(exc):
        return "SageAttention 3 kernels run only on sm120/sm121"
    return None


def call_sageattn3(fn, q, k, v, layout):
    assert layout == "HND", "sageattn3_blackwell takes HND tensors only"
    return fn(q, k, v, is_causal=False)


def unsupported_reason(device: dict) -> str | None:
    sm = device["sm"]
    if sm in SUPPORTED_SM:
        return None
    if sm.startswith("sm10"):
        return (f"{device['name']} ({sm}) is not supported by SageAttention 3 kernels ({sm}): they run only on "
                f"{'/'.join(SUPPORTED_SM)} (RTX 50xx, RTX PRO 6000 Blackwell, GB10), not on B200/B300-class GPUs")
    return (f"{device['name']} ({sm}) cannot run SageAttention 3: its FP4 kernels need an "
            f"{'/'.join(SUPPORTED_SM)} Blackwell GPU; use SageAttention 2 on this GPU")


def build_parser() -> argparse.ArgumentParser:
    p = common_parser("sage3.py", "Validate an installed SageAttention 3 (module sageattn3, extensions "
                      "fp4attn_cuda and fp4quant_cuda). Prints one JSON object on stdout; exit 0 pass, 1 fail "
                      "(broken install or numerics), 3 skipped (no sm120/sm121 GPU: the install checks still ran), "
                      "2 usage error.", dist=DIST, example="1.0.0", kernel="sageattn3_blackwell",
                      min_cosine=DEFAULT_MIN_COSINE, max_rel_l1=DEFAULT_MAX_REL_L1,
                      require_gpu_help="no GPU at all (or no NVIDIA driver) is a failure; an unsupported GPU is "
                                       "still a skip")
    p.add_argument("--extensions", type=csv_list, default=list(DEFAULT_EXTENSIONS), metavar="MODULES",
                   help="comma-separated compiled extension modules that must load")
    add_expectation_args(p)
    return p


def probe_body(args, report: Report) -> None:
    torch, device, no_gpu = start(report, DIST, args.expect_version)
    if torch is None:
        return
    gpu = device is not None

    if not import_crash_check(report, [*args.extensions, MODULE], args.import_timeout):
        return
    for ext in args.extensions:
        import_module_check(report, f"extension:{ext}", ext, gpu, args.require_gpu)
    mod, kind, _ = import_module_check(report, "import", MODULE, gpu, args.require_gpu)
    if mod is not None:
        fn = getattr(mod, ENTRY, None)
        if callable(fn):
            report.add("exports", "pass", f"{ENTRY} is callable", exports=[ENTRY], missing=[])
        else:
            report.add("exports", "fail", f"{ENTRY} is missing or not callable ({type(fn).__name__})",
                       exports=[ENTRY], missing=[ENTRY])
    else:
        fn = None

    if not gpu:
        report.no_gpu(no_gpu, args.require_gpu)
        if not args.require_gpu:
            report.whole_skip_reason = f"SageAttention 3 kernels not run: {no_gpu}"
        return
    why = unsupported_reason(device)
    if why:
        report.add("gpu", "skip", why, kind="gpu", sm=device["sm"])
        report.gpu_skip_reason = why
        report.whole_skip_reason = why
        return
    report.add("gpu", "pass", f"{device['name']} ({device['sm']})", kind="gpu", sm=device["sm"])
    if not serves_check(report, device, args.serves):
        return
    if not callable(fn) or report.failed():
        report.add("numerics", "skip", "not run: install checks failed", kind="gpu")
        return

    numerics_checks(report, torch, fn, call_sageattn3, args, layouts=["HND"],
                    hint_for_exception=sage3_exception_hint)
    bench_from_args(report, torch, fn, call_sageattn3, args, label="sageattn3")

if __name__ == "__main__":
    sys.exit(main(PROBE, DIST, build_parser, probe_body))
