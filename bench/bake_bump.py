"""P2: a one-pin bump rebuilds only the wheel layer, about as fast as installing the wheels.

    nox -s bench -- bake_bump [RUNS] [PAYLOAD_MB]     # defaults 5, 32

complete-cuda on the stand-in core with two pins (sageattention, sageattn3) served from
127.0.0.1. PAYLOAD_MB of incompressible bytes are added to the sageattention wheel to
stand in for its compiled kernels. Each round, side by side:

* bump:  write wheels.toml with sageattention moved to a NEW version (new wheel, url,
         sha256), then `invoke bake -t complete-cuda --file tests/engine/override.hcl
         --allow network.host` (whole process: render, preflight, build of the wheel layer
         with --load, record);
* pip:   the same requirements file installed alone, in the stand-in core, from the same
         loopback server: `docker run --rm --network host -v REQ:/tmp/wheels.txt:ro
         --entrypoint /app/.venv/bin/pip local/core-standin:test install --no-cache-dir
         --require-hashes --no-deps -r /tmp/wheels.txt` (whole process);
* raw:   (context) the same kind of bump through a raw `docker buildx bake` of the same plan.

Goal: bump <= 1.2x pip. Each bump also checks that every layer but the last is reused.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench._bakebench import STANDIN, fmt, median, setup


def layers(tag: str) -> list[str]:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}", tag],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    mb = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    bench = setup("p2-bump")
    tag = "comfyui:cuda-bench"
    try:
        sage3 = bench.pin("sageattn3", "1.0.0")
        bench.write_pins([bench.pin("sageattention", "2.2.0", mb), sage3])
        bench.run(bench.invoke_bake())  # warm cache: everything below the wheel layer
        req = bench.root / "generated" / "requirements" / "complete-cuda.txt"
        bump_t, pip_t, raw_t = [], [], []
        for i in range(1, runs + 1):
            before = layers(tag)
            bench.write_pins([bench.pin("sageattention", f"2.2.{i}", mb), sage3])
            bump_t.append(bench.run(bench.invoke_bake()))
            after = layers(tag)
            assert before[:-1] == after[:-1] and before[-1] != after[-1], "more than the wheel layer changed"
            pip_t.append(bench.run(["docker", "run", "--rm", "--network", "host", "-v", f"{req}:/tmp/wheels.txt:ro",
                                    "--entrypoint", "/app/.venv/bin/pip", STANDIN, "install", "--no-cache-dir",
                                    "--require-hashes", "--no-deps", "-r", "/tmp/wheels.txt"]))
            # context: the same bump through raw buildx (render first, untimed: raw bake cannot render)
            bench.write_pins([bench.pin("sageattention", f"2.2.{100 + i}", mb), sage3])
            subprocess.run([sys.executable, "-m", "invoke", "render"], cwd=bench.root, env=bench.env,
                           check=True, capture_output=True)
            raw_t.append(bench.run(bench.raw_bake()))
            time.sleep(0.2)
        print(f"payload: sageattention wheel with {mb} MiB of incompressible bytes; sageattn3 tiny")
        print(f"bump via invoke bake:       {fmt(bump_t)}")
        print(f"pip install alone (run):    {fmt(pip_t)}")
        print(f"bump via raw buildx bake:   {fmt(raw_t)}")
        print(f"ratio bump/pip (medians): {median(bump_t) / median(pip_t):.2f}x  (goal <= 1.2x)")
        print(f"ratio raw-bump/pip (medians): {median(raw_t) / median(pip_t):.2f}x")
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
