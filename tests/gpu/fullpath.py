"""The whole path of issue 20 through the project's own commands, on one machine:

1. a loopback GitHub (tests/lib/github.py) publishes WHEEL as a release of thu-ml/SageAttention;
2. ``invoke bump --release TAG --verify`` moves the pin there: url, sha256 and kernel coverage
   recorded in a throw-away project's wheels.toml;
3. ``invoke bake -t complete-cuda`` builds the project's real complete Dockerfile on CORE (the
   stand-in core, through tests/engine/override.hcl's named context); the wheel is installed
   with ``--require-hashes`` from the loopback GitHub;
4. ``nox -s validate_sage2`` on the image of the build record, the label check included;
5. with ``--smoke``: ``nox -s smoke`` on that image, then on the same image with a broken
   ``sageattn`` (returns q), which must fail naming the divergence or the fallback;
6. with ``--registry HOST:PORT`` (a registry on 127.0.0.1 that fullpath_h200.sh starts): the
   image is pushed there after step 2, steps 3 and 4 run on that reference with ``--attest``
   (each report attached to the digest), and ``invoke verify REF --arch ARCH --require measured``
   must exit 0, ``--arch sm86 --require measured`` 1 (static only: nothing measured there).

    python tests/gpu/fullpath.py --wheel W --core-image IMG --out DIR [--arch sm90]
        [--python cp312 --torch 2.11.0 --torch-index cu130 --cuda 13.0] [--require-gpu] [--smoke]
        [--registry 127.0.0.1:PORT]

Every step's command, exit code, wall time and output go to DIR (steps.json, summary.md,
one log per step). Exit 0 only if every step went as expected. tests/gpu/fullpath_h200.sh runs
it on the H200 with a GPU-capable core; on the build machine it runs on the CPU stand-in core
(local/core-standin:test) without --require-gpu and --smoke, as a dry run of steps 1-4.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from tests.lib.dockercli import docker  # noqa: E402
from tests.lib.github import FakeAsset, FakeGitHub, FakeRelease  # noqa: E402
from tests.lib.project import Project, make_project  # noqa: E402
from tests.lib.wheels import sha256_file  # noqa: E402

GH_REPO = "thu-ml/SageAttention"
OLD_TAG, NEW_TAG = "v2.2.0-old", "v2.2.0-fullpath"
BROKEN_INIT = "\n\ndef sageattn(q, k, v, *args, **kwargs):  # comfyimg full path: deliberately broken\n    return q\n"


def wheels_toml(args: argparse.Namespace, old_url: str) -> str:
    return f"""# The full-path proof's project (tests/gpu/fullpath.py): the profile of the core image it builds on.
[profiles.cuda]
python = "{args.python}"
platform = "linux_x86_64"
torch = "{args.torch}"
torch_index = "{args.torch_index}"
cuda = "{args.cuda}"
archs = ["{args.arch}"]

[profiles.cpu]
python = "{args.python}"
platform = "linux_x86_64"
torch = "{args.torch}"
torch_index = "cpu"

[[wheel]]
name = "sageattention"
version = "2.2.0"
url = "{old_url}"
source = {{ github = "{GH_REPO}", release = "{OLD_TAG}" }}
targets = ["complete-cuda"]
provides = ["sageattention"]
"""


class Steps:
    def __init__(self, out: Path, project: Path) -> None:
        self.out, self.project, self.done = out, Project(project), []  # type: ignore[var-annotated]

    def run(self, name: str, argv: list[str], *, want: int = 0, env: dict[str, str | None] | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
        t0 = time.monotonic()
        try:
            proc = self.project.run(*argv, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc = subprocess.CompletedProcess(argv, 124, str(exc.stdout or ""), f"timed out after {timeout} s")
        wall = round(time.monotonic() - t0, 1)
        (self.out / f"{name}.log").write_text(f"$ {' '.join(argv)}\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        self.done.append({"step": name, "command": " ".join(argv[2:] if argv[1] == "-m" else argv),
                          "exit": proc.returncode, "expected": want, "ok": proc.returncode == want, "wall_s": wall})
        print(f"== {name}: exit {proc.returncode} (expected {want}) in {wall} s", flush=True)
        print("\n".join((proc.stdout + proc.stderr).splitlines()[-25:]), flush=True)
        return proc

    def keep(self, src: Path, name: str) -> dict:
        """Copy a report or record into the evidence folder; its JSON ({} when it was not written)."""
        if not src.exists():
            return {}
        shutil.copy(src, self.out / name)
        return json.loads(src.read_text())

    def check(self, name: str, ok: bool, detail: str) -> None:
        self.done.append({"step": name, "ok": ok, "detail": detail})
        print(f"== {name}: {'OK' if ok else 'NOT OK'}: {detail}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, required=True)
    ap.add_argument("--core-image", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("/tmp/comfyimg-fullpath"))
    ap.add_argument("--arch", default="sm90")
    ap.add_argument("--python", default="cp312", help="the core image's Python (the profile's python)")
    ap.add_argument("--torch", default="2.11.0")
    ap.add_argument("--torch-index", default="cu130")
    ap.add_argument("--cuda", default="13.0")
    ap.add_argument("--label", default="fullpath")
    ap.add_argument("--require-gpu", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--smoke-timeout", default="240")
    ap.add_argument("--registry", help="a loopback registry HOST:PORT: push, --attest, invoke verify (step 6)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    # nox --no-venv runs session.run("python") from PATH: this Python, with the project's sources.
    env: dict[str, str | None] = {"PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "PATH": os.pathsep.join([str(Path(py).parent), os.environ.get("PATH", "")])}

    with FakeGitHub() as gh:
        # The old release holds the same file under the same name: the bump moves url and tag,
        # and records the sha256 and the coverage read from the bytes it downloads.
        gh.add_release(GH_REPO, FakeRelease(OLD_TAG, [FakeAsset(args.wheel.name, path=args.wheel)],
                                            published_at="2026-01-01T00:00:00Z"))
        gh.add_release(GH_REPO, FakeRelease(NEW_TAG, [FakeAsset(args.wheel.name, path=args.wheel)],
                                            published_at="2026-02-01T00:00:00Z"))
        old_url = f"{gh.web_url}/{GH_REPO}/releases/download/{OLD_TAG}/{args.wheel.name}"
        root = make_project(args.work / "project", wheels_toml(args, old_url),
                            copy=("services", "compose", "tests/engine/override.hcl", "noxfile.py"))
        steps = Steps(args.out, root)
        before = (root / "wheels.toml").read_text()
        env_gh: dict[str, str | None] = {**env, "GITHUB_API_URL": gh.api_url}

        steps.run("1-bump", [py, "-m", "invoke", "bump", "--release", NEW_TAG, "--verify"], env=env_gh)
        after = (root / "wheels.toml").read_text()
        (args.out / "wheels.toml").write_text(after)
        pin = tomllib.loads(after)["wheel"][0]
        sha = sha256_file(args.wheel)
        steps.check("1-bump recorded", NEW_TAG in pin.get("url", "") and pin.get("sha256") == sha
                    and bool(pin.get("coverage")) and after != before,
                    f"url {pin.get('url')}, sha256 {pin.get('sha256')} (file {sha}), coverage {pin.get('coverage')}")

        steps.run("2-bake", [py, "-m", "invoke", "bake", "-t", "complete-cuda", "--file", "tests/engine/override.hcl",
                             "--allow", "network.host", "--label", args.label],
                  env={**env_gh, "TEST_CORE_IMAGE": args.core_image, "TEST_PIP_INDEX_URL": "http://127.0.0.1:9/simple/"})
        rec = steps.keep(root / "build" / "bake-record.json", "bake-record.json")
        built = rec.get("targets", {}).get("complete-cuda", {})
        image = (built.get("tags") or [""])[0]
        steps.check("2-bake recorded", bool(image) and any(p.get("sha256") == sha for p in built.get("pins", [])),
                    f"image {image} {built.get('image_id', '')[:19]}, pins {built.get('pins')}")

        ref = None
        if args.registry and image:
            ref = f"{args.registry}/comfyui:{args.label}"
            tagged = docker("tag", image, ref)
            t0 = time.monotonic()
            pushed = docker("push", ref, timeout=900)
            (args.out / "2b-push.log").write_text(pushed.stdout + "\n--- stderr\n" + pushed.stderr)
            steps.check("2b-push", tagged.returncode == 0 and pushed.returncode == 0,
                        f"{ref} in {time.monotonic() - t0:.1f} s: "
                        f"{(pushed.stdout + pushed.stderr).strip().splitlines()[-1:]}")
        attest = ["--image", ref, "--attest"] if ref else []
        validate = [py, "-m", "nox", "--no-venv", "-f", "noxfile.py", "-s", "validate_sage2", "--"]
        steps.run("3-validate", validate + attest + (["--require-gpu"] if args.require_gpu else []), env=env)
        rep = steps.keep(root / "reports" / "sage2.json", "validate-sage2.json")
        checks = {c["name"]: c["status"] for c in rep.get("result", {}).get("checks", [])}
        steps.check("3-validate labels", checks.get("image labels match the pins") == "pass",
                    f"label check: {checks.get('image labels match the pins')}; passed {rep.get('passed')}, "
                    f"gpu {rep.get('gpu', {}).get('container_gpu')}")

        if args.smoke and image:
            smoke = [py, "-m", "nox", "--no-venv", "-f", "noxfile.py", "-s", "smoke", "--", "--image"]
            steps.run("4-smoke", smoke + [ref or image, "--timeout", args.smoke_timeout]
                      + (["--attest"] if ref else []), env=env)
            steps.keep(root / "reports" / "smoke.json", "smoke-good.json")

            broken = f"{image}-broken"
            box = "comfyimg-fullpath-break"
            where = docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c",
                           "import sageattention; print(sageattention.__file__)").stdout.strip()
            made = docker("run", "--name", box, "--network", "none", "--user", "0", "--entrypoint", "/bin/sh", image,
                          "-c", f"printf '%s' '{BROKEN_INIT}' >> {where}")
            cfg = json.loads(docker("image", "inspect", image, "--format", "{{json .Config}}").stdout or "{}")
            changes = [f"ENTRYPOINT {json.dumps(cfg.get('Entrypoint') or [])}", f"CMD {json.dumps(cfg.get('Cmd') or [])}",
                       f"USER {cfg.get('User') or '0'}", f"WORKDIR {cfg.get('WorkingDir') or '/'}"]
            commit = docker("commit", *sum((["--change", c] for c in changes), []), box, broken)
            docker("rm", "-f", box)
            steps.check("5-broken image", bool(where) and made.returncode == 0 and commit.returncode == 0,
                        f"sageattn replaced in {where or '(not found)'}: {made.stderr.strip()[-200:]}"
                        f"{commit.stderr.strip()[-200:]}")
            steps.run("5-smoke-broken", smoke + [broken, "--timeout", args.smoke_timeout], want=1, env=env)
            bad = steps.keep(root / "reports" / "smoke.json", "smoke-broken.json")
            reason = bad.get("result", {}).get("reason", "")
            steps.check("5-smoke-broken reason", any(w in reason for w in ("agree", "fallback")),
                        reason[:400])
            docker("image", "rm", "-f", broken)

        if ref:  # on the GPU, sm90 measured; a dry run without a GPU attaches reports that measure nothing
            verify = [py, "-m", "invoke", "verify", ref]
            steps.run("6-verify", verify + ["--arch", args.arch, "--require", "measured"],
                      want=0 if args.require_gpu else 1, env=env)
            steps.run("6-verify-sm86", verify + ["--arch", "sm86", "--require", "measured"], want=1, env=env)
            answer = steps.run("6-verify-json", verify + ["--arch", args.arch, "--json"], env=env)
            (args.out / "verify.json").write_text(answer.stdout)
            try:
                found = json.loads(answer.stdout)
                row = next(a for p in found["packages"] if p["name"] == "sageattention"
                           for a in p["archs"] if a["arch"] == args.arch)
            except (ValueError, KeyError, StopIteration):
                row = {}
            kinds = {e["kind"] for e in row.get("evidence", [])}
            want = ({"validate_sage2", "smoke"} if args.smoke else {"validate_sage2"}) if args.require_gpu else set()
            steps.check("6-verify answer", kinds == want and row.get("answer") == ("measured" if args.require_gpu else "static only"),
                        f"{args.arch}: {row.get('answer')}; measured: {row.get('measured')}; reports: {sorted(kinds)}")

    ok = all(s["ok"] for s in steps.done)
    (args.out / "steps.json").write_text(json.dumps(steps.done, indent=2) + "\n")
    lines = [f"- {s['step']}: {'OK' if s['ok'] else 'NOT OK'}"
             + (f" (exit {s['exit']}, expected {s['expected']}, {s['wall_s']} s): `{s['command']}`" if "exit" in s
                else f": {s['detail']}") for s in steps.done]
    (args.out / "summary.md").write_text("\n".join(lines + [f"RESULT: {'OK' if ok else 'NOT OK'}"]) + "\n")
    print("\n".join(lines + [f"RESULT: {'OK' if ok else 'NOT OK'}"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
