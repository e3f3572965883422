"""Benchmark: ``invoke bump`` on the digest path (every asset has an API digest).

A release of 25 assets (5 per-SM wheels that fit, 15 per-SM decoys, sm100, sageattn3 and
two decoys, SHA256SUMS) on the fake GitHub over loopback; 6 pins move.  Reports the wall
time of ``invoke bump`` and of ``invoke --list`` (interpreter start + invoke + tasks.py
imports) in the same project, the difference, and the bump's own in-process time.

    nox -s bench -- bump_digest [--runs 5]
Target: the difference < 1 s.  Exit 1 if it is not met.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path

from bench._common import FakeAsset, FakeRelease, build_wheel, make_project, run_invoke, wheel, workspace

ARCHS = ["sm80", "sm86", "sm89", "sm90", "sm120"]
TAIL = "cp312-cp312-linux_x86_64.whl"


def release(wheel_dir: Path) -> FakeRelease:
    names = []
    for sm in ARCHS:
        names += [f"sageattention-2.2.1+cu130.torch2.13.0.{sm}-{TAIL}",
                  f"sageattention-2.2.1+cu128.torch2.13.0.{sm}-{TAIL}",
                  f"sageattention-2.2.1+cu130.torch2.12.0.{sm}-{TAIL}",
                  f"sageattention-2.2.1+cu130.torch2.13.0.{sm}-cp311-cp311-linux_x86_64.whl"]
    names += [f"sageattention-2.2.1+cu130.torch2.13.0.sm100-{TAIL}",
              f"sageattn3-1.0.1+cu130.torch2.13.0-{TAIL}",
              f"sageattn3-1.0.1+cu128.torch2.13.0-{TAIL}",
              "sageattn3-1.0.1+cu130.torch2.13.0-cp312-cp312-win_amd64.whl"]
    assets = []
    for n in names:
        dist, version = n.split("-")[:2]
        p = build_wheel(wheel_dir, dist, version, filename=n, files={f"{dist}/__init__.py": "x = 1\n" * 5000})
        assets.append(FakeAsset(n, data=p.read_bytes()))
    assets.append(FakeAsset("SHA256SUMS", data=b"", content_type="text/plain"))
    return FakeRelease("v2.2.1", assets)


def wheels_toml() -> str:
    gh = "https://github.com/bench/sage/releases/download/v2.2.0"
    source = {"github": "bench/sage", "release": "v2.2.0", "targets": ["complete-cu130"]}
    pins = [wheel("sageattention", "2.2.0", f"{gh}/sageattention-2.2.0%2Bcu130.torch2.13.0.{sm}-{TAIL}",
                  arch=sm, **source) for sm in ARCHS]
    pins.append(wheel("sageattn3", "1.0.0", f"{gh}/sageattn3-1.0.0%2Bcu130.torch2.13.0-{TAIL}", **source))
    return "\n" + "\n".join(pins)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with workspace() as (tmp_path, fake):
        rel = fake.add_release("bench/sage", release(tmp_path / "wheels"))
        print(f"release {rel.tag}: {len(rel.assets)} assets")
        bumps, lists, inner = [], [], []
        for i in range(args.runs):
            root = make_project(tmp_path / f"p{i}", wheels_toml())
            t_list, r = run_invoke(root, fake, "--list")
            assert r.returncode == 0, r.stderr
            before = len(fake.requests())
            t_bump, r = run_invoke(root, fake, "bump")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "bumped 6 pin(s)" in r.stdout, r.stdout
            assert not fake.requests("storage"), "digest path must not download"
            m = re.search(r"bumped \d+ pin\(s\) in ([\d.]+) s", r.stdout)
            inner.append(float(m[1]) if m else float("nan"))
            lists.append(t_list)
            bumps.append(t_bump)
            print(f"run {i + 1}: invoke bump {t_bump:.3f} s, invoke --list {t_list:.3f} s, "
                  f"in-process {inner[-1]:.3f} s, {len(fake.requests()) - before} HTTP requests")
        med_b, med_l = statistics.median(bumps), statistics.median(lists)
        beyond = med_b - med_l
        print(f"median: invoke bump {med_b:.3f} s; interpreter+invoke start (invoke --list) {med_l:.3f} s; "
              f"beyond start {beyond:.3f} s; bump() itself {statistics.median(inner):.3f} s")
        ok = beyond < 1.0
        print("PASS" if ok else "FAIL", "(target: < 1 s beyond interpreter start)")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
