"""The evidence schema (validate/evidence.py) and verify's pure parts: a statement made from a
real H200 report reads back; every way it can lie or mix up is refused, in one line."""

from __future__ import annotations

import json

import pytest

from comfyimg.errors import BadInput
from comfyimg.net.registry import Ref
from comfyimg.validate import evidence
from comfyimg.validate.evidence import Untrusted
from comfyimg.validate.verify import arch_for_gpu
from tests.lib.project import REPO

FIXTURES = REPO / "tests" / "fixtures" / "attest"
DIGEST = "sha256:" + "d" * 64
PINS = [{"name": "sageattention", "version": "2.2.0", "sha256": "a" * 64, "archs": ["sm80", "sm90"]},
        {"name": "sageattn3", "version": "1.0.0", "sha256": "b" * 64, "archs": []}]


def _stmt(name: str = "validate-sage2.json") -> dict:
    report = json.loads((FIXTURES / name).read_text())
    return evidence.statement(report, digest=DIGEST, ref="127.0.0.1:5000/comfyui", pins=PINS, driver="580.65")


def _read(stmt: dict | bytes) -> evidence.Evidence:
    data = stmt if isinstance(stmt, bytes) else evidence.encode(stmt)
    return evidence.trusted(data, artifact="sha256:" + "f" * 64, digest=DIGEST, pins=PINS)


def test_a_validate_report_becomes_a_statement_about_the_digest_and_reads_back():
    stmt = _stmt()
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["subject"] == [{"name": "127.0.0.1:5000/comfyui", "digest": {"sha256": "d" * 64}}]
    assert stmt["predicateType"] == "urn:comfyimg:evidence:v1"
    pred = stmt["predicate"]
    assert pred["gpu"] == {"name": "NVIDIA H200", "arch": "sm90", "driver": "580.65", "cuda": "13.0",
                           "torch": "2.11.0+cu130", "checks_ran": True}
    wheel = next(w for w in pred["wheels"] if w["name"] == "sageattention")
    assert wheel["sha256"] == "a" * 64 and wheel["dispatch"]["kernel"] == "sageattn_qk_int8_pv_fp8_cuda_sm90"
    assert pred["numerics"]["cases"] == 8 and 0.999 < pred["numerics"]["min_cosine"] < 1
    assert pred["speed"]["speedup"] == 1.193 and pred["speed"]["seq_len"] == 16384
    got = _read(stmt)
    assert (got.kind, got.package, got.arch, got.passed, got.checks_ran) == (
        "validate_sage2", "sageattention", "sm90", True, True)


def test_a_smoke_report_records_the_render_speed_and_the_gpu():
    pred = _stmt("smoke.json")["predicate"]
    assert pred["kind"] == "smoke" and pred["package"] == "sageattention"
    assert pred["gpu"]["arch"] == "sm90" and pred["gpu"]["checks_ran"] is True
    assert pred["speed"] == {"what": "ComfyUI render, s/step with sage vs PyTorch attention",
                             "sage_s_per_step": 0.05574, "pytorch_s_per_step": 0.04288, "speedup": 0.769}
    assert pred["numerics"]["latent_cosine"] > 0.9999


def _forge(change):
    stmt = _stmt()
    change(stmt)
    return stmt


@pytest.mark.parametrize(("stmt", "said"), [
    (b"\xff not json", r"is not JSON"),
    (b"[]", r"is not an in-toto Statement v1"),
    (b"x" * (evidence.MAX_STATEMENT + 1), r"larger than 1048576 bytes"),
    (_forge(lambda s: s.update(subject=[{"digest": {"sha256": "e" * 64}}])), r"is about another image"),
    (_forge(lambda s: s["predicate"]["image"].update(digest="sha256:" + "e" * 64)), r"names another image digest"),
    (_forge(lambda s: s["predicate"]["pins"][0].update(sha256="0" * 64)), r"another pins set"),
    (_forge(lambda s: s["predicate"]["checks"][3].update(status="fail")), r"says passed but its checks do not: import"),
    (_forge(lambda s: s["predicate"].update(checks=[])), r"says passed but its checks do not: no checks at all"),
    (_forge(lambda s: s.update(predicateType="urn:comfyimg:evidence:v7")), r"schema v7, from a newer comfyimg"),
    (_forge(lambda s: s.update(predicateType="https://slsa.dev/provenance/v1")), r"not urn:comfyimg:evidence:v<N>"),
    (_forge(lambda s: s["predicate"].update(kind="validate_sage9")), r"unknown kind"),
    (_forge(lambda s: s["predicate"]["gpu"].update(arch="sm90; rm -rf")), r"is not smXY"),
    (_forge(lambda s: s["predicate"].update(passed="yes")), r"'passed' is not true or false"),
], ids=["not-json", "not-statement", "too-big", "other-subject", "other-image", "other-pins", "forged-pass",
        "no-checks", "future", "foreign-type", "kind", "arch", "passed-type"])
def test_every_lie_or_mix_up_is_refused_in_one_line(stmt, said):
    with pytest.raises(Untrusted, match=said) as caught:
        _read(stmt)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("name", "arch"), [("H100", "sm90"), ("h200", "sm90"), ("NVIDIA A100", "sm80"),
                                            ("RTX 4090", "sm89"), ("RTX 3060", "sm86"), ("RTX 5090", "sm120"),
                                            ("B200", "sm100"), ("L4", "sm89")])
def test_a_gpu_name_gives_its_arch(name, arch):
    assert arch_for_gpu(name) == arch


def test_an_unknown_gpu_is_bad_input_naming_the_known_ones():
    with pytest.raises(BadInput, match=r"--gpu 'Voodoo 5': not a GPU this project knows; give --arch smXY.*sm90: H100"):
        arch_for_gpu("Voodoo 5")


@pytest.mark.parametrize(("text", "parsed"), [
    ("127.0.0.1:5000/comfyui:cuda", ("127.0.0.1:5000", "comfyui", "cuda", None)),
    ("ghcr.io/acme/comfyui", ("ghcr.io", "acme/comfyui", "latest", None)),
    (f"localhost:5000/a/b@{DIGEST}", ("localhost:5000", "a/b", None, DIGEST)),
])
def test_an_image_reference_names_its_registry(text, parsed):
    ref = Ref.parse(text)
    assert (ref.host, ref.repo, ref.tag, ref.digest) == parsed


@pytest.mark.parametrize("text", ["comfyui:cuda", "library/comfyui", "127.0.0.1:5000/Comfy:x", "h.io/a@sha256:12",
                                  "h.io/a:bad tag"])
def test_a_reference_without_a_registry_or_malformed_is_bad_input(text):
    with pytest.raises(BadInput, match=r"give HOST\[:PORT\]/REPO\[:TAG\]\[@sha256:DIGEST\]"):
        Ref.parse(text)
