"""Build the smoke's model in the container, from ComfyUI's own classes, with no download.

    python smoke_model.py --comfyui /app/ComfyUI --out DIR [--seed N] [--device cuda|cpu]

Writes DIR/unet/comfyimg-smoke-vega.safetensors (ComfyUI's ``UNetModel`` with the
Segmind-Vega config of comfy/model_detection.py: an SDXL-shaped UNet, 320 channels,
transformer depth [0,0,1,1,2,2], context 2048, head dim 64 everywhere; ~745 M parameters,
fp16) and DIR/vae/comfyimg-smoke-vae.safetensors (ComfyUI's ``AutoencoderKL`` with the
SD/SDXL VAE config of comfy/sd.py, fp16). Weights: seeded random, N(0, 1/fan_in) for
matrices and kernels, 1 for norm scales, 0 for biases, so that activations keep their scale.
Before it writes, it asks ComfyUI's own detector (``model_detection.model_config_from_unet``)
which model the UNet is; anything but Segmind_Vega fails. Prints one JSON line; exit 0 ok,
1 failed. Standalone: stdlib + torch + ComfyUI's modules.
"""

import argparse
import json
import math
import os
import sys
import time

UNET_FILE = "comfyimg-smoke-vega.safetensors"
VAE_FILE = "comfyimg-smoke-vae.safetensors"
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


def build(comfyui, out, seed, device):
    sys.path.insert(0, comfyui)
    import torch
    from safetensors.torch import save_file

    if device == "cpu":  # ComfyUI's model management asks CUDA at import unless told otherwise
        from comfy.cli_args import args
        args.cpu = True
    import comfy.model_detection
    import comfy.ops
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    started = time.monotonic()
    generator = torch.Generator(device=device).manual_seed(seed)
    unet = UNetModel(**VEGA, dtype=torch.float16, device=device, operations=comfy.ops.disable_weight_init)
    randomize(unet, generator)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in unet.state_dict().items()}
    params = sum(v.numel() for v in sd.values())
    config = comfy.model_detection.model_config_from_unet(sd, "")
    detected = type(config).__name__ if config is not None else None
    if detected != "Segmind_Vega":
        return {"status": "fail", "reason": f"ComfyUI detects the UNet as {detected}, not Segmind_Vega"}
    del unet
    vae = AutoencoderKL(ddconfig=VAE, embed_dim=4).to(device)
    randomize(vae, generator)
    vsd = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in vae.state_dict().items()}
    made = time.monotonic() - started
    paths = {}
    for sub, name, tensors in (("unet", UNET_FILE, sd), ("vae", VAE_FILE, vsd)):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        path = os.path.join(out, sub, name)
        save_file(tensors, path + ".part", metadata={"comfyimg": f"smoke model, seed {seed}, random weights"})
        os.replace(path + ".part", path)
        os.chmod(path, 0o644)
        paths[sub] = {"file": name, "bytes": os.path.getsize(path)}
    return {"status": "pass", "model": "Segmind_Vega-shaped SDXL UNet (ComfyUI UNetModel) + SD VAE (AutoencoderKL)",
            "detected_as": detected, "unet_parameters": params, "vae_parameters": sum(v.numel() for v in vsd.values()),
            "dtype": "float16", "seed": seed, "device": device, "files": paths,
            "head_dim": VEGA["num_head_channels"], "make_s": round(made, 2),
            "total_s": round(time.monotonic() - started, 2), "torch": torch.__version__, "gpu": _gpu(torch, device)}


def _gpu(torch, device):
    """The GPU the smoke ran on (name, smXY, CUDA of torch): the evidence says which arch it proves."""
    if device != "cuda" or not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return {"name": torch.cuda.get_device_name(), "sm": f"sm{major}{minor}", "cuda": torch.version.cuda}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", default="/app/ComfyUI")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--device", default="cuda")
    ns = parser.parse_args()
    try:
        result = build(ns.comfyui, ns.out, ns.seed, ns.device)
    except Exception as exc:  # noqa: BLE001 - one JSON line, never a traceback
        result = {"status": "fail", "reason": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    return 0 if result["status"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
