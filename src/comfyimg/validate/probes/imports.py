"""Import diagnosis: the installed version, an import that crashes the interpreter, and why an
import failed (no driver, ABI mismatch, missing library, ...). Standard library only."""
from __future__ import annotations

import importlib
import importlib.metadata
import re
import signal
import subprocess
import sys

from .report import Report


def version_matches(installed: str, expected: str) -> bool:
    """``2.2.0`` matches ``2.2.0`` and ``2.2.0+cu130.torch2.13.0.sm90``;
    an expectation with a local label (``+...``) must match exactly."""
    inst, exp = installed.strip().lower(), expected.strip().lower()
    if "+" in exp:
        return inst == exp
    return inst.split("+", 1)[0] == exp


def check_version(report: Report, dist: str, expected: str | None) -> bool:
    try:
        installed = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        report.add("version", "fail", f"distribution {dist!r} is not installed (no {dist}-*.dist-info on sys.path)")
        return False
    report.package["installed"] = installed
    if expected is None:
        report.add("version", "skip", f"installed {installed}; no --expect-version given")
        return True
    if version_matches(installed, expected):
        report.add("version", "pass", f"installed {installed} matches expected {expected}")
        return True
    report.add("version", "fail", f"installed {installed}, expected {expected}")
    return False


_DRIVER_LIBS = re.compile(r"lib(cuda|nvidia-ml|nvidia-ptxjitcompiler|nvcuda)\.so")


def classify_import_error(exc: BaseException, module: str) -> tuple[str, str]:
    """Return (error_kind, explanation) for a failed import.

    error_kind is one of: no-driver, abi-mismatch, missing-library,
    incompatible-library, not-found, missing-dependency, error.
    """
    msg = f"{type(exc).__name__}: {exc}"
    text = str(exc)
    if _DRIVER_LIBS.search(text) and "cannot open shared object file" in text:
        return "no-driver", (
            f"{msg} -- the NVIDIA driver library is not present (container started without a GPU, "
            "e.g. without `docker run --gpus all`); this is not a wheel defect")
    m = re.search(r"undefined symbol: (\S+)", text)
    if m:
        return "abi-mismatch", (
            f"{msg} -- broken wheel: undefined symbol {m.group(1)}; the extension was built against a "
            "different torch (C++ ABI/version) than the one installed")
    m = re.search(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file", text)
    if m:
        return "missing-library", (
            f"{msg} -- broken wheel for this image: it needs {m.group(1)}, which the image lacks "
            "(built for another CUDA/torch)")
    if re.search(r"version `[^']+' not found", text):
        return "incompatible-library", (
            f"{msg} -- broken wheel for this image: built against a newer system library (glibc/libstdc++)")
    if isinstance(exc, ModuleNotFoundError):
        missing = getattr(exc, "name", None) or ""
        if missing and (missing == module or module.startswith(missing + ".")):
            return "not-found", f"{msg} -- the module is not in the installed package"
        return "missing-dependency", f"{msg} -- a dependency of {module} is not installed"
    return "error", msg


def import_crash_check(report: Report, modules: list[str], timeout: float) -> bool:
    """Import the modules in a child process first, so that an import that ends the
    interpreter (SIGSEGV in an extension's initialiser, or an exit() there) is reported
    as a failure instead of ending the probe. Returns False if the child did not finish."""
    done = "comfyimg-probe: imports finished"
    code = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except BaseException:\n"
        "        pass\n"
        f"print({done!r}, flush=True)\n"  # an exit(0) at import never gets here
    )
    cmd = [sys.executable, "-X", "faulthandler", "-c", code, *modules]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        report.add("import-isolated", "fail",
                   f"importing {', '.join(modules)} did not finish within {timeout:.0f} s (hang at import)")
        return False
    err = proc.stdout.decode(errors="replace")  # the child's stdout and stderr, as they came
    finished = err.rstrip().endswith(done)
    err = err.replace(done + "\n", "")
    if err:
        sys.stderr.write(err)  # never our stdout: it carries the one JSON object
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        where = [ln.strip() for ln in err.splitlines() if ln.strip().startswith("File ")]
        hint = f" (last frame: {where[0]})" if where else ""
        report.add("import-isolated", "fail",
                   f"importing {', '.join(modules)} killed the interpreter with {sig}{hint}: broken wheel",
                   signal=sig)
        return False
    if proc.returncode != 0 or not finished:
        report.add("import-isolated", "fail",
                   f"importing {', '.join(modules)} ended the interpreter with exit status "
                   f"{proc.returncode} before the imports finished: broken wheel", exit_status=proc.returncode)
        return False
    report.add("import-isolated", "pass", f"importing {', '.join(modules)} in a child process did not crash")
    return True


def import_module_check(report: Report, name: str, module: str, gpu_present: bool,
                        require_gpu: bool, **extra):
    """Import `module` in-process; add a check. Returns (module or None, error_kind, check)."""
    try:
        mod = importlib.import_module(module)
    except BaseException as exc:  # noqa: BLE001 - extensions raise anything
        kind, detail = classify_import_error(exc, module)
        status = "skip" if (kind == "no-driver" and not gpu_present and not require_gpu) else "fail"
        check = report.add(name, status, detail, module=module, loaded=False, error_kind=kind, **extra)
        return None, kind, check
    path = getattr(mod, "__file__", None)
    check = report.add(name, "pass", f"{module} loaded from {path}", module=module, loaded=True,
                       error_kind=None, **extra)
    return mod, None, check


def import_torch(report: Report):
    try:
        import torch  # noqa: PLC0415
    except BaseException as exc:  # noqa: BLE001
        report.add("torch", "fail", f"torch cannot be imported: {type(exc).__name__}: {exc}")
        return None
    report.environment.update({
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
    })
    try:
        report.environment["triton"] = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        report.environment["triton"] = None
    return torch
