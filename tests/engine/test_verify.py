"""Evidence travels with the image: reports attached to the digest in a real registry (Debian's
docker-registry on 127.0.0.1), read back by ``invoke verify`` per package and arch.

The image is the real ``invoke bake`` of complete-cuda on the stand-in core, with a sageattention
wheel that carries real nvcc-built modules (tests/fixtures/cuda-objects) and pixeloven's dispatch,
so its labels give a real static verdict for sm80, sm86, sm89, sm90 and sm120. It is pushed with
``docker push``; the reports of the H200 run (tests/fixtures/attest) are attached with
``python -m comfyimg attest``. The registry is distribution 2.8, which has no referrers API: the
artifacts are found through the tag-schema fallback. A registry with the API (distribution 3,
zot) cannot be installed on these machines (neither is packaged for Debian 12 or 13; both need a
Go toolchain and a build from source), so that path is not tested here.
"""

from __future__ import annotations

import json
import re
import sys

import pytest

from comfyimg.net.registry import EMPTY, EMPTY_DIGEST, INDEX, MANIFEST, Ref, Registry, fallback_tag
from comfyimg.validate import evidence
from tests.lib.cudawheels import FULL_SAGE2, sage2_wheel
from tests.lib.dockercli import docker
from tests.lib import engine as engine_lib
from tests.lib.engine import WheelPin, make_engine_project, wheels_toml
from tests.lib.project import REPO
from tests.lib.wheels import sha256_file

pytestmark = pytest.mark.engine

FIXTURES = REPO / "tests" / "fixtures" / "attest"
SERVES = ("sm80", "sm86", "sm89", "sm90", "sm120")


def _python(project, *args, timeout=300):
    return project.run(sys.executable, "-m", "comfyimg", *args, timeout=timeout)


def _report(tmp_path, name: str, image: str, **changes) -> str:
    report = json.loads((FIXTURES / name).read_text())
    report["image"] = image
    report.update(changes)
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return str(path)


def _row(table: str, arch: str) -> str:
    """The first table row of ``arch`` (the sageattention table comes first)."""
    rows = [line for line in table.splitlines() if re.match(rf"^\W*{arch}\b", line)]
    assert rows, table
    return rows[0]


@pytest.fixture(scope="module")
def pushed(served, registry):
    """(project, the image's reference in the registry, its digest)."""
    wheel = sage2_wheel(served.server.root, FULL_SAGE2, source="pixeloven-7bd3a0e",
                        filename="sageattention-2.2.0+full-cp311-cp311-linux_x86_64.whl")
    pin = WheelPin("sageattention", "2.2.0", f"{served.server.url}/{wheel.name}", sha256_file(wheel),
                   ("sageattention",), serves=SERVES)
    project = make_engine_project("verify", wheels_toml([pin, served.pin("sage3")]))
    engine_lib._projects.append(project.root)  # removed at the end of the session, as engine_project's
    engine_lib._built_tags.append(project.tag)
    built = project.bake(pip_index=f"{served.server.url}/simple/")
    assert built.code == 0, built.output[-4000:]
    ref = f"{registry.host}/comfyui:{project.label}"
    assert docker("tag", project.tag, ref).returncode == 0
    engine_lib._built_tags.append(ref)
    push = docker("push", ref, timeout=600)
    assert push.returncode == 0, push.stderr
    with Registry(registry.host) as reg:
        digest = reg.manifest(Ref.parse(ref)).digest
    return project, ref, digest


@pytest.fixture(scope="module")
def tamper(pushed):
    """The same image under another repository (referrers are per repository), pushed once."""
    project, ref, digest = pushed
    other = f"{Ref.parse(ref).host}/tamper:{project.label}"
    assert docker("tag", ref, other).returncode == 0
    engine_lib._built_tags.append(other)
    push = docker("push", other, timeout=600)
    assert push.returncode == 0, push.stderr
    return project, other, digest


def _only(ref: str, digest: str) -> None:
    """Forget what refers to ``digest`` in ``ref``'s repository: an empty tag-schema index."""
    parsed = Ref.parse(ref)
    with Registry(parsed.host) as reg:
        reg.put_manifest(parsed.repo, fallback_tag(digest),
                         {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}, "reset")


@pytest.fixture(scope="module")
def attested(pushed, tmp_path_factory):
    project, ref, digest = pushed
    tmp = tmp_path_factory.mktemp("reports")
    for name in ("validate-sage2.json", "smoke.json"):
        done = _python(project, "attest", "--image", ref, "--report", _report(tmp, name, ref), "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        answer = json.loads(done.stdout)
        assert answer["stored_by"] == "tag schema" and answer["image"].endswith(digest), answer
    return pushed


def test_sm90_is_measured_and_the_table_says_so(attested):
    project, ref, digest = attested
    result = project.invoke("verify", ref, "--arch", "sm90", "--require", "measured")
    print(result.stdout, result.stderr)  # pytest -s shows what a user sees
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: sm90 is measured-proven" in result.stdout
    row = _row(result.stdout, "sm90")
    assert "measured" in row and "H200" in row, row
    as_json = json.loads(project.invoke("verify", ref, "--arch", "sm90", "--require", "measured", "--json").stdout)
    sage2 = next(p for p in as_json["packages"] if p["name"] == "sageattention")
    sm90 = next(a for a in sage2["archs"] if a["arch"] == "sm90")
    assert sm90["answer"] == "measured" and sm90["static"].startswith("runs sageattn_qk_int8_pv_fp8_cuda_sm90")
    assert {e["kind"] for e in sm90["evidence"]} == {"validate_sage2", "smoke"}
    assert {e["gpu"]["name"] for e in sm90["evidence"]} == {"NVIDIA H200"}
    assert as_json["found_by"] == "tag schema" and as_json["digest"] == digest and as_json["ok"] is True


def test_sm86_is_static_only_and_falls_short_of_measured(attested):
    project, ref, _ = attested
    result = project.invoke("verify", ref, "--arch", "sm86", "--require", "measured")
    print(result.stdout, result.stderr)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    row = _row(result.stdout, "sm86")
    assert "runs sageattn_qk_int8_pv_fp16_cuda (sass)" in row and "static only" in row, row
    assert "SHORT: --require measured on sm86: sageattention on sm86 is static only" in result.stderr
    # the same arch asked by GPU name passes the static requirement
    static = _python(project, "verify", ref, "--gpu", "RTX 3090", "--require", "static")
    assert static.returncode == 0, static.stdout + static.stderr
    assert "OK: sm86 is static-proven" in static.stdout


def _statement(digest: str, pins: list[dict], **predicate) -> dict:
    report = json.loads((FIXTURES / "validate-sage2.json").read_text())
    stmt = evidence.statement(report, digest=digest, ref="x", pins=pins, driver=None)
    stmt["predicate"].update(predicate)
    return stmt


def _attach_raw(ref: str, payload: bytes, predicate_type: str = evidence.PREDICATE_TYPE) -> None:
    parsed = Ref.parse(ref)
    with Registry(parsed.host) as reg:
        subject = reg.manifest(parsed)
        reg.attach(parsed, subject, evidence.MEDIA_TYPE, payload, evidence.MEDIA_TYPE,
                   {evidence.KIND_ANNOTATION: "validate_sage2", evidence.PREDICATE_ANNOTATION: predicate_type})


def _label_pins(ref: str) -> list[dict]:
    parsed = Ref.parse(ref)
    with Registry(parsed.host) as reg:
        _, config = reg.image_config(parsed)
    return json.loads(config["config"]["Labels"]["io.comfyimg.pins"])


def _forged(case: str, digest: str, pins: list[dict]) -> tuple[bytes, str]:
    if case == "another-digest":
        return evidence.encode(_statement("sha256:" + "e" * 64, pins, image={"ref": "x", "digest": digest})), \
            r"is about another image \(subject sha256:eeeeeeeeeeee…\)"
    if case == "another-pins":
        other = [{**p, "sha256": "0" * 64} if p["name"] == "sageattention" else p for p in pins]
        return evidence.encode(_statement(digest, other)), r"was made for another pins set than the image's label"
    if case == "forged-pass":
        stmt = _statement(digest, pins)
        stmt["predicate"]["checks"][12]["status"] = "fail"  # a numerics row
        return evidence.encode(stmt), r"says passed but its checks do not: numerics:fp16:HND:d64"
    if case == "future-schema":
        stmt = _statement(digest, pins, schema=2)
        stmt["predicateType"] = "urn:comfyimg:evidence:v2"
        return evidence.encode(stmt), r"is schema v2, from a newer comfyimg; this one reads v1"
    if case == "not-json":
        return b"\x89PNG not a statement", r"is not JSON"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["another-digest", "another-pins", "forged-pass", "future-schema", "not-json"])
def test_a_tampered_or_mixed_up_report_fails_in_one_line(tamper, case):
    project, ref, digest = tamper
    _only(ref, digest)
    payload, said = _forged(case, digest, _label_pins(ref))
    _attach_raw(ref, payload)
    result = project.invoke("verify", ref, "--arch", "sm90")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not trusted" in lines[0], result.stderr
    assert re.search(said, lines[0]), lines[0]
    assert not result.stdout.strip(), "no table from untrusted evidence"


def _attach_declared(ref: str, digest: str, blob: bytes, declared: int) -> None:
    """An artifact whose layer descriptor says ``declared`` bytes for ``blob`` (the registry
    takes the descriptor's word), listed alone in the tag-schema index."""
    parsed = Ref.parse(ref)
    with Registry(parsed.host) as reg:
        subject = reg.manifest(parsed)
        layer = reg.put_blob(parsed.repo, blob, "blob")
        reg.put_blob(parsed.repo, b"{}", "config")
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": evidence.MEDIA_TYPE,
                    "config": {"mediaType": EMPTY, "digest": EMPTY_DIGEST, "size": 2},
                    "layers": [{"mediaType": evidence.MEDIA_TYPE, "digest": layer, "size": declared}],
                    "subject": {"mediaType": subject.media_type, "digest": digest, "size": subject.size}}
        annotations = {evidence.PREDICATE_ANNOTATION: evidence.PREDICATE_TYPE}
        artifact, size, _ = reg.put_manifest(parsed.repo, None, {**manifest, "annotations": annotations}, "artifact")
        reg.put_manifest(parsed.repo, fallback_tag(digest), {"schemaVersion": 2, "mediaType": INDEX, "manifests": [
            {"mediaType": MANIFEST, "digest": artifact, "size": size, "artifactType": evidence.MEDIA_TYPE,
             "annotations": annotations}]}, "index")


# A real 1 GiB upload takes over a minute on the 2-core build machine; what verify must not do is
# read it, and it reads at most MAX_STATEMENT (1 MiB) of a layer whatever the descriptor or the
# server say. So: a descriptor that says 1 GiB is refused before any read, and an 8 MiB blob that
# claims 100 bytes is refused by the server's own length, then by the count as it is read.
@pytest.mark.parametrize(("declared", "blob", "said"), [
    (1 << 30, b"{}", f"is {1 << 30} bytes, over the {evidence.MAX_STATEMENT} byte limit of a statement; not read"),
    (100, bytes(8 << 20), f"offers {8 << 20} bytes, more than the {evidence.MAX_STATEMENT} byte limit; not read"),
], ids=["declares-1GiB", "8MiB-claims-100-bytes"])
def test_an_oversized_artifact_is_refused_without_reading_it(tamper, declared, blob, said):
    project, ref, digest = tamper
    _attach_declared(ref, digest, blob, declared)
    result = project.invoke("verify", ref, "--arch", "sm90", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and said in lines[0] and "not trusted" in lines[0], result.stderr


def test_validate_attest_attaches_its_own_report_pass_or_fail(tamper):
    """`--attest` on the real command: no registry reference is refused before any container runs;
    with one, the report is attached after the run, whatever its verdict (here the stand-in's
    sageattention cannot import its CPU-less kernels: a failure, attached as evidence)."""
    project, ref, digest = tamper
    _only(ref, digest)
    for image, said in ((None, r"--attest needs --image HOST\[:PORT\]/REPO\[:TAG\]"),
                        (project.tag, r"no registry host; give HOST\[:PORT\]/REPO\[:TAG\]")):
        refused = _python(project, "validate", "sage2", "--attest", "--gpus", "none",
                          *(["--image", image] if image else []))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert re.search(said, refused.stderr) and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert not (project.root / "reports" / "sage2.json").exists(), "refused before any probe ran"
    ran = _python(project, "validate", "sage2", "--image", ref, "--gpus", "none", "--comfyui", "none", "--attest")
    assert ran.returncode == 1, ran.stdout + ran.stderr  # the validation failed; attaching did not
    assert re.search(rf"attached validate_sage2 report sha256:[0-9a-f]{{64}} to \S+@{digest} \(tag schema\)",
                     ran.stdout), ran.stdout
    answer = json.loads(project.invoke("verify", ref, "--json").stdout)
    assert answer["ok"] is True and answer["found_by"] == "tag schema"
    sm90 = next(a for p in answer["packages"] if p["name"] == "sageattention" for a in p["archs"] if a["arch"] == "sm90")
    assert sm90["answer"] == "static only", "a report whose GPU checks never ran measures no arch"
