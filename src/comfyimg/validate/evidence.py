"""The evidence an image carries: a validation or smoke report as an in-toto Statement v1 whose
subject is the image digest and whose predicate is this project's schema (versioned: the
``predicateType`` ends in ``v<N>``).

:func:`statement` makes one from a report (``reports/<probe>.json``, as :mod:`reports` writes
it) and the image's ``io.comfyimg.pins`` label; :func:`trusted` reads one back and refuses, in
one line, anything that does not match the image's digest, the schema or the pins, or whose
"passed" its own checks contradict. Pure data: no registry, no docker.

The in-toto Statement v1 is four fields (``_type``, ``subject``, ``predicateType``,
``predicate``; https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md), so it
is written and checked here; the ``in-toto-attestation`` bindings would bring protobuf for that
and have had no release since 2023-12.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from comfyimg.untrusted import loads_json, one_line

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_PREFIX = "urn:comfyimg:evidence:v"
SCHEMA = 1
PREDICATE_TYPE = f"{PREDICATE_PREFIX}{SCHEMA}"
MEDIA_TYPE = "application/vnd.in-toto+json"  # the artifact type and the layer's media type
KIND_ANNOTATION = "io.comfyimg.evidence.kind"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
MAX_STATEMENT = 1 << 20  # a statement is a few KiB; anything past 1 MiB is not read
KINDS = {"validate_sage2": "sageattention", "validate_sage3": "sageattn3",
         "smoke": "sageattention"}  # ComfyUI's --use-sage-attention runs SageAttention 2
ARCH = re.compile(r"^sm\d{2,3}[a-z]?$", re.ASCII)


def obj(value: object, key: str) -> dict[str, Any]:
    """``value[key]`` when both are JSON objects, else an empty one: untrusted JSON, read safely."""
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, dict) else {}


class Untrusted(Exception):
    """An attached statement this image cannot trust; the message says why, in one line."""


# --------------------------------------------------------------------------- writing


def _speed(kind: str, result: dict) -> dict[str, Any]:
    bench = obj(result, "bench")
    if kind == "smoke":
        sage, plain = bench.get("sage") or {}, bench.get("pytorch") or {}
        return {"what": "ComfyUI render, s/step with sage vs PyTorch attention",
                "sage_s_per_step": sage.get("s_per_step"), "pytorch_s_per_step": plain.get("s_per_step"),
                "speedup": bench.get("sage_speedup")}
    rows = [r for r in bench.get("results") or [] if isinstance(r, dict)]
    best = max(rows, key=lambda r: r.get("seq_len") or 0, default={})
    return {"what": "kernel, median ms sageattn vs SDPA", "seq_len": best.get("seq_len"),
            "sage_ms": best.get("sageattn_ms"), "sdpa_ms": best.get("sdpa_ms"),
            "speedup": best.get("speedup_vs_sdpa")}


def _numerics(kind: str, result: dict, checks: list[dict]) -> dict[str, Any]:
    if kind == "smoke":
        stats = obj(result, "sage_stats")
        return {"min_cosine": stats.get("min_cosine"), "max_rel_l1": stats.get("max_rel_l1"),
                "latent_cosine": result.get("latent_cosine")}
    rows = [c for c in checks if str(c.get("name", "")).startswith("numerics")]
    cos = [c["cosine"] for c in rows if isinstance(c.get("cosine"), int | float)]
    l1 = [c["rel_l1"] for c in rows if isinstance(c.get("rel_l1"), int | float)]
    return {"min_cosine": min(cos, default=None), "max_rel_l1": max(l1, default=None), "cases": len(rows)}


def _gpu(kind: str, report: dict, driver: str | None) -> dict[str, Any]:
    result = obj(report, "result")
    if kind == "smoke":
        model = obj(result, "model")
        device = obj(model, "gpu")
        torch = model.get("torch")
        cuda = device.get("cuda")
    else:
        device = obj(result, "device")
        env = obj(result, "environment")
        torch, cuda = env.get("torch"), env.get("torch_cuda")
    ran = obj(report, "gpu").get("container_gpu") is not None and (
        kind == "smoke" or result.get("gpu_checks") == "ran")
    return {"name": device.get("name"), "arch": device.get("sm"), "driver": driver, "cuda": cuda,
            "torch": torch, "checks_ran": bool(ran and device.get("sm"))}


def _dispatch(kind: str, result: dict, checks: list[dict]) -> dict[str, Any] | None:
    if kind == "smoke":
        stats = obj(result, "sage_stats")
        return {"target": stats.get("target"), "calls": stats.get("calls")} if stats else None
    row = next((c for c in checks if c.get("name") == "dispatch"), None)
    if row is None:
        return None
    return {"arch": row.get("sm"), "kernel": row.get("kernel"), "extension": row.get("extension"),
            "status": row.get("status")}


def statement(report: dict, *, digest: str, ref: str, pins: list[dict], driver: str | None) -> dict:
    """The in-toto statement of ``report`` (a ``reports/<probe>.json``) about the image
    ``digest``, whose ``io.comfyimg.pins`` label is ``pins``."""
    probe = str(report.get("probe"))
    kind = "smoke" if probe == "smoke" else f"validate_{probe}"
    if kind not in KINDS:
        raise ValueError(f"a report of {one_line(probe)!r}, not of validate_sage2, validate_sage3 or smoke")
    result = obj(report, "result")
    checks = [c for c in result.get("checks") or [] if isinstance(c, dict)]
    package = KINDS[kind]
    pins = json.loads(json.dumps(pins))  # the statement's own copy
    dispatch = _dispatch(kind, result, checks)
    predicate = {
        "schema": SCHEMA, "kind": kind, "package": package,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),  # attached
        "measured": report.get("finished") if isinstance(report.get("finished"), str) else None,  # the run
        "image": {"ref": ref, "digest": digest},
        "pins": pins,
        "gpu": _gpu(kind, report, driver),
        "wheels": [{"name": p["name"], "version": p["version"], "sha256": p.get("sha256"),
                    "dispatch": dispatch if p["name"] == package else None} for p in pins],
        "checks": [{"name": str(c.get("name")), "status": c.get("status"), "detail": str(c.get("detail", ""))[:500]}
                   for c in checks],
        "numerics": _numerics(kind, result, checks),
        "speed": _speed(kind, result),
        "passed": bool(report.get("passed")),
        "reason": str(result.get("reason", ""))[:500],
    }
    return {"_type": STATEMENT_TYPE, "subject": [{"name": ref, "digest": {"sha256": digest.removeprefix("sha256:")}}],
            "predicateType": PREDICATE_TYPE, "predicate": predicate}


def encode(stmt: dict) -> bytes:
    return json.dumps(stmt, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Evidence:
    """One attached statement this image can trust."""

    artifact: str  # the artifact manifest's digest
    kind: str
    package: str
    created: str  # when it was attached
    measured: str | None  # when the report was written (None: a report from before that was recorded)
    gpu_name: str | None
    arch: str | None
    checks_ran: bool
    passed: bool
    reason: str
    speed: dict[str, Any]
    numerics: dict[str, Any]
    driver: str | None
    cuda: str | None
    torch: str | None

    def as_json(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "kind": self.kind, "package": self.package, "created": self.created,
                "measured": self.measured,
                "gpu": {"name": self.gpu_name, "arch": self.arch, "driver": self.driver, "cuda": self.cuda,
                        "torch": self.torch},
                "checks_ran": self.checks_ran, "passed": self.passed, "reason": self.reason,
                "speed": self.speed, "numerics": self.numerics}


def pin_set(pins: object) -> set[tuple[str, str, str | None]] | None:
    if not isinstance(pins, list):
        return None
    found = set()
    for p in pins:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not isinstance(p.get("version"), str):
            return None
        sha = p.get("sha256")
        if sha is not None and not isinstance(sha, str):
            return None
        found.add((p["name"], p["version"], sha))
    return found


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def trusted(data: bytes, *, artifact: str, digest: str, pins: list[dict]) -> Evidence:
    """The evidence in ``data`` (an attached layer), or :class:`Untrusted` saying why not."""
    where = f"attached report {artifact[:19]}…"
    if len(data) > MAX_STATEMENT:
        raise Untrusted(f"{where} is larger than {MAX_STATEMENT} bytes; not read")
    try:
        stmt = loads_json(data)
    except ValueError as exc:
        raise Untrusted(f"{where} is not JSON ({one_line(exc)[:120]})") from None
    if not isinstance(stmt, dict) or stmt.get("_type") != STATEMENT_TYPE:
        said = stmt.get("_type") if isinstance(stmt, dict) else type(stmt).__name__
        raise Untrusted(f"{where} is not an in-toto Statement v1 (_type {one_line(str(said))[:60]!r})")
    ptype = stmt.get("predicateType")
    if not isinstance(ptype, str) or not ptype.startswith(PREDICATE_PREFIX) or \
            not ptype.removeprefix(PREDICATE_PREFIX).isdigit():
        raise Untrusted(f"{where} has predicateType {one_line(str(ptype))[:80]!r}, not {PREDICATE_PREFIX}<N>")
    version = int(ptype.removeprefix(PREDICATE_PREFIX))
    if version > SCHEMA:
        raise Untrusted(f"{where} is schema v{version}, from a newer comfyimg; this one reads v{SCHEMA} "
                        f"(upgrade comfyimg to read it)")
    if version != SCHEMA:
        raise Untrusted(f"{where} is schema v{version}; this comfyimg reads v{SCHEMA}")
    subjects = stmt.get("subject")
    hexes = {s.get("digest", {}).get("sha256") for s in subjects if isinstance(s, dict)
             and isinstance(s.get("digest"), dict)} if isinstance(subjects, list) else set()
    if digest.removeprefix("sha256:") not in hexes:
        other = ", ".join(sorted(f"sha256:{h}"[:19] + "…" for h in hexes if isinstance(h, str))) or "none"
        raise Untrusted(f"{where} is about another image (subject {other}), not {digest[:19]}…")
    pred = stmt.get("predicate")
    if not isinstance(pred, dict) or pred.get("schema") != SCHEMA:
        raise Untrusted(f"{where}: its predicate is not a schema v{SCHEMA} object")
    kind = pred.get("kind")
    if kind not in KINDS or pred.get("package") != KINDS[kind]:
        raise Untrusted(f"{where}: unknown kind {one_line(str(kind))[:40]!r} or package")
    if obj(pred, "image").get("digest") != digest:
        raise Untrusted(f"{where}: its predicate names another image digest")
    theirs, ours = pin_set(pred.get("pins")), pin_set(pins)
    if theirs is None or theirs != ours:
        shown = "; ".join(f"{n} {v} {(h or '-')[:12]}" for n, v, h in sorted((theirs or set()) ^ (ours or set()),
                                                                            key=str))
        raise Untrusted(f"{where} was made for another pins set than the image's label ({one_line(shown)[:200]})")
    checks = pred.get("checks")
    if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
        raise Untrusted(f"{where}: its checks are not a list of objects")
    passed = pred.get("passed")
    if not isinstance(passed, bool):
        raise Untrusted(f"{where}: 'passed' is not true or false")
    failing = [str(c.get("name")) for c in checks if c.get("status") == "fail"]
    if passed and (failing or not checks):
        raise Untrusted(f"{where} says passed but its checks do not: "
                        f"{one_line(', '.join(failing) or 'no checks at all')[:160]}")
    gpu = obj(pred, "gpu")
    arch = _str(gpu.get("arch"))
    if arch is not None and not ARCH.match(arch):
        raise Untrusted(f"{where}: GPU arch {one_line(arch)[:20]!r} is not smXY")
    created = _str(pred.get("created")) or ""
    return Evidence(artifact, kind, KINDS[kind], created, _str(pred.get("measured")), _str(gpu.get("name")), arch,
                    gpu.get("checks_ran") is True, passed, _str(pred.get("reason")) or "",
                    obj(pred, "speed"),
                    obj(pred, "numerics"),
                    _str(gpu.get("driver")), _str(gpu.get("cuda")), _str(gpu.get("torch")))
