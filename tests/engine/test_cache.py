"""Build caches through ``invoke bake --cache-to/--cache-from``, against the loopback registry.

One builder (a fresh engine) builds complete-cuda cold and exports its cache to the
registry and to a local folder; a second fresh engine, whose BuildKit has never seen
this build, imports it and rebuilds with every step CACHED, from the registry and then
(its cache pruned) from the folder; pruned once more and importing nothing, it runs the
steps again (the control). Why fresh engines and not a docker-container builder:
tests/engine/engines.py.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request

import pytest

from tests.lib.assertions import assert_failed_cleanly
from tests.lib.engine import STANDIN, docker, wheels_toml
from tests.lib.engines import fresh_engine, load_images

pytestmark = pytest.mark.engine

STEP = re.compile(r"^\[stage-0 \d+/\d+\] ")  # the complete Dockerfile's own steps


@pytest.fixture(scope="module")
def engines(served):
    with fresh_engine("export") as exporter, fresh_engine("import") as importer:
        errors: list[BaseException] = []

        def load(engine):
            try:
                load_images(engine, STANDIN)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=load, args=(e,)) for e in (exporter, importer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        yield exporter, importer


def _build_steps(bake) -> dict[str, bool]:
    return {name: cached for name, cached in bake.steps().items() if STEP.match(name)}


def _reset(engine, tag: str) -> None:
    engine.docker("image", "rm", "--force", tag)
    prune = engine.docker("builder", "prune", "--all", "--force")
    assert prune.returncode == 0, prune.stderr


def test_a_fresh_builder_importing_the_cache_rebuilds_every_step_cached(served, registry, engine_project,
                                                                         engines, tmp_path):
    exporter, importer = engines
    project = engine_project("cache", wheels_toml([served.pin("sage2"), served.pin("sage3")]))
    index = f"{served.server.url}/simple/"
    ref = f"{registry.host}/comfyimg-cache"
    local = tmp_path / "cache"

    cold = project.bake("--cache-to", f"registry={ref}", "--cache-to", f"local={local}", pip_index=index,
                        env=exporter.env)
    assert cold.code == 0, cold.output[-4000:]
    cold_steps = _build_steps(cold)
    assert len(cold_steps) >= 3 and not any(cold_steps.values()), cold_steps  # really cold
    # BuildKit 0.13 (Docker 26) exports the cache as an OCI index; later ones as an OCI image
    # manifest whose config is the cache config (image-manifest=true by default).
    with urllib.request.urlopen(urllib.request.Request(
            f"{registry.url}/v2/comfyimg-cache/manifests/complete-cuda-cache",
            headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                               "application/vnd.oci.image.manifest.v1+json"}), timeout=30) as resp:
        assert resp.status == 200
        cache = json.load(resp)
    assert (cache["mediaType"] == "application/vnd.oci.image.index.v1+json"
            or cache["config"]["mediaType"] == "application/vnd.buildkit.cacheconfig.v0"), cache
    assert json.loads((local / "complete-cuda" / "index.json").read_text())["manifests"]
    layers = exporter.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", project.tag).stdout

    warm = project.bake("--cache-from", f"registry={ref}", pip_index=index, env=importer.env)
    assert warm.code == 0, warm.output[-4000:]
    steps = _build_steps(warm)
    assert set(steps) == set(cold_steps) and all(steps.values()), steps
    got = importer.docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", project.tag).stdout
    assert json.loads(got) == json.loads(layers), "the imported build must give the very same layers"

    _reset(importer, project.tag)
    from_dir = project.bake("--cache-from", f"local={local}", pip_index=index, env=importer.env)
    assert from_dir.code == 0, from_dir.output[-4000:]
    steps = _build_steps(from_dir)
    assert set(steps) == set(cold_steps) and all(steps.values()), steps

    _reset(importer, project.tag)
    control = project.bake(pip_index=index, env=importer.env)
    assert control.code == 0, control.output[-4000:]
    assert not any(_build_steps(control).values()), "a pruned builder that imports nothing runs the steps"


def test_the_classic_docker_driver_refuses_a_cache_export_before_building(served, engine_project):
    if "io.containerd.snapshotter" in docker("info", "--format", "{{json .DriverStatus}}").stdout:
        pytest.fail("the shared engine uses the containerd image store, whose docker driver exports caches: "
                    "the engine tests expect tools/engine/start.sh's classic store", pytrace=False)
    project = engine_project("cache-refused", wheels_toml([served.pin("sage2"), served.pin("sage3")]))
    result = project.bake("--cache-to", "registry=127.0.0.1:9/cache")
    assert_failed_cleanly(result.proc, 2)
    assert "exports only inline cache" in result.proc.stderr and "--cache-to inline" in result.proc.stderr
    assert "#1 " not in result.output, "nothing may be built"
