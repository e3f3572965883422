"""The smoke's in-image parts and HTTP client against real ComfyUI on the H200, WITHOUT docker
(a first proof of the model builder, the custom node, the workflow and the judge; the docker
path is tests/gpu/smoke_h200.sh). ComfyUI a125cd84 runs from the vendored tarball with the
machine's torch, the carried wheels (.gpu/a/cw, .gpu/b/hw) and SageAttention d1a57a5 built here
for sm90. Three runs: sage, pytorch, and sage with a broken sageattn (returns q), which must fail.

    run(command="python3 tests/gpu/smoke_direct_h200.py", carry=[".gpu/a", ".gpu/b/hw", ".gpu/b/ComfyUI-a125cd84.tar.gz",
                                                           ".gpu/b/SageAttention-d1a57a5.tar.gz"], timeout_s=600)
Writes $OUT/smoke-direct.json (+ logs); exit 0 only if good passed and broken failed.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

repo = Path(__file__).resolve().parents[2]
out = Path(os.environ.get("OUT", "/tmp/smoke-out"))
out.mkdir(parents=True, exist_ok=True)
work = Path("/tmp/comfyimg-smoke-direct")
shutil.rmtree(work, ignore_errors=True)
site, broken_site = work / "site", work / "broken"
py = "/opt/torch/.venv/bin/python" if Path("/opt/torch/.venv/bin/python").exists() else sys.executable
t0 = time.monotonic()
log = open(out / "direct.log", "w")


def say(*a):
    print(*a, flush=True)
    print(*a, file=log, flush=True)


for w in [*(repo / ".gpu/a/cw").glob("*.whl"), *(repo / ".gpu/b/hw").glob("*.whl")]:
    zipfile.ZipFile(w).extractall(site)
sys.path[:0] = [str(site), str(repo / "src")]
from comfyimg.validate import smoke  # noqa: E402

# SageAttention 2.2.0 (d1a57a5) for sm90
with tarfile.open(repo / ".gpu/b/SageAttention-d1a57a5.tar.gz") as t:
    t.extractall(work / "sa")
src = next((work / "sa").iterdir())
t = time.monotonic()
r = subprocess.run([py, "setup.py", "-q", "bdist_wheel"], cwd=src, capture_output=True, text=True,
                   env={**os.environ, "TORCH_CUDA_ARCH_LIST": "9.0", "MAX_JOBS": "14"})
(out / "sage-build.log").write_text(r.stdout[-5000:] + r.stderr[-5000:])
wheel = next((src / "dist").glob("*.whl"))
zipfile.ZipFile(wheel).extractall(site)
say(f"sage wheel {wheel.name} in {time.monotonic() - t:.0f} s")
shutil.copytree(site / "sageattention", broken_site / "sageattention")
with open(broken_site / "sageattention/__init__.py", "a") as fh:
    fh.write("\n\ndef sageattn(q, k, v, *args, **kwargs):  # comfyimg smoke: deliberately broken\n    return q\n")

with tarfile.open(repo / ".gpu/b/ComfyUI-a125cd84.tar.gz") as t:
    t.extractall(work)
comfy = next(p for p in work.iterdir() if p.name.startswith("ComfyUI"))
shutil.copytree(repo / "src/comfyimg/validate/probes/comfyimg_smoke", comfy / "custom_nodes/comfyimg_smoke")
env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
t = time.monotonic()
r = subprocess.run([py, "-m", "probes.smoke_model", "--comfyui", str(comfy), "--out", str(work / "models")],
                   cwd=repo / "src/comfyimg/validate", capture_output=True, text=True, env=env, timeout=300)
say("builder:", r.stdout.strip()[-2000:], r.stderr[-3000:] if r.returncode else "", f"{time.monotonic() - t:.1f} s")
model = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
for sub, dest in (("unet", "diffusion_models"), ("vae", "vae")):
    for f in (work / "models" / sub).glob("*"):
        shutil.move(str(f), comfy / "models" / dest / f.name)


def one(sage, pythonpath, tag, steps=smoke.DEFAULT_STEPS):
    result = smoke.Render(sage)
    port = smoke.free_port()
    logf = open(out / f"comfyui-{tag}.log", "w")
    cmd = [py, "main.py", "--listen", "127.0.0.1", "--port", str(port), *(["--use-sage-attention"] if sage else [])]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=comfy, stdout=logf, stderr=subprocess.STDOUT,
                            env={**env, "PYTHONPATH": pythonpath})

    def alive():
        if proc.poll() is not None:
            raise smoke.Gone(f"ComfyUI exited ({proc.returncode}) before it answered")
    try:
        smoke.drive(result, port, alive, steps, started, started + 240)
    except Exception as exc:  # noqa: BLE001
        result.problem = f"{type(exc).__name__}: {exc}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        logf.close()
    result.log = (out / f"comfyui-{tag}.log").read_text(errors="replace")
    result.s_per_step = smoke.seconds_per_step(result.log, steps)
    say(tag, {k: getattr(result, k) for k in ("booted_s", "warmup_s", "prompt_s", "s_per_step", "image", "problem")},
        "stats", json.dumps(result.stats)[:600])
    return result


sage = one(True, str(site), "sage")
plain = one(False, str(site), "pytorch")
good_ok, good = smoke.judge(model, sage, plain, smoke.DEFAULT_STEPS)
broken = one(True, f"{broken_site}:{site}", "broken")
bad_ok, bad = smoke.judge(model, broken, plain, smoke.DEFAULT_STEPS)
summary = {"good_passed": good_ok, "good": good, "broken_passed": bad_ok, "broken": bad,
           "whole_s": round(time.monotonic() - t0, 1)}
(out / "smoke-direct.json").write_text(json.dumps(smoke.clean(summary) if hasattr(smoke, "clean") else summary,
                                                  indent=2, default=str))
for name, v in (("GOOD", good), ("BROKEN", bad)):
    say(f"== {name}: {v['status']}: {v['reason'][:800]}")
    for row in v["checks"]:
        say(f"  {row['status']:4} {row['name']}: {row['detail'][:300]}")
    say("  timing", json.dumps(v["bench"]))
ok = good_ok and not bad_ok
say(f"RESULT: {'OK' if ok else 'NOT OK'} (good passed={good_ok}, broken failed={not bad_ok}) "
    f"in {time.monotonic() - t0:.0f} s")
sys.exit(0 if ok else 1)
