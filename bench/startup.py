"""Start-up: each command against its raw equivalent, in one run (issue 26, item 6).

    nox -s bench -- startup [RUNS]

In a throw-away copy of the project (tasks.py, docker-bake.hcl, wheels.toml, generated/),
each pair is run RUNS times (default 5), command and raw equivalent taking turns so that the
machine's load falls on both alike; prints the medians as a Markdown table (seconds, wall
clock, whole process) and the difference, which is what the command adds. The raw equivalent
of ``invoke bake --print`` is ``docker buildx bake --print`` on the same files; of a command
with no docker equivalent, an empty invoke task (invoke's own start-up) or ``python -c pass``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMPTY_TASKS = "from invoke import task\n\n\n@task\ndef noop(c):\n    pass\n"


def pairs(project: Path, empty: Path) -> list[tuple[str, list[str], str, list[str]]]:
    py, invoke = sys.executable, [sys.executable, "-m", "invoke"]
    bake_files = ["-f", "docker-bake.hcl", "-f", "generated/wheels.bake.json"]
    noop = [*invoke, "--search-root", str(empty), "noop"]
    return [
        ("invoke bake --print -t all", [*invoke, "bake", "--print", "-t", "all"],
         "docker buildx bake --print all", ["docker", "buildx", "bake", "--print", *bake_files, "all"]),
        ("invoke check", [*invoke, "check"],
         "docker buildx bake --call check all", ["docker", "buildx", "bake", "--call", "check", *bake_files, "all"]),
        ("invoke render", [*invoke, "render"], "(an empty invoke task)", noop),
        ("invoke audit", [*invoke, "audit"], "(an empty invoke task)", noop),
        ("invoke --help bump", [*invoke, "--help", "bump"], "(the help of an empty invoke task)", [*noop[:-1], "--help", "noop"]),
        ("invoke --list", [*invoke, "--list"], "(an empty invoke task)", noop),
        ("python -m comfyimg --help", [py, "-m", "comfyimg", "--help"], "python -c pass", [py, "-c", "pass"]),
    ]


# As on a user's machine: Python caches the bytecode it compiles (the warm-up run writes it),
# even where this shell asks it not to.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def seconds(cmd: list[str], cwd: Path) -> tuple[float, int]:
    start = time.perf_counter()
    code = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=300, check=False, env=ENV).returncode
    return time.perf_counter() - start, code


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory(prefix="comfyimg-startup-") as tmp:
        project, empty = Path(tmp) / "project", Path(tmp) / "empty"
        project.mkdir()
        empty.mkdir()
        (empty / "tasks.py").write_text(EMPTY_TASKS)
        for name in ("tasks.py", "docker-bake.hcl", "wheels.toml"):
            shutil.copy(ROOT / name, project / name)
        shutil.copytree(ROOT / "generated", project / "generated")
        subprocess.run([sys.executable, "-m", "invoke", "render"], cwd=project, capture_output=True, check=True, env=ENV)
        print("| command | median s | raw equivalent | median s | the command adds |")
        print("|---|---|---|---|---|")
        for label, cmd, raw_label, raw in pairs(project, empty):
            seconds(cmd, project), seconds(raw, project)  # warm: caches, bytecode
            mine, theirs, codes, raw_codes = [], [], set(), set()
            for _ in range(runs):
                t, code = seconds(cmd, project)
                mine.append(t)
                codes.add(code)
                t, code = seconds(raw, project)
                theirs.append(t)
                raw_codes.add(code)
            a, b = statistics.median(mine), statistics.median(theirs)
            print(f"| {_shown(label)}{_exits(codes)} | {a:.2f} | {_shown(raw_label)}{_exits(raw_codes)} | {b:.2f} | "
                  f"{a - b:+.2f} s |", flush=True)


def _shown(label: str) -> str:
    """A command as code; a description (in parentheses) as text."""
    return label if label.startswith("(") else f"`{label}`"


def _exits(codes: set[int]) -> str:
    return f" (exit {', '.join(map(str, sorted(codes)))})" if codes != {0} else ""


if __name__ == "__main__":
    main()
