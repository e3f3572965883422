"""The verdict on a probe run: its one JSON object parsed against the probe contract, judged
with its exit code (a crash or malformed output is a failure, never a pass; a host GPU the
container never saw fails too), the ComfyUI probe's rows merged in, and the image's labels
checked against the pins it should hold. Nothing here runs a container but ``docker inspect``."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from comfyimg.bake import record
from comfyimg.render import PINS_LABEL
from comfyimg.engine.containers import image_labels
from comfyimg.engine.docker import DockerException, error_line
from comfyimg.errors import BadInput
from comfyimg.pins import comfyui as comfyui_pin
from comfyimg.pins.load import load
from comfyimg.untrusted import loads_json
from comfyimg.validate.gpuaccess import GIVE_THE_ENGINE_THE_GPU, GpuAccess
from comfyimg.validate.probes import contract
from comfyimg.validate.reports import clean

@dataclass
class Run:
    """One probe container: its JSON (or None), exit code, stdout, and docker's own words."""

    name: str
    result: dict | None
    code: int
    stdout: str
    problem: str | None = None  # why result is None: malformed JSON, docker could not start it, …
    seconds: float = 0.0


# --------------------------------------------------------------------------- the probe's JSON


def parse_result(stdout: str) -> tuple[dict | None, str | None]:
    """(the probe's JSON object, None) or (None, what is wrong with it)."""
    lines = [ln for ln in (stdout or "").splitlines() if ln.strip()]
    if not lines:
        return None, "the probe printed nothing on stdout"
    if len(lines) != 1:
        return None, f"the probe printed {len(lines)} lines on stdout, not one JSON object"
    try:
        obj = loads_json(lines[0])
    except ValueError as exc:
        return None, f"the probe's output is not JSON: {exc}"
    obj = clean(obj)
    if not isinstance(obj, dict):
        return None, f"the probe printed a JSON {type(obj).__name__}, not an object"
    if obj.get("schema") != contract.SCHEMA:
        return None, f"the probe's schema is {obj.get('schema')!r}; this host reads schema {contract.SCHEMA}"
    if obj.get("status") not in contract.STATUSES:
        return None, f"the probe's status is {obj.get('status')!r}, not pass, fail or skip"
    checks = obj.get("checks", [])
    if not isinstance(checks, list):
        return None, f"the probe's checks are a JSON {type(checks).__name__}, not a list"
    for i, check in enumerate(checks):
        if not isinstance(check, dict):
            return None, f"checks[{i}] is a JSON {type(check).__name__}, not an object"
        if not isinstance(check.get("name"), str) or check.get("status") not in contract.STATUSES:
            return None, f"checks[{i}] needs a string name and a status of pass, fail or skip"
    obj["checks"] = checks
    return obj, None


_DOCKER_EXIT = {125: "the container did not start", 126: "the command could not be run",
                127: "the command was not found"}


def _ended(code: int) -> str:
    if code in _DOCKER_EXIT:
        return f"docker exit {code}: {_DOCKER_EXIT[code]}"
    if code > 128 and (code - 128) in {int(s) for s in signal.Signals}:
        return f"killed by {signal.Signals(code - 128).name}"
    return f"exit code {code}"


def judge(result: dict | None, code: int, require_gpu: bool, problem: str | None = None) -> tuple[bool, dict]:
    """The host's verdict: a crash or malformed output is a failure, never a pass."""
    if result is None or code not in contract.EXIT_FOR.values():
        if result is None:
            reason = problem if problem and problem.startswith("docker could not") else (
                f"probe crashed ({_ended(code)}) without a valid JSON result" + (f": {problem}" if problem else ""))
        else:
            reason = f"probe ended with {_ended(code)} after printing its result ({result['status']})"
        return False, {"status": "fail", "reason": reason, "checks": (result or {}).get("checks", []), "crash": True}
    expected_code = contract.EXIT_FOR[result["status"]]
    if code != expected_code:
        return False, {**result, "status": "fail",
                       "reason": f"probe said {result['status']} but exited {code}: {result.get('reason', '')}"}
    if result["status"] == "fail":
        return False, result
    if require_gpu and (result["status"] == "skip" or result.get("gpu_checks") != "ran"):
        return False, {**result, "status": "fail",
                       "reason": f"--require-gpu: GPU checks were not run ({result.get('gpu_checks')}): "
                                 f"{result.get('reason', '')}"}
    return True, result


def no_silent_skip(passed: bool, verdict: dict, host: str | None, access: GpuAccess) -> tuple[bool, dict]:
    """A host with an NVIDIA GPU whose container saw none fails, and says how to fix it
    (unless --gpus none asked for exactly that)."""
    if (not passed or not host or access.mode == "none" or verdict.get("device")
            or verdict.get("gpu_checks") == "ran"):
        return passed, verdict
    reason = (f"the host has an NVIDIA GPU ({host}) but the probe container saw none "
              f"(GPU access: {access.describe()}); {GIVE_THE_ENGINE_THE_GPU}")
    return False, {**verdict, "status": "fail", "reason": reason, "gpu_not_given": True}


def merge_comfyui(passed: bool, verdict: dict, comfy: Run | None, require_gpu: bool) -> tuple[bool, dict]:
    """The ComfyUI checks are rows of the same report; their failure fails the session."""
    if comfy is None:
        return passed, verdict
    c_passed, c_verdict = judge(comfy.result, comfy.code, require_gpu, comfy.problem)
    rows = [c if c["name"].startswith("comfyui") else {**c, "name": f"comfyui:{c['name']}"}
            for c in c_verdict.get("checks") or []]  # e.g. its own scratch row
    if c_verdict.get("crash"):
        rows.append({"name": "comfyui", "kind": "install", "status": "fail", "detail": c_verdict["reason"]})
    merged = {**verdict, "checks": [*(verdict.get("checks") or []), *rows],
              "comfyui": {k: c_verdict.get(k) for k in ("status", "reason", "package", "device", "gpu_checks",
                                                        "elapsed_s")}}
    if c_passed:
        return passed, merged
    reason = f"comfyui: {c_verdict.get('reason', '')}"
    merged["reason"] = f"{verdict.get('reason', '')}; {reason}" if not passed else reason
    merged["status"] = "fail"
    return False, merged


# --------------------------------------------------------------------------- labels


def label_pins(raw: str) -> set[tuple[str, str, str | None]] | str:
    """The (name, version, sha256) pins of an ``io.comfyimg.pins`` label, or what is wrong
    with it: a label is written by whoever built the image, so every field is checked."""
    try:
        items = loads_json(raw)
    except ValueError as exc:
        return str(exc)
    if not isinstance(items, list):
        return f"a JSON {type(items).__name__}, not a list"
    pins = set()
    for i, p in enumerate(items):
        if not isinstance(p, dict):
            return f"[{i}] is a JSON {type(p).__name__}, not an object"
        for key in ("name", "version"):
            if not isinstance(p.get(key), str):
                return f"[{i}].{key} is {type(p.get(key)).__name__}, not a string"
        if p.get("sha256") is not None and not isinstance(p["sha256"], str):
            return f"[{i}].sha256 is {type(p['sha256']).__name__}, not a string or null"
        pins.add((p["name"], p["version"], p.get("sha256")))
    return pins


def label_check(image: str, expected: list[dict], *, exact: bool) -> dict:
    """The image's ``io.comfyimg.pins`` label (written by ``invoke bake``) against the pins it
    should hold, as one more check of the report. ``exact``: the label must list exactly
    ``expected`` (an image from the build record); else each labelled pin named in
    ``expected`` must be one of them (``--image``: wheels.toml's pins), and an image built
    elsewhere, without the label, is a skip."""

    name = "image labels match the pins"
    try:
        raw = image_labels(image).get(PINS_LABEL)
    except DockerException as exc:
        return {"name": name, "status": "fail", "detail": f"cannot inspect {image}: {error_line(exc)}"}
    if raw is None:
        status = "fail" if exact else "skip"
        return {"name": name, "status": status, "detail": f"no {PINS_LABEL} label (not built by invoke bake)"}
    labelled = label_pins(raw)
    if isinstance(labelled, str):
        return {"name": name, "status": "fail", "detail": f"{PINS_LABEL} is not a pin list: {labelled}"}
    wanted = {(p["name"], p["version"], p["sha256"]) for p in expected}
    names = {n for n, _, _ in wanted}
    if not exact and not names:
        return {"name": name, "status": "skip", "detail": "no wheels.toml pins to compare the label with"}
    wrong = labelled ^ wanted if exact else {p for p in labelled if p[0] in names} - wanted
    if wrong:
        shown = "; ".join(f"{n} {v} {(h or 'no sha256')[:12]}" for n, v, h in sorted(wrong, key=str))
        return {"name": name, "status": "fail", "detail": f"label and expected pins differ: {shown}"}
    return {"name": name, "status": "pass", "detail": f"{len(labelled)} pin(s) labelled as expected"}


def comfyui_label_check(root: Path, image: str) -> dict:
    """The image's ``io.comfyimg.comfyui.*`` labels against ``[comfyui]`` in wheels.toml."""
    try:
        labels = image_labels(image)
    except DockerException as exc:
        return {"name": "ComfyUI label matches the pin", "status": "fail",
                "detail": f"cannot inspect {image}: {error_line(exc)}"}
    try:
        pin = load(root / "wheels.toml").comfyui
    except BadInput:
        pin = None
    return comfyui_pin.label_check(labels, pin)


def expected_pins(root: Path, image_from_record: bool, target: str | None, distribution: str) -> list[dict]:
    """The pins the image's label must hold: the build record's for an image from it, else
    wheels.toml's pins of ``distribution`` (none when there is no wheels.toml)."""
    if image_from_record:
        built = record.read(root).get("targets", {})
        return list(built[target].get("pins", [])) if target in built else []

    if not (root / "wheels.toml").exists():  # --image from anywhere: nothing to expect
        return []
    return [{"name": p.name, "version": p.version, "sha256": p.sha256} for p in load(root / "wheels.toml").wheels
            if p.name == distribution and (target is None or target in p.targets)]
