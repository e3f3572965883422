"""Pins → the generated files the images are built from.

* ``generated/requirements/<target>.txt`` (and ``<target>-<arch>.txt`` for per-arch
  wheels): hash-pinned requirements, installed with
  ``pip install --require-hashes --no-deps``.
* ``generated/wheels.bake.json``: bake variables (torch version and index per
  profile, the per-arch targets), read by ``docker-bake.hcl``.
* The targets of ``docker-bake.hcl`` and the labels they carry: the names it declares (pins
  name them in ``targets``), the pins a resolved target installs, and its ``io.comfyimg.pins``
  label. Read with a small HCL scanner (:func:`parse_targets`), not a pattern: a ``target "x" {``
  line inside a heredoc, a string or a comment is text, not a target. ``invoke check`` needs no Docker engine
  for it; ``invoke bake`` checks the same names again against buildx's own evaluation.

Output is deterministic: rendering twice gives byte-identical files.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from comfyimg.errors import BadInput
from comfyimg.fsutil import CHANGED, atomic_write, atomic_write_many, read_bytes, read_text
from comfyimg.audit import coverage, report
from comfyimg.pins import comfyui as comfyui_pin
from comfyimg.pins.model import DOCKER_PLATFORMS, Pin, Pins, docker_arch, record_hash_command
from comfyimg.untrusted import one_line

GENERATED = Path("generated")
REQUIREMENTS = GENERATED / "requirements"
BAKE_VARS = GENERATED / "wheels.bake.json"
PER_ARCH_TARGET = "complete-cuda"  # the bake target docker-bake.hcl expands per arch


def _requirement(pin: Pin) -> list[str]:
    if pin.sha256 is None:
        return [
            f"# {pin.key} {pin.version}: sha256 not recorded; pip refuses this line under --require-hashes.",
            f"# Record it with: {record_hash_command(pin)}",
            f"{pin.name} @ {pin.url}",
        ]
    return [f"{pin.name} @ {pin.url} --hash=sha256:{pin.sha256}"]


def requirements_text(pins: Pins, target: str, arch: str | None = None, platform: str | None = None) -> str:
    profile = pins.profile_for(target)
    abi = profile.abi_for(platform)
    name = pins.image_name(target, arch, platform)
    lines = [
        "# GENERATED FILE - do not edit.",
        f"# From {pins.path.name} by `invoke render` (checked by `invoke check`).",
        f"# Image: {name}; ABI {abi.describe()}, torch index {profile.torch_index}.",
        "# Installed with: pip install --require-hashes --no-deps -r <this file>",
    ]
    for pin in pins.for_target(target, arch, platform):
        lines += _requirement(pin)
    for dist, per_arch in ({} if arch else pins.arch_only(target, platform)).items():
        archs = ", ".join(p.arch for p in per_arch if p.arch)
        lines.append(f"# NOTE: {dist} is pinned per GPU arch only ({archs}): this image, built without an "
                     f"arch, has NO {dist}; the {pins.image_name(target, '<arch>', platform)} images have it.")
    return "\n".join(lines) + "\n"


def bake_vars(pins: Pins) -> dict[str, object]:
    variables: dict[str, object] = {}
    for name, profile in sorted(pins.profiles.items()):
        prefix = name.upper()
        variables[f"{prefix}_TORCH_VERSION"] = {"default": profile.abi.torch}
        variables[f"{prefix}_TORCH_INDEX"] = {"default": profile.torch_index}
        first, *others = profile.all_platforms
        variables[f"{prefix}_PLATFORM"] = {"default": DOCKER_PLATFORMS[first]}
        variables[f"{prefix}_OTHER_PLATFORMS"] = {"default": [docker_arch(p) for p in others]}
    variables["CUDA_ARCH_TARGETS"] = {"default": pins.archs_for(PER_ARCH_TARGET)}
    other = pins.profiles["cuda"].all_platforms[1:] if "cuda" in pins.profiles else ()
    variables["CUDA_ARCH_PLATFORM_TARGETS"] = {"default": [
        f"{arch}-{docker_arch(p)}" for p in other for arch in pins.archs_for(PER_ARCH_TARGET, p)]}
    if pins.comfyui:  # COMFYUI_REF: the recorded commit, else the tag
        variables.update(comfyui_pin.bake_vars(pins.comfyui))
    return {
        "//": f"GENERATED from {pins.path.name} by `invoke render` - do not edit.",
        "variable": variables,
    }


def render(pins: Pins) -> dict[Path, str]:
    """Every generated file, as repo-relative path → content."""
    files: dict[Path, str] = {}
    for target in pins.targets():
        for platform in pins.platforms_for(target):
            files[REQUIREMENTS / f"{pins.image_name(target, None, platform)}.txt"] = \
                requirements_text(pins, target, None, platform)
            for arch in pins.archs_for(target, platform):
                files[REQUIREMENTS / f"{pins.image_name(target, arch, platform)}.txt"] = \
                    requirements_text(pins, target, arch, platform)
    files[BAKE_VARS] = json.dumps(bake_vars(pins), indent=2, sort_keys=True) + "\n"

    files[report.DOC] = report.markdown(pins)
    return files


@dataclass(frozen=True)
class Drift:
    path: Path
    diff: str


def _stale(root: Path, files: dict[Path, str]) -> list[Path]:
    folder = root / REQUIREMENTS
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(root) for p in folder.glob("*.txt") if p.relative_to(root) not in files)


def is_current(path: Path, want: str) -> bool:
    """Byte for byte: a file turned CRLF, or not UTF-8, has drifted."""
    return path.exists() and read_bytes(path) == want.encode("utf-8")


def _lines(path: Path) -> list[str]:
    """A file's lines for a diff, line endings kept (``\r`` shows as ``\\r``)."""
    if not path.exists():
        return []
    text = read_bytes(path).decode("utf-8", errors="backslashreplace").replace("\r", "\\r")
    return text.splitlines(keepends=True)


def check(pins: Pins, root: Path) -> list[Drift]:
    """Generated files that differ from what ``render`` would write (missing and stale ones too)."""
    files = render(pins)
    drifts: list[Drift] = []
    for rel, want in sorted(files.items()):
        path = root / rel
        if not is_current(path, want):
            diff = difflib.unified_diff(_lines(path), want.splitlines(keepends=True),
                                        f"a/{rel}" if path.exists() else "/dev/null", f"b/{rel}")
            drifts.append(Drift(rel, "".join(diff)))
    for rel in _stale(root, files):
        diff = difflib.unified_diff(_lines(root / rel), [], f"a/{rel}", "/dev/null")
        drifts.append(Drift(rel, "".join(diff)))
    return drifts


DIFF_SHOWN = 64 * 1024  # characters of drift diff printed; more goes to DIFF_FILE
LINE_SHOWN = 400  # characters of one diff line printed
DIFF_FILE = Path("build") / "check-drift.diff"


def shown_diff(drifts: list[Drift], root: Path) -> str:
    """What ``invoke check`` prints for ``drifts``: the diffs, each line cut at LINE_SHOWN; past
    DIFF_SHOWN in all, a summary line, the whole diff written to ``build/check-drift.diff``."""
    whole = "".join(d.diff for d in drifts)
    lines = whole.splitlines(keepends=True)
    cut = "".join(ln if len(ln) <= LINE_SHOWN else f"{ln[:LINE_SHOWN]}… ({len(ln)} characters)\n" for ln in lines)
    if len(cut) <= DIFF_SHOWN and len(cut) == len(whole):
        return whole
    atomic_write(root / DIFF_FILE, whole)
    changed_lines = sum(1 for ln in lines if ln[:1] in "+-" and not ln.startswith(("+++", "---")))
    if len(cut) <= DIFF_SHOWN:
        return cut + f"(long lines cut; the whole diff is in {DIFF_FILE})\n"
    return (f"{changed_lines} changed line(s) in {len(drifts)} file(s), {len(whole)} characters of diff: "
            f"the whole diff is in {DIFF_FILE}\n")


def changed(pins: Pins, root: Path, files: dict[Path, str] | None = None) -> dict[Path, bytes | str]:
    """The generated files under ``root`` whose content ``pins`` changes: path → new content."""
    files = render(pins) if files is None else files
    return {root / rel: text for rel, text in files.items() if not is_current(root / rel, text)}


def write(pins: Pins, root: Path) -> list[Path]:
    """Write every generated file that changed (atomically) and remove stale ones."""
    files = render(pins)
    changed_files = changed(pins, root, files)
    atomic_write_many(changed_files)
    stale = _stale(root, files)
    for rel in stale:
        (root / rel).unlink()
        CHANGED.append(root / rel)
    return sorted([p.relative_to(root) for p in changed_files] + stale)

BAKE_FILE = "docker-bake.hcl"
PINS_LABEL = "io.comfyimg.pins"
PLATFORM_LABEL = "io.comfyimg.pins.platform"  # which platform's pins the image carries: linux_aarch64
RUNS_LABEL = "io.comfyimg.runs-on"  # per attention package: the archs that run it, those that fall back
COVERAGE_LABEL = "io.comfyimg.coverage"
_PER_ARCH = re.compile(r"^(?P<base>.+)-(?P<arch>sm\d{2,3}[a-z]?)$", re.ASCII)
_SUFFIX = {docker_arch(p): p for p in DOCKER_PLATFORMS}  # arm64 -> linux_aarch64


# --------------------------------------------------------------------------- the bake file's targets
# A small HCL scanner, not a pattern over lines: it knows HCL's comments (#, //, /* */), quoted
# strings with their ${ } and %{ } templates (which hold strings of their own) and heredocs
# (<<EOT, <<-EOT), so a `target "x" {` inside any of them is text, not a target. It checks what
# a reader of block names must trust (every bracket closed by its partner, every string, comment
# and heredoc ended) and names the line of the first fault; the rest of HCL's grammar is
# buildx's to judge when it evaluates the file (invoke bake compares the names with buildx's own
# plan). It replaced python-hcl2, whose import and parse cost 0.7 s on every command that reads
# the bake file (docs/dev/startup.md).

_WORD = re.compile(r"[A-Za-z_][\w-]*|\d[\w.]*")
_HEREDOC = re.compile(r"<<-?([A-Za-z_][\w-]*)[ \t]*\r?\n")
_CLOSER = {"{": "}", "[": "]", "(": ")"}


class _Fault(Exception):
    def __init__(self, line: int, why: str) -> None:
        super().__init__(why)
        self.line = line


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text, self.i, self.line = text, 0, 1

    def skip_to(self, end: int) -> None:
        self.line += self.text.count("\n", self.i, end)
        self.i = end

    def string(self) -> str:
        """A quoted string from its opening quote: its text (templates scanned, not evaluated)."""
        text, start, opened = self.text, self.i + 1, self.line
        self.i += 1
        while self.i < len(text):
            c = text[self.i]
            if c == "\\":
                self.i += 2
            elif c == '"':
                self.i += 1
                return text[start:self.i - 1]
            elif c == "\n":
                raise _Fault(opened, "a string is not closed on its line")
            elif text.startswith(("${", "%{"), self.i) and not text.startswith(("$${", "%%{"), self.i - 1):
                self.i += 2
                self.expression("}")
            else:
                self.i += 1
        raise _Fault(opened, "a string is never closed")

    def expression(self, closer: str) -> None:
        """Scan up to and past ``closer`` (a template's ``}``), through nested strings and brackets."""
        stack = [closer]
        opened = self.line
        while self.i < len(self.text):
            c = self.text[self.i]
            if c == '"':
                self.string()
                continue
            if c == "\n":
                self.line += 1
            elif c in _CLOSER:
                stack.append(_CLOSER[c])
            elif c in ")]}":
                if c != stack.pop():
                    raise _Fault(self.line, f"{c!r} closes a bracket it does not match")
                if not stack:
                    self.i += 1
                    return
            self.i += 1
        raise _Fault(opened, "a ${ } template is never closed")

    def comment_or_heredoc(self) -> bool:
        """Skip a comment or heredoc at the scanner's place; False when there is none."""
        text, i = self.text, self.i
        if text[i] == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            self.i = len(text) if end < 0 else end
            return True
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise _Fault(self.line, "a /* comment is never closed")
            self.skip_to(end + 2)
            return True
        if m := _HEREDOC.match(text, i):
            marker, opened = m[1], self.line
            self.skip_to(m.end())
            while self.i < len(text):
                end = text.find("\n", self.i)
                end = len(text) if end < 0 else end
                if text[self.i:end].strip() == marker:
                    self.skip_to(end)
                    return True
                self.skip_to(min(end + 1, len(text)))
            raise _Fault(opened, f"the heredoc <<{marker} is never ended by a line {marker}")
        return False


def parse_targets(text: str, name: str = BAKE_FILE) -> set[str]:
    """Target names declared in bake-file ``text``; a malformed file is bad input with its line."""
    try:
        return _targets(text)
    except _Fault as fault:
        raise BadInput(f"{one_line(name)}:{fault.line}: syntax: not valid HCL ({fault})") from None


def _targets(text: str) -> set[str]:
    scan, found = _Scanner(text), set()
    open_brackets: list[tuple[str, int]] = []
    head: list[str] = []  # the words and labels of the top-level statement so far
    while scan.i < len(text):
        c = text[scan.i]
        if c == "\n":
            scan.line += 1
            scan.i += 1
            if not open_brackets:
                head = []
        elif c in " \t\r,=":
            scan.i += 1
        elif scan.comment_or_heredoc():
            continue
        elif c == '"':
            label = scan.string()
            if not open_brackets:
                head.append(label)
        elif c in _CLOSER:
            if c == "{" and not open_brackets and len(head) >= 2 and head[0] == "target":
                found.add(head[1])
            open_brackets.append((c, scan.line))
            scan.i += 1
        elif c in ")]}":
            if not open_brackets or _CLOSER[open_brackets[-1][0]] != c:
                raise _Fault(scan.line, f"{c!r} closes nothing that is open")
            open_brackets.pop()
            scan.i += 1
            if not open_brackets:
                head = []
        elif m := _WORD.match(text, scan.i):
            if not open_brackets:
                head.append(m[0])
            scan.i = m.end()
        else:
            scan.i += 1
    if open_brackets:
        bracket, line = open_brackets[-1]
        raise _Fault(line, f"the {bracket!r} opened here is never closed")
    return found


def targets(bake_file: Path) -> set[str] | None:
    """Target names declared in ``docker-bake.hcl``, or None when there is no such file."""
    if not bake_file.exists() and not bake_file.is_symlink():
        return None
    return parse_targets(read_text(bake_file), bake_file.name)


def image_of(pins: Pins, target: str) -> tuple[str, str | None, str] | None:
    """A resolved bake target → (the pinned target, arch, platform) it builds; None when
    wheels.toml does not cover it. ``complete-cuda-sm90-arm64`` → (complete-cuda, sm90, linux_aarch64)."""
    base, _, suffix = target.rpartition("-")
    platform = _SUFFIX.get(suffix)
    if platform is None:
        base = target
    arch = None
    if base not in pins.targets() and (m := _PER_ARCH.match(base)):
        base, arch = m["base"], m["arch"]
    if base not in pins.targets():
        return None
    platforms = pins.platforms_for(base)
    if platform is None:
        platform = platforms[0]
    elif platform == platforms[0] or platform not in platforms:
        return None  # the first platform's images carry no suffix
    return base, arch, platform


def pins_for(pins: Pins, target: str) -> list[Pin] | None:
    """The pins a resolved bake target installs; None when wheels.toml does not cover it."""
    found = image_of(pins, target)
    return None if found is None else pins.for_target(*found)


def platform_for(pins: Pins, target: str) -> str | None:
    """The wheel platform whose pins ``target`` installs (its ``io.comfyimg.pins.platform`` label)."""
    found = image_of(pins, target)
    return None if found is None else found[2]


def pins_label(pins: Pins, target: str, installed: list[Pin]) -> str:
    """The ``io.comfyimg.pins`` label: what the image installs, as compact JSON."""
    return json.dumps([{"name": p.name, "version": p.version, "sha256": p.sha256,
                        "archs": list(coverage.serves(pins, p))} for p in installed],
                      separators=(",", ":"), sort_keys=True)


def runs_for(pins: Pins, target: str, installed: list[Pin]) -> list[coverage.Runs]:
    """Where each attention package of a resolved bake target runs (``complete-cuda-sm90``: on sm90)."""
    found = image_of(pins, target)
    if found is None:  # wheels.toml installs nothing there (core-cpu-arm64): no attention package runs
        return []
    return coverage.runs_in(pins, target, found[0], found[1], installed)


def runs_label(pins: Pins, target: str, installed: list[Pin]) -> str:
    """The ``io.comfyimg.runs-on`` label, compact JSON: ``{"sageattention": {"runs_on": [...],
    "falls_back": [...]}}``, and ``unknown`` archs while no coverage is recorded (``invoke audit`` says why)."""
    return json.dumps({r.pin.key: {"runs_on": [a.arch for a in r.having("runs")],
                                   "falls_back": [a.arch for a in r.having("falls back")],
                                   **({"unknown": u} if (u := [a.arch for a in r.having("unknown")]) else {})}
                       for r in runs_for(pins, target, installed)}, separators=(",", ":"), sort_keys=True)


def coverage_label(pins: Pins, installed: list[Pin]) -> str:
    """The ``io.comfyimg.coverage`` label: per pin, per arch it serves, whether its kernels run
    there (recorded coverage + the wheel's dispatch) and by which kernel; null where no coverage
    is recorded. ``invoke verify`` shows it as the static verdict."""
    labelled: dict[str, dict[str, dict[str, object]] | None] = {}
    for p in installed:
        if coverage.coverage_of(p)[0] is None:
            labelled[p.name] = None
            continue
        labelled[p.name] = {arch: {"runnable": v.runnable, "by": v.by, "kernel": v.kernel}
                            for arch, v in coverage.verdicts(p, coverage.serves(pins, p)).items()}
    return json.dumps(labelled, separators=(",", ":"), sort_keys=True)
