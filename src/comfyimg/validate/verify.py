"""Evidence on the image's digest: :func:`attach` pushes a validation or smoke report as an
in-toto statement that refers to the image (:mod:`evidence`, :mod:`comfyimg.net.registry`);
:func:`verify` reads the image's labels (pins, kernel coverage) and every attached statement,
and answers per attention package and GPU arch: static verdict, measured verdict, and the
combined answer (``measured``, ``static only``, ``refused``).

Nothing attached is trusted unless it matches the image's digest, the schema and the pins label
(:func:`evidence.trusted`); one that does not ends the command with one line (exit 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyimg.audit.coverage import GPUS
from comfyimg.engine.docker import DockerException, client, error_line
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.fsutil import read_bytes
from comfyimg.kernels.rules import sort_archs
from comfyimg.net.registry import MANIFEST, MAX_MANIFEST, Ref, Registry, is_digest
from comfyimg.render import COVERAGE_LABEL, PINS_LABEL
from comfyimg.untrusted import loads_json, one_line
from comfyimg.validate import evidence
from comfyimg.validate.evidence import Evidence, Untrusted, obj
from comfyimg.validate.gpuaccess import host_driver

REQUIRE = ("static", "measured")
ANSWERS = ("measured", "static only", "refused")


# --------------------------------------------------------------------------- the image's own words


def _labels_of(ref: Ref, config: dict) -> tuple[list[dict], dict[str, Any]]:
    labels = obj(obj(config, "config"), "Labels")
    raw = labels.get(PINS_LABEL)
    if not isinstance(raw, str):
        raise WorkFailed(f"{ref}: no {PINS_LABEL} label (not built by invoke bake); nothing to verify against")
    try:
        pins = loads_json(raw)
    except ValueError as exc:
        raise WorkFailed(f"{ref}: the {PINS_LABEL} label is not JSON ({one_line(exc)[:80]})") from None
    if evidence.pin_set(pins) is None:
        raise WorkFailed(f"{ref}: the {PINS_LABEL} label is not a list of pins (name, version, sha256)")
    cov_raw = labels.get(COVERAGE_LABEL)
    coverage: object = {}
    if isinstance(cov_raw, str):
        try:
            coverage = loads_json(cov_raw)
        except ValueError:
            coverage = None
    if not isinstance(coverage, dict):
        raise WorkFailed(f"{ref}: the {COVERAGE_LABEL} label is not a JSON object")
    return pins, coverage  # type: ignore[return-value]


# --------------------------------------------------------------------------- attach


def _local_matches(ref: Ref, digest: str) -> None:
    """The image validated here is the one ``ref`` names in the registry (its repo digests
    list it), so the evidence is about the bytes users pull."""
    try:
        local = client().image.inspect(str(ref))
    except DockerException as exc:
        raise WorkFailed(f"cannot inspect {ref} in the local engine: {error_line(exc)}") from None
    wanted = f"{ref.host}/{ref.repo}@{digest}"
    if wanted not in (local.repo_digests or []):
        raise WorkFailed(f"the local image {ref} is not the one the registry serves under that name ({digest[:19]}…): "
                         f"push it (docker push {ref}) or pull it, then validate again")


def attach(image_ref: str, report: dict) -> dict[str, str]:
    """Push ``report`` (a reports/<probe>.json) as a statement about ``image_ref``'s digest."""
    ref = Ref.parse(image_ref)
    named = report.get("image")
    with Registry(ref.host) as registry:
        subject = registry.manifest(ref)
        digest = subject.digest
        _local_matches(ref, digest)
        if named not in (str(ref), image_ref, digest) and not _same_local(named, ref):
            raise BadInput(f"the report is of image {one_line(str(named))[:80]!r}, not {ref}; attach a report of "
                           f"that image")
        _, config = registry.image_config(ref.at(digest))
        pins, _ = _labels_of(ref, config)
        stmt = evidence.statement(report, digest=digest, ref=f"{ref.host}/{ref.repo}", pins=pins,
                                  driver=host_driver())
        kind = stmt["predicate"]["kind"]
        artifact, how = registry.attach(ref, subject, evidence.MEDIA_TYPE, evidence.encode(stmt),
                                        evidence.MEDIA_TYPE, {evidence.KIND_ANNOTATION: kind,
                                                              evidence.PREDICATE_ANNOTATION: evidence.PREDICATE_TYPE,
                                                              "org.opencontainers.image.created":
                                                                  stmt["predicate"]["created"]})
    return {"image": str(ref.at(digest)), "artifact": artifact, "kind": kind, "stored_by": how}


def _same_local(named: object, ref: Ref) -> bool:
    """``named`` (the report's image: a tag or an image id) is the local image ``ref``."""
    if not isinstance(named, str):
        return False
    try:
        return bool(client().image.inspect(named).id == client().image.inspect(str(ref)).id)
    except DockerException:
        return False


def attach_file(image_ref: str, path: Path) -> dict[str, str]:
    try:
        report = loads_json(read_bytes(path, 16 << 20))
    except ValueError as exc:
        raise BadInput(f"{path.name}:1: not JSON ({one_line(exc)[:120]}); give a reports/<probe>.json") from None
    if not isinstance(report, dict) or not isinstance(report.get("result"), dict) or "passed" not in report:
        raise BadInput(f"{path.name}:1: not a validate or smoke report (no 'result' and 'passed'); "
                       f"give a reports/<probe>.json")
    try:
        return attach(image_ref, report)
    except ValueError as exc:
        raise BadInput(f"{path.name}:1: probe: {exc}") from None


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Row:
    arch: str
    gpus: list[str]
    static: str
    static_ok: bool
    served: bool
    measured: str
    measured_ok: bool | None  # None: nothing measured on this arch
    answer: str
    evidence: list[Evidence] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"arch": self.arch, "gpus": self.gpus, "served": self.served, "static": self.static,
                "static_ok": self.static_ok, "measured": self.measured, "measured_ok": self.measured_ok,
                "answer": self.answer, "evidence": [e.as_json() for e in self.evidence]}


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    sha256: str | None
    rows: list[Row]


@dataclass(frozen=True)
class Verified:
    """The one computed answer: the tables, the verdict line and ``--json`` all come from it."""

    image: str
    digest: str
    found_by: str
    packages: list[Package]
    arch: str | None
    require: str | None
    shortfalls: list[str]
    evidence: list[Evidence]

    @property
    def ok(self) -> bool:
        return not self.shortfalls

    def verdict(self) -> str:
        if self.require is None:
            return f"{self.image}: {len(self.evidence)} trusted report(s) ({self.found_by})"
        asked = self.arch or "every served arch"
        if self.ok:
            return f"OK: {asked} is {self.require}-proven for {self.image}"
        return f"SHORT: --require {self.require} on {asked}: " + "; ".join(self.shortfalls)

    def as_json(self) -> dict[str, Any]:
        return {"image": self.image, "digest": self.digest, "found_by": self.found_by, "arch": self.arch,
                "require": self.require, "ok": self.ok, "shortfalls": self.shortfalls, "verdict": self.verdict(),
                "packages": [{"name": p.name, "version": p.version, "sha256": p.sha256,
                              "archs": [r.as_json() for r in p.rows]} for p in self.packages]}


def arch_for_gpu(name: str, evidence_list: Sequence[Evidence] = ()) -> str:
    """The arch of a GPU named like ``H100``, ``RTX 4090`` or ``NVIDIA H200``."""
    wanted = name.strip().lower().removeprefix("nvidia ").strip()
    for e in evidence_list:
        if e.gpu_name and e.arch and e.gpu_name.lower().removeprefix("nvidia ").strip() == wanted:
            return e.arch
    for arch, names in GPUS.items():
        for one in names.split("/"):
            one = one.strip().lower()
            if one == wanted or (one.endswith("xx") and wanted.startswith(one[:-2]) and wanted[len(one) - 2:].isdigit()):
                return arch
            if wanted.startswith("rtx ") and one.startswith("rtx ") and one.endswith("xx") and \
                    wanted[4:6] == one[4:6]:
                return arch
    known = "; ".join(f"{a}: {n}" for a, n in GPUS.items())
    raise BadInput(f"--gpu {one_line(name)!r}: not a GPU this project knows; give --arch smXY instead ({known})")


def _static(pin: dict, coverage: dict[str, Any], arch: str) -> tuple[str, bool, bool]:
    served = arch in (pin.get("archs") or [])
    if not served:
        return "not served", False, False
    per_arch = coverage.get(pin["name"])
    if not isinstance(per_arch, dict):
        return "served (kernels not in the label)", True, True
    v = per_arch.get(arch)
    if not isinstance(v, dict):
        return "served (no verdict for this arch)", True, True
    if v.get("runnable") is True:
        return f"runs {one_line(v.get('kernel') or '?')} ({one_line(v.get('by') or '?')})", True, True
    return f"NO kernel ({one_line(v.get('kernel') or 'refused')})", False, True


def _measured(found: list[Evidence]) -> tuple[str, bool | None]:
    ran = [e for e in found if e.checks_ran]
    if not ran:
        return ("GPU checks did not run" if found else "none"), None
    latest: dict[str, Evidence] = {}
    for e in sorted(ran, key=lambda e: e.measured or e.created):
        latest[e.kind] = e
    parts = []
    for kind, e in sorted(latest.items()):
        speed = e.speed.get("speedup")
        ratio = f", {speed:.2f}x vs PyTorch" if isinstance(speed, int | float) else ""
        when = e.measured[:10] if e.measured else f"attached {e.created[:10]}"
        parts.append(f"{kind} {when} {one_line(e.gpu_name or '?')}: {'pass' if e.passed else 'FAIL'}{ratio}")
    return "; ".join(parts), all(e.passed for e in latest.values())


def verify(image_ref: str, *, arch: str | None = None, gpu: str | None = None,
           require: str | None = None) -> Verified:
    if arch and gpu:
        raise BadInput("give --arch or --gpu, not both")
    if require is not None and require not in REQUIRE:
        raise BadInput(f"--require {one_line(require)!r}: use static or measured")
    if arch is not None and not evidence.ARCH.match(arch):
        raise BadInput(f"--arch {one_line(arch)!r}: give smXY, e.g. sm90")
    ref = Ref.parse(image_ref)
    with Registry(ref.host) as registry:
        digest = registry.manifest(ref).digest
        _, config = registry.image_config(ref.at(digest))
        pins, coverage = _labels_of(ref, config)
        descriptors, found_by = registry.referrers(ref, digest)
        trusted = [_read_one(registry, ref, digest, d, pins) for d in descriptors if _ours(d)]
    if gpu:
        arch = arch_for_gpu(gpu, trusted)
    packages = []
    for pin in sorted(pins, key=lambda p: p["name"]):
        archs = set(pin.get("archs") or []) | {e.arch for e in trusted if e.package == pin["name"] and e.arch}
        if arch:
            archs.add(arch)
        rows = []
        for a in sort_archs(archs):
            static, static_ok, served = _static(pin, coverage, a)
            found = [e for e in trusted if e.package == pin["name"] and e.arch == a]
            measured, measured_ok = _measured(found)
            answer = ("measured" if measured_ok else "refused" if measured_ok is False
                      else "static only" if static_ok else "refused")
            names = [n.strip() for n in GPUS.get(a, "").split("/") if n.strip()]
            names += sorted({one_line(e.gpu_name).removeprefix("NVIDIA ") for e in found if e.gpu_name} - set(names))
            rows.append(Row(a, names, static, static_ok, served, measured, measured_ok, answer, found))
        packages.append(Package(pin["name"], pin["version"], pin.get("sha256"), rows))
    shortfalls = _shortfalls(packages, arch, require)
    return Verified(str(ref.at(digest)) if not ref.tag else f"{ref}@{digest}", digest, found_by, packages, arch,
                    require, shortfalls, trusted)


def _shortfalls(packages: list[Package], arch: str | None, require: str | None) -> list[str]:
    if require is None:
        return []
    wanted = ("measured",) if require == "measured" else ("measured", "static only")
    short = []
    asked = {arch} if arch else {r.arch for p in packages for r in p.rows if r.served}
    for a in sort_archs(asked):
        rows = [(p, r) for p in packages for r in p.rows if r.arch == a and (r.served or r.measured_ok is not None)]
        if not rows:
            short.append(f"{a}: no attention package serves it")
        for p, r in rows:
            if r.answer not in wanted:
                short.append(f"{p.name} on {a} is {r.answer} (static: {r.static}; measured: {r.measured})")
    return short


def _ours(descriptor: dict) -> bool:
    annotations = obj(descriptor, "annotations")
    return descriptor.get("artifactType") == evidence.MEDIA_TYPE and str(
        annotations.get(evidence.PREDICATE_ANNOTATION, "")).startswith("urn:comfyimg:")


def _read_one(registry: Registry, ref: Ref, digest: str, descriptor: dict, pins: list[dict]) -> Evidence:
    artifact = str(descriptor.get("digest"))
    where = f"attached report {artifact[:19]}…"
    try:
        if not is_digest(artifact):
            raise Untrusted(f"a referrer's digest {one_line(artifact)[:80]!r} is not sha256")
        size = descriptor.get("size")
        if not isinstance(size, int) or size > MAX_MANIFEST:
            raise Untrusted(f"{where}: its manifest size {one_line(str(size))[:20]} is over {MAX_MANIFEST} bytes; "
                            f"not read")
        found = registry.manifest(ref.at(artifact), f"{where} (manifest)")
        manifest = found.body
        subject = obj(manifest, "subject")
        if found.media_type != MANIFEST or subject.get("digest") != digest:
            raise Untrusted(f"{where} does not refer to {digest[:19]}… (subject "
                            f"{one_line(str(subject.get('digest')))[:19]}…)")
        layers = manifest.get("layers")
        if not isinstance(layers, list) or len(layers) != 1 or not isinstance(layers[0], dict):
            raise Untrusted(f"{where}: not one layer")
        layer = layers[0]
        size = layer.get("size")
        if not isinstance(size, int) or size > evidence.MAX_STATEMENT:
            raise Untrusted(f"{where} is {one_line(str(size))[:20]} bytes, over the {evidence.MAX_STATEMENT} "
                            f"byte limit of a statement; not read")
        data = registry.blob(ref.repo, str(layer.get("digest")), evidence.MAX_STATEMENT, where)
        return evidence.trusted(data, artifact=artifact, digest=digest, pins=pins)
    except Untrusted as exc:
        raise WorkFailed(f"{ref.host}/{ref.repo}@{digest[:19]}…: {exc}; not trusted") from None
    except WorkFailed as exc:  # its message names the read (the report's manifest or layer)
        raise WorkFailed(f"{ref.host}/{ref.repo}@{digest[:19]}…: {exc}; not trusted") from None
