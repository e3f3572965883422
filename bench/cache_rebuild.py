"""P4: a no-change rebuild on a fresh builder that imports the registry cache vs a cold build.

    nox -s bench -- cache_rebuild [RUNS] [PAYLOAD_MB]     # defaults 3, 64

complete-cuda on the stand-in core with two pins served from 127.0.0.1 (sageattention
carries PAYLOAD_MB of incompressible bytes standing in for its kernels), on fresh engines
(tests/engine/engines.py: a new dockerd with the containerd image store; a
docker-container builder cannot start here, its image cannot be pulled):

* cold:   engine A, empty BuildKit cache: `invoke bake -t complete-cuda ... --label bench`;
* export: engine A, pruned: the same with `--cache-to registry=127.0.0.1:PORT/bench-cache`
          into a loopback docker-registry (timed too: what the main-branch CI job pays);
* warm:   engine B, which never built this plan: `--cache-from registry=...` (every step
          must come back CACHED, else the bench fails).

Between runs each engine's build cache is pruned and the image removed, so every cold
run is cold (checked: no step CACHED) and every warm run imports (checked: every step
CACHED). Each engine first does one untimed build (its first build also unpacks the
freshly loaded core image). All are `invoke bake` processes timed from
outside (wall clock), --load included. Goal: cold / warm >= 5x.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._bakebench import LABEL, fmt, median, setup
from tests.lib.engine import REGISTRY_CONFIG, STANDIN, Bake, free_port
from tests.lib.engines import fresh_engine, load_images

STEP = re.compile(r"^\[stage-0 \d+/\d+\] ")


def start_registry(directory: Path) -> tuple[str, subprocess.Popen]:
    import urllib.request

    host = f"127.0.0.1:{free_port()}"
    (directory / "config.yml").write_text(REGISTRY_CONFIG.format(data=directory / "data", host=host))
    proc = subprocess.Popen(["docker-registry", "serve", str(directory / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://{host}/v2/", timeout=1):
                return host, proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("bench: docker-registry did not start")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    payload_mb = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    bench = setup("p4-cache")
    tmp = Path(tempfile.mkdtemp(prefix="bench-registry-"))
    host, registry = start_registry(tmp)
    ref = f"registry={host}/bench-cache"
    tag = f"comfyui:cuda-{LABEL}"
    try:
        bench.write_pins([bench.pin("sageattention", "2.2.0", payload_mb), bench.pin("sageattn3", "1.0.0")])
        with fresh_engine("bench-a") as a, fresh_engine("bench-b") as b:
            for engine in (a, b):
                load_images(engine, STANDIN)

            def timed(engine, *extra: str) -> tuple[float, Bake]:
                start = time.perf_counter()
                proc = subprocess.run(bench.invoke_bake(*extra), cwd=bench.root, env={**bench.env, **engine.env},
                                      capture_output=True, text=True, check=False)
                took = time.perf_counter() - start
                if proc.returncode != 0:
                    sys.exit(f"bench: invoke bake {' '.join(extra)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
                engine.docker("image", "rm", "--force", tag)
                engine.docker("builder", "prune", "--all", "--force")
                return took, Bake(proc)

            # Warm-up, untimed: an engine's first build also unpacks the freshly loaded core.
            timed(a)
            timed(b)
            cold, export, warm = [], [], []
            for _ in range(runs):
                took, result = timed(a)
                steps = {n: c for n, c in result.steps().items() if STEP.match(n)}
                if not steps or any(steps.values()):
                    sys.exit(f"bench: the cold build found something in its cache: {steps}")
                cold.append(took)
                export.append(timed(a, "--cache-to", ref)[0])
                took, result = timed(b, "--cache-from", ref)
                steps = {n: c for n, c in result.steps().items() if STEP.match(n)}
                if not steps or not all(steps.values()):
                    sys.exit(f"bench: the import did not give every step CACHED: {steps}")
                warm.append(took)
        print(f"payload: sageattention wheel + {payload_mb} MiB")
        print(f"cold build (fresh builder, no cache):       {fmt(cold)}")
        print(f"cold build + registry cache export:         {fmt(export)}")
        print(f"no-change rebuild, fresh builder, import:   {fmt(warm)}")
        print(f"ratio cold/warm (medians): {median(cold) / median(warm):.2f}x  (goal >= 5x)")
    finally:
        registry.terminate()
        registry.wait(timeout=10)
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
        bench.stop()


if __name__ == "__main__":
    main()
