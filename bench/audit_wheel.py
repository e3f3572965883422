"""Benchmark: auditing a wheel's kernels vs reading every member once.

Builds a wheel of at least ``--mb`` MB shaped like the seed's sageattention wheel: its four
compiled modules (``_qattn_sm80``, ``_qattn_sm89``, ``_qattn_sm90``, ``_fused``) are the real
nvcc-built objects of its recipe (tests/fixtures/cuda-objects, ``SEED_SAGE2``), each padded
with random bytes after its ELF data (the way a large extension is mostly code the fatbin
does not index), so the wheel stays that large deflated, with the real Python of pixeloven
7bd3a0e (tests/vendor), so the audit also reads the wheel's own dispatch. Then times, in
fresh processes, the rounds interleaved:

* the baseline: ``python -m zipfile -t WHEEL`` (decompress and CRC-check every member);
* the audit: ``python -m comfyimg audit --wheel WHEEL --arch sm90 --json`` (stream each .so
  to a temp file, list it with cuobjdump, read sageattention/core.py's dispatch with ast,
  disassemble the code it sends sm90 to (cuobjdump -sass, which runs nvdisasm; issue 29),
  decide the arch), with its peak RSS (/usr/bin/time -v);
* the same audit by the code of ``--before REV`` (default ``main``; ``git archive`` of its
  ``src`` into a temp dir, run with ``PYTHONPATH`` there): the cost of what changed since;
* the same through ``invoke audit`` (invoke and tasks.py add their start-up), for reference.

Both run with compiled bytecode, as an installed package does (pip compiles it): a warm-up run
first, ``PYTHONDONTWRITEBYTECODE`` dropped and the bytecode kept under a temp dir
(``PYTHONPYCACHEPREFIX``), so the figures do not depend on the machine's settings.

    nox -s bench -- audit_wheel [--mb 120] [--rounds 5] [--before REV]
Target: audit ≤ 2× the baseline (median of the rounds); peak RSS flat (≪ the wheel). Exit 1 if missed.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.lib import vendored_sage_files
from tests.lib.cudawheels import OBJECTS, SEED_SAGE2
from tests.lib.project import REPO
from tests.lib.wheels import build_wheel

SUFFIX = ".cpython-312-x86_64-linux-gnu.so"


def make_wheel(directory: Path, mb: int) -> Path:
    pad = mb * 2**20 // len(SEED_SAGE2) + 1
    files: dict[str, bytes | str] = dict(vendored_sage_files("pixeloven-7bd3a0e"))
    for module, obj in SEED_SAGE2.items():
        files[f"sageattention/{module}{SUFFIX}"] = (OBJECTS / f"{obj}.so").read_bytes() + os.urandom(pad)
    return build_wheel(directory, "sageattention", "2.2.0",
                       filename="sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl", files=files)


CPU: dict[str, list[float]] = {}  # command -> CPU seconds (user + system, with its children) per run


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def env_base(tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(CI="1", PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"))
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str], key: str = "") -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall seconds of one run; its CPU seconds go to CPU (less sensitive to other work on the machine)."""
    cpu, start = _cpu(), time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True, check=False, env=env)
    wall = time.perf_counter() - start
    CPU.setdefault(key or " ".join(cmd[1:4]), []).append(_cpu() - cpu)
    return wall, r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", default="main", help="the revision whose audit is timed alongside (git archive)")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = make_wheel(Path(tmp), ns.mb)
        old = Path(tmp) / "before"
        old.mkdir()
        archive = subprocess.run(["git", "archive", ns.before, "src"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
        rev = subprocess.run(["git", "rev-parse", "--short", ns.before], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        old_env = {**env_base(tmp), "PYTHONPATH": os.pathsep.join([str(old / "src"), str(REPO)])}
        size = wheel.stat().st_size / 2**20
        env = env_base(tmp)
        zipcheck = [sys.executable, "-m", "zipfile", "-t", str(wheel)]
        auditing = [sys.executable, "-m", "comfyimg", "audit", "--wheel", str(wheel), "--arch", "sm90", "--json"]
        invoking = [sys.executable, "-m", "invoke", "audit", *auditing[4:]]
        base, audit, through_invoke, before = [], [], [], []
        for rnd in range(ns.rounds + 1):  # round 0 warms up (bytecode, page cache)
            t, r = timed(zipcheck, REPO, env)
            assert r.returncode == 0, r.stderr
            base.append(t)
            t, r = timed(auditing, REPO, old_env, key="before")
            assert r.returncode == 0 and '"source": "wheel"' in r.stdout, r.stdout + r.stderr
            before.append(t)
            t, r = timed(auditing, REPO, env)
            assert r.returncode == 0 and '"source": "wheel"' in r.stdout, r.stdout + r.stderr
            audit.append(t)
            t, r = timed(invoking, REPO, env)
            assert r.returncode == 0 and '"source": "wheel"' in r.stdout, r.stdout + r.stderr
            through_invoke.append(t)
            if rnd == 0:
                base, audit, through_invoke, before = [], [], [], []
                CPU.clear()
        _, r = timed(["/usr/bin/time", "-v", *auditing], REPO, env)
        rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)[1]) / 1024
    b, a, o = statistics.median(base), statistics.median(audit), statistics.median(before)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"wheel {size:.1f} MB, {len(SEED_SAGE2)} compiled modules; rounds {ns.rounds}; {len(os.sched_getaffinity(0))} CPUs to use, "
          f"load average at the end {load} (other work on a shared machine slows the two-thread audit more)")
    print(f"python -m zipfile -t: median {b:.2f} s ({', '.join(f'{x:.2f}' for x in base)})")
    print(f"python -m comfyimg audit --wheel: median {a:.2f} s ({', '.join(f'{x:.2f}' for x in audit)}); "
          f"peak RSS {rss:.0f} MB")
    print(f"before ({ns.before} = {rev}), python -m comfyimg audit --wheel: median {o:.2f} s "
          f"({', '.join(f'{x:.2f}' for x in before)}); ratio {o / b:.2f}x")
    i = statistics.median(through_invoke)
    print(f"invoke audit --wheel (the same, through invoke and tasks.py): median {i:.2f} s "
          f"({', '.join(f'{x:.2f}' for x in through_invoke)}); ratio {i / b:.2f}x")
    cpu = {k: statistics.median(v) for k, v in CPU.items()}
    zip_cpu, audit_cpu = cpu[" ".join(zipcheck[1:4])], cpu[" ".join(auditing[1:4])]
    print(f"CPU seconds (user + system, median): zipfile -t {zip_cpu:.2f}, comfyimg audit {audit_cpu:.2f} "
          f"({audit_cpu / zip_cpu:.2f}x: the audit's wall time is under its CPU time only with a second core free), "
          f"before {cpu['before']:.2f} ({cpu['before'] / zip_cpu:.2f}x)")
    print(f"ratio {a / b:.2f}x (target <= 2x, python -m comfyimg audit)")
    return 0 if a <= 2 * b else 1


if __name__ == "__main__":
    sys.exit(main())
