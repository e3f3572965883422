#!/usr/bin/env python3
"""Validation probe for ComfyUI's own attention path (``comfy.ldm.modules.attention``).

Named comfyui.py, not comfy.py: ComfyUI's ``comfy`` is a namespace package (no
``__init__.py``), so a ``comfy.py`` beside the probe would shadow it.

Runs INSIDE an image. Standard library + torch + the image's own ComfyUI (``--comfyui``,
default ``/app/ComfyUI``); imports nothing from comfyimg. Prints exactly one JSON
object on stdout (everything else goes to stderr) and exits 0 pass, 1 fail, 2 usage,
3 skip, like the other probes.

Why: users run ComfyUI, not ``sageattn``. With ``--use-sage-attention`` ComfyUI calls its
own ``attention_sage``, which reshapes the tensors itself, picks HND or NHD, and on ANY
exception logs "Error running sage attention: ..., using pytorch attention instead." and
falls back. A broken wheel then shows up as a slow ComfyUI and nowhere else. So this
probe:

* turns on ComfyUI's argument parsing as ``main.py`` does
  (``comfy.options.enable_args_parsing()``) with ``--use-sage-attention`` (plus ``--cpu``
  when there is no GPU, as a CPU user would start it), and imports the attention module;
* checks that ``optimized_attention`` is ``attention_sage``;
* on a GPU, runs ``attention_sage`` for both layouts (``skip_reshape`` True: HND, False:
  NHD), fp16 and bf16, a short (77) and a long sequence, against ComfyUI's own
  ``attention_pytorch`` in fp32, with the sage2 probe's thresholds; a fallback log line
  is a failure that names the exception;
* ``--attention sage3``: reports whether this ComfyUI registers SageAttention 3 and runs
  it only on sm120/sm121.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import sys


from .args import DTYPES, add_gpu_args, int_list, new_parser
from .numerics import compare, detect_gpu, poison_free_memory
from .imports import import_torch
from .report import Report, main
from .sage2 import DEFAULT_MAX_REL_L1 as SAGE2_MAX_REL_L1, DEFAULT_MIN_COSINE as SAGE2_MIN_COSINE
from .sage3 import DEFAULT_MAX_REL_L1 as SAGE3_MAX_REL_L1, DEFAULT_MIN_COSINE as SAGE3_MIN_COSINE
from .sage3 import SUPPORTED_SM as SAGE3_SM

PROBE = "comfyui"
ATTENTION_MODULE = "comfy.ldm.modules.attention"
FALLBACK = "Error running sage attention"
# What each kind needs from ComfyUI: the flag main.py takes, the function it registers.
KINDS: dict[str, dict] = {
    "sage2": {"flag": "--use-sage-attention", "function": "attention_sage", "registered": "sage",
              "dist": "sageattention", "min_cosine": SAGE2_MIN_COSINE, "max_rel_l1": SAGE2_MAX_REL_L1},
    "sage3": {"flag": None, "function": "attention3_sage", "registered": "sage3",
              "dist": "sageattn3", "min_cosine": SAGE3_MIN_COSINE, "max_rel_l1": SAGE3_MAX_REL_L1},
}


class Captured(logging.Handler):
    """Every log record ComfyUI emits while we watch (its fallback is a logging.error)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(record.getMessage())
        except Exception:  # noqa: BLE001 - a bad format string must not end the probe
            self.records.append(str(record.msg))

    def fallbacks(self) -> list[str]:
        return [r.strip() for r in self.records if FALLBACK in r]


def comfyui_layout_problem(path: str) -> str | None:
    if not os.path.isdir(path):
        return f"{path} does not exist or is not a directory"
    missing = [p for p in ("comfy/options.py", "comfy/cli_args.py", "comfy/ldm/modules/attention.py")
               if not os.path.isfile(os.path.join(path, p))]
    if missing:
        return f"{path} is not a ComfyUI checkout: no {', '.join(missing)}"
    return None


def comfyui_version(path: str) -> str | None:
    try:
        with open(os.path.join(path, "comfyui_version.py"), encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("__version__"):
                    return line.split("=", 1)[1].strip().strip("\"'")
    except OSError:
        return None
    return None


def import_comfy_attention(report: Report, path: str, argv: list[str], root_logger: logging.Logger,
                           captured: Captured):
    """Import ComfyUI's attention module the way main.py sets it up; None on failure."""
    sys.path.insert(0, path)
    saved_argv, saved_stderr = sys.argv, sys.stderr
    sys.argv = ["main.py", *argv]
    sys.stderr = io.StringIO()  # argparse's complaint (an unknown flag) lands here
    try:
        import comfy.options  # noqa: PLC0415
        if not callable(getattr(comfy.options, "enable_args_parsing", None)):
            report.add("comfyui:import", "fail", f"ComfyUI at {path} has no comfy.options.enable_args_parsing(): "
                       "too old, or not ComfyUI", path=path)
            return None
        comfy.options.enable_args_parsing()
        import importlib  # noqa: PLC0415
        module = importlib.import_module(ATTENTION_MODULE)
    except SystemExit as exc:  # ComfyUI exit()s when the flag's package is missing; argparse on a bad flag
        said = [ln for ln in (sys.stderr.getvalue().splitlines() + captured.records) if ln.strip()]
        report.add("comfyui:import", "fail", f"importing {ATTENTION_MODULE} with {' '.join(argv)} ended with "
                   f"exit({exc.code}): {' | '.join(s.strip() for s in said[-3:]) or 'no message'}", path=path)
        return None
    except BaseException as exc:  # noqa: BLE001 - anything ComfyUI's import raises is a verdict
        report.add("comfyui:import", "fail", f"importing {ATTENTION_MODULE} raised {type(exc).__name__}: {exc}",
                   path=path)
        return None
    finally:
        saved_stderr.write(sys.stderr.getvalue())
        sys.argv, sys.stderr = saved_argv, saved_stderr
    report.add("comfyui:import", "pass", f"{ATTENTION_MODULE} imported from {path} with {' '.join(argv)}",
               path=path)
    return module


def call_check(report: Report, torch, attention, fn, *, kind: dict, fn_name: str, dtype_name: str,
               skip_reshape: bool, seq_len: int, batch: int, heads: int, head_dim: int, seed: int,
               captured: Captured) -> None:
    layout = "HND" if skip_reshape else "NHD"
    name = f"comfyui:{fn_name}:{dtype_name}:{layout}:n{seq_len}"
    dtype = getattr(torch, DTYPES[dtype_name])
    shape = {"batch": batch, "heads": heads, "seq_len": seq_len, "head_dim": head_dim, "skip_reshape": skip_reshape}
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dims: tuple[int, ...]
    if skip_reshape:
        dims = (batch, heads, seq_len, head_dim)  # ComfyUI's HND path
    else:
        dims = (batch, seq_len, heads * head_dim)  # ComfyUI's default: (b, n, heads*dim), passed on as NHD
    q, k, v = (torch.randn(*dims, generator=gen, device="cuda", dtype=dtype) for _ in range(3))
    ref = attention.attention_pytorch(q.float(), k.float(), v.float(), heads, skip_reshape=skip_reshape)
    k_arg = k.clone()
    poison_free_memory(torch, q.numel() * q.element_size())
    before = len(captured.records)
    try:
        out = fn(q, k_arg, v, heads, skip_reshape=skip_reshape)
        torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001
        report.add(name, "fail", f"{fn_name} raised {type(exc).__name__}: {exc}", kind="gpu", **shape)
        return
    fell_back = [r for r in captured.records[before:] if FALLBACK in r]
    if fell_back:
        report.add(name, "fail", f"ComfyUI fell back to PyTorch attention: {fell_back[0].strip()}", kind="gpu",
                   fallback=True, **shape)
        return
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(ref.shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        report.add(name, "fail", f"output {got} != attention_pytorch's {tuple(ref.shape)}", kind="gpu", **shape)
        return
    m = compare(torch, out, ref, out)
    m.update(shape)
    problems = []
    if not m["finite"]:
        problems.append(f"{m['nonfinite_fraction']:.1%} of output values are NaN/Inf")
    else:
        if m["cosine"] < kind["min_cosine"]:
            problems.append(f"cosine {m['cosine']:.4f} < {kind['min_cosine']}")
        if m["rel_l1"] > kind["max_rel_l1"]:
            problems.append(f"relative L1 {m['rel_l1']:.4f} > {kind['max_rel_l1']}")
    if problems:
        report.add(name, "fail", "; ".join(problems) + " against ComfyUI's attention_pytorch in fp32", kind="gpu",
                   fallback=False, **m)
    else:
        report.add(name, "pass", f"cosine {m['cosine']:.4f}, relative L1 {m['rel_l1']:.4f} against "
                   "attention_pytorch in fp32, no fallback", kind="gpu", fallback=False, **m)
    del q, k, v, ref, k_arg, out


def build_parser() -> argparse.ArgumentParser:
    p = new_parser("comfyui.py", "Validate ComfyUI's own attention path with SageAttention. Prints one JSON "
                   "object on stdout; exit 0 pass, 1 fail, 3 skipped, 2 usage error.")
    p.add_argument("--comfyui", default="/app/ComfyUI", metavar="PATH", help="the ComfyUI checkout to import")
    p.add_argument("--attention", choices=sorted(KINDS), default="sage2", help="which SageAttention to check")
    p.add_argument("--seq-lens", type=int_list, default=[77, 4096], metavar="LENS",
                   help="sequence lengths (77: a CLIP context; 4096: a 512x512 latent)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--min-cosine", type=float, default=None, help="default: the sage2/sage3 probe's threshold")
    p.add_argument("--max-rel-l1", type=float, default=None, help="default: the sage2/sage3 probe's threshold")
    add_gpu_args(p, require_gpu_help="no GPU is a failure")
    p.add_argument("--expect-version", help="accepted for symmetry with the other probes; unused")
    return p


def probe_body(args, report: Report) -> None:
    kind = dict(KINDS[args.attention])
    kind["min_cosine"] = kind["min_cosine"] if args.min_cosine is None else args.min_cosine
    kind["max_rel_l1"] = kind["max_rel_l1"] if args.max_rel_l1 is None else args.max_rel_l1
    report.package = {"name": "ComfyUI", "expected": None, "installed": None, "attention": args.attention}
    path = os.path.abspath(args.comfyui)
    problem = comfyui_layout_problem(path)
    if problem:
        report.add("comfyui:import", "fail", problem, path=path)
        return
    report.package["installed"] = comfyui_version(path)
    torch = import_torch(report)
    if torch is None:
        return
    device, no_gpu = detect_gpu(torch)
    report.device = device

    argv = [kind["flag"]] if kind["flag"] else []
    if device is None:
        argv.append("--cpu")  # ComfyUI asks CUDA for a device at import unless told --cpu
    root = logging.getLogger()
    root.setLevel(logging.INFO)  # as main.py's setup_logger does; ComfyUI's lines go to stderr
    shown = logging.StreamHandler(sys.stderr)
    shown.setFormatter(logging.Formatter("[ComfyUI] %(levelname)s %(message)s"))
    captured = Captured()
    root.addHandler(shown)
    root.addHandler(captured)
    attention = import_comfy_attention(report, path, argv, root, captured)
    if attention is None:
        return

    fn = getattr(attention, kind["function"], None)
    registered = getattr(attention, "REGISTERED_ATTENTION_FUNCTIONS", None)
    if args.attention == "sage2":
        if attention.__dict__.get("optimized_attention") is fn and fn is not None:
            report.add("comfyui:optimized_attention", "pass",
                       f"--use-sage-attention selects {kind['function']} as optimized_attention")
        else:
            got = getattr(attention.__dict__.get("optimized_attention"), "__name__", None)
            report.add("comfyui:optimized_attention", "fail",
                       f"with --use-sage-attention, optimized_attention is {got}, not {kind['function']}")
    else:
        fn = (registered or {}).get(kind["registered"])
        if fn is None:
            report.add("comfyui:registered", "skip",
                       f"this ComfyUI ({report.package['installed'] or 'unknown version'}) does not register "
                       f"SageAttention 3 ('{kind['registered']}' not in REGISTERED_ATTENTION_FUNCTIONS: "
                       f"{', '.join(sorted(registered or {})) or 'none'})", registered=False)
            report.whole_skip_reason = report.checks[-1]["detail"]
            return
        report.add("comfyui:registered", "pass", f"ComfyUI registers '{kind['registered']}'", registered=True)

    if device is None:
        report.no_gpu(no_gpu or "no GPU", args.require_gpu, "comfyui:gpu",
                      fail_detail=f"--require-gpu: no GPU for ComfyUI's attention calls ({no_gpu})",
                      skip_detail=f"no GPU: skipped ComfyUI's attention calls ({no_gpu})")
        return
    if args.attention == "sage3" and device["sm"] not in SAGE3_SM:
        why = f"{device['name']} ({device['sm']}): SageAttention 3 runs only on {'/'.join(SAGE3_SM)}"
        report.add("comfyui:gpu", "skip", why, kind="gpu", sm=device["sm"])
        report.gpu_skip_reason = why
        return
    report.add("comfyui:gpu", "pass", f"{device['name']} ({device['sm']})", kind="gpu", sm=device["sm"])
    if fn is None:
        report.add("comfyui:call", "fail", f"{ATTENTION_MODULE} has no {kind['function']}", kind="gpu")
        return

    seed = 100
    for skip_reshape in (True, False):
        for dtype_name in args.dtypes:
            for n in args.seq_lens:
                seed += 1
                call_check(report, torch, attention, fn, kind=kind, fn_name=kind["function"], dtype_name=dtype_name,
                           skip_reshape=skip_reshape, seq_len=n, batch=args.batch, heads=args.heads,
                           head_dim=args.head_dim, seed=seed, captured=captured)
                torch.cuda.empty_cache()
    report.environment["comfyui_fallback_lines"] = captured.fallbacks()[:5]


if __name__ == "__main__":
    sys.exit(main(PROBE, "ComfyUI", build_parser, probe_body))
