"""The reports of a validation: JSON, JUnit XML, the GitHub step summary (Markdown) and the
table for the terminal (which ``cli`` prints). Untrusted text (probe output, names) goes through
:mod:`untrusted`."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from comfyimg.fsutil import atomic_write
from comfyimg.output import SafeTable as Table
from comfyimg.untrusted import for_markdown_cell, for_xml, one_line


@dataclass
class Outcome:
    probe: str
    image: str
    result: dict[str, Any]
    exit_code: int
    passed: bool
    seconds: float
    gpu: dict[str, Any] = field(default_factory=dict)  # access chosen, host GPU, container GPU
    reports: list[Path] = field(default_factory=list)  # the files write_reports wrote
    warnings: list[str] = field(default_factory=list)  # what did not stop it (an unwritable summary)


def clean(value: Any) -> Any:
    """Strings made encodable (a lone surrogate becomes its escape); containers recursed."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, dict):
        return {clean(str(k)): clean(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _xml_text(value: object, limit: int | None = None) -> str:
    """Text XML 1.0 can hold: terminal escapes and other control characters dropped."""
    text = for_xml(value if value is not None else "")
    return text[:limit] if limit else text


def _gpu_line(outcome: Outcome) -> str:
    g = outcome.gpu or {}
    if not g:
        return ""
    seen = g.get("container_gpu") or "none"
    line = f"GPU: {g.get('access', '?')} · host GPU: {g.get('host_gpu') or 'none'} · container saw: {seen}"
    if not g.get("container_gpu"):
        line += " · GPU checks NOT run"
    return line


def _junit(outcome: Outcome) -> bytes:
    checks = outcome.result.get("checks") or []
    suite = ET.Element("testsuite", name=f"validate_{outcome.probe}", time=f"{outcome.seconds:.3f}")

    def case(name: object, kind: str | None = None, message: object = None) -> None:
        element = ET.SubElement(suite, "testcase", classname=outcome.probe, name=_xml_text(name) or "?")
        if kind:
            ET.SubElement(element, kind, message=_xml_text(message, 500))

    if outcome.result.get("crash") or not checks:
        case("probe", None if outcome.passed else "failure", outcome.result.get("reason"))
    for check in checks:
        status = check.get("status")
        case(check.get("name"), {"fail": "failure", "skip": "skipped"}.get(status), check.get("detail"))
    failures = len(suite.findall("testcase/failure"))
    if not outcome.passed and not failures:  # e.g. --require-gpu on a skip, a GPU not given
        case("verdict", "failure", outcome.result.get("reason"))
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(len(suite.findall("testcase/failure"))))
    suite.set("skipped", str(len(suite.findall("testcase/skipped"))))
    props = ET.Element("properties")
    suite.insert(0, props)  # JUnit's schema puts properties before the testcases
    for key, value in (outcome.gpu or {}).items():
        ET.SubElement(props, "property", name=f"gpu.{key}", value=_xml_text(value))
    ET.SubElement(suite, "system-out").text = _xml_text(json.dumps(outcome.result, indent=2))
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


SPEED_COLUMNS = ("model", "tokens", "boot s (sage/pytorch)", "s/step PyTorch", "s/step SageAttention", "ratio",
                 "advice", "sageattn calls", "call cosine", "latent cosine", "kernel ratio", "attention share")


def speed_cells(row: dict[str, Any]) -> list[str]:
    """One smoke speed row (smoke.speed_row) as the table's cells: the terminal and the summary."""
    def val(v: object) -> str:
        return "—" if v is None else str(v)

    kernel = row.get("kernel") or {}
    return [val(row.get("model")), f"{val(row.get('tokens'))} (d{val(row.get('head_dim'))})",
            f"{val(row.get('boot_s', {}).get('sage'))} / {val(row.get('boot_s', {}).get('pytorch'))}",
            val(row.get("s_per_step", {}).get("pytorch")), val(row.get("s_per_step", {}).get("sage")),
            f"{val(row.get('ratio'))}x", val(row.get("advice")), val(row.get("sageattn_calls")),
            val(row.get("call_min_cosine")), val(row.get("latent_cosine")),
            f"{kernel['ratio']}x" if kernel.get("status") == "pass" else val(kernel.get("reason")),
            val(row.get("attention_share"))]


def _md(value: object) -> str:
    return for_markdown_cell(value)


def _markdown(outcome: Outcome) -> str:
    verdict = "✅ pass" if outcome.passed else "❌ fail"
    lines = [f"### validate_{outcome.probe}: {verdict}", "",
             f"Image `{_md(outcome.image)}`: {_md(outcome.result.get('reason', ''))}", ""]
    if outcome.gpu:
        lines += [_md(_gpu_line(outcome)), ""]
    lines += ["| check | status | detail |", "|---|---|---|"]
    for check in outcome.result.get("checks") or []:
        lines.append(f"| {_md(check.get('name'))} | {_md(check.get('status'))} | {_md(check.get('detail', ''))} |")
    bench = outcome.result.get("bench")
    if bench:
        lines += ["", f"Timing: `{_md(json.dumps(bench))}`"]
    speed = outcome.result.get("speed")
    if speed:
        lines += ["", "| " + " | ".join(SPEED_COLUMNS) + " |", "|" + "---|" * len(SPEED_COLUMNS)]
        lines += ["| " + " | ".join(_md(c) for c in speed_cells(row)) + " |" for row in speed]
    return "\n".join(lines) + "\n\n"


def write_reports(root: Path, outcome: Outcome) -> list[Path]:
    reports = root / "reports"
    payload = {"probe": outcome.probe, "image": outcome.image, "passed": outcome.passed,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "exit_code": outcome.exit_code, "seconds": round(outcome.seconds, 2), "gpu": outcome.gpu,
               "result": outcome.result}
    paths = [reports / f"{outcome.probe}.json", reports / f"{outcome.probe}.junit.xml"]
    atomic_write(paths[0], json.dumps(clean(payload), indent=2, default=str, allow_nan=False) + "\n")
    atomic_write(paths[1], _junit(outcome))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(_markdown(outcome))
        except OSError as exc:  # the verdict stands; the summary is a convenience
            outcome.warnings.append(f"GITHUB_STEP_SUMMARY={summary}: cannot append the summary ({exc.strerror})")
    outcome.reports = paths
    return paths


REASON_SHOWN = 1000  # characters of the verdict's reason on the terminal; the reports hold it whole


def summary(outcome: Outcome) -> list[Table | str]:
    """What the terminal shows: the table of checks, the timing, and the verdict line."""
    table = Table("check", "status", "detail", title=f"validate_{outcome.probe} · {outcome.image[:40]}",
                  caption=_gpu_line(outcome) or None)
    for check in outcome.result.get("checks") or []:
        table.add_row(one_line(check.get("name"))[:80], one_line(check.get("status"))[:10],
                      one_line(check.get("detail", ""))[:160])
    shown: list[Table | str] = [table]
    bench = outcome.result.get("bench")
    if bench:
        shown.append(f"timing: {json.dumps(bench)}")
    speed = outcome.result.get("speed")
    if speed:
        per_step = Table(*SPEED_COLUMNS, title="per step, with and without --use-sage-attention")
        for row in speed:
            per_step.add_row(*speed_cells(row))
        shown.append(per_step)
    verdict = "PASS" if outcome.passed else "FAIL"
    reason = one_line(outcome.result.get("reason", ""))  # a probe's line break never forges a line of ours
    if len(reason) > REASON_SHOWN:
        reason = f"{reason[:REASON_SHOWN]}… ({len(reason)} characters; the whole reason is in reports/)"
    return [*shown, f"{verdict}: {outcome.probe}: {reason}"]
