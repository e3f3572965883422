"""Smoke: the image boots ComfyUI as production starts it and renders a real workflow on the
GPU, with ``--use-sage-attention`` and without, and the two renders agree; per model shape, how
much faster SageAttention made each step, and the advice that follows.

    python -m comfyimg smoke --image IMAGE [--model sdxl|flux|wan|all] [--gpus auto|all|cdi|none]
                             [--timeout S] [--steps N]

Models (``SHAPES``, built by ``probes/smoke_model.py`` from ComfyUI's own classes): ``sdxl`` (an
SDXL-shaped UNet at 1024x1024: 4,096 tokens, head dim 64), ``flux`` (a Flux.1-dev-shaped DiT,
2 + 4 blocks, at 1024x1024: 4,096 + 512 tokens, head dim 128), ``wan`` (Wan 2.1 1.3B, its 30
blocks, at 832x480 and 81 frames: 32,760 tokens, head dim 128). ``all`` smokes the three in turn.
Per model, within its own ``--timeout``:

1. A builder container (``python -m probes.smoke_model``) makes the model from ComfyUI's own classes
   with seeded random weights into a fresh volume: no download. It also times ``sageattn`` against
   PyTorch SDPA at the model's self-attention shape (the kernel's own ratio).
2. Twice (sage, then pytorch): the image starts with its own entrypoint, PUID/PGID and the
   compose service's command (compose/complete-cuda.yml), ``--listen 127.0.0.1 --port P``
   on ``--network host``; the smoke's custom node (``probes/comfyimg_smoke``) and the model
   are mounted read-only. ``GET /system_stats`` until ready, a warm-up prompt (sampled sageattn
   calls checked against fp32 SDPA), the timed prompt (checks off; ``POST /prompt``, ``GET
   /history``), the outputs through ``GET /view``, the custom node's tally through ``GET
   /comfyimg_smoke/stats``.
3. The judge (:func:`judge`): booted, finished, no fallback line, sageattn ran and agreed with
   fp32 SDPA on the sampled calls, the two latents agree (cosine); the speed row (:func:`speed_row`)
   with the advice (:func:`advice`). Reports as validate_*.
Every container is removed on every path.

Over 500 lines for now: the three steps above share the deadline, the containers and the
judge's thresholds; the HTTP exchange with ComfyUI (step 2) is the part to move out first.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import struct
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from comfyimg.engine import containers as sandbox
from comfyimg.engine.docker import DockerException, DockerTimeout, error_line
from comfyimg.errors import FAILED, BadInput, WorkFailed
from comfyimg.untrusted import loads_json, one_line
from comfyimg.validate.containers import (
    PROBE_HOME,
    PROBE_MOUNT,
    PROBES_DIR,
    SCRATCH,
    image_user_and_gpu,
    probe_module,
    remove_container,
)
from comfyimg.validate.reports import clean
from comfyimg.validate.defaults import DEFAULT_CDI_KIND, SMOKE_MODELS, SMOKE_STEPS, SMOKE_TIMEOUT
from comfyimg.validate.gpuaccess import host_gpu
from comfyimg.validate.reports import Outcome, write_reports

COMFY_DIR = "/app/ComfyUI"
COMPOSE_FILE = "compose/complete-cuda.yml"
COMPOSE_SERVICE = "complete-cuda"
NODE_MOUNT = f"{COMFY_DIR}/custom_nodes/comfyimg_smoke"
VAE_FILE = "comfyimg-smoke-vae.safetensors"
FALLBACK = "Error running sage attention"
LATENT_MIN_COSINE = 0.99  # the two final latents (sage vs PyTorch attention), same seed and steps
CALL_MIN_COSINE = 0.99  # each sampled sageattn call against fp32 SDPA (measured 0.9992-0.9993 on H100/H200)
DEFAULT_TIMEOUT, DEFAULT_STEPS = SMOKE_TIMEOUT, SMOKE_STEPS  # the timeout: per model
USE_IT = 1.1  # the advice: "use it" from 1.1x faster per step, "slower" below 1/1.1, "no gain" between


@dataclass(frozen=True)
class Shape:
    """One smoke model: its file (probes/smoke_model.py MODELS), the latent node and size, the
    conditioning the smoke node makes (text tokens x width, pooled width; 0: none), the sampler."""

    name: str
    unet: str
    latent: tuple[str, dict[str, int]]
    tokens: int
    context_dim: int
    pooled_dim: int
    cfg: float
    scheduler: str
    vae: bool  # decoded to a PNG (sdxl); the DiT shapes compare latents only


SHAPES = {
    "sdxl": Shape("sdxl", "comfyimg-smoke-vega.safetensors",
                  ("EmptyLatentImage", {"width": 1024, "height": 1024, "batch_size": 1}), 77, 2048, 1280, 5.0,
                  "normal", True),
    "flux": Shape("flux", "comfyimg-smoke-flux.safetensors",
                  ("EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}), 512, 4096, 768, 1.0,
                  "simple", False),
    "wan": Shape("wan", "comfyimg-smoke-wan.safetensors",
                 ("EmptyHunyuanLatentVideo", {"width": 832, "height": 480, "length": 81, "batch_size": 1}), 512, 4096,
                 0, 1.0, "simple", False),
}
MODEL_CHOICES = (*SHAPES, "all")
assert MODEL_CHOICES == SMOKE_MODELS, "validate/defaults.py SMOKE_MODELS names the SHAPES"


def models_of(choice: str) -> list[str]:
    """``--model``: one shape or all of them, in order."""
    if choice == "all":
        return list(SHAPES)
    if choice not in SHAPES:
        raise BadInput(f"--model: expected one of {', '.join(MODEL_CHOICES)}, got {choice!r}")
    return [choice]


# --------------------------------------------------------------------------- the workflow


def workflow(seed: int, steps: int, prefix: str, shape: Shape = SHAPES["sdxl"]) -> dict[str, Any]:
    """API-format txt2img: UNETLoader + seeded conditioning (no text encoder) + KSampler, the
    latent saved (compared) and, for sdxl, decoded by the VAE into a PNG (fetched)."""
    def cond(seed: int) -> dict[str, Any]:
        return {"class_type": "ComfyimgSmokeConditioning",
                "inputs": {"seed": seed, "tokens": shape.tokens, "context_dim": shape.context_dim,
                           "pooled_dim": shape.pooled_dim}}

    graph: dict[str, Any] = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": shape.unet, "weight_dtype": "default"}},
        "2": cond(1),
        "3": cond(2),
        "4": {"class_type": shape.latent[0], "inputs": dict(shape.latent[1])},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": shape.cfg,
                                                   "sampler_name": "euler", "scheduler": shape.scheduler,
                                                   "positive": ["2", 0], "negative": ["3", 0],
                                                   "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": f"{prefix}/latent"}},
    }
    if shape.vae:
        graph.update({
            "7": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_FILE}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["7", 0]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": f"{prefix}/image"}},
        })
    return graph


def production_command(root: Path, port: int, sage: bool) -> list[str]:
    """The compose service's command, listening on 127.0.0.1:port, with or without
    --use-sage-attention."""
    path = root / COMPOSE_FILE
    try:
        command = yaml.safe_load(path.read_text(encoding="utf-8"))["services"][COMPOSE_SERVICE]["command"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: services.{COMPOSE_SERVICE}.command: cannot read it ({exc})") from None
    if not isinstance(command, list) or not all(isinstance(c, str) for c in command):
        raise BadInput(f"{path}: services.{COMPOSE_SERVICE}.command: expected a list of strings")
    words: list[str] = []
    skip = False
    for word in command:
        if skip:
            skip = False
            continue
        if word in ("--listen", "--port"):
            skip = True
            continue
        if word == "--use-sage-attention":
            continue
        words.append(word)
    return [*words, "--listen", "127.0.0.1", "--port", str(port), *(["--use-sage-attention"] if sage else [])]


# --------------------------------------------------------------------------- reading the outputs


def latent_values(data: bytes) -> list[float]:
    """The ``latent_tensor`` of a SaveLatent file (safetensors: u64 header length, JSON header,
    raw little-endian data) as floats; a truncated or malformed file is one ValueError."""
    if len(data) < 8:
        raise ValueError("latent file shorter than its header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8 or n > 10_000_000:
        raise ValueError("latent file header length out of range")
    header = loads_json(data[8:8 + n])
    entry = header.get("latent_tensor") if isinstance(header, dict) else None
    if not isinstance(entry, dict):
        raise ValueError("no latent_tensor in the latent file")
    offsets = entry.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= len(data) - 8 - n):
        raise ValueError("the latent file's data_offsets are not within the file (truncated?)")
    raw = data[8 + n + offsets[0]:8 + n + offsets[1]]
    dtype = entry.get("dtype")
    fmt = {"F32": ("f", 4), "F16": ("e", 2), "F64": ("d", 8), "BF16": ("H", 2)}.get(dtype) if isinstance(dtype, str) else None
    if fmt is None:
        raise ValueError(f"latent dtype {one_line(dtype)[:20]} not read here")
    if len(raw) % fmt[1]:
        raise ValueError(f"the latent data is {len(raw)} bytes, not a whole number of {dtype} values")
    values = struct.unpack(f"<{len(raw) // fmt[1]}{fmt[0]}", raw)
    if dtype == "BF16":
        return [struct.unpack("<f", struct.pack("<I", v << 16))[0] for v in values]
    return list(values)


def cosine(a: list[float], b: list[float]) -> float:
    if len(a) != len(b) or not a:
        return float("nan")
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else float("nan")


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


_TQDM = re.compile(r"(\d+)/(\d+) \[[^\]\r\n]*?([\d.]+)(it/s|s/it)\]", re.ASCII)


def seconds_per_step(log: str, steps: int) -> float | None:
    """From the last finished tqdm bar of ``steps`` steps in ComfyUI's log."""
    for done, total, rate, unit in reversed(_TQDM.findall(log)):
        if int(done) == int(total) == steps and float(rate) > 0:
            return round(float(rate) if unit == "s/it" else 1.0 / float(rate), 5)
    return None


# What fails a run in ComfyUI's log: the fallback line, and an exception while a prompt ran
# or in a thread. Start-up ERROR blocks (nodes that need kornia, the optional templates and
# docs packages) are not failures: a prompt that needs something missing fails in /history.
FATAL = (FALLBACK, "!!! Exception during processing", "Exception in thread")


def log_problems(log: str) -> tuple[list[str], list[str]]:
    """(failure lines, other ERROR lines noted in the report)."""
    bad: list[str] = []
    noted: list[str] = []
    for line in log.splitlines():
        if any(f in line for f in FATAL):
            bad.append(line.strip()[:300])
        elif "ERROR" in line or "IMPORT FAILED" in line:
            noted.append(line.strip()[:300])
    return bad, noted


# --------------------------------------------------------------------------- one ComfyUI run


@dataclass
class Render:
    """One container's run: with or without --use-sage-attention."""

    sage: bool
    booted_s: float | None = None
    warmup_s: float | None = None
    prompt_s: float | None = None
    s_per_step: float | None = None
    latent: list[float] | None = None
    image: tuple[int, int] | None = None
    stats: dict[str, Any] | None = None
    log: str = ""
    problem: str | None = None  # why the run could not finish: crash, hang, HTTP error
    exit_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Gone(Exception):
    """The container ended while the smoke waited on it."""


class NoAnswer(Exception):
    """ComfyUI's port did not answer (not listening yet, connection refused)."""


# The HTTP client run inside the smoke's container (``docker exec``): the container has no
# network but its own loopback, so no port is published and the host network is never given.
# stdlib only; its answer is the status line and the body on stdout (capped and checked here).
CLIENT = """\
import sys, urllib.error, urllib.request
method, url, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
data = sys.stdin.buffer.read() if method == "POST" else None
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
try:
    with opener.open(req, timeout=timeout) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except Exception as e:
    sys.stderr.write(type(e).__name__ + ": " + str(e)[:300])
    sys.exit(3)
sys.stdout.buffer.write(b"%d\\n" % code + body)
"""
ANSWER_CAP = 64 * 1024 * 1024  # bytes of one HTTP answer (a 1024x1024 PNG is a few MB)
READ_LIMIT = 30.0  # seconds one HTTP exchange may take, within the smoke's --timeout


@dataclass(frozen=True)
class Reply:
    status_code: int
    content: bytes
    what: str  # "GET /history/ID", for errors

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or ValueError naming the request and what came instead."""
        try:
            value = loads_json(self.content)
        except ValueError as exc:
            raise ValueError(f"{self.what} answered no JSON ({one_line(exc)[:200]})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{self.what} answered a JSON {type(value).__name__}, not an object")
        return value


class ExecHTTP:
    """HTTP to ComfyUI on the container's own 127.0.0.1:PORT, each exchange through ``docker exec``
    under the smoke's deadline (at most READ_LIMIT s each) with its answer capped at ANSWER_CAP."""

    def __init__(self, name: str, port: int, deadline: float, folder: Path) -> None:
        self.name, self.port, self.deadline, self.folder = name, port, deadline, folder
        self.count = 0

    def request(self, method: str, path: str, body: bytes | None = None) -> Reply:
        what = f"{method} {path.split('?')[0]}"
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what}: the smoke's deadline (--timeout) has passed")
        limit = min(READ_LIMIT, left)
        self.count += 1
        out = self.folder / f"{self.name}.http{self.count}"
        try:
            got = sandbox.exec_capture(self.name, ["python", "-c", CLIENT, method, f"http://127.0.0.1:{self.port}{path}",
                                                   f"{limit:.1f}"], out, timeout=limit + 5, cap=ANSWER_CAP,
                                       stdin=body if method == "POST" else None)
            if got.cut:
                raise ValueError(f"{what} answered more than {ANSWER_CAP // (1024 * 1024)} MiB")
            if got.code != 0:
                raise NoAnswer(f"{what}: {one_line(got.stderr.strip()[-300:]) or f'exit {got.code}'}")
            data, _ = sandbox.read_head(out, ANSWER_CAP)
        except DockerTimeout:
            raise TimeoutError(f"{what}: no answer within {limit:.0f} s (--timeout)") from None
        finally:
            out.unlink(missing_ok=True)
        head, _, content = data.partition(b"\n")
        if not head.isdigit() or len(head) > 3:
            raise ValueError(f"{what}: the in-container client printed no status line")
        return Reply(int(head), content, what)

    def get(self, path: str, params: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path + (f"?{urllib.parse.urlencode(params)}" if params else ""))

    def post(self, path: str, payload: object) -> Reply:
        return self.request("POST", path, json.dumps(payload).encode())


def container_alive(name: str) -> Callable[[], None]:
    def alive() -> None:
        running, code = sandbox.state(name)
        if not running:
            raise Gone(f"the container exited ({code}) before it answered")
    return alive


def wait_ready(http: ExecHTTP, alive: Callable[[], None], deadline: float) -> None:
    while True:
        try:
            if http.get("/system_stats").status_code == 200:
                return
        except NoAnswer:
            pass
        alive()
        if time.monotonic() > deadline:
            raise TimeoutError("ComfyUI did not answer GET /system_stats before the deadline")
        time.sleep(0.5)


def _history_entry(reply: Reply, prompt_id: str) -> dict | None:
    entry = reply.json_object().get(prompt_id)
    if entry is None:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("status", {}), dict):
        raise ValueError(f"{reply.what}: the history entry is not an object with a status object")
    return entry


def run_prompt(http: ExecHTTP, alive: Callable[[], None], graph: dict, deadline: float) -> dict:
    reply = http.post("/prompt", {"prompt": graph, "client_id": "comfyimg-smoke"})
    if reply.status_code != 200:
        raise RuntimeError(f"POST /prompt answered {reply.status_code}: {one_line(reply.text[:500])}")
    prompt_id = reply.json_object().get("prompt_id")
    if not isinstance(prompt_id, str) or not prompt_id.replace("-", "").isalnum() or len(prompt_id) > 100:
        raise ValueError(f"POST /prompt answered prompt_id {one_line(repr(prompt_id))[:100]}, not an id")
    while True:
        entry = _history_entry(http.get(f"/history/{prompt_id}"), prompt_id)
        status = (entry or {}).get("status", {})
        if entry and status.get("completed") is not None and (
                status.get("completed") or status.get("status_str") == "error"):
            if status.get("status_str") != "success":
                messages = status.get("messages")
                msgs = [m for m in (messages if isinstance(messages, list) else [])
                        if isinstance(m, list) and m and m[0] == "execution_error"]
                detail = msgs[-1][1] if msgs and len(msgs[-1]) > 1 else status
                raise RuntimeError(f"the prompt failed: {one_line(json.dumps(detail))[:800]}")
            return dict(entry)
        alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"prompt {prompt_id} did not finish before the deadline")
        time.sleep(0.25)


def outputs(http: ExecHTTP, entry: dict) -> tuple[list[float] | None, tuple[int, int] | None]:
    latent = image = None
    nodes = entry.get("outputs", {})
    for node in nodes.values() if isinstance(nodes, dict) else []:
        for kind, items in node.items() if isinstance(node, dict) else []:
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
                    continue
                params = {k: str(item.get(k, d)) for k, d in (("filename", ""), ("subfolder", ""), ("type", "output"))}
                data = http.get("/view", params).content
                if item["filename"].endswith(".latent"):
                    latent = latent_values(data)
                elif kind == "images":
                    image = png_size(data)
    return latent, image


def drive(result: Render, http: ExecHTTP, alive: Callable[[], None], steps: int, started: float,
          deadline: float, shape: Shape = SHAPES["sdxl"]) -> None:
    """The HTTP part of a run, against ComfyUI in the container (started at ``started``)."""
    wait_ready(http, alive, deadline)
    result.booted_s = round(time.monotonic() - started, 2)
    t = time.monotonic()
    run_prompt(http, alive, workflow(41, steps, "warmup", shape), deadline)  # loads the model, compiles
    result.warmup_s = round(time.monotonic() - t, 2)
    # the sampled fp32 checks ran in the warm-up; the timed prompt times the kernel alone
    off = http.post("/comfyimg_smoke/checks", {"on": False})
    if off.status_code != 200:
        raise RuntimeError(f"POST /comfyimg_smoke/checks answered {off.status_code}: {one_line(off.text[:200])}")
    t = time.monotonic()
    entry = run_prompt(http, alive, workflow(42, steps, "smoke", shape), deadline)
    result.prompt_s = round(time.monotonic() - t, 2)
    result.latent, result.image = outputs(http, entry)
    stats = http.get("/comfyimg_smoke/stats")
    result.stats = stats.json_object() if stats.status_code == 200 else None


LOG_TAIL = 1024 * 1024  # bytes of a ComfyUI log read back (judged, and its end reported)
PORT = 8188  # inside the container's own network namespace: nothing else listens there


def comfyui_sandbox(user: str, volume: str, gpu: tuple[str, ...]) -> sandbox.Sandbox:
    """The production start (the image's own entrypoint and the compose command), confined:
    as the image's non-root user (the entrypoint's ``--user`` path), read-only root, ComfyUI's
    data folders and HOME as the container's own tmpfs, the smoke node read-only, the model
    volume read-only."""
    return sandbox.Sandbox(
        user=user, allow_root=sandbox.is_root(user),
        envs={"HOME": SCRATCH, "TMPDIR": SCRATCH, "TRITON_CACHE_DIR": f"{SCRATCH}/triton",
              "XDG_CACHE_HOME": f"{SCRATCH}/cache"},
        tmpfs=(f"{SCRATCH}:exec,mode=1777", "/tmp:exec,mode=1777",
               *(f"{COMFY_DIR}/{d}" for d in ("output", "temp", "user", "input"))),
        read_only_binds=((str(PROBES_DIR / "comfyimg_smoke"), NODE_MOUNT),),
        volumes=((volume, MODELS_DIR, False),) if volume else (),
        gpu=gpu)


def render(image: str, root: Path, sage: bool, options: sandbox.Sandbox, steps: int, deadline: float,
           folder: Path, shape: Shape = SHAPES["sdxl"]) -> Render:
    result = Render(sage)
    name = f"comfyimg-smoke-{shape.name}-{'sage' if sage else 'pytorch'}-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        sandbox.start(image, production_command(root, PORT, sage), options, name)
        drive(result, ExecHTTP(name, PORT, deadline, folder), container_alive(name), steps, started, deadline,
              shape)
    except DockerException as exc:
        result.problem = f"docker: {one_line(error_line(exc))}"
    except (Gone, TimeoutError) as exc:
        result.problem = str(exc)
    except (NoAnswer, RuntimeError, ValueError, KeyError, TypeError, AttributeError, DockerTimeout) as exc:
        result.problem = f"{type(exc).__name__}: {one_line(str(exc))[:800]}"
    finally:
        try:
            if sandbox.exists(name):
                captured = sandbox.logs(name, folder, timeout=60, merged=True)
                result.log = sandbox.read_tail(captured.path, LOG_TAIL)
                if result.problem:
                    result.exit_code = sandbox.state(name)[1]
        except (DockerException, DockerTimeout, OSError):
            pass
        remove_container(name)
    result.s_per_step = seconds_per_step(result.log, steps)
    return result


# --------------------------------------------------------------------------- the judge


def _row(name: str, ok: bool | None, detail: str) -> dict[str, str]:
    return {"name": name, "status": "skip" if ok is None else ("pass" if ok else "fail"), "detail": detail}


def advice(ratio: float | None) -> str:
    """What the measured per-step ratio (PyTorch s/step / SageAttention s/step) tells a user:
    "use it" from USE_IT, "slower" below 1/USE_IT (the same margin the other way), else "no gain"."""
    if ratio is None or not math.isfinite(ratio):
        return "unmeasured"
    if ratio >= USE_IT:
        return "use it"
    return "no gain" if ratio >= 1 / USE_IT else "slower"


def _self_attention_calls(stats: dict, tokens: int | None) -> int:
    """Calls whose q and k both hold ``tokens`` tokens (either layout): the model's self-attention."""
    if not tokens:
        return 0
    total = 0
    for key, n in (stats.get("shapes") or {}).items():
        q, _, k = key.partition("/")
        if str(tokens) in q.split("x") and str(tokens) in k.split("x"):
            total += n
    return total


def speed_row(name: str, model: dict, sage: Render, plain: Render, steps: int, cos: float) -> dict[str, Any]:
    """The per-model figures users act on (the report's ``speed`` rows, the docs' table): boot,
    warm-up, s/step both ways, the ratio and advice, sageattn's calls and agreement, and where the
    time goes: the kernel's own ratio at the model's self-attention shape (the builder times it)
    and the share of a PyTorch step that self-attention takes by that timing."""
    st = sage.stats or {}
    ratio = round(plain.s_per_step / sage.s_per_step, 3) if sage.s_per_step and plain.s_per_step else None
    prompts = 2 * steps  # the warm-up and the timed prompt
    row: dict[str, Any] = {
        "model": name, "tokens": model.get("tokens"), "heads": model.get("heads"), "head_dim": model.get("head_dim"),
        "blocks": model.get("blocks"), "parameters": model.get("parameters"), "dtype": model.get("dtype"),
        "steps": steps, "boot_s": {"sage": sage.booted_s, "pytorch": plain.booted_s},
        "warmup_s": {"sage": sage.warmup_s, "pytorch": plain.warmup_s},
        "prompt_s": {"sage": sage.prompt_s, "pytorch": plain.prompt_s},
        "s_per_step": {"sage": sage.s_per_step, "pytorch": plain.s_per_step}, "ratio": ratio, "advice": advice(ratio),
        "sageattn_calls": st.get("calls", 0), "calls_per_step": round(st.get("calls", 0) / prompts, 2),
        "call_min_cosine": st.get("min_cosine"), "calls_checked": st.get("checked", 0),
        "latent_cosine": round(cos, 6) if math.isfinite(cos) else None, "kernel": model.get("kernel")}
    kernel = model.get("kernel") or {}
    self_calls = _self_attention_calls(st, model.get("tokens")) / prompts
    if kernel.get("status") == "pass" and plain.s_per_step and self_calls:
        share = min(1.0, self_calls * float(kernel["sdpa_ms"]) / 1000 / plain.s_per_step)
        row["self_attention_calls_per_step"] = round(self_calls, 2)
        row["attention_share"] = round(share, 3)  # of a PyTorch step, by the kernel timing
        # what the step would gain if only self-attention changed, at the kernel's own ratio
        row["expected_ratio"] = round(1 / ((1 - share) + share / float(kernel["ratio"])), 3)
    return row


def judge(model: dict, sage: Render, plain: Render, steps: int, latent_min: float = LATENT_MIN_COSINE,
          call_min: float = CALL_MIN_COSINE, shape: Shape = SHAPES["sdxl"]) -> tuple[bool, dict]:
    rows = [_row("model built", model.get("status") == "pass",
                 model.get("reason") or f"{model.get('detected_as')} {model.get('parameters')} params, blocks "
                                        f"{model.get('blocks')}, {model.get('tokens')} tokens at head dim "
                                        f"{model.get('head_dim')}, in {model.get('total_s')} s")]
    for r in (sage, plain):
        tag = "sage" if r.sage else "pytorch"
        rows.append(_row(f"{tag}: booted", r.booted_s is not None,
                         f"GET /system_stats in {r.booted_s} s" if r.booted_s is not None else (r.problem or "?")))
        made = r.prompt_s is not None and r.latent is not None and (r.image is not None or not shape.vae)
        rows.append(_row(f"{tag}: rendered", made,
                         f"{steps} steps in {r.prompt_s} s ({r.s_per_step} s/step)"
                         + (f", image {r.image}" if shape.vae else ", latent only")
                         if r.prompt_s is not None else (r.problem or "no prompt time")))
        bad, noted = log_problems(r.log)
        rows.append(_row(f"{tag}: no fallback or error in the log", not bad, "; ".join(bad)[:600] or
                         f"none ({len(noted)} start-up ERROR lines noted, not fatal)"))
    st = sage.stats or {}
    calls, checked, low = st.get("calls", 0), st.get("checked", 0), st.get("min_cosine")
    ran = bool(st.get("wrapped")) and calls >= steps and not st.get("errors")
    rows.append(_row("sage: sageattn ran", ran,
                     f"{calls} calls ({calls / (2 * steps) if steps else 0:.1f} per step over the warm-up and timed "
                     f"prompts), {st.get('errors', 0)} errors, target {st.get('target')}, "
                     f"sageattention {st.get('sageattention_version')}" if st else "no stats from the smoke node"))
    rows.append(_row("sage: sampled calls agree with fp32 SDPA",
                     checked > 0 and isinstance(low, (int, float)) and low >= call_min,
                     f"{checked} calls checked, min cosine {low} (>= {call_min}), max rel L1 {st.get('max_rel_l1')}"))
    pst = plain.stats or {}
    rows.append(_row("pytorch: sageattn not called", pst.get("calls", 0) == 0,
                     f"{pst.get('calls', 0)} calls without --use-sage-attention"))
    cos = cosine(sage.latent, plain.latent) if sage.latent and plain.latent else float("nan")
    rows.append(_row("outputs agree (latent cosine)", math.isfinite(cos) and cos >= latent_min,
                     f"cosine {cos:.6f} (>= {latent_min}) over {len(sage.latent or [])} values"))
    if model.get("status") != "pass":  # nothing after the model could run: one failure, not nine
        rows = [rows[0], *({**r, "status": "skip", "detail": "not run: the model was not built"} for r in rows[1:])]
    failed = [r for r in rows if r["status"] == "fail"]
    speed = speed_row(shape.name, model, sage, plain, steps, cos)
    verdict = {"status": "fail" if failed else "pass",
               "reason": "; ".join(f"{r['name']}: {r['detail']}" for r in failed)[:1500] if failed
               else f"booted and rendered both ways; {calls} sageattn calls; latent cosine {cos:.6f}; "
                    f"{speed['ratio']}x per step with SageAttention: {speed['advice']}",
               "checks": rows, "speed": [speed], "model": model, "latent_cosine": cos,
               "sage_stats": st, "steps": steps,
               "log_tail": {"sage": sage.log[-4000:], "pytorch": plain.log[-4000:]}}
    return not failed, verdict


def combine(verdicts: dict[str, dict]) -> tuple[bool, dict]:
    """One report for the models smoked: every check named after its model, one speed row each."""
    failed = [m for m, v in verdicts.items() if v["status"] != "pass"]
    speed = [row for v in verdicts.values() for row in v["speed"]]
    reason = ("; ".join(f"{m}: {verdicts[m]['reason']}" for m in failed)[:2000] if failed else
              "; ".join(f"{r['model']}: {r['ratio']}x per step ({r['advice']})" for r in speed)
              + " -- every model booted, rendered both ways and agreed")
    return not failed, {"status": "fail" if failed else "pass", "reason": reason,
                        "checks": [{**c, "name": f"{m}: {c['name']}"} for m, v in verdicts.items() for c in v["checks"]],
                        "speed": speed, "models": verdicts}


# --------------------------------------------------------------------------- the command


MODELS_DIR = f"{COMFY_DIR}/models"  # the fresh volume: the builder writes unet/ and vae/ (ComfyUI reads both)
BUILDER_TAIL = 64 * 1024


def build_model(image: str, user: str, gpu: tuple[str, ...], volume: str, deadline: float, folder: Path,
                model: str = "sdxl") -> dict:
    """The builder container writes the model into the fresh volume (never a host folder)."""
    name = f"comfyimg-smoke-model-{uuid.uuid4().hex[:8]}"
    options = sandbox.Sandbox(
        user=user, allow_root=sandbox.is_root(user), entrypoint="python", workdir=PROBE_HOME,
        envs={"HOME": SCRATCH, "TMPDIR": SCRATCH, "PYTHONDONTWRITEBYTECODE": "1"},
        tmpfs=(f"{SCRATCH}:exec,mode=1777", "/tmp:exec,mode=1777"),
        read_only_binds=((str(PROBES_DIR), PROBE_MOUNT),), volumes=((volume, MODELS_DIR, True),), gpu=gpu)
    try:
        sandbox.start(image, ["-m", probe_module("smoke_model.py"), "--comfyui", COMFY_DIR, "--out", MODELS_DIR,
                              "--model", model], options, name)
        try:
            sandbox.wait(name, deadline - time.monotonic())
        except DockerTimeout:
            raise TimeoutError("the model builder did not finish before the deadline (--timeout)") from None
        text = sandbox.read_tail(sandbox.logs(name, folder, timeout=60).path, BUILDER_TAIL)
        last = [ln for ln in text.splitlines() if ln.startswith("{")]
        if not last:
            return {"status": "fail", "reason": f"builder printed no JSON: {one_line(text[-800:])}"}
        built = loads_json(last[-1])
        if not isinstance(built, dict):
            return {"status": "fail", "reason": "the builder printed a JSON value that is not an object"}
        return clean(built)
    except (DockerException, DockerTimeout, TimeoutError, ValueError) as exc:
        return {"status": "fail", "reason": one_line(error_line(exc)) if isinstance(exc, DockerException)
                else one_line(str(exc))[:800]}
    finally:
        remove_container(name)


def smoke_model(image: str, root: Path, user: str, gpu_args: tuple[str, ...], shape: Shape, steps: int,
                deadline: float) -> tuple[bool, dict, list[Render]]:
    """One model: build it into a fresh volume, render it both ways, judge."""
    volume = f"comfyimg-smoke-models-{uuid.uuid4().hex[:10]}"
    folder = Path(tempfile.mkdtemp(prefix=f"comfyimg-smoke-{shape.name}-"))  # the host's own: capped logs, answers
    try:
        sandbox.volume_create(volume)
        model = build_model(image, user, gpu_args, volume, deadline, folder, shape.name)
        options = comfyui_sandbox(user, volume, gpu_args)
        runs = [render(image, root, sage, options, steps, deadline, folder, shape)
                if model.get("status") == "pass" else Render(sage, problem="no model")
                for sage in (True, False)]
    except DockerException as exc:
        raise WorkFailed(f"the Docker engine failed during the smoke: {one_line(error_line(exc))}") from None
    finally:
        sandbox.volume_remove(volume)
        shutil.rmtree(folder, ignore_errors=True)
    passed, verdict = judge(model, runs[0], runs[1], steps, shape=shape)
    return passed, verdict, runs


def smoke(root: Path, image: str, *, model: str = "sdxl", gpus: str = "auto", cdi_kind: str = DEFAULT_CDI_KIND,
          timeout: float = DEFAULT_TIMEOUT, steps: int = DEFAULT_STEPS) -> Outcome:
    """Smoke ``model`` (one of SHAPES, or "all": each in turn, each within its own ``timeout``)."""
    names = models_of(model)
    started = time.monotonic()
    user, access = image_user_and_gpu(image, None, gpus, cdi_kind)
    gpu = {"mode": gpus, "access": access.flag or "none", "why": access.why, "host_gpu": host_gpu()}
    verdicts: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    booted = False
    for name in names:
        t0 = time.monotonic()
        _, verdicts[name], runs = smoke_model(image, root, user, access.run_args(), SHAPES[name], steps, t0 + timeout)
        seconds[name] = round(time.monotonic() - t0, 2)
        verdicts[name]["speed"][0]["model_s"] = seconds[name]
        booted = booted or runs[0].booted_s is not None
    passed, verdict = combine(verdicts)
    gpu["container_gpu"] = "ran" if booted and access.chosen != "none" else None
    verdict["timing"] = {"whole_s": round(time.monotonic() - started, 2), "per_model_s": seconds}
    outcome = Outcome("smoke", image, verdict, 0 if passed else FAILED, passed, time.monotonic() - started, gpu)
    write_reports(root, outcome)  # cli prints its summary and the paths
    return outcome
