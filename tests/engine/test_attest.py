"""``invoke bake --push`` attests what it pushes, as far as the builder can, and the attestations
read back from the loopback registry through ``docker buildx imagetools inspect``.

The builder is the docker driver of a fresh engine (tests/lib/engines.py) with the containerd
image store, which attaches attestations (the classic store, as the shared engine has, drops
them: tests/engine/test_bake.py). Like every engine here it has no bridge network, and BuildKit
runs the SBOM generator on the engine's default bridge network; so it attaches max-mode SLSA
provenance, no SBOM, and says so.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.lib.engine import STANDIN, wheels_toml
from tests.lib.engines import fresh_engine, load_images

pytestmark = pytest.mark.engine

INDEX = "application/vnd.oci.image.index.v1+json"


@pytest.fixture(scope="module")
def attesting(served):
    with fresh_engine("attest") as engine:
        load_images(engine, STANDIN)
        yield engine


def _inspect(engine, fmt: str, ref: str):
    proc = engine.docker("buildx", "imagetools", "inspect", "--format", fmt, ref, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_push_carries_max_provenance_that_reads_back_and_says_it_has_no_sbom(
        served, registry, engine_project, attesting):
    project = engine_project("attest", wheels_toml([served.pin("sage2"), served.pin("sage3")]))
    result = project.bake("--push", pip_index=f"{served.server.url}/simple/",
                          env={"REGISTRY": f"{registry.host}/", **attesting.env})
    assert result.code == 0, result.output[-4000:]
    stderr = " ".join(result.proc.stderr.split())
    assert "pushed with max-mode provenance but WITHOUT an SBOM" in stderr, stderr[-2000:]
    assert "--sbom" not in result.output

    record = project.record()
    assert record["attestations"] == ["provenance:max"]
    tag = f"{registry.host}/comfyui:cuda-{project.label}"
    entry = record["targets"]["complete-cuda"]
    assert entry["tags"] == [tag]
    digest = entry["digest"]
    assert (project.root / "build/image-digests.txt").read_text() == f"{digest}  {tag}\n"

    # The registry serves an index under that digest: the image and its attestation manifest.
    req = urllib.request.Request(f"{registry.url}/v2/comfyui/manifests/{digest}", headers={"Accept": INDEX})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest
        index = json.load(resp)
    image = [m for m in index["manifests"] if m["platform"]["os"] == "linux"]
    attestation = [m for m in index["manifests"] if m.get("annotations", {}).get(
        "vnd.docker.reference.type") == "attestation-manifest"]
    assert len(image) == 1 and len(attestation) == 1, index
    assert attestation[0]["annotations"]["vnd.docker.reference.digest"] == image[0]["digest"]

    # imagetools reads the pushed tag back to the recorded digest, with its provenance.
    assert _inspect(attesting, "{{json .Manifest}}", tag)["digest"] == digest
    slsa = _inspect(attesting, "{{json .Provenance}}", f"{registry.host}/comfyui@{digest}")["SLSA"]
    assert slsa["buildType"].startswith("https://mobyproject.org/buildkit@v1"), slsa["buildType"]
    assert slsa["buildConfig"]["llbDefinition"], "max mode records the build definition"
    params = slsa["invocation"]["parameters"]
    assert params["frontend"] == "dockerfile.v0"
    assert params["args"]["build-arg:WHEELS_REQUIREMENTS"] == "complete-cuda.txt"
    assert params["args"]["context:core"] == f"docker-image://{STANDIN}"  # the test override's core
    assert any(m["uri"].startswith("pkg:docker/local/core-standin@test") for m in slsa["materials"]), \
        slsa["materials"]
    assert _inspect(attesting, "{{json .SBOM}}", tag) == {}, "no SBOM was attached"
