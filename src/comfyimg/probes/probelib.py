"""Shared machinery of the validation probes (sage2.py, sage3.py).

Standard library only (torch is passed in by the probes, which import it lazily);
nothing from the comfyimg package. It sits next to the probes and is mounted with them,
so ``python sage2.py`` finds it as a sibling module, in an image or by hand.
"""
from __future__ import annotations

import argparse
import faulthandler
import glob
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

SCHEMA = 1
EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_SKIP = 0, 1, 2, 3
# Set by the probe script before anything runs: prefixes logs, names the JSON result.
PROBE = "probe"




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
            # What the container was given, before torch says anything: NVIDIA device nodes
            # (--gpus all, or CDI) and the toolkit's variable.
            "device_nodes": sorted(glob.glob("/dev/nvidia*")),
            "nvidia_visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
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
    """Import the modules in a child process first, so that an import that ends the
    interpreter (SIGSEGV in an extension's initialiser, or an exit() there) is reported
    as a failure instead of ending the probe. Returns False if the child did not finish."""
    done = "comfyimg-probe: imports finished"
    code = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except BaseException:\n"
        "        pass\n"
        f"print({done!r}, flush=True)\n"  # an exit(0) at import never gets here
    )
    cmd = [sys.executable, "-X", "faulthandler", "-c", code, *modules]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        report.add("import-isolated", "fail",
                   f"importing {', '.join(modules)} did not finish within {timeout:.0f} s (hang at import)")
        return False
    err = proc.stdout.decode(errors="replace")  # the child's stdout and stderr, as they came
    finished = err.rstrip().endswith(done)
    err = err.replace(done + "\n", "")
    if err:
        sys.stderr.write(err)  # never our stdout: it carries the one JSON object
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
    if proc.returncode != 0 or not finished:
        report.add("import-isolated", "fail",
                   f"importing {', '.join(modules)} ended the interpreter with exit status "
                   f"{proc.returncode} before the imports finished: broken wheel", exit_status=proc.returncode)
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


# --- the package table (kernels.json, next to this file; the host reads the same file) ---

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels.json")


def _release(version: str) -> tuple[int, ...]:
    m = re.match(r"^\s*v?(?:\d+!)?(\d+(?:\.\d+)*)", version or "")
    return tuple(int(x) for x in m.group(1).split(".")) if m else ()


def package_rules(dist: str, version: str | None) -> dict | None:
    """The kernels.json entry for ``dist`` at ``version`` (dispatch per GPU arch, modules that
    must load everywhere), or None when the table does not know that version."""
    with open(TABLE, encoding="utf-8") as fh:
        entries = json.load(fh)["packages"].get(dist, [])
    release = _release(version) if version else ()
    for entry in entries:
        lo, hi = entry["versions"].get("min"), entry["versions"].get("below")
        if not release or (lo and release < _release(lo)) or (hi and release >= _release(hi)):
            continue
        return entry
    return None


def newest_rules(dist: str) -> dict | None:
    """The table's newest entry for ``dist`` (entries are listed newest first)."""
    with open(TABLE, encoding="utf-8") as fh:
        entries = json.load(fh)["packages"].get(dist, [])
    return entries[0] if entries else None


def table_modules(rules: dict | None) -> list[str]:
    """Every compiled module the table names for the package, imports first."""
    if not rules:
        return []
    names = list(rules.get("import", []))
    for path in rules["dispatch"].values():
        names += [m for m in path["modules"] if m not in names]
    return names


def needs_arg(text: str) -> tuple[str, list[str]]:
    """``sm90=sageattention._qattn_sm90,sageattention._fused`` → ("sm90", [...])."""
    arch, sep, mods = text.partition("=")
    if not sep or not re.match(r"^sm\d{2,3}$", arch.strip()):
        raise argparse.ArgumentTypeError(f"expected ARCH=MODULE,MODULE (e.g. sm90=pkg._ext), got {text!r}")
    return arch.strip(), csv_list(mods)


def add_expectation_args(p: argparse.ArgumentParser) -> None:
    """What the host expects, from the pin's recorded coverage (comfyimg.validate passes them)."""
    p.add_argument("--serves", type=csv_list, default=None, metavar="ARCHS",
                   help="GPU archs the image serves (from its pin); a GPU outside them fails")
    p.add_argument("--needs", type=needs_arg, action="append", default=[], metavar="ARCH=MODULES",
                   help="compiled modules whose kernels ARCH needs (repeatable; default: from kernels.json)")


def required_modules(rules: dict | None, args, device: dict | None) -> list[str]:
    """The modules that must load: the table's imports, plus what the GPU at hand needs (from
    --needs, else the table); without a GPU, what every served arch needs."""
    needs = dict(args.needs)
    required = list(rules.get("import", [])) if rules else []
    if device is not None:
        sm = device["sm"]
        archs = [sm]
    else:
        archs = list(args.serves or needs)
    for arch in archs:
        if arch in needs:
            mods = needs[arch]
        elif rules and arch in rules["dispatch"]:
            mods = rules["dispatch"][arch]["modules"]
        else:
            mods = []
        required += [m for m in mods if m not in required]
    return required


def serves_check(report: Report, device: dict, serves: list[str] | None) -> bool:
    """False (a failed check) when the image does not serve the GPU at hand."""
    if serves is None:
        return True
    sm = device["sm"]
    if sm in serves:
        report.add("serves", "pass", f"this image serves {', '.join(serves)}, including {sm}", kind="gpu", sm=sm)
        return True
    report.add("serves", "fail", f"this image serves {', '.join(serves) or 'no GPU'}; this GPU is {sm} "
               f"({device['name']})", kind="gpu", sm=sm, serves=serves)
    return False


def csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in csv_list(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc


def add_common_args(p: argparse.ArgumentParser, *, dist: str, example: str, kernel: str,
                    min_cosine: float, max_rel_l1: float) -> None:
    """The options both probes share: expected version, numerics shape and thresholds, timing."""
    p.add_argument("--expect-version", metavar="VERSION",
                   help=f"expected importlib.metadata version of the '{dist}' distribution; "
                        f"'{example}' also matches '{example}+...' (a local label in VERSION must match exactly)")
    p.add_argument("--seq-len", type=int, default=1024, help="sequence length of the numerics checks")
    p.add_argument("--batch", type=int, default=2, help="batch size of the numerics checks")
    p.add_argument("--heads", type=int, default=8, help="heads of the numerics checks")
    p.add_argument("--head-dims", type=int_list, default=[64, 128], metavar="DIMS", help="head dims to check")
    p.add_argument("--dtypes", type=csv_list, default=["fp16", "bf16"], metavar="DTYPES",
                   help="input dtypes to check (fp16, bf16)")
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
    p.add_argument("--import-timeout", type=float, default=300.0,
                   help="seconds allowed for the isolated import check")


def scratch_check(report: Report) -> bool:
    """Under validate (COMFYIMG_SCRATCH set) the probe's HOME/TMPDIR/Triton cache must be
    writable: an image's own /tmp is not trusted, and without a cache every Triton kernel
    fails for a reason that is not the wheel's."""
    scratch = os.environ.get("COMFYIMG_SCRATCH")
    if not scratch:
        return True
    try:
        os.makedirs(os.environ.get("TRITON_CACHE_DIR") or scratch, exist_ok=True)
        probe_file = os.path.join(scratch, f".probe-{os.getpid()}")
        with open(probe_file, "w") as fh:
            fh.write("ok")
        os.unlink(probe_file)
    except OSError as exc:
        report.add("scratch", "fail", f"the probe's scratch {scratch} is not writable ({exc}): Triton could not "
                   "cache its kernels; the container needs a writable exec tmpfs there")
        return False
    report.add("scratch", "pass", f"{scratch} is writable (HOME, TMPDIR, TRITON_CACHE_DIR)")
    return True


def run_main(build_parser, probe_body, dist: str) -> int:
    parser = build_parser()
    args = parser.parse_args()
    faulthandler.enable(file=sys.stderr)
    out = JsonStdout()
    out.capture()
    report = Report(dist, args.expect_version)
    try:
        if scratch_check(report):
            probe_body(args, report)
    except Exception as exc:  # noqa: BLE001 - a probe bug must still produce JSON
        traceback.print_exc(file=sys.stderr)
        report.add("probe-error", "fail", f"probe raised {type(exc).__name__}: {exc}")
    obj, code = report.finish()
    out.emit(obj)
    return code
