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
        problems += disagreement(m, min_cos, max_rel_l1)
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


# ----------------------------------------------------------------------------- long sequences

LONG_SEQ_LENS = (65536, 131072, 262144)
# bytes per element of q (batch x heads x tokens x head dim) a long row holds at its peak: q, k, v
# and k's clone in the input dtype (4 x 2), the reference and the fp32 k, v (3 x 4), the output (2),
# the compare's fp32 and fp64 copies of output and reference (2 x 4 + 2 x 8), and slack (8).
LONG_BYTES_PER_ELEMENT = 8 + 12 + 2 + 24 + 8
REFERENCE_CHUNK_BYTES = 256 * 2**20


def chunked_reference(torch, q, k, v, chunk_bytes: int = REFERENCE_CHUNK_BYTES):
    """fp32 SDPA of HND q, k, v computed a block of queries at a time (each query's row is
    independent), so that no backend needs a tokens x tokens score matrix: at most
    ``chunk_bytes`` of fp32 scores per block."""
    batch, heads, n, head_dim = q.shape
    kf, vf = k.float(), v.float()
    rows = max(1, chunk_bytes // max(1, batch * heads * k.shape[2] * 4))
    out = torch.empty(batch, heads, n, head_dim, dtype=torch.float32, device=q.device)
    for start in range(0, n, rows):
        out[:, :, start:start + rows] = torch.nn.functional.scaled_dot_product_attention(
            q[:, :, start:start + rows].float(), kf, vf)
    del kf, vf
    return out


def long_sequence_check(report: Report, torch, fn, call, *, dtype_name: str, seq_len: int, heads: int,
                        head_dim: int, min_cos: float, max_rel_l1: float, seed: int, hint_for_exception,
                        device: str = "cuda", free_bytes: int | None = None,
                        chunk_bytes: int = REFERENCE_CHUNK_BYTES) -> None:
    """One long call (batch 1, HND) against the chunked fp32 reference, with the thresholds of the
    short rows. A row that does not fit the device's free memory (``free_bytes``, or an
    out-of-memory error) is ``skip`` with the reason, never a pass."""
    name = f"numerics-long:{dtype_name}:n{seq_len}"
    shape = {"batch": 1, "heads": heads, "seq_len": seq_len, "head_dim": head_dim}
    need = heads * seq_len * head_dim * LONG_BYTES_PER_ELEMENT
    if free_bytes is not None and need > free_bytes:
        report.add(name, "skip", f"does not fit: needs about {need / 2**30:.1f} GiB, {free_bytes / 2**30:.1f} GiB "
                   "free on the device -- not checked", kind="gpu", **shape)
        return
    dtype = getattr(torch, DTYPES[dtype_name])
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", MemoryError)
    try:
        gen = torch.Generator(device=device).manual_seed(seed)
        q, k, v = (torch.randn(1, heads, seq_len, head_dim, generator=gen, device=device, dtype=dtype)
                   for _ in range(3))
        ref = chunked_reference(torch, q, k, v, chunk_bytes)
        k_arg = k.clone()
        try:
            out = call(fn, q, k_arg, v, "HND")
            if device == "cuda":
                torch.cuda.synchronize()
        except oom:
            raise
        except Exception as exc:  # noqa: BLE001
            detail = f"call raised {type(exc).__name__}: {exc}"
            hint = hint_for_exception(exc)
            report.add(name, "fail", detail + (f" -- {hint}" if hint else ""), kind="gpu", **shape)
            return
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(q.shape):
            report.add(name, "fail", f"returned {getattr(out, 'shape', type(out).__name__)}, not the query's shape "
                       f"{tuple(q.shape)}", kind="gpu", **shape)
            return
        m = compare(torch, out, ref, out)
    except (oom, MemoryError) as exc:
        report.add(name, "skip", f"does not fit: {type(exc).__name__}: {str(exc)[:200]} -- not checked", kind="gpu",
                   **shape)
        return
    finally:
        q = k = v = ref = k_arg = out = None  # noqa: F841 - release before the next row
        if device == "cuda":
            torch.cuda.empty_cache()
    m.update(shape)
    m["reference"] = "fp32 SDPA in query blocks"
    problems = []
    if not m["finite"]:
        problems.append(f"{m['nonfinite_fraction']:.1%} of output values are NaN/Inf")
    else:
        problems += disagreement(m, min_cos, max_rel_l1)
    if problems:
        report.add(name, "fail", f"{seq_len} tokens: " + "; ".join(problems), kind="gpu", **m)
    else:
        report.add(name, "pass", f"{seq_len} tokens: cosine {m['cosine']:.4f} >= {min_cos}, relative L1 "
                   f"{m['rel_l1']:.4f} <= {max_rel_l1}, all finite", kind="gpu", **m)


def disagreement(m: dict, min_cos: float, max_rel_l1: float) -> list[str]:
    """What a finite output's comparison with the reference falls short of (nothing: it agrees)."""
    problems = []
    if m["cosine"] < min_cos:
        problems.append(f"cosine {m['cosine']:.4f} < {min_cos}")
    if m["rel_l1"] > max_rel_l1:
        problems.append(f"relative L1 {m['rel_l1']:.4f} > {max_rel_l1}")
    return problems


def long_sequence_checks(report: Report, torch, fn, call, args, *, hint_for_exception) -> None:
    """``--long-seq-lens`` x ``--dtypes``: the lengths where short checks cannot see a kernel that
    turns to noise (reported upstream above about 160k tokens on sm120)."""
    seed = 100
    for seq_len in args.long_seq_lens:
        for dtype_name in args.dtypes:
            seed += 1
            free, _total = torch.cuda.mem_get_info()
            long_sequence_check(report, torch, fn, call, dtype_name=dtype_name, seq_len=seq_len,
                                heads=args.long_heads, head_dim=128, min_cos=args.min_cosine,
                                max_rel_l1=args.max_rel_l1, seed=seed, hint_for_exception=hint_for_exception,
                                free_bytes=free)
