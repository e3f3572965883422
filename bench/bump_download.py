"""Benchmark: ``invoke bump`` on the download path with a 200 MB asset.

The asset has ``digest: null`` and no SHA256SUMS, so bump streams it (API host → 302 →
storage host on 127.0.0.2) to a temp file, hashing as it goes.  Measures the child's wall
time and peak RSS with ``/usr/bin/time -v``, and compares the throughput with a local
baseline: reading the same file and writing + hashing it in 1 MiB chunks (disk speed).

    nox -s bench -- bump_download [--mb 200]
Target: peak RSS < 100 MB, throughput of the same order as the disk baseline.
Exit 1 if the RSS target is not met.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
import zipfile
from pathlib import Path

from bench._common import FakeAsset, FakeRelease, build_wheel, make_project, run_invoke, wheel, workspace

NAME = "sageattention-2.2.1+cu130.torch2.13.0.sm90-cp312-cp312-linux_x86_64.whl"


def disk_baseline(src: Path, dst: Path) -> float:
    start = time.perf_counter()
    h = hashlib.sha256()
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        for chunk in iter(lambda: fi.read(1 << 20), b""):
            fo.write(chunk)
            h.update(chunk)
    elapsed = time.perf_counter() - start
    dst.unlink()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=200)
    args = ap.parse_args()
    with workspace() as (tmp_path, fake):
        built = build_wheel(tmp_path / "wheels", "sageattention", "2.2.1+cu130.torch2.13.0.sm90",
                            filename=NAME, files={"sageattention/blob.bin": os.urandom(args.mb << 20)},
                            compression=zipfile.ZIP_STORED)
        size = built.stat().st_size
        fake.add_release("bench/sage", FakeRelease("v2.2.1", [FakeAsset(NAME, path=built, digest=None)]))
        url = f"https://github.com/bench/sage/releases/download/v2.2.0/{NAME.replace('2.2.1+', '2.2.0%2B')}"
        root = make_project(tmp_path / "p", "\n" + wheel("sageattention", "2.2.0", url, arch="sm90", github="bench/sage",
                                                        release="v2.2.0", targets=["complete-cu130"]))
        base = disk_baseline(built, tmp_path / "copy.bin")
        wall, r = run_invoke(root, fake, "bump", time_v=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            return 1
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)[1])
        m = re.search(r"downloaded \S+: .* in ([\d.]+) s", r.stderr)
        sent = fake.storage_bytes()
        assert sent == size, (sent, size)
        assert hashlib.sha256(built.read_bytes()).hexdigest()[:12] in r.stdout
        _, idle = run_invoke(root, fake, "--list", time_v=True)
        idle_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", idle.stderr)[1])
        mb = size / 1e6
        print(f"asset: {mb:.1f} MB, served from 127.0.0.2 after a 302 from 127.0.0.1")
        print(f"disk baseline (read + write + sha256, 1 MiB chunks): {base:.2f} s = {mb / base:.0f} MB/s")
        print(f"invoke bump wall: {wall:.2f} s; download itself: {m[1] if m else '?'} s"
              + (f" = {mb / float(m[1]):.0f} MB/s" if m and float(m[1]) > 0 else ""))
        print(f"peak RSS of the invoke bump process: {rss_kb / 1024:.1f} MiB "
              f"(invoke --list alone: {idle_kb / 1024:.1f} MiB)")
        ok = rss_kb < 100 * 1024
        print("PASS" if ok else "FAIL", "(target: peak RSS < 100 MB)")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
