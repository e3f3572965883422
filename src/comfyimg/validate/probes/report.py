"""The probe's one JSON object: the report every check adds a row to, stdout kept for it alone,
and the run of a probe script (``main``). Standard library only."""
from __future__ import annotations

import faulthandler
import glob
import json
import math
import os
import platform
import sys
import time
import traceback

from .contract import EXIT_FAIL, EXIT_PASS, EXIT_SKIP, SCHEMA


class JsonStdout:
    """Keep fd 1 for the single JSON object; send all other output to stderr.

    Extensions and libraries may print to stdout (Python prints or C printf),
    so fd 1 itself is pointed at stderr and the original stdout is kept on a
    private descriptor used only for the final JSON line.
    """

    def __init__(self) -> None:
        self.fd: int | None = None

    def capture(self) -> None:
        sys.stdout.flush()
        self.fd = os.dup(1)
        os.dup2(2, 1)

    def emit(self, obj: dict) -> None:
        data = (json.dumps(obj, allow_nan=False, default=str) + "\n").encode()
        sys.stdout.flush()
        fd = 1 if self.fd is None else self.fd
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]


def _finite(x):
    """JSON has no NaN/Inf: map them to strings so the object stays valid."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


class Report:
    """The verdict of one probe (``probe``: sage2, sage3, comfyui), built check by check."""

    def __init__(self, probe: str, package_name: str, expected: str | None) -> None:
        self.probe = probe
        self.t0 = time.monotonic()
        self.checks: list[dict] = []
        self.package = {"name": package_name, "expected": expected, "installed": None}
        self.device: dict | None = None
        self.environment: dict = {
            "python": platform.python_version(),
            "executable": sys.executable,
            # What the container was given, before torch says anything: NVIDIA device nodes
            # (--gpus all, or CDI) and the toolkit's variable.
            "device_nodes": sorted(glob.glob("/dev/nvidia*")),
            "nvidia_visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
        }
        self.bench: dict | None = None
        self.gpu_skip_reason: str | None = None
        self.whole_skip_reason: str | None = None

    def add(self, name: str, status: str, detail: str, kind: str = "install", **metrics) -> dict:
        assert status in ("pass", "fail", "skip"), status
        check = {"name": name, "kind": kind, "status": status, "detail": detail}
        check.update({k: _finite(v) for k, v in metrics.items()})
        self.checks.append(check)
        self.log(f"{status.upper():4} {name}: {detail}")
        return check

    def log(self, msg: str) -> None:
        print(f"[{self.probe}] {msg}", file=sys.stderr, flush=True)

    def no_gpu(self, reason: str, require_gpu: bool, name: str = "gpu", *, skip_detail: str | None = None,
               fail_detail: str | None = None) -> None:
        """No usable GPU: the GPU checks are skipped, or (``--require-gpu``) that is a failure."""
        self.gpu_skip_reason = reason
        if require_gpu:
            self.add(name, "fail", fail_detail or f"--require-gpu: {reason}", kind="gpu")
        else:
            self.add(name, "skip", skip_detail or reason, kind="gpu")

    def failed(self) -> list[dict]:
        return [c for c in self.checks if c["status"] == "fail"]

    def gpu_checks_state(self) -> str:
        """"skipped": no (usable) GPU (also when --require-gpu made that a failure);
        "ran": the GPU checks ran; "not-run": earlier failures stopped the probe first."""
        if self.gpu_skip_reason:
            return "skipped"
        if any(c["kind"] == "gpu" for c in self.checks):
            return "ran"
        return "not-run"

    def finish(self) -> tuple[dict, int]:
        failed = self.failed()
        if failed:
            status, code = "fail", EXIT_FAIL
            parts = [f"{c['name']}: {c['detail']}" for c in failed[:4]]
            if len(failed) > 4:
                parts.append(f"... and {len(failed) - 4} more failed checks")
            reason = "; ".join(parts)
        elif self.whole_skip_reason:
            status, code = "skip", EXIT_SKIP
            reason = self.whole_skip_reason
        else:
            status, code = "pass", EXIT_PASS
            n = sum(1 for c in self.checks if c["status"] == "pass")
            reason = f"{n} checks passed"
            skipped = [c["name"] for c in self.checks if c["status"] == "skip"]
            if skipped:
                reason += f"; skipped: {', '.join(skipped)}"
            if self.gpu_skip_reason:
                reason += f"; gpu: skipped ({self.gpu_skip_reason})"
        if len(reason) > 2000:
            reason = reason[:1997] + "..."
        obj = {
            "probe": self.probe,
            "schema": SCHEMA,
            "status": status,
            "exit_code": code,
            "reason": reason,
            "package": self.package,
            "device": self.device,
            "gpu_checks": self.gpu_checks_state(),
            "environment": self.environment,
            "checks": self.checks,
            "bench": self.bench,
            "elapsed_s": round(time.monotonic() - self.t0, 3),
        }
        return obj, code


def scratch_check(report: Report) -> bool:
    """Under validate (COMFYIMG_SCRATCH set) the probe's HOME/TMPDIR/Triton cache must be
    writable: an image's own /tmp is not trusted, and without a cache every Triton kernel
    fails for a reason that is not the wheel's."""
    scratch = os.environ.get("COMFYIMG_SCRATCH")
    if not scratch:
        return True
    try:
        os.makedirs(os.environ.get("TRITON_CACHE_DIR") or scratch, exist_ok=True)
        probe_file = os.path.join(scratch, f".probe-{os.getpid()}")
        with open(probe_file, "w") as fh:
            fh.write("ok")
        os.unlink(probe_file)
    except OSError as exc:
        report.add("scratch", "fail", f"the probe's scratch {scratch} is not writable ({exc}): Triton could not "
                   "cache its kernels; the container needs a writable exec tmpfs there")
        return False
    report.add("scratch", "pass", f"{scratch} is writable (HOME, TMPDIR, TRITON_CACHE_DIR)")
    return True


def main(probe: str, dist: str, build_parser, probe_body, argv: list[str] | None = None) -> int:
    """Run ``probe_body(args, report)`` of the probe named ``probe`` (which checks ``dist``) and
    print its one JSON object; the exit code is the verdict's (0 pass, 1 fail, 3 skip)."""
    args = build_parser().parse_args(argv)
    faulthandler.enable(file=sys.stderr)
    out = JsonStdout()
    out.capture()
    report = Report(probe, dist, args.expect_version)
    try:
        if scratch_check(report):
            probe_body(args, report)
    except Exception as exc:  # noqa: BLE001 - a probe bug must still produce JSON
        traceback.print_exc(file=sys.stderr)
        report.add("probe-error", "fail", f"probe raised {type(exc).__name__}: {exc}")
    obj, code = report.finish()
    out.emit(obj)
    return code
