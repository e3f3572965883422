"""Timing of the kernel against torch SDPA with CUDA events (reported, not assumed)."""
from __future__ import annotations

import os
import time

from .args import DTYPES
from .report import Report


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
            t_sdpa = time_cuda(torch, lambda q=q, k=k, v=v: torch.nn.functional.scaled_dot_product_attention(q, k, v),
                               warmup, iters)
            kk = k.clone()  # timed calls reuse one k; some versions subtract its mean in place
            t_sage = time_cuda(torch, lambda q=q, kk=kk, v=v: call(fn, q, kk, v, "HND"), warmup, iters)
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
        longest = max(timed, key=lambda r: int(r["seq_len"]))  # type: ignore[call-overload]
        if float(longest["speedup_vs_sdpa"]) < min_speedup:  # type: ignore[arg-type]
            problems.append(f"speedup x{longest['speedup_vs_sdpa']:.2f} at seq {longest['seq_len']} "
                            f"< required x{min_speedup}")
    if problems:
        report.add("bench", "fail", "; ".join(problems) + (f" [{summary}]" if summary else ""), kind="gpu")
    else:
        report.add("bench", "pass", f"timed (reported, not enforced): {summary}", kind="gpu")




def wait_for(path: str, seconds: float) -> float | None:
    """Seconds waited until ``path`` existed, or None if it did not within ``seconds``."""
    started = time.monotonic()
    while not os.path.exists(path):
        if time.monotonic() - started > seconds:
            return None
        time.sleep(0.1)
    return time.monotonic() - started


def bench_from_args(report: Report, torch, fn, call, args, *, label: str) -> None:
    """The bench row as the command line asks: not with --skip-bench, not after a failure, and
    with --bench-after only once nothing else uses the GPU."""
    if args.skip_bench:
        return
    if report.failed():
        report.add("bench", "skip", "not timed: earlier checks failed", kind="gpu")
        return
    if args.bench_after:
        waited = wait_for(args.bench_after, args.bench_wait)
        if waited is None:
            report.add("bench", "fail", f"not timed: {args.bench_after} did not appear within {args.bench_wait:g} s "
                       "(--bench-after: the other user of the GPU did not end)", kind="gpu")
            return
        report.log(f"bench: waited {waited:.1f} s for {args.bench_after} (the GPU's other user to end)")
    bench(report, torch, fn, call, seq_lens=args.bench_seq_len, heads=args.bench_heads, head_dim=128,
          dtype_name="fp16", warmup=args.bench_warmup, iters=args.bench_iters, min_speedup=args.min_speedup,
          label=label)
