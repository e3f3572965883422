"""``wheels.toml`` → typed, immutable pins; and saving changes back through tomlkit.

The loader is strict and reports *every* problem at once, each as
``wheels.toml:LINE: field: what is wrong and what is expected``.
See ``docs/reference/wheels-toml.md`` for the schema.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import tomlkit
from tomlkit.items import AoT, Table
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from .kernels import Module, Target
from .abi import SM, ImageABI, WheelABI, mismatches, parse_wheel
from .errors import BadInput
from .fsutil import atomic_write

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PY = re.compile(r"^cp3\d+$")
_CUDA = re.compile(r"^\d{2}\.\d$")
_GLIBC = re.compile(r"^(\d+)\.(\d+)$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_INDEX = re.compile(r"^(cpu|cu\d{3}|rocm\d+(\.\d+)*)$")
_BAKE_TARGET = re.compile(r'^\s*target\s+"([^"]+)"', re.M)
_URL_FORBIDDEN = frozenset(' \t"\'#\\<>')  # each would change a requirements line

PROFILE_KEYS = {"python", "platform", "torch", "torch_index", "cuda", "archs", "glibc"}
WHEEL_KEYS = {"name", "version", "url", "sha256", "source", "targets", "provides", "arch", "serves",
              "coverage", "coverage_from"}
SOURCE_KEYS = {"github", "release"}
COVERAGE_FROM_KEYS = {"tool", "sha256"}
COVERAGE_KEYS = {"module", "sass", "ptx"}


@dataclass(frozen=True)
class Profile:
    """The ABI shared by every image of one profile (``cuda``: runtime-cuda → core-cuda → complete-cuda)."""

    name: str
    abi: ImageABI
    torch_index: str
    line: int


@dataclass(frozen=True)
class Source:
    github: str  # "owner/repo"
    release: str  # tag name


@dataclass(frozen=True)
class Coverage:
    """The compiled modules of the pinned wheel and their GPU code, as recorded by ``invoke bump``."""

    tool: str  # "cuobjdump 13.5.37"
    sha256: str  # of the wheel it was read from
    modules: tuple[Module, ...]
    line: int


@dataclass(frozen=True)
class Pin:
    index: int  # position in the [[wheel]] array, for saving
    name: str
    version: str
    url: str
    sha256: str | None
    source: Source | None
    targets: tuple[str, ...]
    provides: tuple[str, ...]
    arch: str | None
    line: int
    serves: tuple[str, ...] | None = None  # GPU archs it must run on; None: the default
    coverage: Coverage | None = None

    @property
    def filename(self) -> str:
        return wheel_filename(self.url)

    @property
    def wheel(self) -> WheelABI:
        return parse_wheel(self.filename)

    @property
    def key(self) -> str:
        """A short unique label: ``sageattention`` or ``sageattention[sm90]``."""
        return f"{self.name}[{self.arch}]" if self.arch else self.name


@dataclass(frozen=True)
class Pins:
    path: Path
    profiles: Mapping[str, Profile]
    wheels: tuple[Pin, ...]

    def profile_for(self, target: str) -> Profile:
        return self.profiles[target.rsplit("-", 1)[-1]]

    def targets(self) -> list[str]:
        return sorted({t for pin in self.wheels for t in pin.targets})

    def for_target(self, target: str, arch: str | None = None) -> list[Pin]:
        """The pins installed in ``target``; with ``arch``, a per-arch pin replaces the
        arch-independent pin of the same distribution."""
        pins = [p for p in self.wheels if target in p.targets and p.arch in (None, arch)]
        own = {canonicalize_name(p.name) for p in pins if p.arch}
        pins = [p for p in pins if p.arch or canonicalize_name(p.name) not in own]
        return sorted(pins, key=lambda p: (canonicalize_name(p.name), p.arch or ""))

    def archs_for(self, target: str) -> list[str]:
        return sorted({p.arch for p in self.wheels if target in p.targets and p.arch})

    def unhashed(self, targets: list[str] | None = None) -> list[Pin]:
        return [
            p for p in self.wheels
            if p.sha256 is None and (targets is None or set(p.targets) & set(targets))
        ]


def wheel_filename(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def record_hash_command(pin: Pin) -> str:
    """The one command that records a missing sha256 (run where GitHub is reachable)."""
    if pin.source:
        name = f"'{pin.key}'" if pin.arch else pin.key  # [smXX] is a shell glob
        return f"invoke bump --release {pin.source.release} --verify --name {name}"
    return f"sha256sum {pin.filename}  # then set sha256 of {pin.key} in wheels.toml"


# --------------------------------------------------------------------------- lines


def _split_key(key: str) -> list[str]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', key)
    return [a or b or c for a, b, c in parts]


def _line_index(text: str) -> dict[tuple[Any, ...], int]:
    """Map each table/key path to the line it starts on (``[[wheel]]`` entries by index)."""
    lines: dict[tuple[Any, ...], int] = {}
    table: tuple[Any, ...] = ()
    counts: dict[tuple[Any, ...], int] = {}

    def in_current_entry(key: tuple[Any, ...]) -> tuple[Any, ...]:
        # [wheel.source] after a [[wheel]] belongs to that entry: ("wheel", N, "source").
        for n in range(len(key) - 1, 0, -1):
            if key[:n] in counts:
                return key[:n] + (counts[key[:n]],) + key[n:]
        return key

    for no, raw in enumerate(text.split("\n"), 1):  # TOML lines end at \n only (tomllib counts so)
        s = raw.strip()
        if m := re.match(r"^\[\[\s*([^\]]+?)\s*\]\]", s):
            key = tuple(_split_key(m[1]))
            counts[key] = counts.get(key, -1) + 1
            table = key + (counts[key],)
            lines.setdefault(table, no)
        elif m := re.match(r"^\[\s*([^\]]+?)\s*\]", s):
            table = in_current_entry(tuple(_split_key(m[1])))
            lines.setdefault(table, no)
        elif m := re.match(r"""^("[^"]*"|'[^']*'|[A-Za-z0-9_.\-"' ]+?)\s*=""", s):
            lines.setdefault(table + tuple(_split_key(m[1])), no)
    return lines


class _Errors:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = _line_index(text)
        self.items: list[tuple[int, str]] = []

    def line(self, *path: Any) -> int:
        """The line of ``path``, else of its nearest ancestor; a table known only through
        its children (``[profile.cpu]`` for ``profile``) gets its first child's line."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
            if below := [no for key, no in self.lines.items() if key[:n] == path[:n]]:
                return min(below)
        return 1

    def add(self, path: tuple[Any, ...], field: str, message: str) -> None:
        self.items.append((self.line(*path), f"{field}: {message}"))

    def raise_if_any(self) -> None:
        if self.items:
            msgs = [f"{self.path.name}:{line}: {msg}" for line, msg in sorted(self.items)]
            raise BadInput("\n".join(msgs))


# --------------------------------------------------------------------------- load


def _type_name(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a float", bool: "a boolean",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _str(err: _Errors, where: tuple[Any, ...], field: str, table: dict, key: str,
         *, required: bool = True) -> str | None:
    if key not in table:
        if required:
            err.add(where, field, "missing; a string is required")
        return None
    value = table[key]
    if not isinstance(value, str):
        err.add(where + (key,), field, f"expected a string, got {_type_name(value)}")
        return None
    if required and not value.strip():
        err.add(where + (key,), field, "must not be empty")
        return None
    return value


def _str_list(err: _Errors, where: tuple[Any, ...], field: str, table: dict, key: str,
              *, required: bool = True) -> tuple[str, ...] | None:
    if key not in table:
        if required:
            err.add(where, field, "missing; a non-empty array of strings is required")
        return None
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        err.add(where + (key,), field, f"expected an array of strings, got {_type_name(value)}")
        return None
    if required and not value:
        err.add(where + (key,), field, "must not be empty")
        return None
    if len(set(value)) != len(value):
        err.add(where + (key,), field, "lists an entry twice")
    return tuple(value)


def _unknown(err: _Errors, where: tuple[Any, ...], prefix: str, table: dict, allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            err.add(where + (key,), f"{prefix}{key}",
                    f"unknown key; expected one of {', '.join(sorted(allowed))}")


def _load_profile(err: _Errors, name: str, table: Any) -> Profile | None:
    where = ("profiles", name)
    f = f"profiles.{name}."
    if not isinstance(table, dict):
        err.add(where, f"profiles.{name}", f"expected a table, got {_type_name(table)}")
        return None
    _unknown(err, where, f, table, PROFILE_KEYS)
    ok = True
    python = _str(err, where, f + "python", table, "python")
    if python and not _PY.match(python):
        err.add(where + ("python",), f + "python", f"{python!r} is not a CPython tag; expected e.g. 'cp312'")
        ok = False
    platform = _str(err, where, f + "platform", table, "platform")
    torch = _str(err, where, f + "torch", table, "torch")
    if torch:
        try:
            if Version(torch).local:
                err.add(where + ("torch",), f + "torch",
                        f"{torch!r} has a local part; give the plain version and set torch_index")
                ok = False
        except InvalidVersion:
            err.add(where + ("torch",), f + "torch", f"{torch!r} is not a valid version; expected e.g. '2.9.0'")
            ok = False
    index = _str(err, where, f + "torch_index", table, "torch_index")
    if index and not _INDEX.match(index):
        err.add(where + ("torch_index",), f + "torch_index",
                f"{index!r} is not a torch wheel index; expected 'cpu', 'cu128', …")
        ok = False
    cuda = _str(err, where, f + "cuda", table, "cuda", required=False)
    if cuda is not None and not _CUDA.match(cuda):
        err.add(where + ("cuda",), f + "cuda", f"{cuda!r} is not a CUDA version; expected MAJOR.MINOR like '12.9'")
        ok = False
    archs = _str_list(err, where, f + "archs", table, "archs", required=False) or ()
    for arch in archs:
        if not SM.match(arch):
            err.add(where + ("archs",), f + "archs", f"{arch!r} is not a GPU arch; expected e.g. 'sm90'")
            ok = False
    if archs and cuda is None:
        err.add(where + ("archs",), f + "archs", "GPU archs on a profile without cuda")
        ok = False
    both_valid = index and _INDEX.match(index) and (cuda is None or _CUDA.match(cuda))
    if both_valid and (why := _index_vs_cuda(index, cuda)):
        err.add(where + ("torch_index",), f + "torch_index", why)
        ok = False
    glibc_raw = _str(err, where, f + "glibc", table, "glibc", required=False)
    glibc = ImageABI.glibc
    if glibc_raw is not None:
        if m := _GLIBC.match(glibc_raw):
            glibc = (int(m[1]), int(m[2]))
        else:
            err.add(where + ("glibc",), f + "glibc", f"{glibc_raw!r} is not a glibc version; expected e.g. '2.39'")
            ok = False
    if not (ok and python and platform and torch and index):
        return None
    abi = ImageABI(python, platform, torch, cuda, tuple(archs), glibc)
    return Profile(name, abi, index, err.line(*where))


def _index_vs_cuda(index: str, cuda: str | None) -> str | None:
    """Why torch from ``index`` cannot host wheels built with CUDA ``cuda``, if it cannot.

    Within one CUDA major version the runtime is compatible (a 12.9 build runs on the 12.8
    libraries of torch's cu128 wheels); across majors the extension needs a libcudart.so
    that torch does not ship."""
    on_cuda = index.startswith("cu")
    if cuda is None:
        return (f"{index!r} is a CUDA torch index on a profile without cuda; expected 'cpu', or set "
                "cuda to the CUDA version the wheels are built with") if on_cuda else None
    major = cuda.split(".")[0]
    if not on_cuda:
        return (f"{index!r} is not a CUDA torch index, but the profile's wheels are built with "
                f"CUDA {cuda}; expected a cu{major}X index, or drop cuda for a CPU profile")
    if index[2:-1] != major:
        return (f"{index!r} ships CUDA {index[2:-1]}.x libraries, but the profile's wheels are built "
                f"with CUDA {cuda}; expected a cu{major}X index")
    return None


def _load_source(err: _Errors, where: tuple[Any, ...], raw: Any) -> Source | None:
    if not isinstance(raw, dict):
        err.add(where + ("source",), "source", f"expected a table {{ github = 'owner/repo', release = 'TAG' }}, got {_type_name(raw)}")
        return None
    _unknown(err, where + ("source",), "source.", raw, SOURCE_KEYS)
    github = _str(err, where + ("source",), "source.github", raw, "github")
    release = _str(err, where + ("source",), "source.release", raw, "release")
    if github and not _REPO.match(github):
        err.add(where + ("source",), "source.github", f"{github!r} is not 'owner/repo'")
        return None
    return Source(github, release) if github and release else None


def _check_url(err: _Errors, where: tuple[Any, ...], name: str | None, version: Version | None,
               arch: str | None, url: str) -> WheelABI | None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        err.add(where + ("url",), "url", f"{url!r} is not an http(s) URL ({exc})")
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        err.add(where + ("url",), "url", f"{url!r} is not an http(s) URL")
        return None
    if bad := sorted({c for c in url if c in _URL_FORBIDDEN or not c.isprintable()}):
        # The URL goes verbatim into a requirements line: a space, '#' or newline there
        # would add options (a second --hash, an index) that wheels.toml never declared.
        err.add(where + ("url",), "url", f"{url!r} contains {', '.join(map(repr, bad))}; "
                "percent-encode them (a space is %20)")
        return None
    filename = wheel_filename(url)
    try:
        wheel = parse_wheel(filename)
    except ValueError as exc:
        err.add(where + ("url",), "url", f"file name {filename!r}: {exc}")
        return None
    if name and wheel.name != canonicalize_name(name):
        err.add(where + ("url",), "url", f"file {filename} is distribution {wheel.name!r}, but name is {name!r}")
    if version is not None:
        same = wheel.version == version if version.local else wheel.version.public == version.public
        if not same:
            err.add(where + ("url",), "url", f"file {filename} is version {wheel.version}, but version is {version}")
    if wheel.sm and arch is None:
        err.add(where, "arch", f"missing; file {filename} is built for {wheel.sm} only, so set arch = {wheel.sm!r}")
    elif wheel.sm and arch and wheel.sm != arch:
        err.add(where + ("arch",), "arch", f"{arch!r} ≠ {wheel.sm!r} in file {filename}")
    return wheel


def _load_wheel(err: _Errors, i: int, table: Any, profiles: dict[str, Profile | None],
                bake_targets: set[str] | None) -> Pin | None:
    """``profiles`` maps a profile that failed validation to None (its errors are already reported)."""
    where = ("wheel", i)
    if not isinstance(table, dict):
        err.add(where, f"wheel[{i}]", f"expected a table, got {_type_name(table)}")
        return None
    _unknown(err, where, "", table, WHEEL_KEYS)
    name = _str(err, where, "name", table, "name")
    raw_version = _str(err, where, "version", table, "version")
    version = None
    if raw_version:
        try:
            version = Version(raw_version)
        except InvalidVersion:
            err.add(where + ("version",), "version", f"{raw_version!r} is not a valid PEP 440 version")
    url = _str(err, where, "url", table, "url")
    sha256 = _str(err, where, "sha256", table, "sha256", required=False)
    if sha256 is not None and not _HEX64.match(sha256):
        err.add(where + ("sha256",), "sha256",
                f"{sha256!r} is not 64 lowercase hex characters; omit the key while the hash is unknown")
        sha256 = None
    source = _load_source(err, where, table["source"]) if "source" in table else None
    targets = _str_list(err, where, "targets", table, "targets")
    provides = _str_list(err, where, "provides", table, "provides")
    for mod in provides or ():
        if not _IDENT.match(mod):
            err.add(where + ("provides",), "provides", f"{mod!r} is not an importable module name")
    arch = _str(err, where, "arch", table, "arch", required=False)
    if arch is not None and not SM.match(arch):
        err.add(where + ("arch",), "arch", f"{arch!r} is not a GPU arch; expected e.g. 'sm90'")
        arch = None
    serves = _str_list(err, where, "serves", table, "serves", required=False)
    for sm in serves or ():
        if not SM.match(sm):
            err.add(where + ("serves",), "serves", f"{sm!r} is not a GPU arch; expected e.g. 'sm90'")
            serves = None
    coverage = _load_coverage(err, where, table)
    wheel = _check_url(err, where, name, version, arch, url) if url else None
    for target in targets or ():
        if bake_targets is not None and target not in bake_targets:
            err.add(where + ("targets",), "targets",
                    f"{target!r} is not a target of docker-bake.hcl; known: {', '.join(sorted(bake_targets))}")
            continue
        suffix = target.rsplit("-", 1)[-1]
        profile = profiles.get(suffix)
        if profile is None:
            if suffix in profiles:
                continue
            err.add(where + ("targets",), "targets",
                    f"{target!r} has no profile; its suffix must name one of the [profiles.*] tables "
                    f"({', '.join(sorted(profiles)) or 'none defined'})")
            continue
        if arch and profile.abi.archs and arch not in profile.abi.archs:
            err.add(where + ("arch",), "arch",
                    f"{arch} is not among profiles.{profile.name}.archs ({', '.join(profile.abi.archs)})")
        if wheel is not None:
            for reason in mismatches(wheel, profile.abi):
                err.add(where + ("url",), "url",
                        f"{wheel.filename} does not fit {target} ({profile.abi.describe()}): {reason}")
    if not (name and raw_version and version and url and wheel and targets and provides):
        return None
    return Pin(i, name, raw_version, url, sha256, source, targets, provides, arch, err.line(*where),
               serves, coverage)


def _load_coverage(err: _Errors, where: tuple[Any, ...], table: dict) -> Coverage | None:
    """``coverage_from = { tool, sha256 }`` and ``coverage = [{ module, sass, ptx }, …]``: both or neither."""
    if "coverage" not in table and "coverage_from" not in table:
        return None
    if "coverage" not in table or "coverage_from" not in table:
        have, lack = ("coverage", "coverage_from") if "coverage" in table else ("coverage_from", "coverage")
        err.add(where + (have,), lack, f"missing; {have} needs it (invoke bump --verify records both)")
        return None
    raw_from, raw = table["coverage_from"], table["coverage"]
    ok = True
    if not isinstance(raw_from, dict):
        err.add(where + ("coverage_from",), "coverage_from",
                f"expected a table {{ tool = '…', sha256 = '…' }}, got {_type_name(raw_from)}")
        return None
    _unknown(err, where + ("coverage_from",), "coverage_from.", raw_from, COVERAGE_FROM_KEYS)
    tool = _str(err, where + ("coverage_from",), "coverage_from.tool", raw_from, "tool")
    digest = _str(err, where + ("coverage_from",), "coverage_from.sha256", raw_from, "sha256")
    if digest and not _HEX64.match(digest):
        err.add(where + ("coverage_from",), "coverage_from.sha256", f"{digest!r} is not 64 lowercase hex characters")
        ok = False
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        err.add(where + ("coverage",), "coverage",
                f"expected an array of tables {{ module, sass, ptx }}, got {_type_name(raw)}")
        return None
    modules: list[Module] = []
    for n, entry in enumerate(raw):
        f = f"coverage[{n}]."
        _unknown(err, where + ("coverage",), f, entry, COVERAGE_KEYS)
        mod = _str(err, where + ("coverage",), f + "module", entry, "module")
        if mod and not _IDENT.match(mod):
            err.add(where + ("coverage",), f + "module", f"{mod!r} is not an importable module name")
            ok = False
        lists = {}
        for key, ptx in (("sass", False), ("ptx", True)):
            got = _str_list(err, where + ("coverage",), f + key, entry, key, required=False) or ()
            for t in got:
                try:
                    parsed = Target.parse(t)
                except ValueError as exc:
                    err.add(where + ("coverage",), f + key, str(exc))
                    ok = False
                    continue
                if parsed.ptx != ptx:
                    err.add(where + ("coverage",), f + key,
                            f"{t!r} is {'PTX' if parsed.ptx else 'SASS'}; expected {'compute_XY' if ptx else 'sm_XY'}")
                    ok = False
            lists[key] = tuple(got)
        if mod:
            modules.append(Module(mod, lists["sass"], lists["ptx"]))
    if not (ok and tool and digest):
        return None
    return Coverage(tool, digest, tuple(modules), err.line(*where, "coverage_from"))


def bake_targets(bake_file: Path) -> set[str] | None:
    """Target names declared in ``docker-bake.hcl``, or None when there is no such file."""
    try:
        return set(_BAKE_TARGET.findall(bake_file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None


def loads(text: str, path: Path, *, bake_file: Path | None = None) -> Pins:
    """Parse and validate ``text`` (the content of ``path``)."""
    err = _Errors(path, text)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"^(.*?)\s*\(at line (\d+), column (\d+)\)$", str(exc))
        if m:
            msg, line = f"{m[1]} (column {m[3]})", m[2]
        elif str(exc).endswith("(at end of document)"):
            msg, line = str(exc), str(text.count("\n") + (0 if text.endswith("\n") else 1))
        else:
            msg, line = str(exc), "1"
        raise BadInput(f"{path.name}:{line}: toml: {msg}") from None
    if not doc:
        raise BadInput(f"{path.name}:1: profiles: the file is empty; expected [profiles.*] tables and [[wheel]] entries")
    _unknown(err, (), "", doc, {"profiles", "wheel"})
    profiles: dict[str, Profile | None] = {}
    raw_profiles = doc.get("profiles")
    if not isinstance(raw_profiles, dict) or not raw_profiles:
        err.add(("profiles",), "profiles", "missing or empty; expected at least one [profiles.NAME] table")
    else:
        for name, table in raw_profiles.items():
            profiles[name] = _load_profile(err, name, table)
    bake = bake_targets(bake_file if bake_file else path.parent / "docker-bake.hcl")
    raw_wheels = doc.get("wheel", [])
    if not isinstance(raw_wheels, list):
        err.add(("wheel",), "wheel", f"expected an array of tables ([[wheel]]), got {_type_name(raw_wheels)}")
        raw_wheels = []
    wheels = [w for i, t in enumerate(raw_wheels) if (w := _load_wheel(err, i, t, profiles, bake))]
    _check_duplicates(err, wheels)
    err.raise_if_any()
    return Pins(path, {k: v for k, v in profiles.items() if v}, tuple(wheels))


def _check_duplicates(err: _Errors, wheels: list[Pin]) -> None:
    seen_key: dict[tuple[str, str, str | None], Pin] = {}
    seen_url: dict[str, Pin] = {}
    for pin in wheels:
        where = ("wheel", pin.index)
        if first := seen_url.get(pin.url):
            err.add(where + ("url",), "url", f"the same URL is pinned at line {first.line}")
        seen_url.setdefault(pin.url, pin)
        for target in pin.targets:
            k = (canonicalize_name(pin.name), target, pin.arch)
            if first := seen_key.get(k):
                arch = f" for {pin.arch}" if pin.arch else ""
                err.add(where + ("name",), "name",
                        f"duplicate pin of {pin.name}{arch} in {target} (first at line {first.line})")
            seen_key.setdefault(k, pin)


def read_text(path: Path) -> str:
    """Read a UTF-8 file; a missing or undecodable file is bad input with a line number."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"{path.name}:1: file: {path} does not exist") from None
    except OSError as exc:
        raise BadInput(f"{path.name}:1: file: cannot read {path}: {exc.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        raise BadInput(f"{path.name}:1: encoding: the file starts with a byte order mark (BOM), which TOML "
                       "does not allow; save it as UTF-8 without BOM")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInput(f"{path.name}:{line}: encoding: byte 0x{data[exc.start]:02x} is not UTF-8; "
                       "the file must be UTF-8") from None


def load(path: Path, *, bake_file: Path | None = None) -> Pins:
    return loads(read_text(path), path, bake_file=bake_file)


# --------------------------------------------------------------------------- save


def dumps_with_changes(text: str, changes: Mapping[int, Mapping[str, Any]]) -> str:
    """Apply ``{wheel index: {key: value}}`` to the TOML text, keeping comments and order.

    A value of ``None`` removes the key; a dict value becomes an inline table.
    """
    doc = tomlkit.parse(text)
    for index, fields in changes.items():
        table = doc["wheel"][index]
        for key, value in fields.items():
            if value is None:
                table.pop(key, None)
            elif isinstance(value, dict):
                if isinstance(table.get(key), dict):  # edit in place: keeps its layout
                    for sub_key, sub_value in value.items():
                        table[key][sub_key] = sub_value
                else:
                    inline = tomlkit.inline_table()
                    inline.update(value)
                    _set_key(table, key, inline)
            else:
                _set_key(table, key, value)
    new_text = tomlkit.dumps(doc)
    if "\r\n" in text and "\n" not in text.replace("\r\n", ""):  # keep a CRLF file CRLF
        new_text = new_text.replace("\r\n", "\n").replace("\n", "\r\n")
    return new_text


def _set_key(table: Any, key: str, value: Any) -> None:
    """Set ``key``; a new key goes after the table's last key, not after the trailing
    comments and blank lines that introduce the next ``[[wheel]]``."""
    # Plain keys only: a key added after a [wheel.source] sub-table would land inside it.
    keys = [k.key for k, v in table.value.body
            if k is not None and not isinstance(v, (Table, AoT))]
    if key not in table and keys:
        table.value._insert_after(keys[-1], key, value)
    else:
        table[key] = value


def save_changes(pins: Pins, changes: Mapping[int, Mapping[str, Any]]) -> Pins:
    """Validate the changed file *before* writing it, then write it atomically."""
    text = read_text(pins.path)
    new_text = dumps_with_changes(text, changes)
    new_pins = loads(new_text, pins.path)
    if new_text != text:
        atomic_write(pins.path, new_text)
    return new_pins
