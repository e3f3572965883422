"""bake.py's cache options and labels, without an engine: what reaches buildx."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from comfyimg.bake import bake
from comfyimg.bake.bake import BakeRequest, cache_entries, check_options, derived_args, oci_values
from comfyimg.errors import BadInput
from comfyimg.pins.load import loads
from tests.lib.pinfile import profile, wheel

TOML = "\n".join([
    "\n" + profile("cuda", torch="2.13.0", torch_index="cu130", cuda="13.0", archs=["sm80", "sm90"]),
    wheel("sageattention", "2.2.0", "https://example.invalid/sageattention-2.2.0-2130.130-cp312-cp312-linux_x86_64.whl",
          sha256="a" * 64, targets=["complete-cuda"]),
    wheel("sageattention", "2.2.0+cu130.torch2.13.0.sm90", arch="sm90", sha256="b" * 64, targets=["complete-cuda"],
          url="https://example.invalid/sageattention-2.2.0+cu130.torch2.13.0.sm90-cp312-cp312-linux_x86_64.whl"),
])


@pytest.mark.parametrize("spec,export,want", [
    ("registry=r.example/acme/cache", True, ["type=registry,ref=r.example/acme/cache:complete-cuda-cache,mode=max"]),
    ("registry=r.example/acme/cache", False, ["type=registry,ref=r.example/acme/cache:complete-cuda-cache"]),
    ("gha", True, ["type=gha,scope=comfyimg-complete-cuda,mode=max"]),
    ("gha=main", False, ["type=gha,scope=main-complete-cuda"]),
    ("inline", True, ["type=inline"]),
    ("image", False, ["type=registry,ref=r/comfyui:cuda-dev"]),
    ("type=s3,bucket=b", True, ["type=s3,bucket=b"]),
])
def test_cache_entries(spec, export, want):
    assert cache_entries(spec, "complete-cuda", ["r/comfyui:cuda-dev"], export=export) == want


def test_local_cache_is_one_folder_per_target(tmp_path):
    assert cache_entries(f"local={tmp_path}", "core-cpu", [], export=True) == [
        f"type=local,dest={tmp_path / 'core-cpu'},mode=max"]
    assert cache_entries(f"local={tmp_path}", "core-cpu", [], export=False) == [
        f"type=local,src={tmp_path / 'core-cpu'}"]


@pytest.mark.parametrize("field,spec,message", [
    ("cache_to", "bogus", "unknown cache backend 'bogus'"),
    ("cache_to", "registry", "registry needs a repository"),
    ("cache_from", "local", "local needs a directory"),
    ("cache_from", "inline", "inline is for --cache-to only"),
    ("cache_to", "image", "image is for --cache-from only"),
])
def test_bad_cache_options_are_bad_input_before_anything_runs(field, spec, message):
    with pytest.raises(BadInput, match=message):
        check_options(BakeRequest(**{field: [spec]}))


def test_derived_args_label_the_pins_and_set_the_caches_per_target(tmp_path):
    pins = loads(TOML, tmp_path / "wheels.toml")
    resolved = {"target": {"complete-cuda": {"tags": ["comfyui:cuda-dev"]},
                           "complete-cuda-sm90": {"tags": ["comfyui:cuda-sm90-dev"]},
                           "core-cuda": {"tags": ["comfyui-core:cuda-dev"]}}}
    request = BakeRequest(cache_to=["inline", f"local={tmp_path / 'c'}"], cache_from=["image"])
    args = derived_args(pins, request, resolved)
    sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    allows = [args[i + 1] for i, a in enumerate(args) if a == "--allow"]
    labels = {s.split(".labels.io.comfyimg.pins=")[0]: json.loads(s.split("=", 1)[1])
              for s in sets if ".labels.io.comfyimg.pins=" in s}
    runs = {s.split(".labels.io.comfyimg.runs-on=")[0]: json.loads(s.split("=", 1)[1])
            for s in sets if ".labels.io.comfyimg.runs-on=" in s}
    assert runs == {  # no coverage recorded: where they run is not known yet
        "complete-cuda": {"sageattention": {"runs_on": [], "falls_back": [], "unknown": ["sm80", "sm90"]}},
        "complete-cuda-sm90": {"sageattention[sm90]": {"runs_on": [], "falls_back": [], "unknown": ["sm90"]}},
    }
    covered = {s.split(".labels.io.comfyimg.coverage=")[0]: json.loads(s.split("=", 1)[1])
               for s in sets if ".labels.io.comfyimg.coverage=" in s}
    assert covered == {"complete-cuda": {"sageattention": None}, "complete-cuda-sm90": {"sageattention": None}}
    assert labels == {
        "complete-cuda": [{"name": "sageattention", "version": "2.2.0", "sha256": "a" * 64, "archs": ["sm80", "sm90"]}],
        "complete-cuda-sm90": [{"name": "sageattention", "version": "2.2.0+cu130.torch2.13.0.sm90",
                                "sha256": "b" * 64, "archs": ["sm90"]}],
    }  # core-cuda installs no pins: no pins label
    assert "core-cuda.cache-to=type=inline" in sets
    assert f"core-cuda.cache-to+=type=local,dest={tmp_path / 'c' / 'core-cuda'},mode=max" in sets
    assert "complete-cuda-sm90.cache-from=type=registry,ref=comfyui:cuda-sm90-dev" in sets
    assert allows == [f"fs.write={tmp_path / 'c'}"]


def test_oci_values_from_github_actions(monkeypatch, tmp_path):
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/comfy")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.example")
    monkeypatch.setenv("GITHUB_SHA", "c" * 40)
    values = oci_values(tmp_path)
    assert values["IMAGE_SOURCE"] == "https://github.example/acme/comfy"
    assert values["IMAGE_REVISION"] == "c" * 40
    assert values["IMAGE_CREATED"].endswith("Z")


def test_oci_values_from_git_never_carry_a_credential(monkeypatch, tmp_path):
    for var in ("GITHUB_REPOSITORY", "GITHUB_SHA"):
        monkeypatch.delenv(var, raising=False)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://user:s3cret@git.example/acme/comfy.git"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    values = oci_values(tmp_path)
    assert values["IMAGE_SOURCE"] == "https://git.example/acme/comfy.git"
    assert values["IMAGE_REVISION"] == head


def test_outside_git_and_ci_the_values_say_unknown(monkeypatch, tmp_path):
    for var in ("GITHUB_REPOSITORY", "GITHUB_SHA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    values = oci_values(tmp_path)
    assert (values["IMAGE_SOURCE"], values["IMAGE_REVISION"]) == ("unknown", "unknown")


def test_the_bake_file_puts_the_oci_labels_on_every_target():
    text = (Path(bake.__file__).parents[3] / "docker-bake.hcl").read_text()
    for key in ("source", "revision", "version", "created"):
        assert f'"org.opencontainers.image.{key}"' in text
    for target in ("runtime-cuda", "runtime-cpu", "_core", "complete-cuda"):
        block = text.split(f'target "{target}" {{', 1)[1].split("\n}", 1)[0]
        assert 'inherits   = ["_labels"]' in block, target


@pytest.mark.parametrize(("mode", "attest", "expected"), [
    ("push", ("sbom", "provenance:max"), ["--sbom=true", "--provenance=mode=max"]),
    ("push", ("provenance:max",), ["--provenance=mode=max"]),
    ("push", (), []),
    ("load", ("sbom", "provenance:max"), []),
    ("print", ("sbom", "provenance:max"), [])])
def test_attestations_only_on_an_attesting_push(tmp_path, mode, attest, expected):
    """The one bake command line carries --sbom/--provenance exactly when pushing, as far as the
    builder can attest (preflight decides request.attest)."""
    cmd = bake.bake_command(tmp_path, BakeRequest(mode=mode, attest=attest))
    assert [a for a in map(str, cmd) if a.startswith(("--sbom", "--provenance"))] == expected


@pytest.mark.parametrize("field,spec,message", [
    ("cache_to", "registry=r.example/cache,type=local,dest=/tmp/x", "image reference"),  # a comma adds options
    ("cache_from", "registry=r.example/cache\nref=evil", "line break"),
    ("cache_to", "registry=r.example/a=b", "image reference"),
    ("cache_to", "gha=main,url=http://x", "scope"),
    ("cache_to", "local=build/cache,mode=max", "cannot hold ','"),
    ("cache_to", "type=registry,ref=r/x\n--push", "line break"),
])
def test_cache_values_cannot_smuggle_buildx_options(field, spec, message):
    with pytest.raises(BadInput, match=message):
        check_options(BakeRequest(**{field: [spec]}))


@pytest.mark.parametrize("targets", [["--set=*.args.X=1"], ["-f"], ["core\n--push"], ["a,b"]])
def test_a_target_is_a_name_never_an_option(tmp_path, targets):
    with pytest.raises(BadInput, match="target"):
        bake.bake_command(tmp_path, BakeRequest(targets=targets))


def test_a_bake_files_tag_cannot_smuggle_cache_options():
    with pytest.raises(BadInput, match="tag of complete-cuda"):
        cache_entries("image", "complete-cuda", ["r/comfyui:dev,type=local,dest=/etc"], export=False)


@pytest.mark.parametrize(("remote", "label"), [
    ("https://user:s3cret@git.example/acme/comfy.git", "https://git.example/acme/comfy.git"),
    ("git@github.example:acme/comfy.git", "https://github.example/acme/comfy.git"),
    ("ssh://git@git.example:2222/acme/comfy.git", "https://git.example/acme/comfy.git"),
    ("/work/main", None), ("../main", None), ("file:///srv/git/comfy.git", None), ("C:/repos/comfy", None),
])
def test_the_source_label_is_a_web_address_never_a_path(remote, label):
    assert bake.source_url(remote) == label


def test_a_clone_of_a_local_path_labels_its_source_unknown(monkeypatch, tmp_path):
    for var in ("GITHUB_REPOSITORY", "GITHUB_SHA"):
        monkeypatch.delenv(var, raising=False)
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "remote", "add", "origin", str(tmp_path.parent / "upstream")], check=True)
    assert oci_values(tmp_path)["IMAGE_SOURCE"] == "unknown"
