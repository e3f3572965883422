"""Malformed data is a verdict, not a crash (issue 12, class 6): a probe's JSON with
NaN/Infinity, checks that are strings, lone surrogates; a build record that is ``[]``,
``{"targets": []}`` or has a pin without a name. Each is a failure with a reason, and the
reports (JSON, JUnit, Markdown summary) are still written. The build-record cases run the
real CLI (they fail before any engine is asked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from comfyimg.validate.gpuaccess import GpuAccess
from comfyimg.validate.reports import Outcome, write_reports
from comfyimg.validate.verdict import judge, merge_comfyui, no_silent_skip, parse_result
from tests.lib.assertions import assert_failed_cleanly
from tests.lib.project import REPO

GOOD = {"schema": 1, "status": "pass", "reason": "ok", "gpu_checks": "skipped", "device": None,
        "checks": [{"name": "version", "kind": "install", "status": "pass", "detail": "2.2.0"}]}


def line(obj) -> str:
    return json.dumps(obj)


@pytest.mark.parametrize(("stdout", "problem"), [
    ('{"status": "pass", "checks": [], "elapsed_s": Infinity}', "non-finite number Infinity"),
    ('{"status": "pass", "checks": [{"name": "x", "status": "pass", "cosine": NaN}]}', "non-finite number NaN"),
    (line({**GOOD, "checks": "all good"}), "the probe's checks are a JSON str, not a list"),
    (line({**GOOD, "checks": ["version passed"]}), "checks[0] is a JSON str, not an object"),
    (line({**GOOD, "checks": [{"name": 3, "status": "pass"}]}), "checks[0] needs a string name"),
    (line({**GOOD, "checks": [{"name": "x", "status": "great"}]}), "checks[0] needs a string name"),
    (line([GOOD]), "the probe printed a JSON list, not an object"),
    (line({**GOOD, "status": "ok"}), "the probe's status is 'ok'"),
    (line({**GOOD, "schema": 2}), "the probe's schema is 2; this host reads schema 1"),
    (line({k: v for k, v in GOOD.items() if k != "schema"}), "the probe's schema is None"),
    ("", "the probe printed nothing on stdout"),
    (line(GOOD) + "\n" + line(GOOD), "the probe printed 2 lines on stdout"),
    ("{not json", "the probe's output is not JSON"),
])
def test_malformed_probe_output_is_a_failure_with_a_reason(tmp_path, monkeypatch, stdout, problem):
    result, why = parse_result(stdout)
    assert result is None and problem in why
    passed, verdict = judge(result, 0, False, why)
    assert passed is False and verdict["status"] == "fail" and problem in verdict["reason"]
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    paths = write_reports(tmp_path, Outcome("sage2", "img", verdict, 0, passed, 1.0, {"access": "none"}))
    report = json.loads(paths[0].read_text())
    assert report["passed"] is False and problem in report["result"]["reason"]
    suite = ET.parse(paths[1]).getroot()
    assert suite.get("failures") == "1"
    assert "❌ fail" in summary.read_text()


def test_lone_surrogates_are_kept_visible_and_every_report_is_written(tmp_path, monkeypatch):
    stdout = ('{"schema": 1, "status": "fail", "reason": "bad \\ud800 name", "checks": '
              '[{"name": "num\\udfff", "status": "fail", "detail": "x | y\\nz \\ud83d"}]}')
    result, why = parse_result(stdout)
    assert why is None and result["reason"] == "bad \\ud800 name"
    assert result["checks"][0]["name"] == "num\\udfff"
    passed, verdict = judge(result, 1, False)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    paths = write_reports(tmp_path, Outcome("sage2", "img", verdict, 1, passed, 1.0, {}))
    assert json.loads(paths[0].read_text())["result"]["checks"][0]["name"] == "num\\udfff"
    ET.parse(paths[1])  # well-formed XML
    md = summary.read_text(encoding="utf-8")
    assert "| num\\udfff | fail | x \\| y z \\ud83d |" in md


def test_a_gpu_host_with_a_blind_container_fails_only_when_the_container_saw_no_gpu():
    none = GpuAccess("auto", "none", "", "no nvidia runtime")
    passed, verdict = no_silent_skip(True, GOOD, "/dev/nvidia0 exists", none)
    assert passed is False and "the host has an NVIDIA GPU (/dev/nvidia0 exists)" in verdict["reason"]
    assert "nvidia-ctk" in verdict["reason"] and "no GPU flag (no nvidia runtime)" in verdict["reason"]
    seen = {**GOOD, "device": {"name": "NVIDIA H200", "sm": "sm90"}, "gpu_checks": "skipped"}  # sage3 on sm90
    assert no_silent_skip(True, seen, "/dev/nvidia0 exists", none) == (True, seen)
    assert no_silent_skip(True, GOOD, None, none) == (True, GOOD)
    asked = GpuAccess("none", "none", "", "--gpus none")  # not silent: asked for
    assert no_silent_skip(True, GOOD, "/dev/nvidia0 exists", asked) == (True, GOOD)


def test_a_failed_comfyui_probe_fails_the_session_in_its_own_rows():
    from comfyimg.validate.verdict import Run

    comfy = Run("c", {"status": "fail", "reason": "comfyui:numerics: fell back", "gpu_checks": "ran",
                      "checks": [{"name": "comfyui:attention_sage:fp16:HND:n77", "status": "fail",
                                  "detail": "ComfyUI fell back to PyTorch attention: Error running sage attention"}]},
                1, "")
    passed, verdict = merge_comfyui(True, GOOD, comfy, False)
    assert passed is False and verdict["reason"] == "comfyui: comfyui:numerics: fell back"
    assert [c["name"] for c in verdict["checks"]] == ["version", "comfyui:attention_sage:fp16:HND:n77"]
    crashed = Run("c", None, 139, "", "the probe printed nothing on stdout")
    passed, verdict = merge_comfyui(True, GOOD, crashed, False)
    assert passed is False and verdict["checks"][-1]["name"] == "comfyui"
    assert "killed by SIGSEGV" in verdict["checks"][-1]["detail"]


@pytest.mark.parametrize(("record", "field"), [
    ([], "the build record is a JSON list, not an object"),
    ({"targets": []}, "'targets' is a JSON list"),
    ({"targets": {"complete-cuda": "img"}}, "targets.complete-cuda is a JSON str"),
    ({"targets": {"complete-cuda": {"pins": {"name": "x"}}}}, "targets.complete-cuda.pins is not a list"),
    ({"targets": {"complete-cuda": {"image_id": "sha256:1", "pins": [{"version": "2.2.0"}]}}},
     "targets.complete-cuda.pins[0] has no 'name'"),
    ({"targets": {"complete-cuda": {"image_id": 7, "pins": [{"name": "sageattention", "version": "2.2.0"}]}}},
     "target complete-cuda has no image id or tag"),
])
def test_a_malformed_build_record_is_bad_input_and_still_writes_reports(tmp_path, record, field):
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "bake-record.json").write_text(json.dumps(record))
    env = {**os.environ, "CI": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "comfyimg", "validate", "sage2", "--root", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert_failed_cleanly(proc, 2)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "build/bake-record.json" in lines[0] and field in lines[0], proc.stderr
    report = json.loads((tmp_path / "reports" / "sage2.json").read_text())
    assert report["passed"] is False and field in report["result"]["reason"]
    assert ET.parse(tmp_path / "reports" / "sage2.junit.xml").getroot().get("failures") == "1"


def test_a_record_with_infinity_is_bad_input(tmp_path):
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "bake-record.json").write_text('{"targets": {}, "size": Infinity}')
    env = {**os.environ, "CI": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "comfyimg", "validate", "sage2", "--root", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "non-finite number Infinity" in proc.stderr, proc.stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e12", "soon"])
def test_a_nonsense_timeout_is_a_usage_error(tmp_path, value):
    env = {**os.environ, "CI": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-m", "comfyimg", "validate", "sage2", "--root", str(tmp_path),
                           "--timeout", value], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "--timeout" in proc.stderr, proc.stderr
