#!/usr/bin/env python3
"""Judge tests/gpu/docker_h200.sh's two runs and write OUTDIR/summary.md (stdlib only).

    python docker_h200_expect.py OUTDIR WHEEL_NAME TOTAL_SECONDS

good:   exit 0; GPU through CDI with no flag; the GPU checks and every ComfyUI row ran and passed;
broken: exit 1; the probe's numerics fail (output is q) and the ComfyUI rows fail too.
Exit 0 only if every expectation held.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def load(out: Path, case: str) -> tuple[int | None, dict | None]:
    try:
        rc = int((out / case / "rc").read_text().strip())
    except (OSError, ValueError):
        rc = None
    try:
        report = json.loads((out / case / "sage2.json").read_text())
    except (OSError, ValueError):
        report = None
    return rc, report


def rows(report: dict | None) -> list[dict]:
    return list(((report or {}).get("result") or {}).get("checks") or [])


def main(argv: list[str]) -> int:
    out, wheel, total = Path(argv[1]), argv[2], argv[3]
    problems: list[str] = []
    lines = ["# validate_sage2 through Docker + CDI on the H200", ""]

    def expect(ok: bool, what: str) -> None:
        lines.append(f"- {'✅' if ok else '❌'} {what}")
        if not ok:
            problems.append(what)

    rc, good = load(out, "good")
    g = (good or {}).get("gpu") or {}
    checks = rows(good)
    numerics = [c for c in checks if c["name"].startswith("numerics:")]
    comfy = [c for c in checks if c["name"].startswith("comfyui:attention_sage:")]
    lines += ["## good image (SageAttention 2.2.0 built for 9.0)", ""]
    expect(rc == 0 and bool(good) and good.get("passed") is True, f"exit 0 and passed (rc={rc})")
    expect(g.get("mode") == "auto" and g.get("access") == "--device nvidia.com/gpu=all",
           f"no GPU flag: auto chose {g.get('access')!r} ({g.get('why')})")
    expect("H200" in str(g.get("container_gpu")), f"the container saw {g.get('container_gpu')}")
    expect(len(numerics) >= 8 and all(c["status"] == "pass" for c in numerics),
           f"{len(numerics)} numerics rows of the probe passed")
    expect(any(c["name"] == "dispatch" and c["status"] == "pass" for c in checks), "dispatch row passed")
    expect(any(c["name"] == "comfyui:optimized_attention" and c["status"] == "pass" for c in checks),
           "ComfyUI's optimized_attention is attention_sage")
    expect(len(comfy) == 8 and all(c["status"] == "pass" and c.get("fallback") is False for c in comfy),
           f"{len(comfy)} ComfyUI attention_sage rows (skip_reshape True/False x fp16/bf16 x 77/4096) passed, no fallback")

    rc_b, broken = load(out, "broken")
    b_checks = rows(broken)
    b_numerics = [c for c in b_checks if c["name"].startswith("numerics:") and c["status"] == "fail"]
    b_comfy = [c for c in b_checks if c["name"].startswith("comfyui:attention_sage:") and c["status"] == "fail"]
    lines += ["", "## broken image (sageattn returns q)", ""]
    expect(rc_b == 1 and bool(broken) and broken.get("passed") is False, f"exit 1 and failed (rc={rc_b})")
    expect(bool(b_numerics) and any("output is the input tensor q" in c["detail"] for c in b_numerics),
           f"the probe's numerics failed ({len(b_numerics)} rows; 'output is the input tensor q')")
    expect(len(b_comfy) >= 1, f"ComfyUI rows failed: {len(b_comfy)} of "
           f"{sum(c['name'].startswith('comfyui:attention_sage:') for c in b_checks)}")
    leftovers = (out / "leftover-containers.txt").read_text().split() if (out / "leftover-containers.txt").exists() else []
    expect(not leftovers, f"no probe container left behind ({leftovers or 'none'})")

    lines += ["", "## rows", "", "| case | check | status | detail |", "|---|---|---|---|"]
    for case, report in (("good", good), ("broken", broken)):
        for c in rows(report):
            detail = str(c.get("detail", "")).replace("|", "\\|").replace("\n", " ")[:160]
            lines.append(f"| {case} | {c['name']} | {c['status']} | {detail} |")

    timing = (out / "timing.txt").read_text() if (out / "timing.txt").exists() else ""
    lines += ["", "## time", "", f"- validate (the report's `seconds`, both containers, from the first docker call): "
              f"good {(good or {}).get('seconds')} s, broken {(broken or {}).get('seconds')} s",
              *(f"- nox session wall: {ln}" for ln in timing.splitlines()),
              f"- sage2 probe's own elapsed_s (good): {((good or {}).get('result') or {}).get('elapsed_s')}",
              f"- whole script: {total} s; wheel {wheel}", ""]
    modules = (out / "image-modules.txt").read_text() if (out / "image-modules.txt").exists() else ""
    lines += ["## image modules for ComfyUI's import chain", "", *(f"- {ln}" for ln in modules.splitlines()), ""]
    lines += [f"**{'ALL EXPECTATIONS MET' if not problems else f'{len(problems)} EXPECTATION(S) NOT MET'}**", ""]
    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
