"""The command line every probe shares: expected version, GPU requirement, dtypes, numerics shape
and thresholds, timing, and the host's expectations (``--serves``/``--needs``)."""
from __future__ import annotations

import argparse
import re

DTYPES = {"fp16": "float16", "bf16": "bfloat16"}  # the names on the command line -> torch's
LAYOUTS = ("HND", "NHD")


def csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in csv_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def choice_list(choices, what: str):
    """An argparse type: a comma-separated list of ``choices`` (a bad one is a usage error)."""
    def parse(text: str) -> list[str]:
        items = csv_list(text)
        bad = [x for x in items if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {what} {bad[0]!r} (use {', '.join(choices)})")
        return items
    return parse


def needs_arg(text: str) -> tuple[str, list[str]]:
    """``sm90=sageattention._qattn_sm90,sageattention._fused`` → ("sm90", [...])."""
    arch, sep, mods = text.partition("=")
    if not sep or not re.match(r"^sm[0-9]{2,3}$", arch.strip()):
        raise argparse.ArgumentTypeError(f"expected ARCH=MODULE,MODULE (e.g. sm90=pkg._ext), got {text!r}")
    return arch.strip(), csv_list(mods)


def kernel_arg(text: str) -> tuple[str, str]:
    """``sm100=sageattn_qk_int8_pv_fp8_cuda`` → ("sm100", name); ``sm121=``: the wheel refuses sm121."""
    arch, sep, name = text.partition("=")
    if not sep or not re.match(r"^sm\d{2,3}$", arch.strip()) or not re.match(r"^\w*$", name.strip()):
        raise argparse.ArgumentTypeError(f"expected ARCH=FUNCTION (e.g. sm90=sageattn_qk_int8_pv_fp8_cuda_sm90) "
                                         f"or ARCH= (refused), got {text!r}")
    return arch.strip(), name.strip()


def add_expectation_args(p: argparse.ArgumentParser) -> None:
    """What the host expects, from the pin's recorded coverage (comfyimg.validate passes them)."""
    p.add_argument("--serves", type=csv_list, default=None, metavar="ARCHS",
                   help="GPU archs the image serves (from its pin); a GPU outside them fails")
    p.add_argument("--needs", type=needs_arg, action="append", default=[], metavar="ARCH=MODULES",
                   help="compiled modules whose kernels ARCH needs (repeatable; default: from kernels.json)")
    p.add_argument("--kernel", type=kernel_arg, action="append", default=[], metavar="ARCH=FUNCTION",
                   help="the kernel function the wheel's own dispatch (read by the host from its Python) "
                        "calls on ARCH; empty: the wheel refuses ARCH (repeatable; default: kernels.json)")


def add_gpu_args(p: argparse.ArgumentParser, *, require_gpu_help: str) -> None:
    """What every probe (also comfyui.py) takes: --require-gpu and the dtypes to check."""
    p.add_argument("--require-gpu", action="store_true", help=require_gpu_help)
    p.add_argument("--dtypes", type=choice_list(tuple(DTYPES), "dtype"), default=["fp16", "bf16"],
                   metavar="DTYPES", help="input dtypes to check (fp16, bf16)")


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def common_parser(prog: str, description: str, **common) -> argparse.ArgumentParser:
    """A parser with the options of ``add_common_args(**common)``."""
    p = new_parser(prog, description)
    add_common_args(p, **common)
    return p


def add_common_args(p: argparse.ArgumentParser, *, dist: str, example: str, kernel: str,
                    min_cosine: float, max_rel_l1: float,
                    require_gpu_help: str = "a missing GPU (or NVIDIA driver) is a failure instead of skipped GPU "
                                            "checks") -> None:
    """The options sage2.py and sage3.py share: expected version, GPU requirement, dtypes,
    numerics shape and thresholds, timing."""
    add_gpu_args(p, require_gpu_help=require_gpu_help)
    p.add_argument("--expect-version", metavar="VERSION",
                   help=f"expected importlib.metadata version of the '{dist}' distribution; "
                        f"'{example}' also matches '{example}+...' (a local label in VERSION must match exactly)")
    p.add_argument("--seq-len", type=int, default=1024, help="sequence length of the numerics checks")
    p.add_argument("--batch", type=int, default=2, help="batch size of the numerics checks")
    p.add_argument("--heads", type=int, default=8, help="heads of the numerics checks")
    p.add_argument("--head-dims", type=int_list, default=[64, 128], metavar="DIMS", help="head dims to check")
    p.add_argument("--min-cosine", type=float, default=min_cosine,
                   help="minimum cosine similarity vs fp32 SDPA")
    p.add_argument("--max-rel-l1", type=float, default=max_rel_l1,
                   help="maximum relative L1 error sum|o-ref|/sum|ref| vs fp32 SDPA")
    p.add_argument("--skip-bench", action="store_true", help=f"do not time {kernel} vs SDPA")
    p.add_argument("--bench-seq-len", type=int_list, default=[16384], metavar="LENS",
                   help="comma-separated sequence lengths to time (batch 1, --bench-heads heads, head dim 128, "
                        "fp16, HND)")
    p.add_argument("--bench-heads", type=int, default=24)
    p.add_argument("--bench-warmup", type=int, default=5)
    p.add_argument("--bench-iters", type=int, default=20)
    p.add_argument("--min-speedup", type=float, default=None,
                   help=f"fail if {kernel} is not at least this many times faster than SDPA at the longest "
                        "benchmark length (default: report only)")
    p.add_argument("--bench-after", metavar="PATH", default=None,
                   help="time only once PATH exists (validate creates it when the ComfyUI probe, which shares "
                        "the GPU, has ended), so that nothing else runs on the GPU while timing")
    p.add_argument("--bench-wait", type=float, default=600.0,
                   help="seconds to wait for --bench-after before the bench row fails")
    p.add_argument("--import-timeout", type=float, default=300.0,
                   help="seconds allowed for the isolated import check")
