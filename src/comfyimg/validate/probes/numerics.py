"""The GPU at hand and the numerics of real kernel calls against an fp32 SDPA reference. torch is
passed in by the probes, which import it lazily; standard library otherwise."""
from __future__ import annotations

from .args import DTYPES
from .imports import check_version, import_torch
from .report import Report


def start(report: Report, dist: str, expected: str | None):
    """Every probe's first steps: the installed version, torch, the GPU at hand (``report.device``).
    Returns (torch or None, device or None, why there is no GPU)."""
    check_version(report, dist, expected)
    torch = import_torch(report)
    if torch is None:
        return None, None, "torch cannot be imported"
    device, no_gpu = detect_gpu(torch)
    report.device = device
    return torch, device, no_gpu


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


def numerics_checks(report: Report, torch, fn, call, args, *, layouts, hint_for_exception) -> None:
    """Every dtype x layout x head dim of the command line, one ``numerics_check`` each."""
    seed = 0
    for dtype_name in args.dtypes:
        for layout in layouts:
            for hd in args.head_dims:
                seed += 1
                numerics_check(report, torch, fn, call, dtype_name=dtype_name, layout=layout, head_dim=hd,
                               batch=args.batch, heads=args.heads, seq_len=args.seq_len, min_cos=args.min_cosine,
                               max_rel_l1=args.max_rel_l1, seed=seed, hint_for_exception=hint_for_exception)
                torch.cuda.empty_cache()
