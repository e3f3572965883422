"""``invoke bake`` against a real engine: the REAL complete Dockerfile on the stand-in core.

Issue 4: the images hold exactly the pinned wheels, bad wheels fail the build with a
message that names them, a pin bump rebuilds one layer, every target evaluates, the
PUID/PGID entrypoint works, ``--push`` publishes, preflight refuses unhashed pins.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request

import pytest

from tests.lib.assertions import assert_failed_cleanly
from tests.lib.project import REPO

from tests.lib.engine import (
    STANDIN,
    WheelPin,
    docker,
    free_port,
    make_wheel,
    pip_list,
    sage2_files,
    wheels_toml,
)

pytestmark = pytest.mark.engine

ALL_TARGETS = {"runtime-cuda", "runtime-cpu", "core-cuda", "core-cpu", "complete-cuda"}


def _layers(image: str) -> list[str]:
    proc = docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _last_line(text: str) -> str:
    return [ln for ln in text.splitlines() if ln.strip()][-1]


# --------------------------------------------------------------------------- the built image


def test_image_holds_exactly_the_pinned_distributions(main_image):
    base = pip_list(STANDIN)
    built = pip_list(main_image.image)
    added = {name: v for name, v in built.items() if name not in base}
    assert added == {"sageattention": "2.2.0", "sageattn3": "1.0.0"}
    # Nothing the core had was replaced or removed (torch above all).
    assert {name: built.get(name) for name in base} == base


def test_build_record_maps_target_to_image_tags_and_pins(main_image):
    record = main_image.project.record()
    entry = record["targets"]["complete-cuda"]
    image_id = docker("image", "inspect", "--format", "{{.Id}}", main_image.image).stdout.strip()
    assert entry["image_id"] == image_id
    assert entry["tags"] == [main_image.image]
    assert [(p["name"], p["version"], p["url"], p["sha256"]) for p in entry["pins"]] == [
        (p.name, p.version, p.url, p.sha256) for p in main_image.pins
    ]


def test_changed_wheel_bytes_fail_the_build_naming_the_wheel(served, engine_project):
    pin = served.pin("sage2-tampered")
    project = engine_project("tampered", wheels_toml([pin, served.pin("sage3")]))
    result = project.bake(pip_index=f"{served.server.url}/simple/")
    assert_failed_cleanly(result.proc, 1)
    filename = pin.url.rsplit("/", 1)[-1]
    last = _last_line(result.proc.stderr)
    assert "hash mismatch" in last and filename in last, last
    assert docker("image", "inspect", project.tag).returncode != 0, "a failed build must not leave an image"


def test_unreachable_wheel_url_fails_the_build_naming_the_url(served, engine_project):
    good = served.pin("sage2")
    url = f"http://127.0.0.1:{free_port()}/{good.url.rsplit('/', 1)[-1]}"  # nothing listens there
    pin = WheelPin(good.name, good.version, url, good.sha256, good.provides)
    project = engine_project("unreachable", wheels_toml([pin, served.pin("sage3")]))
    result = project.bake(pip_index=f"{served.server.url}/simple/")
    assert_failed_cleanly(result.proc, 1)
    last = _last_line(result.proc.stderr)
    assert url in last, last


def test_bumping_one_pin_rebuilds_only_the_wheel_layer(main_image, bumped_image):
    before, after = _layers(main_image.image), _layers(bumped_image.image)
    assert len(before) == len(after)
    assert before[:-1] == after[:-1], "only the last (wheel) layer may differ"
    assert before[-1] != after[-1]
    steps = bumped_image.bake.steps()
    ran = [name for name, cached in steps.items() if not cached and re.match(r"\[\S+ \d+/\d+\] ", name)]
    assert len(ran) == 1 and "--require-hashes" in ran[0], steps
    assert any(cached and "complete-requirements.txt" in name for name, cached in steps.items()), steps
    assert pip_list(bumped_image.image) == {**pip_list(main_image.image), "sageattention": "2.2.1"}


# --------------------------------------------------------------------------- the plan


def test_print_evaluates_every_target_of_the_real_bake_file(engine_project):
    project = engine_project("print-real", (REPO / "wheels.toml").read_text(encoding="utf-8"))
    shutil.copytree(REPO / "generated", project.root / "generated")
    before = (project.root / "generated" / "wheels.bake.json").read_text()
    proc = project.invoke("bake", "--print", "-t", "all", "--label", project.label)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)
    variables = json.loads(before)["variable"]
    assert set(plan["target"]) == (ALL_TARGETS | {f"complete-cuda-{a}" for a in variables["CUDA_ARCH_TARGETS"]["default"]}
                                   | {f"{t}-cpu-{p}" for p in variables["CPU_OTHER_PLATFORMS"]["default"]
                                      for t in ("runtime", "core")})
    assert plan["target"]["complete-cuda"]["tags"] == [f"comfyui:cuda-{project.label}"]
    assert plan["target"]["core-cuda"]["contexts"]["runtime"] == "target:runtime-cuda"
    # The real generated file was current: --print did not rewrite it.
    assert (project.root / "generated" / "wheels.bake.json").read_text() == before
    assert "Traceback" not in proc.stderr


def test_print_is_what_buildx_prints_with_the_same_options(engine_project):
    """``--print`` runs buildx once and adds the labels itself: the plan is, in content, what
    ``docker buildx bake --print`` prints given the same ``--set`` options (the user's, then the
    derived labels), on the project's own bake file."""
    from comfyimg.bake.bake import BakeRequest, derived_args
    from comfyimg.pins.load import load
    from comfyimg.render import BAKE_FILE, BAKE_VARS, targets

    project = engine_project("print-same", (REPO / "wheels.toml").read_text(encoding="utf-8"))
    shutil.copytree(REPO / "generated", project.root / "generated")
    env = {"IMAGE_SOURCE": "https://example.invalid/o/r", "IMAGE_REVISION": "0" * 40,
           "IMAGE_CREATED": "2026-12-07T00:00:00Z"}  # the same values for both runs
    user_set = "runtime-cpu.labels.extra=from the user"
    proc = project.invoke("bake", "--print", "-t", "all", "--label", project.label, "--set", user_set, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = json.loads(proc.stdout)

    pins = load(project.root / "wheels.toml", bake_targets=targets(project.root / BAKE_FILE))
    derived = derived_args(pins, BakeRequest(targets=["all"], mode="print"), ours)
    assert any("labels." in a for a in derived), derived  # the labels are there to compare
    raw = project.run("docker", "buildx", "bake", "--print", "--file", BAKE_FILE, "--file", BAKE_VARS,
                      "--set", user_set, *derived, "all", env={**env, "IMAGE_LABEL": project.label})
    assert raw.returncode == 0, raw.stderr[-3000:]
    assert ours == json.loads(raw.stdout)
    assert ours["target"]["runtime-cpu"]["labels"]["extra"] == "from the user"


def test_per_arch_pins_add_a_per_arch_target_that_builds(served, engine_project, tmp_path):
    arch_version = "2.2.0+cu129.torch2.13.0.sm90"
    wheel = make_wheel(served.server.root / "arch", "sageattention", arch_version, sage2_files(arch_version))
    from tests.lib.wheels import sha256_file

    arch_pin = WheelPin("sageattention", arch_version, f"{served.server.url}/arch/{wheel.name}",
                        sha256_file(wheel), ("sageattention",), arch="sm90")
    project = engine_project("arch", wheels_toml([served.pin("sage2"), arch_pin, served.pin("sage3")]))
    proc = project.invoke("bake", "--print", "-t", "all", "--label", project.label)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)["target"]
    assert set(plan) == ALL_TARGETS | {"complete-cuda-sm90"}
    assert plan["complete-cuda-sm90"]["args"]["WHEELS_REQUIREMENTS"] == "complete-cuda-sm90.txt"
    assert plan["complete-cuda-sm90"]["tags"] == [f"comfyui:cuda-sm90-{project.label}"]
    # And it builds (through the override, which the per-arch target inherits).
    result = project.bake(pip_index=f"{served.server.url}/simple/", target="complete-cuda-sm90")
    assert result.code == 0, result.output[-3000:]
    image = f"comfyui:cuda-sm90-{project.label}"
    try:
        installed = pip_list(image)
        assert installed["sageattention"] == arch_version
        assert installed["sageattn3"] == "1.0.0"
        assert project.record()["targets"]["complete-cuda-sm90"]["pins"][0]["arch"] == "sm90"
    finally:
        docker("image", "rm", "--force", image)


# --------------------------------------------------------------------------- PUID / PGID


def _run(image: str, *cmd: str, env: dict[str, str] | None = None):
    args = ["run", "--rm", "--network", "none"]
    for k, v in (env or {}).items():
        args += ["-e", f"{k}={v}"]
    return docker(*args, image, *cmd, timeout=60)


def test_entrypoint_runs_as_puid_pgid(main_image):
    proc = _run(main_image.image, "sh", "-c", "id -u; id -g; echo $HOME",
                env={"PUID": "2000", "PGID": "3000"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2000", "3000", "/home/comfy"]
    default = _run(main_image.image, "sh", "-c", "id -u; id -g")
    assert default.stdout.split() == ["1000", "1000"], default.stderr


@pytest.mark.parametrize("var,value", [("PUID", "abc"), ("PUID", "-1"), ("PUID", "0"), ("PGID", "abc"),
                                       ("PGID", "0")])
def test_entrypoint_rejects_bad_ids(main_image, var, value):
    proc = _run(main_image.image, "id", "-u", env={var: value})
    assert proc.returncode == 64, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"comfy-entrypoint: error: {var}"), proc.stderr


# --------------------------------------------------------------------------- push


def _registry_get(url: str, accept: str | None = None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    return urllib.request.urlopen(req, timeout=30)


MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def test_push_publishes_to_a_registry_and_pulls_back_by_digest(served, main_image, registry, engine_project):
    project = engine_project("push", main_image.project.pins.read_text())
    result = project.bake("--push", pip_index=f"{served.server.url}/simple/",
                          env={"REGISTRY": f"{registry.host}/"})
    assert result.code == 0, result.output[-3000:]
    entry = project.record()["targets"]["complete-cuda"]
    tag = f"{registry.host}/comfyui:cuda-{project.label}"
    assert entry["tags"] == [tag]
    digest = entry["digest"]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest or ""), entry
    # the digests file beside the record names each pushed tag with its digest
    assert (project.root / "build/image-digests.txt").read_text() == f"{digest}  {tag}\n"
    # this engine's docker driver on the classic store cannot attest: pushed without, and said so
    assert project.record()["attestations"] == []
    assert "pushed WITHOUT an SBOM and provenance" in result.proc.stderr

    # The registry itself serves that manifest, and every blob it names.
    with _registry_get(f"{registry.url}/v2/comfyui/manifests/cuda-{project.label}", MANIFEST_TYPES) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest
        manifest = json.load(resp)
    blobs = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
    assert len(manifest["layers"]) == len(_layers(main_image.image))
    for blob in blobs:
        req = urllib.request.Request(f"{registry.url}/v2/comfyui/blobs/{blob}", method="HEAD")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert resp.status == 200

    # Remove the local image, pull it back BY DIGEST, find the pins in it.
    by_digest = f"{registry.host}/comfyui@{digest}"
    docker("image", "rm", tag)
    assert docker("image", "inspect", tag).returncode != 0
    pulled = docker("pull", by_digest, timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    try:
        installed = pip_list(by_digest)
        assert {p.name: p.version for p in main_image.pins} == {
            n: installed[n] for n in ("sageattention", "sageattn3")}
    finally:
        docker("image", "rm", by_digest)


# --------------------------------------------------------------------------- preflight


def test_preflight_refuses_a_pin_without_sha256(served, engine_project):
    pin = served.pin("sage2")
    unhashed = WheelPin(pin.name, pin.version, pin.url, None, pin.provides)
    text = wheels_toml([served.pin("sage3"), unhashed])
    text = text.replace(f'url = "{pin.url}"',
                        f'url = "{pin.url}"\nsource = {{ github = "example/SageAttention", release = "v2.2.0-build.99" }}')
    project = engine_project("unhashed", text)
    line = len(text[: text.index(f'name = "{pin.name}"')].splitlines())  # its [[wheel]] line
    assert text.splitlines()[line - 1] == "[[wheel]]"
    result = project.bake(pip_index=f"{served.server.url}/simple/")
    assert_failed_cleanly(result.proc, 2)
    assert f"wheels.toml:{line}: sha256: sageattention in complete-cuda has no hash" in result.proc.stderr
    from comfyimg.pins.model import record_hash_command
    from comfyimg.pins.load import load

    unhashed_pin = next(p for p in load(project.pins).wheels if p.sha256 is None)
    command = record_hash_command(unhashed_pin)
    assert "v2.2.0-build.99" in command and "sageattention" in command
    assert f"record it with: {command}" in result.proc.stderr
    assert not re.search(r"^#\d+ ", result.output, re.M), "nothing may be built"
    assert not (project.root / "build" / "bake-record.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("--progress", "tty"), "--progress 'tty' is not supported (the build output is streamed"),
    (("--progress", "bogus"), "--progress 'bogus' is not supported"),
    (("--label", "bad label"), "--label 'bad label' cannot end a Docker tag"),
    (("--label", "bad label", "--print"), "--label 'bad label' cannot end a Docker tag"),
    (("--builder", "no-such-builder"), "--builder 'no-such-builder': "),
])
def test_options_buildx_would_reject_mid_build_are_bad_input_before_it(served, engine_project, args, message):
    project = engine_project("badopts", wheels_toml([served.pin("sage2"), served.pin("sage3")]))
    assert project.invoke("render").returncode == 0
    proc = project.invoke("bake", "-t", "complete-cuda", *args)
    assert_failed_cleanly(proc, 2)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not re.search(r"^#\d+ ", proc.stdout + proc.stderr, re.M), "nothing may be built"


def test_no_docker_on_path_is_one_clear_line(served, engine_project, tmp_path):
    project = engine_project("nodocker", wheels_toml([served.pin("sage2"), served.pin("sage3")]))
    assert project.invoke("render").returncode == 0  # so that preflight has nothing to print first
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    proc = project.invoke("bake", "-t", "complete-cuda", env={"PATH": str(empty)})
    assert_failed_cleanly(proc, 1)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "docker" in lines[0] and "PATH" in lines[0], lines[0]


def test_docker_without_buildx_is_one_clear_line_with_versions(served, engine_project, tmp_path):
    """The real docker CLI, minus its buildx plugin: preflight names what is missing and
    prints the CLI version it found."""
    import shutil  # noqa: PLC0415

    project = engine_project("nobuildx", wheels_toml([served.pin("sage2"), served.pin("sage3")]))
    assert project.invoke("render").returncode == 0
    real = shutil.which("docker")
    shim = tmp_path / "no-buildx-bin"
    shim.mkdir()
    (shim / "docker").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = buildx ]; then echo "docker: \'buildx\' is not a docker command." >&2; exit 1; fi\n'
        f'exec {real} "$@"\n'
    )
    (shim / "docker").chmod(0o755)
    proc = project.invoke("bake", "-t", "complete-cuda", env={"PATH": f"{shim}:/usr/bin:/bin"})
    assert_failed_cleanly(proc, 1)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "buildx plugin is missing" in lines[0] and "docker CLI 2" in lines[0], lines[0]
