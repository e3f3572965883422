"""The sage2 probe's long-sequence rows (probes/numerics.py) with real torch on the CPU, at a small
size: the reference computed in query blocks is fp32 SDPA, a kernel that agrees passes, a kernel
that turns to noise past some length fails at that length only, and a row that does not fit is
``skip`` with its reason, never a pass. The 64k-256k rows themselves run on the GPU
(tests/gpu/fullpath_h200.sh)."""

from __future__ import annotations

import argparse

import pytest
import torch

from comfyimg.validate.probes import numerics, sage2
from comfyimg.validate.probes.report import Report

HEADS, DIM = 2, 128


def qkv(n, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, HEADS, n, DIM, generator=g).to(dtype) for _ in range(3)]


def sdpa_kernel(q, k, v, tensor_layout="HND", **kw):
    """A correct kernel: fp32 attention, returned in the input dtype."""
    return torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)


def noisy_past(limit):
    """A kernel that is right up to ``limit`` tokens and returns noise beyond (the upstream report:
    the FP8 PV path above about 160k tokens on sm120)."""
    def kernel(q, k, v, tensor_layout="HND", **kw):
        if q.shape[2] <= limit:
            return sdpa_kernel(q, k, v)
        return torch.randn(q.shape, generator=torch.Generator().manual_seed(3)).to(q.dtype)
    return kernel


def call(fn, q, k, v, layout):
    return fn(q, k, v, tensor_layout=layout)


def row(kernel, n, dtype="fp16", **kw) -> dict:
    report = Report("sage2", "sageattention", None)
    numerics.long_sequence_check(report, torch, kernel, call, dtype_name=dtype, seq_len=n, heads=HEADS, head_dim=DIM,
                                 min_cos=sage2.DEFAULT_MIN_COSINE, max_rel_l1=sage2.DEFAULT_MAX_REL_L1, seed=1,
                                 hint_for_exception=sage2.sage2_exception_hint, device="cpu", **kw)
    (check,) = report.checks
    return check


def test_the_blocked_reference_is_fp32_sdpa():
    q, k, v = qkv(1000)
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    # 64 KiB of scores per block: 1000 queries in blocks of 8 rows (the last one short)
    blocked = numerics.chunked_reference(torch, q, k, v, chunk_bytes=64 * 1024)
    assert torch.allclose(blocked, full, atol=1e-5) and blocked.dtype == torch.float32


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_a_kernel_that_agrees_passes_with_the_short_rows_thresholds(dtype):
    check = row(sdpa_kernel, 2048, dtype, chunk_bytes=1 << 20)
    assert check["status"] == "pass", check
    assert check["name"] == f"numerics-long:{dtype}:n2048" and check["seq_len"] == 2048 and check["batch"] == 1
    assert check["cosine"] > 0.999 and check["reference"] == "fp32 SDPA in query blocks"


def test_a_kernel_that_turns_to_noise_past_a_length_fails_there_only():
    kernel = noisy_past(1024)
    assert row(kernel, 1024)["status"] == "pass"
    check = row(kernel, 4096)
    assert check["status"] == "fail" and "4096 tokens: cosine" in check["detail"], check


def test_a_row_that_does_not_fit_is_skip_with_the_reason():
    check = row(sdpa_kernel, 65536, free_bytes=1 << 28)  # 2 heads x 64k x 128: ~0.8 GiB at the peak
    assert check["status"] == "skip" and check["detail"].startswith("does not fit: needs about 0.8 GiB, 0.2 GiB free")


def test_an_out_of_memory_error_is_skip_never_pass():
    def oom(q, k, v, **kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    check = row(oom, 512)
    assert check["status"] == "skip" and "OutOfMemoryError" in check["detail"]


def test_a_kernel_that_raises_otherwise_fails_with_the_hint():
    def missing(q, k, v, **kw):
        raise AssertionError("SM90 kernel is not available")

    check = row(missing, 512)
    assert check["status"] == "fail" and "built without the sm90 extension" in check["detail"]


def test_the_probe_asks_for_64k_128k_and_256k_by_default_and_none_on_request():
    parser = sage2.build_parser()
    ns = parser.parse_args([])
    assert ns.long_seq_lens == [65536, 131072, 262144] and ns.long_heads == 4 and ns.dtypes == ["fp16", "bf16"]
    assert parser.parse_args(["--long-seq-lens", ""]).long_seq_lens == []
    with pytest.raises(SystemExit):
        parser.parse_args(["--long-seq-lens", "64k"])


def test_every_length_and_dtype_is_one_row(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (1 << 22, 1 << 40))  # 4 MiB free: every row skips
    report = Report("sage2", "sageattention", None)
    args = argparse.Namespace(long_seq_lens=[65536, 131072], dtypes=["fp16", "bf16"], long_heads=4, min_cosine=0.99,
                              max_rel_l1=0.1)
    numerics.long_sequence_checks(report, torch, sdpa_kernel, call, args,
                                  hint_for_exception=sage2.sage2_exception_hint)
    assert [(c["name"], c["status"]) for c in report.checks] == [
        ("numerics-long:fp16:n65536", "skip"), ("numerics-long:bf16:n65536", "skip"),
        ("numerics-long:fp16:n131072", "skip"), ("numerics-long:bf16:n131072", "skip")]
