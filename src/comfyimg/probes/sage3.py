#!/usr/bin/env python3
"""Validation probe for SageAttention 3 (module ``sageattn3``, Blackwell FP4).

Runs INSIDE an image. Standard library + torch only; imports nothing from
comfyimg. Prints exactly one JSON object on stdout (everything else goes to
stderr) and exits:

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

Run ``python sage3.py --help`` for the options.
"""
from __future__ import annotations

import argparse
import faulthandler
import importlib
import importlib.metadata
import json
import math
import os
import platform
import re
import signal
import subprocess
import sys
import time
import traceback

PROBE = "sage3"
SCHEMA = 1
DIST = "sageattn3"
MODULE = "sageattn3"

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_SKIP = 0, 1, 2, 3

DEFAULT_EXTENSIONS = ("fp4attn_cuda", "fp4quant_cuda")
ENTRY = "sageattn3_blackwell"
SUPPORTED_SM = ("sm120", "sm121")

DEFAULT_MIN_COSINE = 0.95
DEFAULT_MAX_REL_L1 = 0.35

# ----------------------------------------------------------------------------
# Shared probe machinery (kept identical in sage2.py and sage3.py: each probe
# must stay a single self-contained file).
# ----------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{PROBE}] {msg}", file=sys.stderr, flush=True)


class JsonStdout:
    """Keep fd 1 for the single JSON object; send all other output to stderr.

    Extensions and libraries may print to stdout (Python prints or C printf),
    so fd 1 itself is pointed at stderr and the original stdout is kept on a
    private descriptor used only for the final JSON line.
    """

    def __init__(self) -> None:
        self.fd: int | None = None

    def capture(self) -> None:
        sys.stdout.flush()
        self.fd = os.dup(1)
        os.dup2(2, 1)

    def emit(self, obj: dict) -> None:
        data = (json.dumps(obj, allow_nan=False, default=str) + "\n").encode()
        sys.stdout.flush()
        fd = 1 if self.fd is None else self.fd
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]


def _finite(x):
    """JSON has no NaN/Inf: map them to strings so the object stays valid."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


class Report:
    def __init__(self, package_name: str, expected: str | None) -> None:
        self.t0 = time.monotonic()
        self.checks: list[dict] = []
        self.package = {"name": package_name, "expected": expected, "installed": None}
        self.device: dict | None = None
        self.environment: dict = {
            "python": platform.python_version(),
            "executable": sys.executable,
        }
        self.bench: dict | None = None
        self.gpu_skip_reason: str | None = None
        self.whole_skip_reason: str | None = None

    def add(self, name: str, status: str, detail: str, kind: str = "install", **metrics) -> dict:
        assert status in ("pass", "fail", "skip"), status
        check = {"name": name, "kind": kind, "status": status, "detail": detail}
        check.update({k: _finite(v) for k, v in metrics.items()})
        self.checks.append(check)
        log(f"{status.upper():4} {name}: {detail}")
        return check

    def failed(self) -> list[dict]:
        return [c for c in self.checks if c["status"] == "fail"]

    def gpu_checks_state(self) -> str:
        """"skipped": no (usable) GPU (also when --require-gpu made that a failure);
        "ran": the GPU checks ran; "not-run": earlier failures stopped the probe first."""
        if self.gpu_skip_reason:
            return "skipped"
        if any(c["kind"] == "gpu" for c in self.checks):
            return "ran"
        return "not-run"

    def finish(self) -> tuple[dict, int]:
        failed = self.failed()
        if failed:
            status, code = "fail", EXIT_FAIL
            parts = [f"{c['name']}: {c['detail']}" for c in failed[:4]]
            if len(failed) > 4:
                parts.append(f"... and {len(failed) - 4} more failed checks")
            reason = "; ".join(parts)
        elif self.whole_skip_reason:
            status, code = "skip", EXIT_SKIP
            reason = self.whole_skip_reason
        else:
            status, code = "pass", EXIT_PASS
            n = sum(1 for c in self.checks if c["status"] == "pass")
            reason = f"{n} checks passed"
            skipped = [c["name"] for c in self.checks if c["status"] == "skip"]
            if skipped:
                reason += f"; skipped: {', '.join(skipped)}"
            if self.gpu_skip_reason:
                reason += f"; gpu: skipped ({self.gpu_skip_reason})"
        if len(reason) > 2000:
            reason = reason[:1997] + "..."
        obj = {
            "probe": PROBE,
            "schema": SCHEMA,
            "status": status,
            "exit_code": code,
            "reason": reason,
            "package": self.package,
            "device": self.device,
            "gpu_checks": self.gpu_checks_state(),
            "environment": self.environment,
            "checks": self.checks,
            "bench": self.bench,
            "elapsed_s": round(time.monotonic() - self.t0, 3),
        }
        return obj, code


def version_matches(installed: str, expected: str) -> bool:
    """``2.2.0`` matches ``2.2.0`` and ``2.2.0+cu130.torch2.13.0.sm90``;
    an expectation with a local label (``+...``) must match exactly."""
    inst, exp = installed.strip().lower(), expected.strip().lower()
    if "+" in exp:
        return inst == exp
    return inst.split("+", 1)[0] == exp


def check_version(report: Report, dist: str, expected: str | None) -> bool:
    try:
        installed = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        report.add("version", "fail", f"distribution {dist!r} is not installed (no {dist}-*.dist-info on sys.path)")
        return False
    report.package["installed"] = installed
    if expected is None:
        report.add("version", "skip", f"installed {installed}; no --expect-version given")
        return True
    if version_matches(installed, expected):
        report.add("version", "pass", f"installed {installed} matches expected {expected}")
        return True
    report.add("version", "fail", f"installed {installed}, expected {expected}")
    return False


_DRIVER_LIBS = re.compile(r"lib(cuda|nvidia-ml|nvidia-ptxjitcompiler|nvcuda)\.so")


def classify_import_error(exc: BaseException, module: str) -> tuple[str, str]:
    """Return (error_kind, explanation) for a failed import.

    error_kind is one of: no-driver, abi-mismatch, missing-library,
    incompatible-library, not-found, missing-dependency, error.
    """
    msg = f"{type(exc).__name__}: {exc}"
    text = str(exc)
    if _DRIVER_LIBS.search(text) and "cannot open shared object file" in text:
        return "no-driver", (
            f"{msg} -- the NVIDIA driver library is not present (container started without a GPU, "
            "e.g. without `docker run --gpus all`); this is not a wheel defect")
    m = re.search(r"undefined symbol: (\S+)", text)
    if m:
        return "abi-mismatch", (
            f"{msg} -- broken wheel: undefined symbol {m.group(1)}; the extension was built against a "
            "different torch (C++ ABI/version) than the one installed")
    m = re.search(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file", text)
    if m:
        return "missing-library", (
            f"{msg} -- broken wheel for this image: it needs {m.group(1)}, which the image lacks "
            "(built for another CUDA/torch)")
    if re.search(r"version `[^']+' not found", text):
        return "incompatible-library", (
            f"{msg} -- broken wheel for this image: built against a newer system library (glibc/libstdc++)")
    if isinstance(exc, ModuleNotFoundError):
        missing = getattr(exc, "name", None) or ""
        if missing and (missing == module or module.startswith(missing + ".")):
            return "not-found", f"{msg} -- the module is not in the installed package"
        return "missing-dependency", f"{msg} -- a dependency of {module} is not installed"
    return "error", msg


def import_crash_check(report: Report, modules: list[str], timeout: float) -> bool:
    """Import the modules in a child process first, so that an import that kills
    the interpreter (SIGSEGV in an extension's initialiser) is reported as a
    failure instead of killing the probe. Returns False if the child crashed."""
    code = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except BaseException:\n"
        "        pass\n"
    )
    cmd = [sys.executable, "-X", "faulthandler", "-c", code, *modules]
    try:
        proc = subprocess.run(cmd, stdout=2, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        report.add("import-isolated", "fail",
                   f"importing {', '.join(modules)} did not finish within {timeout:.0f} s (hang at import)")
        return False
    err = proc.stderr.decode(errors="replace")
    if err:
        sys.stderr.write(err)
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        where = [ln.strip() for ln in err.splitlines() if ln.strip().startswith("File ")]
        hint = f" (last frame: {where[0]})" if where else ""
        report.add("import-isolated", "fail",
                   f"importing {', '.join(modules)} killed the interpreter with {sig}{hint}: broken wheel",
                   signal=sig)
        return False
    report.add("import-isolated", "pass", f"importing {', '.join(modules)} in a child process did not crash")
    return True


def import_module_check(report: Report, name: str, module: str, gpu_present: bool,
                        require_gpu: bool, **extra):
    """Import `module` in-process; add a check. Returns (module or None, error_kind, check)."""
    try:
        mod = importlib.import_module(module)
    except BaseException as exc:  # noqa: BLE001 - extensions raise anything
        kind, detail = classify_import_error(exc, module)
        status = "skip" if (kind == "no-driver" and not gpu_present and not require_gpu) else "fail"
        check = report.add(name, status, detail, module=module, loaded=False, error_kind=kind, **extra)
        return None, kind, check
    path = getattr(mod, "__file__", None)
    check = report.add(name, "pass", f"{module} loaded from {path}", module=module, loaded=True,
                       error_kind=None, **extra)
    return mod, None, check


def import_torch(report: Report):
    try:
        import torch  # noqa: PLC0415
    except BaseException as exc:  # noqa: BLE001
        report.add("torch", "fail", f"torch cannot be imported: {type(exc).__name__}: {exc}")
        return None
    report.environment.update({
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    })
    try:
        report.environment["triton"] = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        report.environment["triton"] = None
    return torch


def detect_gpu(torch) -> tuple[dict | None, str | None]:
    """Return (device dict, None) or (None, reason there is no usable GPU)."""
    if torch.version.cuda is None:
        return None, f"torch {torch.__version__} is a CPU-only build"
    try:
        available = torch.cuda.is_available()
    except Exception as exc:  # noqa: BLE001
        return None, f"torch.cuda.is_available() raised {type(exc).__name__}: {exc}"
    if not available:
        return None, "no CUDA device visible (no NVIDIA driver, or container started without --gpus)"
    idx = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(idx)
    props = torch.cuda.get_device_properties(idx)
    return {
        "name": torch.cuda.get_device_name(idx),
        "sm": f"sm{major}{minor}",
        "capability": f"{major}.{minor}",
        "index": idx,
        "count": torch.cuda.device_count(),
        "memory_gib": round(props.total_memory / 2**30, 1),
    }, None


def poison_free_memory(torch, nbytes_hint: int) -> None:
    """Fill the caching allocator's free memory with 0xFF bytes (NaN in fp16,
    bf16 and fp32) and give it back to the cache. A kernel that returns
    ``torch.empty_like(q)`` without writing it then hands back NaNs/sentinel
    bytes instead of whatever happened to be there (e.g. a previous, correct
    result), so uninitialised output cannot pass."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    free, _total = torch.cuda.mem_get_info()
    # Output-sized chunks first: best-fit hands them the free remainders of segments
    # that still hold live tensors, so those get the sentinel too.
    n_chunks = max(1, min(64, int(free * 0.25) // max(nbytes_hint, 1)))
    chunks = [torch.full((nbytes_hint,), 0xFF, dtype=torch.uint8, device="cuda") for _ in range(n_chunks)]
    size = min(max(64 * nbytes_hint, 256 * 2**20), int(free * 0.25), 4 * 2**30)
    big = torch.full((size,), 0xFF, dtype=torch.uint8, device="cuda")
    # The allocator keeps requests <= 1 MiB in a separate pool of 2 MiB segments.
    small = [torch.full((1 << 20,), 0xFF, dtype=torch.uint8, device="cuda") for _ in range(32)]
    torch.cuda.synchronize()
    del chunks, big, small


DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def compare(torch, out_hnd, ref, out_raw) -> dict:
    """Metrics of out (any dtype, HND) vs the fp32 reference (HND)."""
    o = out_hnd.float()
    finite = bool(torch.isfinite(o).all().item())
    nonfinite_frac = float((~torch.isfinite(o)).float().mean().item())
    sentinel_frac = None
    if out_raw.element_size() == 2:
        sentinel_frac = float((out_raw.contiguous().view(torch.int16) == -1).float().mean().item())
    metrics = {"finite": finite, "nonfinite_fraction": round(nonfinite_frac, 6),
               "sentinel_fraction": None if sentinel_frac is None else round(sentinel_frac, 6)}
    if finite:
        od, rd = o.double().flatten(), ref.double().flatten()
        cos = float(torch.nn.functional.cosine_similarity(od, rd, dim=0).item())
        rel_l1 = float(((od - rd).abs().sum() / rd.abs().sum().clamp_min(1e-30)).item())
        max_abs = float((od - rd).abs().max().item())
        metrics.update({"cosine": round(cos, 6), "rel_l1": round(rel_l1, 6), "max_abs": round(max_abs, 6)})
    return metrics


def numerics_check(report: Report, torch, fn, call, *, dtype_name: str, layout: str, head_dim: int,
                   batch: int, heads: int, seq_len: int, min_cos: float, max_rel_l1: float,
                   seed: int, hint_for_exception) -> None:
    """One call of the kernel vs fp32 SDPA. ``call(fn, q, k, v, layout)`` runs it."""
    name = f"numerics:{dtype_name}:{layout}:d{head_dim}"
    dtype = getattr(torch, DTYPES[dtype_name])
    shape = {"batch": batch, "heads": heads, "seq_len": seq_len, "head_dim": head_dim}
    gen = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, seq_len, head_dim, generator=gen, device="cuda", dtype=dtype)
               for _ in range(3))
    # fp32 reference, kept alive for the whole check (HND).
    ref = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    if layout == "NHD":
        q_in, k_in, v_in = (t.transpose(1, 2).contiguous() for t in (q, k, v))
    else:
        q_in, k_in, v_in = q, k, v
    k_arg = k_in.clone()  # kernels may modify k in place (smooth_k / mean subtraction)
    poison_free_memory(torch, q_in.numel() * q_in.element_size())
    try:
        out = call(fn, q_in, k_arg, v_in, layout)
        torch.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001
        detail = f"call raised {type(exc).__name__}: {exc}"
        hint = hint_for_exception(exc)
        if hint:
            detail += f" -- {hint}"
        report.add(name, "fail", detail, kind="gpu", **shape)
        return
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        report.add(name, "fail", f"returned {type(out).__name__}, not a tensor", kind="gpu", **shape)
        return
    aliases = [n for n, t in (("q", q_in), ("k", k_arg), ("v", v_in)) if out.data_ptr() == t.data_ptr()]
    if tuple(out.shape) != tuple(q_in.shape):
        report.add(name, "fail", f"output shape {tuple(out.shape)} != query shape {tuple(q_in.shape)}",
                   kind="gpu", **shape)
        return
    out_hnd = out.transpose(1, 2) if layout == "NHD" else out
    m = compare(torch, out_hnd, ref, out)
    m.update(shape)
    m["out_dtype"] = str(out.dtype).replace("torch.", "")
    problems = []
    if aliases:
        problems.append(f"output is the input tensor {aliases[0]} (kernel did not compute anything)")
    if out.dtype != dtype:
        problems.append(f"output dtype {m['out_dtype']} != input dtype {DTYPES[dtype_name]}")
    if not m["finite"]:
        frac = m["nonfinite_fraction"]
        what = f"{frac:.1%} of output values are NaN/Inf"
        if m.get("sentinel_fraction"):
            what += (f"; {m['sentinel_fraction']:.1%} still hold the allocator sentinel 0xFFFF "
                     "(output memory was never written: uninitialised output)")
        problems.append(what)
    else:
        if m["cosine"] < min_cos:
            problems.append(f"cosine {m['cosine']:.4f} < {min_cos}")
        if m["rel_l1"] > max_rel_l1:
            problems.append(f"relative L1 {m['rel_l1']:.4f} > {max_rel_l1}")
    if problems:
        report.add(name, "fail", "; ".join(problems), kind="gpu", **m)
    else:
        report.add(name, "pass", f"cosine {m['cosine']:.4f} >= {min_cos}, relative L1 {m['rel_l1']:.4f} "
                   f"<= {max_rel_l1}, all finite", kind="gpu", **m)
    del q, k, v, ref, q_in, k_in, v_in, k_arg, out, out_hnd


def time_cuda(torch, fn, warmup: int, iters: int) -> dict:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        events.append((s, e))
    torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in events)
    return {"median_ms": round(ms[len(ms) // 2], 4), "min_ms": round(ms[0], 4),
            "mean_ms": round(sum(ms) / len(ms), 4)}


def bench(report: Report, torch, fn, call, *, seq_lens: list[int], heads: int, head_dim: int,
          dtype_name: str, warmup: int, iters: int, min_speedup: float | None, label: str) -> None:
    """Time the kernel vs torch SDPA (same dtype, HND layout) with CUDA events.
    Reported, not assumed: a speedup is only enforced with --min-speedup."""
    dtype = getattr(torch, DTYPES[dtype_name])
    results = []
    problems = []
    for n in seq_lens:
        entry = {"batch": 1, "heads": heads, "seq_len": n, "head_dim": head_dim, "dtype": dtype_name,
                 "layout": "HND"}
        try:
            gen = torch.Generator(device="cuda").manual_seed(1)
            q, k, v = (torch.randn(1, heads, n, head_dim, generator=gen, device="cuda", dtype=dtype)
                       for _ in range(3))
            sdpa_out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
            out = call(fn, q, k.clone(), v, "HND")
            if isinstance(out, (tuple, list)):
                out = out[0]
            torch.cuda.synchronize()
            of = out.float()
            entry["finite"] = bool(torch.isfinite(of).all().item())
            if entry["finite"]:
                entry["cosine_vs_sdpa"] = round(float(torch.nn.functional.cosine_similarity(
                    of.flatten().double(), sdpa_out.float().flatten().double(), dim=0).item()), 6)
            else:
                problems.append(f"seq {n}: output has NaN/Inf")
            del out, of, sdpa_out
            t_sdpa = time_cuda(torch, lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v),
                               warmup, iters)
            kk = k.clone()  # timed calls reuse one k; some versions subtract its mean in place
            t_sage = time_cuda(torch, lambda: call(fn, q, kk, v, "HND"), warmup, iters)
            entry.update({"sdpa_ms": t_sdpa["median_ms"], f"{label}_ms": t_sage["median_ms"],
                          "sdpa": t_sdpa, label: t_sage,
                          "speedup_vs_sdpa": round(t_sdpa["median_ms"] / t_sage["median_ms"], 3)})
            del q, k, v, kk
        except Exception as exc:  # noqa: BLE001
            entry["error"] = f"{type(exc).__name__}: {exc}"
            problems.append(f"seq {n}: {entry['error']}")
        torch.cuda.empty_cache()
        results.append(entry)
    report.bench = {"kernel": label, "baseline": "torch.nn.functional.scaled_dot_product_attention",
                    "timing": f"CUDA events, median of {iters} after {warmup} warmup",
                    "warmup": warmup, "iters": iters, "results": results}
    timed = [r for r in results if "speedup_vs_sdpa" in r]
    summary = ", ".join(f"seq {r['seq_len']}: {label} {r[label + '_ms']:.3f} ms vs SDPA {r['sdpa_ms']:.3f} ms "
                        f"(x{r['speedup_vs_sdpa']:.2f})" for r in timed)
    if min_speedup is not None and timed:
        longest = max(timed, key=lambda r: r["seq_len"])
        if longest["speedup_vs_sdpa"] < min_speedup:
            problems.append(f"speedup x{longest['speedup_vs_sdpa']:.2f} at seq {longest['seq_len']} "
                            f"< required x{min_speedup}")
    if problems:
        report.add("bench", "fail", "; ".join(problems) + (f" [{summary}]" if summary else ""), kind="gpu")
    else:
        report.add("bench", "pass", f"timed (reported, not enforced): {summary}", kind="gpu")


def csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in csv_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def run_main(build_parser, probe_body) -> int:
    parser = build_parser()
    args = parser.parse_args()
    faulthandler.enable(file=sys.stderr)
    out = JsonStdout()
    out.capture()
    report = Report(DIST, args.expect_version)
    try:
        probe_body(args, report)
    except Exception as exc:  # noqa: BLE001 - a probe bug must still produce JSON
        traceback.print_exc(file=sys.stderr)
        report.add("probe-error", "fail", f"probe raised {type(exc).__name__}: {exc}")
    obj, code = report.finish()
    out.emit(obj)
    return code



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
    p = argparse.ArgumentParser(
        prog="sage3.py",
        description="Validate an installed SageAttention 3 (module sageattn3, extensions fp4attn_cuda and "
                    "fp4quant_cuda). Prints one JSON object on stdout; exit 0 pass, 1 fail (broken install or "
                    "numerics), 3 skipped (no sm120/sm121 GPU: the install checks still ran), 2 usage error.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--expect-version", metavar="VERSION",
                   help="expected importlib.metadata version of the 'sageattn3' distribution; '1.0.0' also "
                        "matches '1.0.0+...' (a local label in VERSION must match exactly)")
    p.add_argument("--extensions", type=csv_list, default=list(DEFAULT_EXTENSIONS), metavar="MODULES",
                   help="comma-separated compiled extension modules that must load")
    p.add_argument("--require-gpu", action="store_true",
                   help="no GPU at all (or no NVIDIA driver) is a failure; an unsupported GPU is still a skip")
    p.add_argument("--seq-len", type=int, default=1024, help="sequence length of the numerics checks")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dims", type=int_list, default=[64, 128], metavar="DIMS")
    p.add_argument("--dtypes", type=csv_list, default=["fp16", "bf16"], metavar="DTYPES")
    p.add_argument("--min-cosine", type=float, default=DEFAULT_MIN_COSINE,
                   help="minimum cosine similarity vs fp32 SDPA (FP4: ~0.98 typical)")
    p.add_argument("--max-rel-l1", type=float, default=DEFAULT_MAX_REL_L1,
                   help="maximum relative L1 error vs fp32 SDPA")
    p.add_argument("--skip-bench", action="store_true", help="do not time sageattn3_blackwell vs SDPA")
    p.add_argument("--bench-seq-len", type=int_list, default=[16384], metavar="LENS")
    p.add_argument("--bench-heads", type=int, default=24)
    p.add_argument("--bench-warmup", type=int, default=5)
    p.add_argument("--bench-iters", type=int, default=20)
    p.add_argument("--min-speedup", type=float, default=None,
                   help="fail if not at least this many times faster than SDPA at the longest length")
    p.add_argument("--import-timeout", type=float, default=300.0)
    return p


def probe_body(args, report: Report) -> None:
    for d in args.dtypes:
        if d not in DTYPES:
            raise ValueError(f"unknown dtype {d!r} (use fp16, bf16)")

    check_version(report, DIST, args.expect_version)
    torch = import_torch(report)
    if torch is None:
        return
    device, no_gpu = detect_gpu(torch)
    report.device = device
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
        report.gpu_skip_reason = no_gpu
        if args.require_gpu:
            report.add("gpu", "fail", f"--require-gpu: {no_gpu}", kind="gpu")
        else:
            report.add("gpu", "skip", no_gpu, kind="gpu")
            report.whole_skip_reason = f"SageAttention 3 kernels not run: {no_gpu}"
        return
    why = unsupported_reason(device)
    if why:
        report.add("gpu", "skip", why, kind="gpu", sm=device["sm"])
        report.gpu_skip_reason = why
        report.whole_skip_reason = why
        return
    report.add("gpu", "pass", f"{device['name']} ({device['sm']})", kind="gpu", sm=device["sm"])
    if not callable(fn) or report.failed():
        report.add("numerics", "skip", "not run: install checks failed", kind="gpu")
        return

    seed = 0
    for dtype_name in args.dtypes:
        for hd in args.head_dims:
            seed += 1
            numerics_check(report, torch, fn, call_sageattn3, dtype_name=dtype_name, layout="HND",
                           head_dim=hd, batch=args.batch, heads=args.heads, seq_len=args.seq_len,
                           min_cos=args.min_cosine, max_rel_l1=args.max_rel_l1, seed=seed,
                           hint_for_exception=sage3_exception_hint)
            torch.cuda.empty_cache()

    if args.skip_bench:
        return
    if report.failed():
        report.add("bench", "skip", "not timed: earlier checks failed", kind="gpu")
        return
    bench(report, torch, fn, call_sageattn3, seq_lens=args.bench_seq_len, heads=args.bench_heads, head_dim=128,
          dtype_name="fp16", warmup=args.bench_warmup, iters=args.bench_iters, min_speedup=args.min_speedup,
          label="sageattn3")


if __name__ == "__main__":
    sys.exit(run_main(build_parser, probe_body))
