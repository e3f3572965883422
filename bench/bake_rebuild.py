"""P1: a no-change rebuild through `invoke bake` vs a raw `docker buildx bake` of the same plan.

    nox -s bench -- bake_rebuild [RUNS]      # default 7

Builds complete-cuda once on the stand-in core (warm cache), then times RUNS rebuilds of
each, alternating (invoke, raw, invoke, raw, ...), so both see the same machine state:

* invoke: `invoke bake -t complete-cuda --file tests/engine/override.hcl --allow network.host
  --label bench` (render check, preflight: engine + buildx checks, `bake --print` plan and the
  hash check; then the build with --load and the build record);
* raw:    `docker buildx bake -f docker-bake.hcl -f generated/wheels.bake.json
  -f tests/engine/override.hcl --allow network.host --progress plain --load complete-cuda`
  (IMAGE_LABEL=bench, same variables).

Both are whole processes timed from outside (wall clock). Goal: invoke <= 1.05x raw.
"""

from __future__ import annotations

import sys

from bench._bakebench import fmt, median, setup


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    bench = setup("p1-rebuild")
    try:
        bench.write_pins([bench.pin("sageattention", "2.2.0"), bench.pin("sageattn3", "1.0.0")])
        bench.run(bench.invoke_bake())  # warm: renders generated/, fills the cache
        bench.run(bench.raw_bake())
        invoke_t, raw_t = [], []
        for _ in range(runs):
            invoke_t.append(bench.run(bench.invoke_bake()))
            raw_t.append(bench.run(bench.raw_bake()))
        print(f"invoke bake (no change): {fmt(invoke_t)}")
        print(f"raw buildx bake:         {fmt(raw_t)}")
        print(f"ratio invoke/raw (medians): {median(invoke_t) / median(raw_t):.2f}x  (goal <= 1.05x)")
        print(f"overhead (medians): {median(invoke_t) - median(raw_t):+.2f} s")
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
