"""What an image says about itself: the OCI labels and the pins label that ``invoke bake``
puts on every image, shown by ``docker inspect`` and the build record, and checked by
``nox -s validate_*`` (comfyimg.validate) against the pins it expects."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys

import pytest

from tests.lib.engine import docker

pytestmark = pytest.mark.engine

OCI = "org.opencontainers.image."


def _labels(image: str) -> dict[str, str]:
    proc = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_docker_inspect_shows_the_oci_labels_and_the_pins(main_image):
    labels = _labels(main_image.image)
    assert labels[OCI + "version"] == main_image.project.label
    created = dt.datetime.strptime(labels[OCI + "created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 3 * 3600
    # The test project lives inside this checkout (build/ is git-ignored): its HEAD is the revision.
    head = subprocess.run(["git", "-C", str(main_image.project.root), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    assert labels[OCI + "revision"] == (head or "unknown")
    assert labels[OCI + "source"]
    from comfyimg.audit import coverage
    from comfyimg.pins.load import load

    pins = load(main_image.project.pins)
    assert json.loads(labels["io.comfyimg.pins"]) == [
        {"name": p.name, "version": p.version, "sha256": p.sha256, "archs": list(coverage.serves(pins, p))}
        for p in sorted(pins.for_target("complete-cuda"), key=lambda p: p.name)]
    from comfyimg import render

    installed = pins.for_target("complete-cuda")  # where each attention package runs, as audit says
    assert labels["io.comfyimg.runs-on"] == render.runs_label(pins, "complete-cuda", installed)
    assert [p.sha256 for p in sorted(pins.wheels, key=lambda p: p.name)] == [
        p.sha256 for p in sorted(main_image.pins, key=lambda p: p.name)]


def test_the_build_record_carries_the_same_labels(main_image):
    entry = main_image.project.record()["targets"]["complete-cuda"]
    assert entry["labels"] == {k: v for k, v in _labels(main_image.image).items()
                               if k.startswith(OCI) or k.startswith("io.comfyimg.")}


def _validate(project, *args: str):
    # --comfyui none: the stand-in core has no ComfyUI checkout.
    return project.run(sys.executable, "-m", "comfyimg", "validate", "sage2", "--root", str(project.root),
                       "--comfyui", "none", *args, timeout=300)


def test_validate_checks_the_labels_against_the_build_record(main_image, engine_project):
    good = _validate(main_image.project)
    assert good.returncode == 0, good.stdout + good.stderr
    checks = json.loads((main_image.project.root / "reports" / "sage2.json").read_text())["result"]["checks"]
    assert {"name": "image labels match the pins", "status": "pass",
            "detail": "2 pin(s) labelled as expected"} in checks

    # Another project whose build record names the same image, but with a different sageattention
    # sha256 (as if the image had been rebuilt from other pins): the labels betray it.
    project = engine_project("labels-mismatch", main_image.project.pins.read_text())
    record = main_image.project.record()
    pin = record["targets"]["complete-cuda"]["pins"][0]
    pin["sha256"] = "0" * 64
    (project.root / "build").mkdir(exist_ok=True)
    (project.root / "build" / "bake-record.json").write_text(json.dumps(record))
    bad = _validate(project)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    rep = json.loads((project.root / "reports" / "sage2.json").read_text())
    assert rep["passed"] is False and rep["result"]["reason"].startswith("labels: label and expected pins differ")
    assert re.search(rf"{pin['name']} {pin['version']} 000000000000", rep["result"]["reason"])


def test_validate_with_an_unlabelled_image_skips_the_label_check(main_image):
    # The stand-in core was not built by invoke bake: no pins label; with --image that is a skip.
    from comfyimg.validate.verdict import label_check

    check = label_check("local/core-standin:test", [{"name": "sageattention", "version": "2.2.0", "sha256": None}],
                        exact=False)
    assert check["status"] == "skip" and "no io.comfyimg.pins label" in check["detail"]
    assert label_check("local/core-standin:test", [], exact=True)["status"] == "fail"


def test_bake_json_prints_the_build_record_and_only_that(main_image):
    project = main_image.project
    result = project.bake("--json")  # a no-change rebuild: every step cached
    assert result.code == 0, result.output[-3000:]
    assert json.loads(result.proc.stdout) == project.record()
    assert "#1 " in result.proc.stderr, "the build log goes to stderr"


def test_print_shows_the_labels_in_the_plan_as_plain_json(main_image):
    proc = main_image.project.invoke("bake", "--print", "-t", "complete-cuda", "--file", "tests/engine/override.hcl",
                                     "--label", main_image.project.label, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    labels = json.loads(proc.stdout)["target"]["complete-cuda"]["labels"]
    assert json.loads(labels["io.comfyimg.pins"]) == json.loads(_labels(main_image.image)["io.comfyimg.pins"])
    assert labels[OCI + "version"] == main_image.project.label
