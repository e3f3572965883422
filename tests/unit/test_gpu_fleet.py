"""tools/gpu_fleet.py: the validate-gpu matrix from `invoke audit --json` and the runner map, and
the summary where an arch without a runner says so."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.lib.project import REPO

FLEET = REPO / "tools" / "gpu_fleet.py"
AUDIT = {"pins": {"sageattention": {"serves": ["sm80", "sm86", "sm89", "sm90", "sm120"]},
                  "sageattn3": {"serves": ["sm120", "sm121"]}}}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(FLEET), *args], capture_output=True, text=True, timeout=60)


def _outputs(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_one_job_per_arch_with_a_runner_and_every_served_arch_planned(tmp_path):
    (tmp_path / "audit.json").write_text(json.dumps(AUDIT))
    (tmp_path / "runners.json").write_text(json.dumps({"//": "comment", "sm90": ["self-hosted", "gpu", "sm90"],
                                                       "sm120": ["self-hosted", "gpu", "sm120"]}))
    proc = _run("plan", str(tmp_path / "audit.json"), str(tmp_path / "runners.json"))
    assert proc.returncode == 0, proc.stderr
    outputs = _outputs(proc.stdout)
    matrix = json.loads(outputs["matrix"])["include"]
    assert [(m["arch"], m["sage2"], m["sage3"]) for m in matrix] == [("sm90", True, False), ("sm120", True, True)]
    assert matrix[0]["runner"] == ["self-hosted", "gpu", "sm90"]
    plan = json.loads(outputs["plan"])
    assert [(r["arch"], r["runner"] is not None) for r in plan["archs"]] == [
        ("sm80", False), ("sm86", False), ("sm89", False), ("sm90", True), ("sm120", True), ("sm121", False)]
    assert outputs["any"] == "true"


def test_the_summary_lists_an_arch_without_a_runner_as_no_runner(tmp_path):
    plan = {"archs": [{"arch": "sm86", "runner": None}, {"arch": "sm90", "runner": ["gpu", "sm90"]}]}
    verify = {"image": "r/x@sha256:1", "found_by": "tag schema", "packages": [
        {"name": "sageattention", "version": "2.2.0", "archs": [
            {"arch": "sm86", "gpus": ["A10"], "static": "runs k (sass)", "measured": "none", "answer": "static only"},
            {"arch": "sm90", "gpus": ["H100"], "static": "runs k (sass)", "measured": "validate_sage2 pass",
             "answer": "measured"}]}]}
    (tmp_path / "verify.json").write_text(json.dumps(verify))
    proc = _run("summary", json.dumps(plan), str(tmp_path / "verify.json"))
    assert proc.returncode == 0, proc.stderr
    assert "| sm86 | no runner | A10 | runs k (sass) | none | static only |" in proc.stdout
    assert "| sm90 | gpu, sm90 | H100 |" in proc.stdout
    assert "No runner for sm86" in proc.stdout
    empty = _run("summary", json.dumps(plan), str(tmp_path / "missing.json"))
    assert "`invoke verify` gave no answer" in empty.stdout and "No runner for sm86" in empty.stdout
