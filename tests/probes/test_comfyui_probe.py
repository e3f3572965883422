"""The ComfyUI probe (src/comfyimg/validate/probes/comfyui.py) against the REAL ComfyUI at a125cd84,
vendored byte-identical in tests/vendor/comfyui-a125cd84 (only the files its attention module
imports; see tests/vendor/vendor.txt), on the host: the stand-in image has no ComfyUI,
and ComfyUI's attention module needs einops, psutil and Pillow (the test extra), not
torchvision. No GPU here: the import, the ``--use-sage-attention`` selection and the
"no GPU: skipped" row are real; the calls themselves are proven on the H200
(tests/gpu/docker_h200.sh).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.lib import VENDOR
from tests.probes.runner import PROBES, probe_command

PROBE = PROBES / "comfyui.py"
VENDORED = VENDOR / "comfyui-a125cd84"


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory) -> Path:
    """A copy of the vendored tree: importing it writes __pycache__, which must not land in the repo."""
    path = tmp_path_factory.mktemp("vendor") / "ComfyUI"
    shutil.copytree(VENDORED, path)
    return path


@pytest.fixture(scope="module")
def fakes(fake_root) -> Path:
    return fake_root


def run(*args: str, pythonpath: Path | None = None) -> tuple[int, dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONNOUSERSITE="1")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    argv, cwd = probe_command(PROBE)
    proc = subprocess.run([*argv, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=180)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, (proc.stdout, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.returncode, json.loads(lines[0]), proc.stderr


def rows(result: dict) -> dict[str, tuple[str, str]]:
    return {c["name"]: (c["status"], c["detail"]) for c in result["checks"]}


def test_imports_comfyui_with_use_sage_attention_and_skips_the_calls_without_a_gpu(comfyui, fakes):
    code, result, stderr = run("--comfyui", str(comfyui), pythonpath=fakes / "good")
    assert code == 0 and result["status"] == "pass", result
    got = rows(result)
    assert got["comfyui:import"][0] == "pass"
    assert "--use-sage-attention --cpu" in got["comfyui:import"][1]
    assert got["comfyui:optimized_attention"] == (
        "pass", "--use-sage-attention selects attention_sage as optimized_attention")
    assert got["comfyui:gpu"][0] == "skip" and got["comfyui:gpu"][1].startswith("no GPU: skipped")
    assert result["gpu_checks"] == "skipped"
    assert result["package"]["installed"] == "0.3.64"  # comfyui_version.py of a125cd84
    assert "Using sage attention" in stderr  # ComfyUI's own log line, on stderr, not in the JSON


def test_require_gpu_fails_without_one(comfyui, fakes):
    code, result, _ = run("--comfyui", str(comfyui), "--require-gpu", pythonpath=fakes / "good")
    assert code == 1 and rows(result)["comfyui:gpu"][0] == "fail"


def test_a_path_that_is_not_comfyui_is_a_clear_failure(tmp_path, fakes):
    (tmp_path / "main.py").write_text("print('not ComfyUI')\n")
    code, result, _ = run("--comfyui", str(tmp_path), pythonpath=fakes / "good")
    assert code == 1 and result["status"] == "fail"
    assert rows(result)["comfyui:import"] == (
        "fail", f"{tmp_path} is not a ComfyUI checkout: no comfy/options.py, comfy/cli_args.py, "
                "comfy/ldm/modules/attention.py")
    code, result, _ = run("--comfyui", str(tmp_path / "missing"), pythonpath=fakes / "good")
    assert code == 1 and "does not exist" in rows(result)["comfyui:import"][1]


def test_a_comfyui_without_args_parsing_is_a_clear_failure(comfyui, tmp_path, fakes):
    old = tmp_path / "OldComfyUI"
    shutil.copytree(comfyui, old)
    (old / "comfy" / "options.py").write_text("args_parsing = False\n")
    code, result, _ = run("--comfyui", str(old), pythonpath=fakes / "good")
    assert code == 1
    assert "has no comfy.options.enable_args_parsing()" in rows(result)["comfyui:import"][1]


def test_without_sageattention_comfyui_exits_and_that_is_the_failure(comfyui, fakes):
    """ComfyUI calls exit(-1) when --use-sage-attention has no package: a verdict, not an end."""
    code, result, _ = run("--comfyui", str(comfyui), pythonpath=fakes / "nothing")
    assert code == 1 and result["status"] == "fail"
    status, detail = rows(result)["comfyui:import"]
    assert status == "fail" and "exit(-1)" in detail and "sageattention" in detail, detail


def test_sage3_reports_that_this_comfyui_does_not_register_it(comfyui, fakes):
    code, result, _ = run("--comfyui", str(comfyui), "--attention", "sage3", pythonpath=fakes / "sage3_good")
    assert code == 3 and result["status"] == "skip"
    status, detail = rows(result)["comfyui:registered"]
    assert status == "skip" and "does not register SageAttention 3" in detail
    assert "REGISTERED_ATTENTION_FUNCTIONS: pytorch, split, sub_quad" in detail  # read from ComfyUI itself
