"""P3: the complete image's size vs the same image built the upstream way (chmod -R a+w).

    nox -s bench -- bake_size [PAYLOAD_MB]      # default 32

Both are built on the same stand-in core (local/core-standin:test, real CPU torch in
/app/.venv) with the same two pins served from 127.0.0.1:

* ours:     `invoke bake -t complete-cuda --file tests/engine/override.hcl --allow network.host`
            (services/comfy/complete/dockerfile.comfy.cuda.complete);
* upstream: bench/Dockerfile.upstream-chmod, i.e. the same Dockerfile plus one
            `RUN chmod -R a+w <site-packages>` layer, built with `docker buildx build`.

Reported: each image's size (`docker image inspect .Size`, uncompressed), the core's size,
the bytes each adds above the core (per layer, from `docker history`), and the duplicated
bytes: the size of layers that only re-write files already in the image (the chmod layer).
Goal: ours <= 0.6x upstream, and 0 duplicated bytes in ours.
"""

from __future__ import annotations

import json
import subprocess
import sys

from bench._bakebench import ROOT, STANDIN, setup

UPSTREAM = "comfyimg-bench/upstream-chmod:bench"


def size(image: str) -> int:
    return int(subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image], capture_output=True,
                              text=True, check=True).stdout)


def history(image: str) -> list[tuple[int, str]]:
    """(size, created_by) of each layer, newest first."""
    out = subprocess.run(["docker", "history", "--no-trunc", "--human=false", "--format", "{{json .}}", image],
                         capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [(int(r["Size"]), r["CreatedBy"]) for r in rows]


def added(image: str) -> list[tuple[int, str]]:
    n_core = len(history(STANDIN))
    rows = history(image)
    return rows[: len(rows) - n_core]


def mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def main() -> None:
    payload = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    bench = setup("p3-size")
    try:
        bench.write_pins([bench.pin("sageattention", "2.2.0", payload), bench.pin("sageattn3", "1.0.0")])
        bench.run(bench.invoke_bake())
        ours = "comfyui:cuda-bench"
        bench.run(["docker", "buildx", "build", "--builder", "default", "--load", "--network", "host",
                   "--progress", "plain", "-t", UPSTREAM, "-f", str(ROOT / "bench" / "Dockerfile.upstream-chmod"),
                   "--build-context", f"core=docker-image://{STANDIN}",
                   "--build-context", f"wheels={bench.root / 'generated' / 'requirements'}",
                   "--build-arg", f"PIP_INDEX_URL={bench.url}/simple/",
                   str(bench.root / "services" / "comfy" / "complete")])
        core_size, ours_size, up_size = size(STANDIN), size(ours), size(UPSTREAM)
        print(f"payload: sageattention wheel with {payload} MiB of incompressible bytes; sageattn3 tiny")
        print(f"core (stand-in)   {mb(core_size):>12}")
        print(f"ours              {mb(ours_size):>12}   (+{mb(ours_size - core_size)} over core)")
        print(f"upstream (chmod)  {mb(up_size):>12}   (+{mb(up_size - core_size)} over core)")
        print(f"ratio ours/upstream: {ours_size / up_size:.2f}x  (goal <= 0.6x)")
        for name, image in (("ours", ours), ("upstream", UPSTREAM)):
            print(f"layers {name} adds above the core:")
            for n, created in added(image):
                print(f"  {mb(n):>12}  {created[:110]}")
        dup_up = sum(n for n, c in added(UPSTREAM) if "chmod -R" in c)
        dup_ours = sum(n for n, c in added(ours) if "chmod" in c or "chown" in c)
        print(f"duplicated bytes (chmod/chown layers): ours {dup_ours:,} B; upstream {dup_up:,} B ({mb(dup_up)})")
    finally:
        subprocess.run(["docker", "image", "rm", "--force", UPSTREAM], capture_output=True, check=False)
        bench.stop()


if __name__ == "__main__":
    main()
