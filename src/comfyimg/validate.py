"""Run a validation probe inside a built image (python-on-whales ``docker.run``) and report.

The probe (``probes/sage2.py``, ``probes/sage3.py``) prints one JSON object and exits
0 pass, 1 fail, 3 skip. Here a crash (a signal, or no JSON) is a failure, never a pass;
``--require-gpu`` turns a skipped GPU part into a failure.

    python -m comfyimg.validate sage2 [--image IMAGE] [--require-gpu] [-- PROBE ARGS…]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from python_on_whales import DockerClient
from python_on_whales.client_config import ClientNotFoundError
from python_on_whales.exceptions import DockerException

from .bake import NO_DOCKER_CLI, RECORD
from .console import err, out
from .errors import BadInput, UserError, WorkFailed
from .fsutil import atomic_write

PROBES_DIR = Path(__file__).parent / "probes"
PROBE_MOUNT = "/opt/comfyimg-probes"


@dataclass(frozen=True)
class ProbeSpec:
    name: str  # sage2
    distribution: str  # the pin whose version is expected
    script: str


PROBES = {
    "sage2": ProbeSpec("sage2", "sageattention", "sage2.py"),
    "sage3": ProbeSpec("sage3", "sageattn3", "sage3.py"),
}


@dataclass
class Outcome:
    probe: str
    image: str
    result: dict[str, Any]
    exit_code: int
    passed: bool
    seconds: float


# --------------------------------------------------------------------------- image + expectations


def from_record(root: Path, spec: ProbeSpec, target: str | None) -> tuple[str, str | None, str]:
    """(image, expected version, target) from the latest build record."""
    path = root / RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"no build record at {RECORD}: run `invoke bake` first, or pass --image IMAGE") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{RECORD}: unreadable build record ({exc}); rebuild or pass --image IMAGE") from None
    targets = record.get("targets", {})
    candidates = [target] if target else sorted(
        t for t, v in targets.items() if any(p["name"] == spec.distribution for p in v.get("pins", []))
    )
    if not candidates or candidates[0] not in targets:
        raise BadInput(f"{RECORD}: no built target {'named ' + target if target else 'holds ' + spec.distribution}; "
                       f"built: {', '.join(sorted(targets)) or 'none'}")
    chosen = targets[candidates[0]]
    image = chosen.get("image_id") or (chosen.get("tags") or [None])[0]
    if not image:
        raise BadInput(f"{RECORD}: target {candidates[0]} has no image id or tag; rebuild with invoke bake")
    expected = next((p["version"] for p in chosen.get("pins", []) if p["name"] == spec.distribution), None)
    return image, expected, candidates[0]


def expected_from_pins(root: Path, spec: ProbeSpec, target: str | None) -> str | None:
    from .pins import load

    pins = load(root / "wheels.toml")
    versions = {p.version for p in pins.wheels if p.name == spec.distribution
                and (target is None or target in p.targets)}
    return versions.pop() if len(versions) == 1 else None


def expectations(root: Path, spec: ProbeSpec, target: str | None) -> list[str]:
    """What the probe must find, from the pin's recorded coverage (none for --image alone)."""
    from . import coverage
    from .bake import pins_for
    from .pins import load

    if target is None or not (root / "wheels.toml").exists():
        return []
    pins = load(root / "wheels.toml")
    return coverage.probe_args(pins, spec.distribution, pins_for(pins, target) or [])


# --------------------------------------------------------------------------- labels


def label_check(image: str, expected: list[dict], *, exact: bool) -> dict:
    """The image's ``io.comfyimg.pins`` label (written by ``invoke bake``) against the pins it
    should hold, as one more check of the report. ``exact``: the label must list exactly
    ``expected`` (an image from the build record); else each labelled pin named in
    ``expected`` must be one of them (``--image``: wheels.toml's pins), and an image built
    elsewhere, without the label, is a skip."""
    from .bake import PINS_LABEL

    name = "image labels match the pins"
    try:
        raw = (_docker().image.inspect(image).config.labels or {}).get(PINS_LABEL)
    except DockerException as exc:
        return {"name": name, "status": "fail", "detail": f"cannot inspect {image}: {_first_line(exc)}"}
    if raw is None:
        status = "fail" if exact else "skip"
        return {"name": name, "status": status, "detail": f"no {PINS_LABEL} label (not built by invoke bake)"}
    try:
        labelled = {(p["name"], p["version"], p["sha256"]) for p in json.loads(raw)}
    except (ValueError, TypeError, KeyError) as exc:
        return {"name": name, "status": "fail", "detail": f"{PINS_LABEL} is not a pin list: {exc}"}
    wanted = {(p["name"], p["version"], p["sha256"]) for p in expected}
    names = {n for n, _, _ in wanted}
    wrong = labelled ^ wanted if exact else {p for p in labelled if p[0] in names} - wanted
    if wrong:
        shown = "; ".join(f"{n} {v} {(h or 'no sha256')[:12]}" for n, v, h in sorted(wrong, key=str))
        return {"name": name, "status": "fail", "detail": f"label and expected pins differ: {shown}"}
    return {"name": name, "status": "pass", "detail": f"{len(labelled)} pin(s) labelled as expected"}


def expected_pins(root: Path, image_from_record: bool, target: str | None, spec: ProbeSpec) -> list[dict]:
    if image_from_record:
        record = json.loads((root / RECORD).read_text())
        return list(record["targets"][target]["pins"]) if target in record.get("targets", {}) else []
    from .pins import load

    return [{"name": p.name, "version": p.version, "sha256": p.sha256} for p in load(root / "wheels.toml").wheels
            if p.name == spec.distribution and (target is None or target in p.targets)]


# --------------------------------------------------------------------------- run


def _docker() -> DockerClient:
    return DockerClient()


def _has_nvidia(docker: DockerClient) -> bool:
    try:
        info = docker.system.info()
    except DockerException:
        return False
    return "nvidia" in (info.runtimes or {})


def _probe_user(docker: DockerClient, image: str) -> str:
    user = docker.image.inspect(image).config.user or ""
    return user if user not in ("", "0", "root") else "comfy"


def container_options(user: str, *, gpus: bool) -> dict[str, Any]:
    """How a probe runs: no network, read-only root, the image's non-root user, the probes
    mounted read-only. /tmp is the one writable place and must allow exec: Triton compiles
    its kernel launchers into TRITON_CACHE_DIR and dlopen()s them, which Docker's default
    noexec tmpfs refuses ("failed to map segment from shared object")."""
    return {
        "entrypoint": "python",
        "remove": True,
        "networks": ["none"],
        "read_only": True,
        "tmpfs": ["/tmp:exec,mode=1777"],
        "user": user,
        "envs": {"HOME": "/tmp", "TRITON_CACHE_DIR": "/tmp/triton", "PYTHONDONTWRITEBYTECODE": "1"},
        "volumes": [(str(PROBES_DIR), PROBE_MOUNT, "ro")],
        "gpus": "all" if gpus else None,
    }


def run_probe(image: str, spec: ProbeSpec, probe_args: list[str]) -> tuple[dict | None, int, str]:
    """(JSON result or None, exit code, stdout) of the probe run in ``image``."""
    docker = _docker()
    try:
        if not docker.image.exists(image):
            raise WorkFailed(f"image {image} not found in the engine; build it with `invoke bake` or pass --image")
        user = _probe_user(docker, image)
    except ClientNotFoundError:
        raise WorkFailed(NO_DOCKER_CLI) from None
    except DockerException as exc:
        raise WorkFailed(f"cannot reach the Docker engine: {_first_line(exc)}") from None
    command = [f"{PROBE_MOUNT}/{spec.script}", *probe_args]
    try:
        stdout = docker.run(image, command, **container_options(user, gpus=_has_nvidia(docker)))
        code = 0
    except DockerException as exc:
        stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        code = exc.return_code
    return _parse(stdout), code, stdout


def _first_line(exc: DockerException) -> str:
    text = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or exc)
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "no answer")


def _parse(stdout: str) -> dict | None:
    lines = [ln for ln in (stdout or "").splitlines() if ln.strip()]
    if len(lines) != 1:
        return None
    try:
        obj = json.loads(lines[0])
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) and obj.get("status") in ("pass", "fail", "skip") else None


_DOCKER_EXIT = {125: "the container did not start", 126: "the command could not be run",
                127: "the command was not found"}


def _ended(code: int) -> str:
    if code in _DOCKER_EXIT:
        return f"docker exit {code}: {_DOCKER_EXIT[code]}"
    if code > 128 and (code - 128) in signal.Signals._value2member_map_:
        return f"killed by {signal.Signals(code - 128).name}"
    return f"exit code {code}"


def judge(result: dict | None, code: int, require_gpu: bool) -> tuple[bool, dict]:
    """The host's verdict: a crash or malformed output is a failure, never a pass."""
    if result is None or code not in (0, 1, 3):
        reason = (f"probe crashed ({_ended(code)}) without a valid JSON result" if result is None else
                  f"probe ended with {_ended(code)} after printing its result ({result['status']})")
        return False, {"status": "fail", "reason": reason, "checks": (result or {}).get("checks", []), "crash": True}
    expected_code = {"pass": 0, "fail": 1, "skip": 3}[result["status"]]
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


# --------------------------------------------------------------------------- reports


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(value: object, limit: int | None = None) -> str:
    """Text XML 1.0 can hold: terminal escapes and other control characters dropped."""
    text = _NOT_XML.sub("", str(value if value is not None else ""))
    return text[:limit] if limit else text


def _junit(outcome: Outcome) -> bytes:
    checks = outcome.result.get("checks") or []
    suite = ET.Element("testsuite", name=f"validate_{outcome.probe}", time=f"{outcome.seconds:.3f}")

    def case(name: object, kind: str | None = None, message: object = None) -> None:
        element = ET.SubElement(suite, "testcase", classname=outcome.probe, name=_xml_text(name) or "?")
        if kind:
            ET.SubElement(element, kind, message=_xml_text(message, 500))

    if outcome.result.get("crash") or not checks:
        case("probe", None if outcome.passed else "failure", outcome.result.get("reason"))
    for check in checks:
        status = check.get("status")
        case(check.get("name"), {"fail": "failure", "skip": "skipped"}.get(status), check.get("detail"))
    failures = len(suite.findall("testcase/failure"))
    if not outcome.passed and not failures:  # e.g. --require-gpu on a skip
        case("verdict", "failure", outcome.result.get("reason"))
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(len(suite.findall("testcase/failure"))))
    suite.set("skipped", str(len(suite.findall("testcase/skipped"))))
    ET.SubElement(suite, "system-out").text = _xml_text(json.dumps(outcome.result, indent=2))
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def _markdown(outcome: Outcome) -> str:
    verdict = "✅ pass" if outcome.passed else "❌ fail"
    lines = [f"### validate_{outcome.probe}: {verdict}", "", f"Image `{outcome.image}`: {outcome.result.get('reason', '')}", "",
             "| check | status | detail |", "|---|---|---|"]
    for check in outcome.result.get("checks") or []:
        detail = str(check.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {check.get('name')} | {check.get('status')} | {detail} |")
    bench = outcome.result.get("bench")
    if bench:
        lines += ["", f"Timing: `{json.dumps(bench)}`"]
    return "\n".join(lines) + "\n\n"


def write_reports(root: Path, outcome: Outcome) -> list[Path]:
    reports = root / "reports"
    payload = {"probe": outcome.probe, "image": outcome.image, "passed": outcome.passed,
               "exit_code": outcome.exit_code, "seconds": round(outcome.seconds, 2), "result": outcome.result}
    paths = [reports / f"{outcome.probe}.json", reports / f"{outcome.probe}.junit.xml"]
    atomic_write(paths[0], json.dumps(payload, indent=2, default=str) + "\n")
    atomic_write(paths[1], _junit(outcome))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(_markdown(outcome))
    return paths


def print_table(outcome: Outcome) -> None:
    from .console import table as new_table

    table = new_table("check", "status", "detail", title=f"validate_{outcome.probe} · {outcome.image[:40]}")
    for check in outcome.result.get("checks") or []:
        table.add_row(str(check.get("name")), str(check.get("status")), str(check.get("detail", ""))[:160])
    out().print(table)
    bench = outcome.result.get("bench")
    if bench:
        out().print(f"timing: {json.dumps(bench)}")
    verdict = "PASS" if outcome.passed else "FAIL"
    out().print(f"{verdict}: {outcome.probe}: {outcome.result.get('reason', '')}")


# --------------------------------------------------------------------------- command


def validate(root: Path, probe: str, *, image: str | None = None, target: str | None = None,
             expect_version: str | None = None, require_gpu: bool = False,
             probe_args: list[str] | None = None) -> Outcome:
    spec = PROBES[probe]
    from_build_record = image is None
    if image is None:
        image, recorded, target = from_record(root, spec, target)
        expect_version = expect_version or recorded
    elif expect_version is None:
        expect_version = expected_from_pins(root, spec, target)
    if expect_version is None:
        raise BadInput(f"no expected version for {spec.distribution}: pass --expect-version")
    args = ["--expect-version", expect_version, *(["--require-gpu"] if require_gpu else []),
            *expectations(root, spec, target), *(probe_args or [])]
    started = time.monotonic()
    result, code, stdout = run_probe(image, spec, args)
    passed, verdict = judge(result, code, require_gpu)
    labels = label_check(image, expected_pins(root, from_build_record, target, spec), exact=from_build_record)
    verdict = {**verdict, "checks": [*verdict.get("checks", []), labels]}
    if labels["status"] == "fail" and passed:
        passed, verdict = False, {**verdict, "status": "fail", "reason": f"labels: {labels['detail']}"}
    if verdict.get("crash"):
        verdict["stdout_tail"] = stdout[-2000:]  # what the probe printed before it ended
    outcome = Outcome(probe, image, verdict, code, passed, time.monotonic() - started)
    print_table(outcome)
    for path in write_reports(root, outcome):
        out().print(f"report: {path.relative_to(root)}")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m comfyimg.validate", description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=sorted(PROBES))
    parser.add_argument("--image", help="image to validate (default: the latest build record)")
    parser.add_argument("--target", help="bake target to take from the build record / wheels.toml")
    parser.add_argument("--expect-version", help="override the pinned version")
    parser.add_argument("--require-gpu", action="store_true", help="a skipped GPU check fails")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root (default: .)")
    argv = list(sys.argv[1:] if argv is None else argv)
    probe_args: list[str] = []
    if "--" in argv:
        probe_args = argv[argv.index("--") + 1:]
        argv = argv[: argv.index("--")]
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        outcome = validate(ns.root.resolve(), ns.probe, image=ns.image, target=ns.target,
                           expect_version=ns.expect_version, require_gpu=ns.require_gpu, probe_args=probe_args)
    except UserError as exc:
        err().print(f"error: {exc}")
        return exc.exit_code
    except OSError as exc:  # e.g. reports/ not writable
        err().print(f"error: {exc}")
        return 1
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
