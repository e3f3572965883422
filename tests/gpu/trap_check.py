"""The build machine's half of tests/gpu/trap_gpu.sh: audit each object the GPU machine built
(in a wheel whose dispatch sends sm90 to it) with ``python -m comfyimg audit --arch sm90 --json``
and check that the audit refuses exactly the builds whose kernel failed on the GPU.

    .venv/bin/python tests/gpu/trap_check.py DIR     (DIR: what trap_gpu.sh wrote under $OUT)

Prints one line per build and writes DIR/check.json; exit 0 only if every verdict matches."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.lib.cudawheels import SUFFIX, TRAP_PYTHON  # noqa: E402
from tests.lib.wheels import build_wheel  # noqa: E402


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: trap_check.py DIR", file=sys.stderr)
        return 2
    where = Path(sys.argv[1])
    results = json.loads((where / "results.json").read_text())
    python = {k: v.replace('"sm89"', '"sm90"') for k, v in TRAP_PYTHON.items()}
    report, ok = {}, True
    with tempfile.TemporaryDirectory() as tmp:
        for name, gpu in sorted(results.items()):
            files: dict[str, str | bytes] = dict(python)
            files[f"sageattention/_qattn_sm89{SUFFIX}"] = (where / f"{name}.so").read_bytes()
            (Path(tmp) / name).mkdir()
            wheel = build_wheel(Path(tmp) / name, "sageattention", "2.2.0",
                                filename="sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl", files=files)
            r = subprocess.run([sys.executable, "-m", "comfyimg", "audit", "--wheel", str(wheel), "--arch", "sm90",
                                "--json"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
            verdict = json.loads(r.stdout)["archs"]["sm90"]
            ran = gpu["exit"] == 0
            match = verdict["runnable"] == ran
            ok &= match
            report[name] = {"gpu": gpu, "audit": {"exit": r.returncode, "runnable": verdict["runnable"],
                                                  "why": verdict["why"], "code": verdict["code"]}, "match": match}
            read = verdict["code"][0] if verdict["code"] else {}
            print(f"{name}: GPU {'ran' if ran else 'failed'} ({gpu['output']}); audit "
                  f"{'runnable' if verdict['runnable'] else 'refused'} (read {read.get('target')}: "
                  f"{read.get('kernel')} {read.get('instruction')}): {'match' if match else 'MISMATCH'}")
    (where / "check.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
