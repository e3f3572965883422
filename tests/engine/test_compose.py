"""The compose examples (compose/*.yml): ``docker compose config`` on each, checked against
the bake file's tags, and ``docker compose up`` of the stand-in core with no network."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tests.lib.project import REPO

from tests.lib.engine import LABEL, STANDIN, docker

COMPOSE = REPO / "compose"
DATA_DIRS = ["models", "input", "output", "user", "custom_nodes"]
OVERRIDE = REPO / "tests" / "engine" / "compose-loopback.yml"


@pytest.fixture(autouse=True)
def _compose_plugin():
    if shutil.which("docker") is None or docker("compose", "version", timeout=30).returncode != 0:
        msg = "the docker compose plugin is missing (tools/engine/install.sh installs docker-compose)"
        pytest.fail(msg, pytrace=False)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REGISTRY", "IMAGE_LABEL", "COMFYUI_IMAGE", "COMFYUI_DATA", "PUID", "PGID")}
    return {**env, **extra}


def config(*files: str, **env: str) -> dict:
    args = ["compose", "--project-directory", str(COMPOSE)]
    for f in files:
        args += ["-f", str(COMPOSE / f) if "/" not in f else f]
    proc = docker(*args, "config", "--format", "json", env=_env(**env), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def bake_tag(target: str, **env: str) -> str:
    proc = docker("buildx", "bake", "-f", str(REPO / "docker-bake.hcl"), "-f",
                  str(REPO / "generated" / "wheels.bake.json"), "--print", target, env=_env(**env), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["target"][target]["tags"][0]


@pytest.mark.parametrize("file,service", [("core-cpu.yml", "core-cpu"), ("complete-cuda.yml", "complete-cuda")])
def test_each_profile_has_one_service_with_puid_pgid_and_the_data_volumes(file, service, tmp_path):
    cfg = config(file, PUID="2000", PGID="3000", COMFYUI_DATA=str(tmp_path))
    assert list(cfg["services"]) == [service]  # `docker compose exec complete-cuda …` names it
    svc = cfg["services"][service]
    assert svc["environment"] == {"PUID": "2000", "PGID": "3000"}
    mounts = {v["target"]: v["source"] for v in svc["volumes"] if v["type"] == "bind"}
    assert mounts == {f"/app/ComfyUI/{d}": str(tmp_path / d) for d in DATA_DIRS}
    # The defaults: the image's own comfy user.
    assert config(file)["services"][service]["environment"] == {"PUID": "1000", "PGID": "1000"}


@pytest.mark.parametrize("file,service,target", [("core-cpu.yml", "core-cpu", "core-cpu"),
                                                 ("complete-cuda.yml", "complete-cuda", "complete-cuda")])
def test_the_image_is_the_tag_invoke_bake_builds(file, service, target):
    assert config(file)["services"][service]["image"] == bake_tag(target)
    env = {"REGISTRY": "registry.invalid/acme/", "IMAGE_LABEL": "v7"}
    assert config(file, **env)["services"][service]["image"] == bake_tag(target, **env)
    assert config(file, COMFYUI_IMAGE="x/y:z")["services"][service]["image"] == "x/y:z"


def test_complete_cuda_reserves_every_nvidia_gpu():
    svc = config("complete-cuda.yml")["services"]["complete-cuda"]
    assert svc["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": -1, "capabilities": ["gpu"]}]  # count: all
    assert "devices" not in svc
    assert "--use-sage-attention" in svc["command"]


def test_the_cdi_variant_asks_dockerd_for_the_cdi_device_instead():
    svc = config("complete-cuda.yml", "complete-cuda.cdi.yml")["services"]["complete-cuda"]
    assert svc["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "cdi", "device_ids": ["nvidia.com/gpu=all"], "capabilities": ["gpu"]}]
    assert svc["image"] == config("complete-cuda.yml")["services"]["complete-cuda"]["image"]


def test_the_loopback_override_leaves_no_network_to_create():
    cfg = config("core-cpu.yml", str(OVERRIDE))
    assert cfg["services"]["core-cpu"]["network_mode"] == "none"
    assert "ports" not in cfg["services"]["core-cpu"]
    assert not cfg.get("networks"), cfg.get("networks")


@pytest.mark.engine
def test_compose_up_runs_as_puid_pgid_and_writes_into_the_mounted_volumes(tmp_path):
    project = f"comfyimg-{LABEL}-compose"
    data = tmp_path / "data"  # absent: compose creates the host folders (as root), the entrypoint chowns them
    env = _env(COMFYUI_IMAGE=STANDIN, COMFYUI_DATA=str(data), PUID="2345", PGID="3456")
    base = ["compose", "-p", project, "--project-directory", str(COMPOSE),
            "-f", str(COMPOSE / "core-cpu.yml"), "-f", str(OVERRIDE)]
    networks_before = set(docker("network", "ls", "-q").stdout.split())
    try:
        up = docker(*base, "up", "--abort-on-container-exit", "--exit-code-from", "core-cpu", env=env, timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "HOME=/home/comfy" in up.stdout, up.stdout
        for d in DATA_DIRS:
            marker = data / d / "written-by"
            assert marker.read_text() == "2345:3456\n", d
            st = marker.stat()
            assert (st.st_uid, st.st_gid) == (2345, 3456), d
            assert (data / d).stat().st_uid == 2345, d  # the entrypoint took the folder over
        cid = docker(*base, "ps", "-a", "-q", "core-cpu", env=env).stdout.strip()
        mode = docker("inspect", "--format", "{{.HostConfig.NetworkMode}}", cid).stdout.strip()
        assert mode == "none"
        assert set(docker("network", "ls", "-q").stdout.split()) == networks_before, "compose created a network"
    finally:
        down = docker(*base, "down", "--remove-orphans", env=env, timeout=120)
        assert down.returncode == 0, down.stderr


CDI_SPEC = """\
cdiVersion: "0.6.0"
kind: nvidia.com/gpu
devices:
- name: all
  containerEdits:
    env:
    - CDI_DEVICE=nvidia.com/gpu=all
containerEdits:
  env:
  - CDI_VENDOR=nvidia.com
"""


@pytest.mark.engine
def test_the_cdi_variant_reaches_dockerds_cdi_driver(tmp_path):
    """No GPU here, but CDI is only a spec file: a fresh dockerd with CDI on and a spec for
    nvidia.com/gpu=all (which sets env vars instead of device nodes) shows that compose
    sends the request and dockerd applies that spec to the container."""
    from tests.lib.engine import BASE
    from tests.lib.engines import fresh_engine, load_images

    specs = tmp_path / "cdi"
    specs.mkdir()
    (specs / "nvidia.yaml").write_text(CDI_SPEC)
    override = tmp_path / "probe.yml"
    override.write_text("services:\n  complete-cuda:\n    network_mode: none\n    ports: !reset []\n"
                        "    restart: \"no\"\n    entrypoint: [\"sh\", \"-c\", \"echo $$CDI_DEVICE $$CDI_VENDOR\"]\n")
    with fresh_engine("cdi", daemon={"features": {"cdi": True}, "cdi-spec-dirs": [str(specs)]}) as engine:
        load_images(engine, BASE)
        base = ["compose", "-p", f"comfyimg-{LABEL}-cdi", "--project-directory", str(COMPOSE),
                "-f", str(COMPOSE / "complete-cuda.yml")]
        env = {"COMFYUI_IMAGE": BASE, "COMFYUI_DATA": str(tmp_path / "data")}
        up = engine.docker(*base, "-f", str(COMPOSE / "complete-cuda.cdi.yml"), "-f", str(override), "up",
                           "--abort-on-container-exit", "--exit-code-from", "complete-cuda", env=env, timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "nvidia.com/gpu=all nvidia.com" in up.stdout, up.stdout
        # The nvidia variant needs the NVIDIA runtime, which this engine lacks: it must not start.
        nvidia = engine.docker(*base, "-f", str(override), "up", "--abort-on-container-exit", env=env, timeout=180)
        assert nvidia.returncode != 0 and "could not select device driver" in nvidia.stdout + nvidia.stderr
        engine.docker(*base, "down", "--remove-orphans", env=env)
