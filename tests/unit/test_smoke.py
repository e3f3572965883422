"""The smoke's judge, output readers and command line, on ComfyUI-shaped outputs.

The HTTP client against a real ComfyUI runs only on the GPU machine (ComfyUI cannot boot on the
build machine: no torchvision there): tests/gpu/fullpath_h200.sh.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
import struct
from pathlib import Path

import pytest
from rich.console import Console

from comfyimg import cli
from comfyimg.validate import smoke
from comfyimg.validate.reports import Outcome, write_reports

ROOT = Path(__file__).resolve().parents[2]
STEPS = 10
# What ComfyUI a125cd84 prints at start-up without kornia and without the templates/docs
# packages (the wording of its nodes.py and app/frontend_management.py), and the fallback line
# of comfy/ldm/modules/attention.py.
START_UP = """\
Total VRAM 143167 MB, total RAM 128000 MB
Using sage attention
Python version: 3.12.3
Cannot import /app/ComfyUI/comfy_extras/nodes_canny.py module for custom nodes: No module named 'kornia'
Traceback (most recent call last):
  File "/app/ComfyUI/nodes.py", line 2131, in load_custom_node
ModuleNotFoundError: No module named 'kornia'
WARNING: some comfy_extras/ nodes did not import correctly. This may be because they are missing some dependencies.
IMPORT FAILED: nodes_canny.py
IMPORT FAILED: nodes_morphology.py
ERROR:root:comfyui-workflow-templates is not installed.
Starting server
To see the GUI go to: http://127.0.0.1:8188
got prompt
100%|##########| 10/10 [00:00<00:00, 25.00it/s]
Prompt executed in 1.20 seconds
got prompt
100%|##########| 10/10 [00:00<00:00, 31.25it/s]
Prompt executed in 0.61 seconds
"""
FALLBACK_LINE = ("ERROR:root:Error running sage attention: SM90 kernel is not available, "
                 "using pytorch attention instead.")


def render(sage: bool, log: str = START_UP, latent=None, calls=300, min_cos=0.9993, **kw) -> smoke.Render:
    stats = {"wrapped": sage, "calls": calls if sage else 0, "errors": 0, "checked": 12 if sage else 0,
             "min_cosine": min_cos if sage else None, "max_rel_l1": 0.04, "target": "sageattention.core.sageattn",
             "sageattention_version": "2.2.0"}
    r = smoke.Render(sage, booted_s=14.2, warmup_s=4.1, prompt_s=0.9, latent=latent or [0.1, -0.5, 0.7, 1.2],
                     image=(1024, 1024), stats=stats, log=log, **kw)
    r.s_per_step = smoke.seconds_per_step(log, STEPS)
    return r


MODEL = {"status": "pass", "detected_as": "Segmind_Vega", "unet_parameters": 745_000_000, "total_s": 6.0}


def rows(verdict):
    return {r["name"]: r for r in verdict["checks"]}


def test_a_good_pair_passes_and_start_up_errors_are_not_failures():
    passed, verdict = smoke.judge(MODEL, render(True), render(False), STEPS)
    assert passed, verdict["reason"]
    assert rows(verdict)["sage: no fallback or error in the log"]["detail"].startswith("none (")
    assert verdict["bench"]["sage"]["s_per_step"] == 0.032
    assert "Prompt executed" in verdict["log_tail"]["sage"]


def test_the_fallback_line_fails_naming_it():
    passed, verdict = smoke.judge(MODEL, render(True, START_UP + FALLBACK_LINE + "\n"), render(False), STEPS)
    assert not passed
    assert "Error running sage attention" in verdict["reason"]


def test_no_sageattn_calls_is_a_failure_even_when_everything_else_passed():
    passed, verdict = smoke.judge(MODEL, render(True, calls=0), render(False), STEPS)
    assert not passed and rows(verdict)["sage: sageattn ran"]["status"] == "fail"


def test_a_kernel_that_disagrees_with_sdpa_fails():  # a sageattn that returns q
    passed, verdict = smoke.judge(MODEL, render(True, min_cos=0.12), render(False), STEPS)
    assert not passed and "sampled calls agree" in verdict["reason"]


def test_diverging_latents_fail_with_the_cosine():
    passed, verdict = smoke.judge(MODEL, render(True, latent=[1.0, 0.0, 0.0, 0.0]),
                                  render(False, latent=[0.0, 1.0, 0.0, 0.0]), STEPS)
    assert not passed and "cosine 0.000000" in verdict["reason"]


def test_a_crash_or_hang_fails_with_its_reason():
    hung = smoke.Render(True, problem="ComfyUI did not answer GET /system_stats before the deadline", log="boot…")
    passed, verdict = smoke.judge(MODEL, hung, render(False), STEPS)
    assert not passed and "before the deadline" in verdict["reason"]


def test_a_failed_model_build_fails():
    passed, verdict = smoke.judge({"status": "fail", "reason": "ComfyUI detects the UNet as None"},
                                  smoke.Render(True, problem="no model"), smoke.Render(False, problem="no model"),
                                  STEPS)
    assert not passed and verdict["reason"] == "model built: ComfyUI detects the UNet as None"
    assert {r["status"] for r in verdict["checks"][1:]} == {"skip"}


def _safetensors(values, dtype="F32"):
    code, size = {"F32": ("f", 4), "F16": ("e", 2)}[dtype]
    raw = struct.pack(f"<{len(values)}{code}", *values)
    header = json.dumps({"latent_tensor": {"dtype": dtype, "shape": [1, len(values)], "data_offsets": [0, len(raw)]},
                         "__metadata__": {"prompt": "{}"}}).encode()
    return struct.pack("<Q", len(header)) + header + raw


@pytest.mark.parametrize("dtype", ["F32", "F16"])
def test_latent_files_are_read_as_saved(dtype):
    assert smoke.latent_values(_safetensors([0.5, -2.0, 3.0], dtype)) == [0.5, -2.0, 3.0]


def test_a_truncated_latent_file_is_an_error_not_a_crash():
    with pytest.raises(ValueError):
        smoke.latent_values(_safetensors([1.0])[:6])
    with pytest.raises(ValueError):
        smoke.latent_values(struct.pack("<Q", 1 << 40) + b"{}")


def test_cosine_and_png_size():
    assert smoke.cosine([1.0, 2.0], [2.0, 4.0]) == pytest.approx(1.0)
    assert smoke.cosine([1.0], [1.0, 2.0]) != smoke.cosine([1.0], [1.0, 2.0])  # nan: lengths differ
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0d" + b"IHDR" + struct.pack(">II", 1024, 768)
    assert smoke.png_size(png) == (1024, 768) and smoke.png_size(b"GIF89a") is None


def test_seconds_per_step_reads_both_tqdm_units():
    assert smoke.seconds_per_step("10/10 [00:02<00:00,  4.00it/s]", 10) == 0.25
    assert smoke.seconds_per_step("10/10 [00:20<00:00,  2.00s/it]", 10) == 2.0
    assert smoke.seconds_per_step("5/10 [00:02<00:02,  2.00it/s]", 10) is None


def test_the_command_is_the_compose_services_own_on_loopback():
    sage = smoke.production_command(ROOT, 40000, True)
    plain = smoke.production_command(ROOT, 40000, False)
    assert sage[:2] == ["python", "main.py"] and "0.0.0.0" not in sage
    assert sage[-5:] == ["--listen", "127.0.0.1", "--port", "40000", "--use-sage-attention"]
    assert "--use-sage-attention" not in plain


def test_a_compose_file_without_the_service_is_bad_input(tmp_path):
    from comfyimg.errors import BadInput

    (tmp_path / "compose").mkdir()
    (tmp_path / smoke.COMPOSE_FILE).write_text("services: {}\n")
    with pytest.raises(BadInput, match="complete-cuda.yml: services.complete-cuda.command"):
        smoke.production_command(tmp_path, 1, True)


def test_the_workflow_links_only_nodes_it_has():
    graph = smoke.workflow(42, STEPS, "smoke")
    for node in graph.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in graph
    assert graph["5"]["inputs"]["steps"] == STEPS and graph["1"]["inputs"]["unet_name"] == smoke.UNET_FILE


def test_the_reports_carry_the_verdict_and_the_log_tail(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    passed, verdict = smoke.judge(MODEL, render(True, START_UP + FALLBACK_LINE), render(False), STEPS)
    paths = write_reports(tmp_path, Outcome("smoke", "img:tag", verdict, 1, passed, 40.0, {}))
    data = json.loads(paths[0].read_text())
    assert data["passed"] is False and "Error running sage attention" in data["result"]["log_tail"]["sage"]
    assert b"<failure" in paths[1].read_bytes()
    assert "validate_smoke: ❌ fail" in summary.read_text()


def test_bad_arguments_exit_2():
    assert cli.SMOKE.main(["--image", "x", "--steps", "0"]) == 2
    assert cli.SMOKE.main([]) == 2


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_smoke_and_validate_end_in_one_line_on_sigterm_and_sighup(signum, code, monkeypatch):
    """Both commands run their work through cli._stoppable: the signal unwinds the work (its
    ``finally`` removes the containers), then one line and 128 + the signal."""
    unwound = []

    def work():
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)
        finally:
            unwound.append(True)

    said = io.StringIO()
    monkeypatch.setattr(cli, "err", lambda: Console(file=said, markup=False, highlight=False, width=200))
    before = signal.getsignal(signum)
    assert cli._stoppable("smoke", "its containers were", work) == code
    assert unwound == [True] and signal.getsignal(signum) is before
    err = said.getvalue().strip().splitlines()
    assert err == [f"terminated: smoke stopped by {signal.Signals(signum).name}; its containers were removed"], err
