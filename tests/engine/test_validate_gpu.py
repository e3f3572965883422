"""How validate gives the container the GPU, never skips it silently, and never hangs or
leaks a container (issue 11), on the build machine without a GPU:

* CDI plumbing: a second dockerd of the test's own (own socket, data and exec roots, the config
  that tools/engine/start.sh writes, which turns CDI on, and a spec dir in tmp), with a CDI
  spec for a made-up device ``comfyimg.test/gpu`` that injects
  /dev/null as /dev/nvidia0 and an environment variable. ``--gpus auto`` must pick it
  and the container must see it. The shared engine is never restarted.
* A host that "has" a GPU (``COMFYIMG_HOST_GPU=1``) whose container sees none fails.
* A probe that hangs is killed at ``--timeout``; Ctrl-C (a real SIGINT) and SIGTERM exit
  with one line; the container is gone afterwards.
* Docker's own reason for a failed start reaches the report; an image whose /tmp is 0755
  still validates (the probe's scratch is its own tmpfs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.lib.assertions import assert_failed_cleanly
from tests.lib.project import REPO
from tests.lib.engine import BASE, LABEL, docker
from tests.lib.engines import fresh_engine, load_images

pytestmark = pytest.mark.engine

CDI_KIND = "comfyimg.test/gpu"
CDI_SPEC = f"""\
cdiVersion: "0.6.0"
kind: {CDI_KIND}
devices:
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
      hostPath: /dev/null
    env:
    - COMFYIMG_TEST_GPU=injected-by-cdi
"""
# A probe the test can stop: an image whose `python` sleeps (the probe runs `python …`).
SLEEPER = f"local/comfyimg-sleeper:{LABEL}"
NO_PYTHON = f"local/comfyimg-nopython:{LABEL}"
PROBE_LIKE = f"local/comfyimg-probelike:{LABEL}"


def validate_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "comfyimg", "validate", "sage2", "--root", str(root), "--expect-version", "2.2.0",
            *args]


def run_validate(root: Path, *args: str, env: dict | None = None, timeout: float = 300,
                 ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "CI": "1", "COMFYIMG_HOST_GPU": "0", "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run(validate_cmd(root, *args), cwd=root, env=full, text=True, capture_output=True,
                          timeout=timeout)


def report(root: Path) -> dict:
    return json.loads((root / "reports" / "sage2.json").read_text())


def commit_image(tag: str, script: str, base: str = BASE, env: dict | None = None) -> None:
    """``docker run`` a shell script as root in ``base`` and commit the result as ``tag``."""
    name = f"comfyimg-test-build-{tag.rsplit(':', 1)[-1]}-{abs(hash(tag)) % 10**8}"
    try:
        proc = docker("run", "--name", name, "--network", "none", "--user", "0", "--entrypoint", "sh", base, "-c",
                      script, env=env)
        assert proc.returncode == 0, proc.stderr
        assert docker("commit", name, tag, env=env).returncode == 0
    finally:
        docker("rm", "-f", name, env=env)


def containers_of(image: str, env: dict | None = None) -> list[str]:
    return docker("ps", "-a", "--filter", f"ancestor={image}", "--format", "{{.Names}}",
                  env=env).stdout.split()


@pytest.fixture(scope="module")
def images():
    commit_image(SLEEPER, "useradd -u 1000 comfy && printf '#!/bin/sh\\nexec sleep 600\\n' > /usr/local/bin/python"
                          " && chmod 0755 /usr/local/bin/python")
    commit_image(NO_PYTHON, "useradd -u 1000 comfy && rm -f /usr/bin/python /usr/local/bin/python")
    yield
    for tag in (SLEEPER, NO_PYTHON):
        for name in containers_of(tag):
            docker("rm", "-f", name)
        docker("image", "rm", "-f", tag)


# --------------------------------------------------------------------------- a CDI engine of the test's own


@pytest.fixture(scope="module")
def cdi_engine(tmp_path_factory):
    """dockerd with CDI on and the test's spec dir; the image the probe runs in is the
    base image plus a comfy user and a `python` (no torch: the plumbing is under test)."""
    if shutil.which("dockerd") is None or os.geteuid() != 0:
        msg = "a second dockerd needs root and dockerd on PATH (tools/engine/install.sh)"
        pytest.fail(msg, pytrace=False)
    top = tmp_path_factory.mktemp("cdi")
    specs = top / "specs"
    specs.mkdir()
    (specs / "comfyimg-test.yaml").write_text(CDI_SPEC)
    (specs / "broken.yaml").write_text("kind: [unclosed\n")  # a bad spec beside it must not matter
    # The config a fresh machine gets from tools/engine/start.sh (the shared engine answers, so
    # it only writes the file), plus this test's spec dir.
    config = top / "daemon.json"
    started = subprocess.run(["bash", str(REPO / "tools" / "engine" / "start.sh")], capture_output=True, text=True,
                             env={**os.environ, "DOCKERD_CONFIG": str(config)}, timeout=120)
    assert started.returncode == 0 and f"wrote {config} (CDI on)" in started.stderr, started.stderr
    daemon = {**json.loads(config.read_text()), "cdi-spec-dirs": [str(specs)]}
    with fresh_engine("cdi", daemon=daemon, containerd_store=False) as engine:
        info = engine.docker("info", "--format", "{{json .CDISpecDirs}}", timeout=10)
        # dockerd 26 lists no CDI spec dirs unless the feature is on: start.sh's config turned it on.
        assert json.loads(info.stdout) == [str(specs)], info.stdout
        load_images(engine, BASE)
        commit_image(PROBE_LIKE, "useradd -u 1000 comfy && ln -sf /usr/bin/python3 /usr/local/bin/python",
                     env={**os.environ, **engine.env})
        yield engine.env


def test_auto_picks_the_engines_cdi_device_and_the_container_gets_it(cdi_engine, tmp_path):
    proc = run_validate(tmp_path, "--image", PROBE_LIKE, "--cdi-kind", CDI_KIND, "--comfyui", "none",
                        env=cdi_engine)
    rep = report(tmp_path)
    assert rep["gpu"]["mode"] == "auto"
    assert rep["gpu"]["access"] == f"--device {CDI_KIND}=all", rep["gpu"]
    assert f"the engine's CDI specs offer {CDI_KIND} (all)" == rep["gpu"]["why"]
    # The container got the injected node (the probe lists /dev/nvidia* before torch).
    assert rep["result"]["environment"]["device_nodes"] == ["/dev/nvidia0"], rep["result"]["environment"]
    assert f"GPU: --device {CDI_KIND}=all" in proc.stdout
    # This image has no torch and no sageattention: the probe fails, for exactly those reasons.
    assert proc.returncode == 1 and "torch cannot be imported" in rep["result"]["reason"]
    assert containers_of(PROBE_LIKE, env={**os.environ, **cdi_engine}) == []


def test_without_the_kind_auto_gives_no_gpu_and_says_why(cdi_engine, tmp_path):
    """The default kind (nvidia.com/gpu) is not in this engine's specs: no device, and why."""
    run_validate(tmp_path, "--image", PROBE_LIKE, "--comfyui", "none", env=cdi_engine)
    rep = report(tmp_path)
    assert rep["gpu"]["access"] == "none"
    assert "hold no nvidia.com/gpu device" in rep["gpu"]["why"] and "broken.yaml" in rep["gpu"]["why"]
    assert rep["result"]["environment"]["device_nodes"] == []


def test_explicit_cdi_of_an_unknown_kind_is_dockers_own_refusal(cdi_engine, tmp_path):
    proc = run_validate(tmp_path, "--image", PROBE_LIKE, "--gpus", "cdi", "--cdi-kind", "comfyimg.test/none",
                        "--comfyui", "none", env=cdi_engine)
    assert proc.returncode == 1
    reason = report(tmp_path)["result"]["reason"]
    assert reason.startswith("docker could not start the probe container:") and "comfyimg.test/none" in reason


# --------------------------------------------------------------------------- no silent skip


def test_a_gpu_host_whose_container_sees_no_gpu_fails_and_says_how_to_fix_it(main_image, tmp_path):
    proc = run_validate(tmp_path, "--image", main_image.image, "--comfyui", "none",
                        env={"COMFYIMG_HOST_GPU": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rep = report(tmp_path)
    reason = rep["result"]["reason"]
    assert reason.startswith("the host has an NVIDIA GPU (COMFYIMG_HOST_GPU=1) but the probe container saw none")
    assert "nvidia-ctk cdi generate" in reason and '"cdi": true' in reason
    assert rep["passed"] is False and rep["gpu"]["host_gpu"] == "COMFYIMG_HOST_GPU=1"
    # The same image on a host without a GPU passes, and says the GPU checks did not run.
    proc = run_validate(tmp_path, "--image", main_image.image, "--comfyui", "none")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "GPU checks NOT run: this host has no NVIDIA GPU" in report(tmp_path)["result"]["reason"]


# --------------------------------------------------------------------------- cannot hang, cannot leak


def test_a_probe_that_hangs_is_killed_at_the_timeout(images, tmp_path):
    """Both containers (the probe and the ComfyUI probe, side by side) hang: both are killed at
    the one deadline, and both are removed."""
    started = time.monotonic()
    proc = run_validate(tmp_path, "--image", SLEEPER, "--timeout", "4", timeout=120)
    assert time.monotonic() - started < 60
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "did not finish within 4 s" in lines[0] and "killed and removed" in lines[0], lines
    assert "containers comfyimg-validate-sage2-" in lines[0] and ", comfyimg-validate-sage2-comfyui-" in lines[0]
    assert containers_of(SLEEPER) == []
    rep = report(tmp_path)
    assert rep["passed"] is False and "did not finish within 4 s" in rep["result"]["reason"]


@pytest.mark.parametrize(("sig", "code", "word", "group"), [
    (signal.SIGINT, 130, "interrupted", False), (signal.SIGTERM, 143, "terminated", False),
    (signal.SIGHUP, 129, "terminated", False),
    # A terminal's Ctrl-C reaches the whole process group: the docker CLI children die too,
    # and the threads waiting on them must not print tracebacks (issue 21).
    (signal.SIGINT, 130, "interrupted", True)], ids=["sigint", "sigterm", "sighup", "ctrl-c-group"])
def test_ctrl_c_and_sigterm_remove_the_container_and_print_one_line(images, tmp_path, sig, code, word, group):
    env = {**os.environ, "CI": "1", "COMFYIMG_HOST_GPU": "0", "PYTHONPATH": os.pathsep.join(
        [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(validate_cmd(tmp_path, "--image", SLEEPER), cwd=tmp_path, start_new_session=group,
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        # both containers run side by side: the probe's and the ComfyUI probe's
        while len(docker("ps", "--filter", f"ancestor={SLEEPER}", "--filter", "status=running",
                         "-q").stdout.split()) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.3)
        if group:
            os.killpg(proc.pid, sig)  # as a terminal sends it: validate and its docker CLI children
        else:
            proc.send_signal(sig)  # a real signal, to the validate process only
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_failed_cleanly(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), code)
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{word}: validate sage2 stopped"), stderr
    assert containers_of(SLEEPER) == []


def test_dockers_own_reason_for_a_failed_start_reaches_the_report(images, tmp_path):
    run_validate(tmp_path, "--image", BASE, "--comfyui", "none")  # the base image has no user comfy
    reason = report(tmp_path)["result"]["reason"]
    assert reason.startswith("docker could not start the probe container:") and "unable to find user comfy" in reason
    proc = run_validate(tmp_path, "--image", NO_PYTHON, "--comfyui", "none")
    assert proc.returncode == 1
    reason = report(tmp_path)["result"]["reason"]
    assert "executable file not found" in reason and '"python"' in reason, reason
    assert containers_of(NO_PYTHON) == []


def test_an_image_whose_tmp_is_not_writable_still_validates(main_image, tmp_path):
    """Docker keeps the mode of the image's own /tmp even with mode=1777: the probe's
    HOME, TMPDIR and Triton cache live in its own tmpfs instead."""
    from comfyimg.validate import containers as validate_mod

    tag = f"local/comfyimg-tmp0755:{LABEL}"
    commit_image(tag, "chmod 0755 /tmp", base=main_image.image)
    try:
        options = validate_mod.container_options("comfy")
        said = docker("run", "--rm", *options.args(), tag, "-c", "import os; print(os.access('/tmp', os.W_OK))",
                      timeout=120).stdout
        assert said.strip() == "False"  # the hostile image is hostile under the probe's own options
        proc = run_validate(tmp_path, "--image", tag, "--comfyui", "none")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        checks = {c["name"]: c["status"] for c in report(tmp_path)["result"]["checks"]}
        assert checks["scratch"] == "pass" and checks["import"] == "pass"
    finally:
        docker("image", "rm", "-f", tag)
