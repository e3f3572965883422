"""comfyimg smoke: a ComfyUI custom node package mounted read-only into the container by
``comfyimg.smoke`` (never part of an image). Standalone: stdlib + torch + ComfyUI's own modules.

It does two things:

* counts the calls that ComfyUI's ``attention_sage`` makes to ``sageattn`` (it wraps the
  name ``comfy.ldm.modules.attention.sageattn``, which ``attention_sage`` looks up at each
  call), and checks a sample of them against fp32 PyTorch SDPA on the same q/k/v: a kernel
  that ran and agrees is the positive sign, a count of 0 or a low cosine is a failure.
  The tally is served at ``GET /comfyimg_smoke/stats`` and logged. The first call of each new
  shape is checked too (a DiT's self- and cross-attention differ), and ``POST
  /comfyimg_smoke/checks`` with ``{"on": false}`` stops the checks (the fp32 reference of a
  32k-token call takes longer than the call) so that a timed prompt times the kernel alone.
* gives the workflow a conditioning with no text encoder (``ComfyimgSmokeConditioning``):
  seeded random SDXL-shaped context (77 x 2048) and pooled output (1280).

Why a custom node and not a sitecustomize: ComfyUI imports ``sageattn`` into its attention
module's globals before any custom node loads, and looks it up there at every call, so
wrapping that one global sees exactly the calls ComfyUI makes, through ComfyUI's own loader,
without touching Python's start-up or the image.
"""

import logging
import threading

import torch

CHECK_FIRST = 3  # the first calls are all checked, then one call in CHECK_EVERY, at most CHECK_MAX
CHECK_EVERY = 37
CHECK_MAX = 24

STATS: dict = {"wrapped": False, "target": None, "calls": 0, "errors": 0, "checked": 0, "min_cosine": None,
         "max_rel_l1": None, "shapes": {}, "layouts": {}, "dtypes": {}, "checking": True}
_LOCK = threading.Lock()


REFERENCE_BLOCK_BYTES = 512 * 2**20  # fp32 scores per block of queries, whatever SDPA backend runs


def _reference(q, k, v, layout, mask, scale):
    """fp32 SDPA on the same inputs, in the kernel's layout (current ComfyUI passes sm_scale),
    a block of queries at a time: a 32k-token call must not need a tokens x tokens matrix."""
    if layout == "NHD":
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if mask is not None:
        mask = mask.float() if mask.dtype != torch.bool else mask
    batch, heads, n, _ = q.shape
    rows = max(1, REFERENCE_BLOCK_BYTES // max(1, batch * heads * k.shape[2] * 4))
    kf, vf = k.float(), v.float()
    parts = []
    for start in range(0, n, rows):
        block_mask = mask
        if mask is not None and mask.ndim >= 2 and mask.shape[-2] == n:
            block_mask = mask[..., start:start + rows, :]
        parts.append(torch.nn.functional.scaled_dot_product_attention(
            q[:, :, start:start + rows].float(), kf, vf, attn_mask=block_mask, scale=scale))
    ref = torch.cat(parts, dim=2)
    return ref.transpose(1, 2) if layout == "NHD" else ref


def _check(out, q, k, v, layout, mask, scale):
    ref = _reference(q, k, v, layout, mask, scale).flatten().double()
    got = out.float().flatten().double()
    cos = float(torch.nn.functional.cosine_similarity(got, ref, dim=0))
    rel = float((got - ref).abs().sum() / ref.abs().sum().clamp_min(1e-30))
    return cos, rel


def _wrap(original):
    def counted_sageattn(q, k, v, *args, **kwargs):
        layout = kwargs.get("tensor_layout", "HND")
        try:
            out = original(q, k, v, *args, **kwargs)
        except Exception:
            with _LOCK:
                STATS["errors"] += 1
            raise  # ComfyUI's attention_sage logs it and falls back: the judge sees both
        with _LOCK:
            STATS["calls"] += 1
            n = STATS["calls"]
            key = "x".join(str(s) for s in q.shape) + "/" + "x".join(str(s) for s in k.shape)
            new = key not in STATS["shapes"]
            STATS["shapes"][key] = STATS["shapes"].get(key, 0) + 1
            STATS["layouts"][layout] = STATS["layouts"].get(layout, 0) + 1
            STATS["dtypes"][str(q.dtype)] = STATS["dtypes"].get(str(q.dtype), 0) + 1
            due = STATS["checking"] and STATS["checked"] < CHECK_MAX and (
                new or n <= CHECK_FIRST or n % CHECK_EVERY == 0)
        if due:
            cos, rel = _check(out, q, k, v, layout, kwargs.get("attn_mask"), kwargs.get("sm_scale"))
            with _LOCK:
                STATS["checked"] += 1
                STATS["min_cosine"] = cos if STATS["min_cosine"] is None else min(STATS["min_cosine"], cos)
                STATS["max_rel_l1"] = rel if STATS["max_rel_l1"] is None else max(STATS["max_rel_l1"], rel)
            logging.info("comfyimg-smoke: sageattn call %d (%s %s %s): cosine %.6f, rel L1 %.4f against fp32 SDPA",
                         n, key, layout, q.dtype, cos, rel)
        return out

    counted_sageattn.comfyimg_smoke = True
    return counted_sageattn


def set_checking(on: bool) -> None:
    with _LOCK:
        STATS["checking"] = on
    logging.info("comfyimg-smoke: sampled checks %s", "on" if on else "off")


def _install():
    try:
        import comfy.ldm.modules.attention as attention
    except Exception as exc:  # noqa: BLE001 - reported, never fatal to ComfyUI
        logging.error("comfyimg-smoke: cannot import ComfyUI's attention module: %s", exc)
        return
    original = getattr(attention, "sageattn", None)
    if original is None:
        logging.info("comfyimg-smoke: ComfyUI has no sageattn (SageAttention not importable): nothing to count")
        return
    if not getattr(original, "comfyimg_smoke", False):
        attention.sageattn = _wrap(original)
    STATS["wrapped"] = True
    STATS["target"] = f"{getattr(original, '__module__', '?')}.{getattr(original, '__name__', '?')}"
    logging.info("comfyimg-smoke: counting calls of %s made by comfy.ldm.modules.attention", STATS["target"])


def _routes():
    try:
        from aiohttp import web
        from server import PromptServer
    except Exception as exc:  # noqa: BLE001
        logging.error("comfyimg-smoke: no PromptServer to serve the stats: %s", exc)
        return

    @PromptServer.instance.routes.get("/comfyimg_smoke/stats")
    async def stats(request):  # noqa: ARG001
        import comfy.model_management as mm
        with _LOCK:
            body = dict(STATS, shapes=dict(STATS["shapes"]), layouts=dict(STATS["layouts"]),
                        dtypes=dict(STATS["dtypes"]))
        body["sage_attention_enabled"] = bool(mm.sage_attention_enabled())
        try:
            from importlib.metadata import version
            body["sageattention_version"] = version("sageattention")
        except Exception:  # noqa: BLE001
            body["sageattention_version"] = None
        logging.info("comfyimg-smoke: sageattn calls %d, errors %d, checked %d, min cosine %s",
                     body["calls"], body["errors"], body["checked"], body["min_cosine"])
        return web.json_response(body)

    @PromptServer.instance.routes.post("/comfyimg_smoke/checks")
    async def checks(request):
        try:
            on = (await request.json())["on"]
        except Exception:  # noqa: BLE001 - a bad body is the client's error
            return web.json_response({"error": 'expected {"on": true|false}'}, status=400)
        if not isinstance(on, bool):
            return web.json_response({"error": 'expected {"on": true|false}'}, status=400)
        set_checking(on)
        return web.json_response({"checking": on})


class ComfyimgSmokeConditioning:
    """Seeded random conditioning (no text encoder, no download): context tokens x width and, when
    pooled_dim > 0, a pooled output (SDXL 77 x 2048 + 1280; Flux 512 x 4096 + 768; Wan 512 x 4096)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 1, "min": 0, "max": 2**31 - 1}),
                             "tokens": ("INT", {"default": 77, "min": 1, "max": 1024}),
                             "context_dim": ("INT", {"default": 2048, "min": 1, "max": 8192}),
                             "pooled_dim": ("INT", {"default": 1280, "min": 0, "max": 8192})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"
    CATEGORY = "comfyimg"

    def make(self, seed, tokens, context_dim, pooled_dim):
        generator = torch.Generator().manual_seed(seed)
        context = torch.randn(1, tokens, context_dim, generator=generator)
        extra = {"pooled_output": torch.randn(1, pooled_dim, generator=generator)} if pooled_dim else {}
        return ([[context, extra]],)


_install()
_routes()
NODE_CLASS_MAPPINGS = {"ComfyimgSmokeConditioning": ComfyimgSmokeConditioning}
NODE_DISPLAY_NAME_MAPPINGS = {"ComfyimgSmokeConditioning": "comfyimg smoke conditioning (random, seeded)"}
