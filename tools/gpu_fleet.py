"""The GPU fleet of .github/workflows/validate-gpu.yml: which arch runs where, and the summary.

    python3 tools/gpu_fleet.py plan AUDIT_JSON RUNNERS_JSON      (lines for $GITHUB_OUTPUT)
    python3 tools/gpu_fleet.py summary PLAN_JSON VERIFY_JSON     (Markdown for $GITHUB_STEP_SUMMARY)

``plan`` reads ``invoke audit --json`` (the archs each pin serves) and the runner map
(``.github/gpu-runners.json``: arch -> runner labels) and prints ``matrix=`` (one job per arch that
has a runner, with the sessions of the packages that serve it) and ``plan=`` (every served arch,
with its runner or none). ``summary`` turns ``invoke verify --json`` into one table per attention
package, every served arch a row: an arch without a runner says "no runner", never dropped.
Standard library only: it runs before the project is installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SESSIONS = {"sageattention": "validate_sage2", "sageattn3": "validate_sage3"}
MAX_INPUT = 16 << 20


def _arch_key(arch: str) -> tuple[int, str]:
    digits = "".join(c for c in arch[2:] if c.isdigit())
    return (int(digits or 0), arch)


def _read(path: str) -> object:
    with open(path, "rb") as fh:
        data = fh.read(MAX_INPUT + 1)
    if len(data) > MAX_INPUT:
        raise SystemExit(f"error: {path}: larger than {MAX_INPUT} bytes")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise SystemExit(f"error: {path}: not JSON ({exc})") from None


def plan(audit: dict, runners: dict) -> dict:
    served: dict[str, list[str]] = {}
    for name, pin in (audit.get("pins") or {}).items():
        for arch in pin.get("serves") or []:
            served.setdefault(arch, []).append(name)
    rows = []
    for arch in sorted(served, key=_arch_key):
        labels = runners.get(arch)
        if labels is not None and (not isinstance(labels, list) or not all(isinstance(x, str) for x in labels)):
            raise SystemExit(f"error: runner map: {arch}: give a list of runner labels")
        sessions = sorted({SESSIONS[n] for n in served[arch] if n in SESSIONS})
        rows.append({"arch": arch, "packages": sorted(served[arch]), "runner": labels or None,
                     "sage2": "validate_sage2" in sessions, "sage3": "validate_sage3" in sessions})
    return {"archs": rows, "matrix": {"include": [r for r in rows if r["runner"]]}}


def summary(plan_data: dict, verify: dict | None) -> str:
    runners = {r["arch"]: r["runner"] for r in plan_data.get("archs") or []}
    out = ["### Which GPU archs this image was proven on", ""]
    if not verify:
        out += ["`invoke verify` gave no answer (see its job log).", ""]
    else:
        out += [f"Image `{verify.get('image')}` · reports found by {verify.get('found_by')}", ""]
        for package in verify.get("packages") or []:
            out += [f"#### {package['name']} {package['version']}", "",
                    "| arch | runner | GPUs | static verdict | measured verdict | answer |", "|---|---|---|---|---|---|"]
            for row in package.get("archs") or []:
                runner = runners.get(row["arch"])
                where = "no runner" if row["arch"] in runners and not runner else ", ".join(runner or ["-"])
                cells = [row["arch"], where, ", ".join(row.get("gpus") or []) or "-", row["static"], row["measured"],
                         row["answer"]]
                out.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
            out.append("")
    missing = [a for a, r in runners.items() if not r]
    if missing:
        out += [f"No runner for {', '.join(missing)}: their answer is the static verdict only "
                f"(add a runner to .github/gpu-runners.json).", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("plan", "summary"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    if argv[0] == "plan":
        audit, runners = _read(argv[1]), _read(argv[2])
        if not isinstance(audit, dict) or not isinstance(runners, dict):
            raise SystemExit("error: plan needs the audit JSON object and the runner map object")
        made = plan(audit, {k: v for k, v in runners.items() if not k.startswith("//")})
        print(f"matrix={json.dumps(made['matrix'], separators=(',', ':'))}")
        print(f"plan={json.dumps(made, separators=(',', ':'))}")
        print(f"any={'true' if made['matrix']['include'] else 'false'}")
        return 0
    verify = _read(argv[2]) if Path(argv[2]).is_file() and Path(argv[2]).stat().st_size else None
    plan_data = json.loads(argv[1]) if argv[1].startswith("{") else _read(argv[1])
    print(summary(plan_data, verify if isinstance(verify, dict) else None))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
