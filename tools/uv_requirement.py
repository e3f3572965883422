"""Print uv's pip requirement line, pinned to the version and hashes that uv.lock records.

tools/bootstrap.sh installs uv with it (``pip install --require-hashes``), so the tool that
reads the lock comes from the lock too.  Standard library only: it runs before anything else
is installed.
"""

import sys
import tomllib
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "uv.lock"


def main() -> int:
    with LOCK.open("rb") as f:
        lock = tomllib.load(f)
    (uv,) = [p for p in lock["package"] if p["name"] == "uv"]
    hashes = [w["hash"] for w in uv.get("wheels", [])] + ([uv["sdist"]["hash"]] if "sdist" in uv else [])
    if not hashes:
        print(f"{LOCK}: package uv has no hashes", file=sys.stderr)
        return 1
    print(f"uv=={uv['version']} " + " ".join(f"--hash={h}" for h in hashes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
