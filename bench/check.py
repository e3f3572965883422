"""Time `invoke check` on the repository's wheels.toml (wall clock, whole process).

    nox -s bench -- check [RUNS]

Prints min / median / max over RUNS (default 10) runs, and the same for a bare
`python -c pass` so interpreter start-up can be told apart.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for label, cmd in [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("invoke check", [sys.executable, "-m", "invoke", "check"]),
    ]:
        t = timed(cmd, runs)
        print(f"{label:16} min {min(t) * 1000:6.0f} ms  median {statistics.median(t) * 1000:6.0f} ms  "
              f"max {max(t) * 1000:6.0f} ms  ({runs} runs)")


if __name__ == "__main__":
    main()
