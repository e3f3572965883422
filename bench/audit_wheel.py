"""Benchmark: auditing a wheel's kernels vs reading every member once.

Builds a wheel of at least ``--mb`` MB from the real nvcc-built objects
(tests/fixtures/cuda-objects, committed with the script that made them): each object is padded with
random bytes after its ELF data (the way a large extension is mostly code the fatbin does
not index), so the wheel stays that large deflated, with the real Python of pixeloven
7bd3a0e (tests/vendor), so the audit also reads the wheel's own dispatch. Then times, in
fresh processes:

* the baseline: ``python -m zipfile -t WHEEL`` (decompress and CRC-check every member);
* the audit: ``python -m invoke audit --wheel WHEEL --arch sm90 --json`` (stream each .so to a
  temp file, list it with cuobjdump, read sageattention/core.py's dispatch with ast, decide the
  arch), with its peak RSS (/usr/bin/time -v).

    nox -s bench -- audit_wheel [--mb 120] [--rounds 3]
Target: audit ≤ 2× the baseline (median of the rounds); peak RSS flat (≪ the wheel). Exit 1 if missed.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.lib import vendored_sage_files
from tests.lib.cudawheels import OBJECTS
from tests.lib.project import REPO
from tests.lib.wheels import build_wheel

SUFFIX = ".cpython-312-x86_64-linux-gnu.so"


def objects() -> Path:
    return OBJECTS


def make_wheel(directory: Path, mb: int) -> Path:
    sos = sorted(objects().glob("*.so"))
    pad = mb * 2**20 // len(sos) + 1
    files: dict[str, bytes | str] = dict(vendored_sage_files("pixeloven-7bd3a0e"))
    for i, so in enumerate(sos):
        files[f"sageattention/_m{i}_{so.stem}{SUFFIX}"] = so.read_bytes() + os.urandom(pad)
    return build_wheel(directory, "sageattention", "2.2.0",
                       filename="sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl", files=files)


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, check=False,
                       env={**os.environ, "CI": "1"})
    return time.perf_counter() - start, r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = make_wheel(Path(tmp), ns.mb)
        size = wheel.stat().st_size / 2**20
        base, audit = [], []
        for _ in range(ns.rounds):
            t, r = timed([sys.executable, "-m", "zipfile", "-t", str(wheel)], REPO)
            assert r.returncode == 0, r.stderr
            base.append(t)
            t, r = timed([sys.executable, "-m", "invoke", "audit", "--wheel", str(wheel), "--arch", "sm90",
                          "--json"], REPO)
            assert r.returncode in (0, 1) and '"source": "wheel"' in r.stdout, r.stdout + r.stderr
            audit.append(t)
        _, r = timed(["/usr/bin/time", "-v", sys.executable, "-m", "invoke", "audit", "--wheel", str(wheel),
                      "--arch", "sm90", "--json"], REPO)
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)[1]) / 1024
    b, a = statistics.median(base), statistics.median(audit)
    print(f"wheel {size:.1f} MB, 8 compiled modules; rounds {ns.rounds}")
    print(f"python -m zipfile -t: median {b:.2f} s ({', '.join(f'{x:.2f}' for x in base)})")
    print(f"invoke audit --wheel: median {a:.2f} s ({', '.join(f'{x:.2f}' for x in audit)}); "
          f"peak RSS {rss:.0f} MB")
    print(f"ratio {a / b:.2f}x (target <= 2x)")
    return 0 if a <= 2 * b else 1


if __name__ == "__main__":
    sys.exit(main())
