#!/usr/bin/env python3
"""Check one probe run against an expectation, and summarise a run directory.

    expect.py check --name N --json FILE --rc RC --want-rc 1 --want-status fail \
        [--reason-re REGEX] [--gpu-checks ran|skipped] --summary OUT/summary.jsonl
    expect.py summarize OUTDIR        # writes OUTDIR/summary.md from summary.jsonl and the JSON files

Standard library only.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def parse_single_json(text: str) -> tuple[dict | None, str | None]:
    """The probe contract: stdout is exactly one JSON object (plus a newline)."""
    stripped = text.strip()
    if not stripped:
        return None, "no output on stdout (crash?)"
    try:
        obj, end = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError as exc:
        return None, f"stdout is not JSON: {exc}: {stripped[:200]!r}"
    if stripped[end:].strip():
        return None, f"extra output after the JSON object: {stripped[end:end + 200]!r}"
    if not isinstance(obj, dict):
        return None, "stdout JSON is not an object"
    return obj, None


def cmd_check(a) -> int:
    text = Path(a.json).read_text(errors="replace")
    obj, err = parse_single_json(text)
    problems = []
    if a.rc != a.want_rc:
        problems.append(f"exit code {a.rc}, wanted {a.want_rc}")
    if err:
        problems.append(err)
    else:
        for key in ("probe", "schema", "status", "exit_code", "reason", "package", "device", "gpu_checks",
                    "checks", "bench", "elapsed_s"):
            if key not in obj:
                problems.append(f"JSON lacks {key!r}")
        if obj.get("status") != a.want_status:
            problems.append(f"status {obj.get('status')!r}, wanted {a.want_status!r}")
        if obj.get("exit_code") != a.rc:
            problems.append(f"JSON exit_code {obj.get('exit_code')} != process exit code {a.rc}")
        if a.reason_re and not re.search(a.reason_re, obj.get("reason", "")):
            problems.append(f"reason does not match /{a.reason_re}/: {obj.get('reason', '')[:300]!r}")
        if a.gpu_checks and obj.get("gpu_checks") != a.gpu_checks:
            problems.append(f"gpu_checks {obj.get('gpu_checks')!r}, wanted {a.gpu_checks!r}")
    ok = not problems
    rec = {"name": a.name, "ok": ok, "rc": a.rc, "want_rc": a.want_rc,
           "status": obj.get("status") if obj else None, "want_status": a.want_status,
           "reason": obj.get("reason") if obj else None,
           "elapsed_s": obj.get("elapsed_s") if obj else None, "problems": problems}
    with open(a.summary, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    head = "PASS" if ok else "FAIL"
    print(f"{head} {a.name}: rc={a.rc} status={rec['status']} ({rec['elapsed_s']} s) reason={str(rec['reason'])[:240]}")
    for p in problems:
        print(f"     - {p}")
    return 0 if ok else 1


def cmd_summarize(a) -> int:
    out = Path(a.outdir)
    recs = [json.loads(ln) for ln in (out / "summary.jsonl").read_text().splitlines() if ln.strip()]
    lines = ["# Probe runs", "", "| case | expected | got | elapsed s | ok | reason |", "|---|---|---|---|---|---|"]
    for r in recs:
        reason = (r["reason"] or "").replace("|", "\\|")
        if len(reason) > 160:
            reason = reason[:157] + "..."
        lines.append(f"| {r['name']} | {r['want_status']} ({r['want_rc']}) | {r['status']} ({r['rc']}) | "
                     f"{r['elapsed_s']} | {'yes' if r['ok'] else 'NO'} | {reason} |")
    for r in recs:
        path = out / f"{r['name']}.json"
        obj, _ = parse_single_json(path.read_text(errors="replace")) if path.exists() else (None, None)
        if not obj:
            continue
        numer = [c for c in obj.get("checks", []) if c["name"].startswith("numerics:") and "cosine" in c]
        if numer:
            lines += ["", f"## {r['name']}: numerics vs fp32 SDPA", "",
                      "| check | cosine | rel L1 | max abs | status |", "|---|---|---|---|---|"]
            lines += [f"| {c['name']} | {c['cosine']} | {c['rel_l1']} | {c['max_abs']} | {c['status']} |"
                      for c in numer]
        bench = obj.get("bench")
        if bench and bench.get("results"):
            label = bench["kernel"]
            lines += ["", f"## {r['name']}: timing ({bench['timing']})", "",
                      f"| shape (B×H×N×D, fp16, HND) | SDPA ms | {label} ms | speedup vs SDPA |",
                      "|---|---|---|---|"]
            for b in bench["results"]:
                shape = f"{b['batch']}×{b['heads']}×{b['seq_len']}×{b['head_dim']}"
                if "error" in b:
                    lines.append(f"| {shape} | error: {b['error']} | | |")
                else:
                    lines.append(f"| {shape} | {b['sdpa_ms']} | {b[label + '_ms']} | {b['speedup_vs_sdpa']} |")
    failed = [r["name"] for r in recs if not r["ok"]]
    lines += ["", f"{len(recs) - len(failed)}/{len(recs)} expectations met" +
              (f"; NOT met: {', '.join(failed)}" if failed else "")]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--name", required=True)
    c.add_argument("--json", required=True)
    c.add_argument("--rc", type=int, required=True)
    c.add_argument("--want-rc", type=int, required=True)
    c.add_argument("--want-status", required=True, choices=["pass", "fail", "skip"])
    c.add_argument("--reason-re", default="")
    c.add_argument("--gpu-checks", choices=["ran", "skipped", "not-run"])
    c.add_argument("--summary", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("outdir")
    a = p.parse_args()
    return cmd_check(a) if a.cmd == "check" else cmd_summarize(a)


if __name__ == "__main__":
    sys.exit(main())
