"""The smoke's custom node (probes/comfyimg_smoke) with real torch on the CPU: the counter sees
every call, checks the sampled ones against fp32 SDPA in both of ComfyUI's layouts, catches a
sageattn that returns q, and counts a call that raised. Without ComfyUI it installs nothing
and logs why (ComfyUI itself is only on the GPU machine: tests/gpu/fullpath_h200.sh)."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from tests.probes.runner import PROBES

import torch  # noqa: E402 - the test group installs the CPU torch


def load_node(caplog):
    spec = importlib.util.spec_from_file_location("comfyimg_smoke_node", PROBES / "comfyimg_smoke" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    with caplog.at_level(logging.INFO):
        spec.loader.exec_module(module)
    return module


def sdpa(q, k, v, tensor_layout="HND", **kwargs):
    if tensor_layout == "NHD":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=kwargs.get("sm_scale"))
    return out.transpose(1, 2) if tensor_layout == "NHD" else out


def qkv(layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 64, 4, 32) if layout == "NHD" else (2, 4, 64, 32)
    return [torch.randn(*shape, generator=g, dtype=torch.float16) for _ in range(3)]


def test_without_comfyui_it_installs_nothing_and_says_so(caplog):
    node = load_node(caplog)
    assert node.STATS["wrapped"] is False
    assert "cannot import ComfyUI's attention module" in caplog.text


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_a_correct_kernel_is_counted_and_agrees(caplog, layout):
    node = load_node(caplog)
    wrapped = node._wrap(sdpa)
    for seed in range(5):
        q, k, v = qkv(layout, seed)
        out = wrapped(q.float(), k.float(), v.float(), tensor_layout=layout, is_causal=False)
        assert torch.equal(out, sdpa(q.float(), k.float(), v.float(), tensor_layout=layout))
    assert node.STATS["calls"] == 5 and node.STATS["layouts"] == {layout: 5}
    assert node.STATS["checked"] == node.CHECK_FIRST and node.STATS["min_cosine"] > 0.9999


def test_a_kernel_that_returns_q_is_caught_by_the_check(caplog):
    node = load_node(caplog)
    wrapped = node._wrap(lambda q, k, v, **kw: q)
    q, k, v = qkv("NHD")
    wrapped(q.float(), k.float(), v.float(), tensor_layout="NHD")
    assert node.STATS["min_cosine"] < 0.5


def test_the_sm_scale_comfyui_passes_is_honoured(caplog):
    node = load_node(caplog)
    wrapped = node._wrap(sdpa)
    q, k, v = qkv("HND")
    wrapped(q.float(), k.float(), v.float(), tensor_layout="HND", sm_scale=0.05)
    assert node.STATS["min_cosine"] > 0.9999


def test_a_call_that_raises_is_counted_and_re_raised(caplog):
    node = load_node(caplog)

    def broken(q, k, v, **kw):
        raise AssertionError("SM90 kernel is not available")

    with pytest.raises(AssertionError):
        node._wrap(broken)(*qkv("HND"), tensor_layout="HND")
    assert node.STATS["errors"] == 1 and node.STATS["calls"] == 0


def test_the_conditioning_is_seeded_and_sdxl_shaped(caplog):
    node = load_node(caplog).ComfyimgSmokeConditioning()
    (a,), (b,) = node.make(1, 77, 2048, 1280), node.make(1, 77, 2048, 1280)
    assert a[0][0].shape == (1, 77, 2048) and a[0][1]["pooled_output"].shape == (1, 1280)
    assert torch.equal(a[0][0], b[0][0])


def test_a_new_shape_is_checked_and_no_call_is_checked_once_checks_are_off(caplog):
    node = load_node(caplog)
    wrapped = node._wrap(sdpa)
    for seed in range(node.CHECK_FIRST):
        wrapped(*(t.float() for t in qkv("HND", seed)), tensor_layout="HND")
    cross = [torch.randn(2, 4, 64, 32), torch.randn(2, 4, 8, 32), torch.randn(2, 4, 8, 32)]  # k, v: 8 text tokens
    wrapped(*cross, tensor_layout="HND")  # call 4, a shape not seen: checked although past CHECK_FIRST
    assert node.STATS["checked"] == node.CHECK_FIRST + 1 and len(node.STATS["shapes"]) == 2
    node.set_checking(False)
    for _ in range(node.CHECK_EVERY):  # reaches a CHECK_EVERY call, and a new shape, with checks off
        wrapped(*(t.float() for t in qkv("HND")), tensor_layout="HND")
    wrapped(torch.randn(1, 2, 16, 32), torch.randn(1, 2, 16, 32), torch.randn(1, 2, 16, 32), tensor_layout="HND")
    assert node.STATS["checked"] == node.CHECK_FIRST + 1 and node.STATS["calls"] == node.CHECK_FIRST + 2 + node.CHECK_EVERY


def test_the_conditioning_has_no_pooled_output_when_asked_for_none(caplog):
    node = load_node(caplog).ComfyimgSmokeConditioning()
    ((context, extra),) = node.make(1, 512, 4096, 0)[0]
    assert context.shape == (1, 512, 4096) and extra == {}


@pytest.mark.parametrize("layout", ["NHD", "HND"])
def test_the_reference_is_computed_in_blocks_of_queries_and_equals_sdpa(caplog, monkeypatch, layout):
    node = load_node(caplog)
    monkeypatch.setattr(node, "REFERENCE_BLOCK_BYTES", 2 * 4 * 64 * 4 * 5)  # 5 query rows a block: 13 blocks
    q, k, v = (t.float() for t in qkv(layout))
    ref = node._reference(q, k, v, layout, None, 0.1)
    assert torch.allclose(ref, sdpa(q, k, v, tensor_layout=layout, sm_scale=0.1), atol=1e-6)
