"""Build one of the smoke's models in the container, from ComfyUI's own classes, with no download.

    python -m probes.smoke_model --comfyui /app/ComfyUI --out DIR [--model sdxl|flux|wan]
                                 [--seed N] [--device cuda|cpu] [--size full|tiny] [--check-only]

Models (``MODELS``; the smoke states the blocks it rendered):

* ``sdxl``: ComfyUI's ``UNetModel`` with the Segmind-Vega config of comfy/model_detection.py (an
  SDXL-shaped UNet, 320 channels, transformer depth [0,0,1,1,2,2], context 2048, head dim 64;
  ~745 M parameters, fp16) and ComfyUI's ``AutoencoderKL`` with the SD/SDXL VAE config of
  comfy/sd.py (fp16). Largest attention: 4,096 tokens at 1024x1024.
* ``flux``: ComfyUI's ``Flux`` DiT with Flux.1-dev's widths (hidden 3072, 24 heads, head dim 128,
  context 4096, vec 768, guidance embedding), 2 double + 4 single blocks (Flux.1-dev has 19 + 38),
  bf16. Joint attention over 4,096 image + 512 text tokens at 1024x1024.
* ``wan``: ComfyUI's ``WanModel`` with Wan 2.1 1.3B's shape (dim 1536, 12 heads, head dim 128,
  ffn 8960, text 4096), all of its 30 blocks, fp16. Self-attention over 21x30x52 = 32,760 tokens
  at 832x480, 81 frames; cross-attention to 512 text tokens.

Weights: seeded random, N(0, 1/fan_in) for matrices and kernels, 1 for norm scales, 0 for biases,
so that activations keep their scale. Before it writes, it asks ComfyUI's own detector
(``model_detection.model_config_from_unet``) which model the file is; anything but the expected
config fails. Then one forward step at the render's size must be finite. On a GPU with
``sageattention`` importable it also times the model's self-attention shape, ``sageattn`` against
PyTorch SDPA (CUDA events): the kernel's own ratio at the render's token count, which the smoke
sets beside the render's.

``--size tiny --check-only`` (the CPU tests): the same classes at a tiny size, one step, nothing
written, no detector (ComfyUI's full tree is only in the image). Prints one JSON line; exit 0 ok,
1 failed. Standalone: stdlib + torch + ComfyUI's modules (+ safetensors, ComfyUI's own, to write).
"""

import argparse
import importlib
import json
import math
import os
import sys
import time

# comfy/model_detection.py, unet_config_from_diffusers_unet(): Segmind_Vega (SDXL-shaped).
VEGA = {"use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
        "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
        "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 1, 1, 2, 2],
        "transformer_depth_output": [0, 0, 0, 1, 1, 1, 2, 2, 2], "channel_mult": [1, 2, 4],
        "transformer_depth_middle": -1, "use_linear_in_transformer": True, "context_dim": 2048,
        "num_head_channels": 64, "use_temporal_attention": False, "use_temporal_resblock": False}
# comfy/sd.py, VAE(): the default SD1.x/SD2.x/SDXL VAE parameters.
VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
       "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
# Flux.1-dev's widths (what comfy/model_detection.py fixes for "flux"), fewer blocks.
FLUX = {"in_channels": 16, "out_channels": 16, "vec_in_dim": 768, "context_in_dim": 4096, "hidden_size": 3072,
        "mlp_ratio": 4.0, "num_heads": 24, "depth": 2, "depth_single_blocks": 4, "axes_dim": [16, 56, 56],
        "theta": 10000, "patch_size": 2, "qkv_bias": True, "guidance_embed": True}
# Wan 2.1 T2V 1.3B (comfy/model_detection.py reads dim, heads = dim // 128, ffn, layers from the keys).
WAN = {"model_type": "t2v", "patch_size": (1, 2, 2), "text_len": 512, "in_dim": 16, "dim": 1536, "ffn_dim": 8960,
       "freq_dim": 256, "text_dim": 4096, "out_dim": 16, "num_heads": 12, "num_layers": 30, "window_size": (-1, -1),
       "qk_norm": True, "cross_attn_norm": True, "eps": 1e-6}

# Per model: ComfyUI's class, its config, the config ComfyUI's detector must return, the file, the
# dtype ComfyUI runs it in on Hopper (its unet_dtype(): the first supported dtype the GPU runs),
# the render's latent (full) and the CPU tests' (tiny), the conditioning (text tokens x width,
# pooled width), and the blocks that hold attention. ``tiny`` overrides shrink the widths only.
MODELS = {
    "sdxl": {"cls": "comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel", "config": VEGA,
             "detected": "Segmind_Vega", "file": "comfyimg-smoke-vega.safetensors", "dtype": "float16",
             "latent": [1, 4, 128, 128], "tiny_latent": [1, 4, 16, 16], "context": [77, 2048], "pooled": 1280,
             "tiny": {"model_channels": 32, "context_dim": 64, "num_head_channels": 16, "adm_in_channels": 64},
             "tiny_context": [8, 64], "tiny_pooled": 64, "vae": True},
    "flux": {"cls": "comfy.ldm.flux.model.Flux", "config": FLUX, "detected": "Flux",
             "file": "comfyimg-smoke-flux.safetensors", "dtype": "bfloat16",
             "latent": [1, 16, 128, 128], "tiny_latent": [1, 16, 8, 8], "context": [512, 4096], "pooled": 768,
             "tiny": {"hidden_size": 64, "num_heads": 2, "axes_dim": [4, 14, 14], "context_in_dim": 32,
                      "vec_in_dim": 16, "depth": 1, "depth_single_blocks": 1},
             "tiny_context": [8, 32], "tiny_pooled": 16, "vae": False},
    "wan": {"cls": "comfy.ldm.wan.model.WanModel", "config": WAN, "detected": "WAN21_T2V",
            "file": "comfyimg-smoke-wan.safetensors", "dtype": "float16",
            "latent": [1, 16, 21, 60, 104], "tiny_latent": [1, 16, 3, 8, 8], "context": [512, 4096], "pooled": None,
            "tiny": {"dim": 64, "ffn_dim": 128, "num_heads": 2, "text_dim": 32, "freq_dim": 32, "num_layers": 2},
            "tiny_context": [8, 32], "tiny_pooled": None, "vae": False},
}
VAE_FILE = "comfyimg-smoke-vae.safetensors"


def spec(model, size="full"):
    """The model's config, latent and conditioning at ``size`` (full: the render; tiny: the CPU tests)."""
    m = MODELS[model]
    tiny = size == "tiny"
    config = {**m["config"], **(m["tiny"] if tiny else {})}
    return {"config": config, "latent": m["tiny_latent" if tiny else "latent"],
            "context": m["tiny_context" if tiny else "context"], "pooled": m["tiny_pooled" if tiny else "pooled"]}


def attention_shape(model, s):
    """(tokens, heads, head_dim) of the model's longest self-attention at this size."""
    c, lat = s["config"], s["latent"]
    if model == "sdxl":  # the first transformer level: latent / 2 (one downsample), heads = channels / 64
        ch = c["model_channels"] * c["channel_mult"][1]
        return (lat[2] // 2) * (lat[3] // 2), ch // c["num_head_channels"], c["num_head_channels"]
    if model == "flux":  # joint attention: image patches + text tokens
        return (lat[2] // 2) * (lat[3] // 2) + s["context"][0], c["num_heads"], c["hidden_size"] // c["num_heads"]
    return lat[2] * (lat[3] // 2) * (lat[4] // 2), c["num_heads"], c["dim"] // c["num_heads"]


def randomize(module, generator):
    import torch

    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = math.prod(p.shape[1:])
                p.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=generator)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


def make(model, s, device, dtype, generator):
    """ComfyUI's own class with ``s``'s config and seeded random weights."""
    import comfy.ops

    path, _, name = MODELS[model]["cls"].rpartition(".")
    cls = getattr(importlib.import_module(path), name)
    net = cls(**s["config"], dtype=dtype, device=device, operations=comfy.ops.disable_weight_init)
    randomize(net, generator)
    return net


def step_inputs(model, s, device, dtype, generator):
    """One denoising step's inputs as ComfyUI's model_base passes them (cfg 1: one batch)."""
    import torch

    def randn(*shape):
        return torch.randn(*shape, generator=generator, device=device).to(dtype)

    x = randn(*s["latent"])
    context = randn(1, *s["context"])
    if model == "sdxl":
        adm = s["config"]["adm_in_channels"]
        return {"x": x, "timesteps": torch.full((1,), 500.0, device=device), "context": context, "y": randn(1, adm)}
    if model == "flux":
        return {"x": x, "timestep": torch.full((1,), 0.5, device=device, dtype=dtype), "context": context,
                "y": randn(1, s["pooled"]), "guidance": torch.full((1,), 3.5, device=device, dtype=dtype)}
    return {"x": x, "timestep": torch.full((1,), 500.0, device=device, dtype=dtype), "context": context}


def one_step(net, inputs):
    """A forward pass: finite output of the latent's shape, and its seconds."""
    import torch

    started = time.monotonic()
    with torch.no_grad():
        out = net(**inputs)
    if out.is_cuda:
        torch.cuda.synchronize()
    return {"finite": bool(torch.isfinite(out.float()).all()), "out_shape": list(out.shape),
            "same_shape": list(out.shape) == list(inputs["x"].shape), "seconds": round(time.monotonic() - started, 3)}


def kernel_timing(shape, dtype, warmup=3, iters=10):
    """sageattn vs PyTorch SDPA at the model's self-attention shape (1 x heads x tokens x head dim,
    HND), CUDA events, medians: the kernel's own ratio at the render's token count."""
    import torch

    from .benchmark import time_cuda  # the probes' one CUDA-event timer (this runs as probes.smoke_model)

    tokens, heads, head_dim = shape
    try:
        sageattn = importlib.import_module("sageattention").sageattn
    except Exception as exc:  # noqa: BLE001 - reported: the smoke still renders without it
        return {"status": "skip", "reason": f"sageattention cannot be imported: {type(exc).__name__}: {exc}"}
    gen = torch.Generator(device="cuda").manual_seed(7)
    q, k, v = (torch.randn(1, heads, tokens, head_dim, generator=gen, device="cuda", dtype=dtype) for _ in range(3))

    def median_ms(fn):
        return time_cuda(torch, fn, warmup, iters)["median_ms"]

    kk = k.clone()  # some versions subtract k's mean in place
    try:
        sdpa_ms = median_ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
        sage_ms = median_ms(lambda: sageattn(q, kk, v, tensor_layout="HND", is_causal=False))
    except Exception as exc:  # noqa: BLE001
        return {"status": "fail", "reason": f"{type(exc).__name__}: {exc}"}
    return {"status": "pass", "tokens": tokens, "heads": heads, "head_dim": head_dim,
            "dtype": str(dtype).replace("torch.", ""), "layout": "HND", "sdpa_ms": sdpa_ms, "sageattn_ms": sage_ms,
            "ratio": round(sdpa_ms / sage_ms, 3), "timing": f"CUDA events, median of {iters} after {warmup}"}


def _gpu(torch, device):
    """The GPU the smoke ran on (name, smXY, CUDA of torch): the evidence says which arch it proves."""
    if device != "cuda" or not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return {"name": torch.cuda.get_device_name(), "sm": f"sm{major}{minor}", "cuda": torch.version.cuda}


def save(tensors, path, seed):
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(tensors, path + ".part", metadata={"comfyimg": f"smoke model, seed {seed}, random weights"})
    os.replace(path + ".part", path)
    os.chmod(path, 0o644)
    return {"file": os.path.basename(path), "bytes": os.path.getsize(path)}


def build(comfyui, out, model, seed, device, size="full", check_only=False):
    sys.path.insert(0, comfyui)
    import torch

    if device == "cpu":  # ComfyUI's model management asks CUDA at import unless told otherwise
        from comfy.cli_args import args
        args.cpu = True

    started = time.monotonic()
    m, s = MODELS[model], spec(model, size)
    dtype = getattr(torch, m["dtype"])
    generator = torch.Generator(device=device).manual_seed(seed)
    net = make(model, s, device, dtype, generator)
    params = sum(p.numel() for p in net.parameters())
    tokens, heads, head_dim = attention_shape(model, s)
    blocks = {k: s["config"][k] for k in ("depth", "depth_single_blocks", "num_layers", "transformer_depth")
              if k in s["config"]}
    result = {"status": "pass", "model": model, "class": m["cls"], "parameters": params, "dtype": m["dtype"],
              "seed": seed, "device": device, "size": size, "blocks": blocks, "latent": s["latent"],
              "context": s["context"], "pooled": s["pooled"], "tokens": tokens, "heads": heads, "head_dim": head_dim,
              "torch": torch.__version__, "gpu": _gpu(torch, device)}
    result["step"] = one_step(net, step_inputs(model, s, device, dtype, generator))
    if not (result["step"]["finite"] and result["step"]["same_shape"]):
        return {**result, "status": "fail", "reason": f"one step of the {model} model is not usable: {result['step']}"}
    if check_only:
        result["total_s"] = round(time.monotonic() - started, 2)
        return result
    sd = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    del net
    import comfy.model_detection

    config = comfy.model_detection.model_config_from_unet(sd, "")
    detected = type(config).__name__ if config is not None else None
    result["detected_as"] = detected
    if detected != m["detected"]:
        return {**result, "status": "fail", "reason": f"ComfyUI detects the {model} model as {detected}, "
                f"not {m['detected']}"}
    files = {"unet": save(sd, os.path.join(out, "unet", m["file"]), seed)}
    del sd
    if m["vae"]:
        from comfy.ldm.models.autoencoder import AutoencoderKL

        vae = AutoencoderKL(ddconfig=VAE, embed_dim=4).to(device)
        randomize(vae, generator)
        vsd = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in vae.state_dict().items()}
        result["vae_parameters"] = sum(v.numel() for v in vsd.values())
        files["vae"] = save(vsd, os.path.join(out, "vae", VAE_FILE), seed)
    result["files"] = files
    if device == "cuda":
        torch.cuda.empty_cache()
        result["kernel"] = kernel_timing((tokens, heads, head_dim), dtype)
    result["total_s"] = round(time.monotonic() - started, 2)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", default="/app/ComfyUI")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", choices=sorted(MODELS), default="sdxl")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--check-only", action="store_true", help="one step, nothing written, no detector")
    ns = parser.parse_args()
    try:
        result = build(ns.comfyui, ns.out, ns.model, ns.seed, ns.device, ns.size, ns.check_only)
    except Exception as exc:  # noqa: BLE001 - one JSON line, never a traceback
        result = {"status": "fail", "model": ns.model, "reason": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    return 0 if result["status"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
