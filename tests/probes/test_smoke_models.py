"""The smoke's model shapes (probes/smoke_model.py) built from the REAL ComfyUI classes vendored in
tests/vendor/comfyui-a125cd84 (UNetModel, Flux, WanModel), on the CPU at a tiny size: one step each,
the builder's JSON fields, and the full-size shapes the smoke renders (the token counts the report
states). ComfyUI's detector and the renders themselves need the whole ComfyUI: the GPU run
(tests/gpu/fullpath_h200.sh) does them."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comfyimg.validate import smoke
from tests.lib import VENDOR
from tests.probes.runner import PROBES, probe_command

BUILDER = PROBES / "smoke_model.py"


def load_builder():
    spec = importlib.util.spec_from_file_location("smoke_model_under_test", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory) -> Path:
    """A copy of the vendored tree: importing it writes __pycache__, which must not land in the repo."""
    path = tmp_path_factory.mktemp("vendor") / "ComfyUI"
    shutil.copytree(VENDOR / "comfyui-a125cd84", path)
    return path


def build(comfyui: Path, tmp_path: Path, *args: str) -> tuple[int, dict]:
    argv, cwd = probe_command(BUILDER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([*argv, "--comfyui", str(comfyui), "--out", str(tmp_path), "--device", "cpu", *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, (proc.stdout, proc.stderr[-3000:])
    return proc.returncode, json.loads(lines[0])


@pytest.mark.parametrize(("model", "cls", "blocks", "tokens", "head_dim"), [
    ("sdxl", "openaimodel.UNetModel", {"transformer_depth": [0, 0, 1, 1, 2, 2]}, 8 * 8, 16),
    ("flux", "flux.model.Flux", {"depth": 1, "depth_single_blocks": 1}, 4 * 4 + 8, 32),
    ("wan", "wan.model.WanModel", {"num_layers": 2}, 3 * 4 * 4, 32),
])
def test_each_shape_is_built_from_comfyuis_class_and_steps_once_on_the_cpu(comfyui, tmp_path, model, cls, blocks,
                                                                           tokens, head_dim):
    code, out = build(comfyui, tmp_path, "--model", model, "--size", "tiny", "--check-only")
    assert code == 0 and out["status"] == "pass", out
    assert out["class"].endswith(cls) and out["model"] == model and out["size"] == "tiny"
    assert out["blocks"] == blocks and out["tokens"] == tokens and out["head_dim"] == head_dim
    assert out["parameters"] > 10_000 and out["dtype"] in ("float16", "bfloat16")
    step = out["step"]
    assert step["finite"] and step["same_shape"] and step["out_shape"] == out["latent"]
    assert list(tmp_path.iterdir()) == []  # --check-only writes nothing


@pytest.fixture
def comfy_in_process(comfyui, monkeypatch):
    """ComfyUI importable in this process for one test, and forgotten after it: a later test that
    imports ComfyUI's modules (or must not find them, tests/probes/test_smoke_node.py) sees none."""
    monkeypatch.syspath_prepend(str(comfyui))
    yield comfyui
    for name in [m for m in sys.modules if m == "comfy" or m.startswith("comfy.")]:
        del sys.modules[name]


def test_a_step_that_overflows_is_seen_as_not_finite(comfy_in_process, monkeypatch):
    """Weights scaled until fp16 overflows: the check the builder fails a model on (never handed to the smoke)."""
    import torch

    from comfy.cli_args import args

    monkeypatch.setattr(args, "cpu", True)
    builder = load_builder()
    spec = builder.spec("wan", "tiny")
    net = builder.make("wan", spec, "cpu", torch.float16, torch.Generator().manual_seed(1))
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(300.0)
    step = builder.one_step(net, builder.step_inputs("wan", spec, "cpu", torch.float16, torch.Generator()))
    assert step["finite"] is False


def test_the_full_sizes_are_the_ones_the_issue_names():
    builder = load_builder()
    shapes = {m: builder.attention_shape(m, builder.spec(m)) for m in builder.MODELS}
    assert shapes == {"sdxl": (4096, 10, 64), "flux": (4096 + 512, 24, 128), "wan": (21 * 30 * 52, 12, 128)}
    assert builder.spec("wan")["config"]["num_layers"] == 30 and builder.spec("wan")["config"]["dim"] == 1536
    flux = builder.spec("flux")["config"]
    assert (flux["hidden_size"], flux["depth"], flux["depth_single_blocks"]) == (3072, 2, 4)


@pytest.mark.parametrize("name", ["sdxl", "flux", "wan"])
def test_the_smokes_workflow_and_the_builder_agree_on_file_latent_and_conditioning(name):
    """One truth: the file the builder writes is the one the workflow loads, and the workflow's
    empty latent and conditioning are the shapes the builder stepped and timed."""
    builder = load_builder()
    shape, model = smoke.SHAPES[name], builder.MODELS[name]
    assert shape.unet == model["file"] and shape.vae == model["vae"]
    node, size = shape.latent
    w, h = size["width"] // 8, size["height"] // 8
    latent = {"EmptyLatentImage": [1, 4, h, w], "EmptySD3LatentImage": [1, 16, h, w],
              "EmptyHunyuanLatentVideo": [1, 16, (size.get("length", 1) - 1) // 4 + 1, h, w]}[node]
    assert latent == model["latent"]
    assert [shape.tokens, shape.context_dim] == model["context"] and shape.pooled_dim == (model["pooled"] or 0)
