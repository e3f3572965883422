"""``wheels.toml`` → the typed, immutable pins of :mod:`comfyimg.pins.model`: the loader.

The loader is strict and reports *every* problem at once, each as
``wheels.toml:LINE: field: what is wrong and what is expected``.
See ``docs/reference/wheels-toml.md`` for the schema.  Single-field checks live in
:mod:`comfyimg.pins.fields`, line numbers in :mod:`comfyimg.pins.lines`, saving in
:mod:`comfyimg.pins.edit`, the bake file's target names in :mod:`comfyimg.render`.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from comfyimg.errors import BadInput
from comfyimg.fsutil import read_text
from comfyimg.kernels.dispatch import Branch, FromTable, WheelDispatch
from comfyimg.kernels.rules import CodeRead, Module, Target, parse_arch
from comfyimg.pins import comfyui as comfyui_pin
from comfyimg.pins import fields as F
from comfyimg.pins import platforms as P
from comfyimg.pins.abi import SM, ImageABI, mismatches
from comfyimg.pins.fields import (
    check_url,
    index_vs_cuda,
    matching,
    str_list,
    string,
    sub_table,
    type_name,
    unknown_keys,
)
from comfyimg.pins.lines import Errors
from comfyimg.pins.model import DEFAULT_PLATFORM, Coverage, IndexSource, Pin, Pins, Profile, Source

PROFILE_KEYS = {"python", "platform", "platforms", "torch", "torch_index", "cuda", "archs", "glibc"}
WHEEL_KEYS = {"name", "version", "url", "sha256", "source", "targets", "provides", "arch", "platform", "serves",
              "coverage", "coverage_from", "dispatch_from", "dispatch"}
SOURCE_KEYS = {"github", "release"}
INDEX_SOURCE_KEYS = {"index", "project"}
COVERAGE_FROM_KEYS = {"tool", "sha256"}
COVERAGE_KEYS = {"module", "sass", "ptx", "code"}
CODE_KEYS = {"target", "kernels", "named", "trapped", "kernel", "instruction"}
DISPATCH_FROM_KEYS = {"source", "file", "sha256", "entry", "imports", "why"}
DISPATCH_KEYS = {"archs", "kernel", "modules", "line", "triton", "raise", "fakes"}


def _load_profile(err: Errors, name: str, table: Any) -> Profile | None:
    where = ("profiles", name)
    f = f"profiles.{name}."
    if not isinstance(table, dict):
        err.add(where, f"profiles.{name}", f"expected a table, got {type_name(table)}")
        return None
    unknown_keys(err, where, f, table, PROFILE_KEYS)
    ok = True
    if not F.PROFILE.fullmatch(name):
        err.add(where, f"profiles.{name}", f"{name!r} is not a profile name; expected a lowercase identifier "
                "like 'cuda' (it ends the target names and prefixes the bake variables)")
        ok = False
    python, good = matching(err, where, f + "python", table, "python", F.PY,
                            "a CPython tag; expected e.g. 'cp312'")
    ok &= good
    platforms = P.profile_platforms(err, where, f, table)
    ok &= bool(platforms)
    torch = string(err, where, f + "torch", table, "torch")
    if torch:
        try:
            if Version(torch).local:
                err.add(where + ("torch",), f + "torch",
                        f"{torch!r} has a local part; give the plain version and set torch_index")
                ok = False
        except InvalidVersion:
            err.add(where + ("torch",), f + "torch", f"{torch!r} is not a valid version; expected e.g. '2.9.0'")
            ok = False
    index, good = matching(err, where, f + "torch_index", table, "torch_index", F.INDEX,
                           "a torch wheel index; expected 'cpu', 'cu128', …")
    ok &= good
    cuda, good = matching(err, where, f + "cuda", table, "cuda", F.CUDA,
                          "a CUDA version; expected MAJOR.MINOR like '12.9'", required=False)
    ok &= good
    archs = str_list(err, where, f + "archs", table, "archs", required=False) or ()
    for arch in archs:
        if not SM.fullmatch(arch):
            err.add(where + ("archs",), f + "archs", f"{arch!r} is not a GPU arch; expected e.g. 'sm90'")
            ok = False
    if archs and cuda is None:
        err.add(where + ("archs",), f + "archs", "GPU archs on a profile without cuda")
        ok = False
    both_valid = index and F.INDEX.fullmatch(index) and (cuda is None or F.CUDA.fullmatch(cuda))
    if both_valid and index and (why := index_vs_cuda(index, cuda)):
        err.add(where + ("torch_index",), f + "torch_index", why)
        ok = False
    glibc_raw = string(err, where, f + "glibc", table, "glibc", required=False)
    glibc = ImageABI.glibc
    if glibc_raw is not None:
        if m := F.GLIBC.fullmatch(glibc_raw):
            glibc = (int(m[1]), int(m[2]))
        else:
            err.add(where + ("glibc",), f + "glibc", f"{glibc_raw!r} is not a glibc version; expected e.g. '2.39'")
            ok = False
    if not (ok and python and platforms and torch and index):
        return None
    abi = ImageABI(python, platforms[0], torch, cuda, tuple(archs), glibc)
    return Profile(name, abi, index, err.line(*where), platforms)


def _load_index_source(err: Errors, where: tuple[Any, ...], raw: dict) -> IndexSource | None:
    if not sub_table(err, where, "source", raw, INDEX_SOURCE_KEYS,
                     "{ index = 'https://…/simple', project = 'NAME' }"):
        return None
    index = string(err, where + ("source",), "source.index", raw, "index")
    project = string(err, where + ("source",), "source.project", raw, "project")
    if index:
        parts = urlsplit(index)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            err.add(where + ("source", "index"), "source.index",
                    f"{index!r} is not an index URL; expected e.g. 'https://example.org/simple'")
            return None
    if project and not F.PROJECT.fullmatch(project):
        err.add(where + ("source", "project"), "source.project",
                f"{project!r} is not a project name (PEP 508: letters, digits, '.', '_', '-')")
        return None
    return IndexSource(index, project) if index and project else None


def _load_source(err: Errors, where: tuple[Any, ...], raw: Any) -> Source | IndexSource | None:
    if isinstance(raw, dict) and ("index" in raw or "project" in raw):
        if "github" in raw or "release" in raw:
            err.add(where + ("source",), "source",
                    "mixes a GitHub source (github, release) with an index source (index, project); "
                    "give one of them")
            return None
        return _load_index_source(err, where, raw)
    if not sub_table(err, where, "source", raw, SOURCE_KEYS, "{ github = 'owner/repo', release = 'TAG' }"):
        return None
    github = string(err, where + ("source",), "source.github", raw, "github")
    release = string(err, where + ("source",), "source.release", raw, "release")
    if github and not F.REPO.fullmatch(github):
        err.add(where + ("source",), "source.github", f"{github!r} is not 'owner/repo'")
        return None
    if release and (why := F.tag_problem(release)):
        err.add(where + ("source", "release"), "source.release", f"{release!r} is not a git tag name: it {why}")
        return None
    return Source(github, release) if github and release else None


def _load_wheel(err: Errors, i: int, table: Any, profiles: dict[str, Profile | None],
                bake_targets: set[str] | None) -> Pin | None:
    """``profiles`` maps a profile that failed validation to None (its errors are already reported)."""
    where = ("wheel", i)
    if not isinstance(table, dict):
        err.add(where, f"wheel[{i}]", f"expected a table, got {type_name(table)}")
        return None
    unknown_keys(err, where, "", table, WHEEL_KEYS)
    name = string(err, where, "name", table, "name")
    raw_version = string(err, where, "version", table, "version")
    version = None
    if raw_version:
        try:
            version = Version(raw_version)
        except InvalidVersion:
            err.add(where + ("version",), "version", f"{raw_version!r} is not a valid PEP 440 version")
    url = string(err, where, "url", table, "url")
    sha256 = string(err, where, "sha256", table, "sha256", required=False)
    if sha256 is not None and not F.HEX64.fullmatch(sha256):
        err.add(where + ("sha256",), "sha256",
                f"{sha256!r} is not 64 lowercase hex characters; omit the key while the hash is unknown")
        sha256 = None
    source = _load_source(err, where, table["source"]) if "source" in table else None
    targets = str_list(err, where, "targets", table, "targets")
    for target in targets or ():
        if not F.TARGET.fullmatch(target):
            err.add(where + ("targets",), "targets",
                    f"{target!r} is not a bake target name; expected letters, digits, '_' and '-'")
            targets = None
    provides = str_list(err, where, "provides", table, "provides")
    for mod in provides or ():
        if not F.IDENT.fullmatch(mod):
            err.add(where + ("provides",), "provides", f"{mod!r} is not an importable module name")
    arch = string(err, where, "arch", table, "arch", required=False)
    if arch is not None and not SM.fullmatch(arch):
        err.add(where + ("arch",), "arch", f"{arch!r} is not a GPU arch; expected e.g. 'sm90'")
        arch = None
    platform = string(err, where, "platform", table, "platform", required=False)
    if platform is not None and not P.known_platform(err, where + ("platform",), "platform", platform):
        platform = None
    serves = str_list(err, where, "serves", table, "serves", required=False)
    for sm in serves or ():
        try:  # any arch NVIDIA's rules know: smXY, e.g. sm75, sm100, sm121
            parse_arch(sm)
        except ValueError:
            err.add(where + ("serves",), "serves", f"{sm!r} is not a GPU arch; expected e.g. 'sm90'")
            serves = None
    coverage = _load_coverage(err, where, table)
    wheel = check_url(err, where, name, version, arch, url) if url else None
    on = platform or P.first_platform(err, where, targets or (), profiles)
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
        if on not in profile.all_platforms:
            err.add(where + ("platform",), "platform",
                    f"{on} is not among profiles.{profile.name}'s platforms ({', '.join(profile.all_platforms)}); "
                    f"add it there or pin {target} for one of them")
        elif wheel is not None:
            abi = profile.abi_for(on)
            for reason in mismatches(wheel, abi):
                err.add(where + ("url",), "url",
                        f"{wheel.filename} does not fit {target} ({abi.describe()}): {reason}")
    if not (name and raw_version and version and url and wheel and targets and provides and on):
        return None
    return Pin(i, name, raw_version, url, sha256, source, targets, provides, arch, err.line(*where),
               serves, coverage, on)


def _load_coverage(err: Errors, where: tuple[Any, ...], table: dict) -> Coverage | None:
    """``coverage_from = { tool, sha256 }`` and ``coverage = [{ module, sass, ptx }, …]``: both or neither."""
    if "coverage" not in table and "coverage_from" not in table:
        return None
    if "coverage" not in table or "coverage_from" not in table:
        have, lack = ("coverage", "coverage_from") if "coverage" in table else ("coverage_from", "coverage")
        err.add(where + (have,), lack, f"missing; {have} needs it (invoke bump --verify records both)")
        return None
    raw_from, raw = table["coverage_from"], table["coverage"]
    ok = True
    if not sub_table(err, where, "coverage_from", raw_from, COVERAGE_FROM_KEYS, "{ tool = '…', sha256 = '…' }"):
        return None
    tool = string(err, where + ("coverage_from",), "coverage_from.tool", raw_from, "tool")
    digest, ok = matching(err, where + ("coverage_from",), "coverage_from.sha256", raw_from, "sha256", F.HEX64,
                          "64 lowercase hex characters")
    if not isinstance(raw, list) or not all(isinstance(m, dict) for m in raw):
        err.add(where + ("coverage",), "coverage",
                f"expected an array of tables {{ module, sass, ptx }}, got {type_name(raw)}")
        return None
    modules: list[Module] = []
    for n, entry in enumerate(raw):
        f = f"coverage[{n}]."
        unknown_keys(err, where + ("coverage",), f, entry, COVERAGE_KEYS)
        mod = string(err, where + ("coverage",), f + "module", entry, "module")
        if mod and not F.IDENT.fullmatch(mod):
            err.add(where + ("coverage",), f + "module", f"{mod!r} is not an importable module name")
            ok = False
        lists = {}
        for key, ptx in (("sass", False), ("ptx", True)):
            got = str_list(err, where + ("coverage",), f + key, entry, key, required=False) or ()
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
        code, code_ok = _load_code(err, where + ("coverage",), f, entry, (*lists["sass"], *lists["ptx"]))
        ok = ok and code_ok
        if mod:
            modules.append(Module(mod, lists["sass"], lists["ptx"], code))
    if not (ok and tool and digest):
        return None
    return Coverage(tool, digest, tuple(modules), err.line(*where, "coverage_from"),
                    _load_dispatch(err, where, table, tool and digest and ok))


def _load_code(err: Errors, where: tuple[Any, ...], f: str, entry: dict,
               carried: tuple[str, ...]) -> tuple[tuple[CodeRead, ...], bool]:
    """``code = [{ target, kernels, named, trapped, kernel, instruction }, …]`` of one coverage
    entry (what the disassembly of each target the dispatch reaches found; optional)."""
    raw = entry.get("code", [])
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        err.add(where, f + "code", f"expected an array of tables {{ target, kernels, named, trapped, kernel, "
                f"instruction }}, got {type_name(raw)}")
        return (), False
    out: list[CodeRead] = []
    ok = True
    for n, c in enumerate(raw):
        fc = f"{f}code[{n}]."
        unknown_keys(err, where, fc, c, CODE_KEYS)
        target = string(err, where, fc + "target", c, "target")
        if target is not None and target not in carried:
            err.add(where, fc + "target", f"{target!r} is not among the module's sass and ptx")
            ok = False
        kernels, named = c.get("kernels"), c.get("named")
        if not isinstance(kernels, int) or isinstance(kernels, bool) or kernels < 0:
            err.add(where, fc + "kernels", f"expected a count of entry points, got {type_name(kernels)}")
            ok = False
        if not isinstance(named, bool):
            err.add(where, fc + "named", f"expected true or false, got {type_name(named)}")
            ok = False
        trapped = str_list(err, where, fc + "trapped", c, "trapped", required=False) or ()
        kernel = string(err, where, fc + "kernel", c, "kernel", required=False) or ""
        instruction = string(err, where, fc + "instruction", c, "instruction", required=False) or ""
        if ok and target:
            out.append(CodeRead(target, kernels, named, trapped, kernel, instruction))
    return tuple(out), ok


def _load_dispatch(err: Errors, where: tuple[Any, ...], table: dict, recorded: Any) -> WheelDispatch | FromTable | None:
    """``dispatch_from = { source = "wheel", file, sha256, entry, imports }`` with ``dispatch = [{ archs,
    kernel, modules, line }, …]``, or ``dispatch_from = { source = "table", why }``; absent: unknown."""
    if "dispatch_from" not in table:
        if "dispatch" in table:
            err.add(where + ("dispatch",), "dispatch_from", "missing; dispatch needs it (invoke bump --verify records both)")
        return None
    raw = table["dispatch_from"]
    w = where + ("dispatch_from",)
    if not sub_table(err, where, "dispatch_from", raw, DISPATCH_FROM_KEYS, "{ source = 'wheel' | 'table', … }"):
        return None
    source = string(err, w, "dispatch_from.source", raw, "source")
    if source == "table":
        why = string(err, w, "dispatch_from.why", raw, "why")
        if "dispatch" in table:
            err.add(where + ("dispatch",), "dispatch", "must be absent when dispatch_from.source is 'table'")
        return FromTable("", why) if why and recorded else None
    if source != "wheel":
        if source is not None:
            err.add(w, "dispatch_from.source", f"{source!r}: expected 'wheel' or 'table'")
        return None
    file = string(err, w, "dispatch_from.file", raw, "file")
    entry = string(err, w, "dispatch_from.entry", raw, "entry")
    digest, ok = matching(err, w, "dispatch_from.sha256", raw, "sha256", F.HEX64, "64 lowercase hex characters")
    imports = str_list(err, w, "dispatch_from.imports", raw, "imports", required=False) or ()
    arms = table.get("dispatch")
    if not isinstance(arms, list) or not arms or not all(isinstance(a, dict) for a in arms):
        err.add(where + ("dispatch",) if "dispatch" in table else w, "dispatch",
                "expected a non-empty array of tables { archs, kernel, modules, line } (invoke bump --verify records it)")
        return None
    branches: list[Branch] = []
    otherwise: Branch | None = None
    for n, arm in enumerate(arms):
        f, wa = f"dispatch[{n}].", where + ("dispatch",)
        unknown_keys(err, wa, f, arm, DISPATCH_KEYS)
        archs = arm.get("archs", [])
        if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
            err.add(wa, f + "archs", f"expected an array of GPU archs, got {type_name(archs)}")
            ok = False
            continue
        for a in archs:
            try:
                parse_arch(a)
            except ValueError as exc:
                err.add(wa, f + "archs", str(exc))
                ok = False
        kernel, line = arm.get("kernel"), arm.get("line")
        mods = arm.get("modules", [])
        if not isinstance(line, int) or isinstance(line, bool) or line < 1:
            err.add(wa, f + "line", f"expected a line number, got {type_name(line)}")
            ok = False
        if not isinstance(mods, list) or not all(isinstance(m, str) and F.IDENT.fullmatch(m) for m in mods):
            err.add(wa, f + "modules", "expected an array of importable module names")
            ok = False
        refused = arm.get("raise")
        if (kernel is None) == (refused is None) or not isinstance(kernel or refused, str):
            err.add(wa, f + "kernel", "expected either kernel = 'function' or raise = '…' (a refusal)")
            ok = False
            continue
        fakes = str_list(err, wa, f + "fakes", arm, "fakes", required=False) or ()
        b = Branch(tuple(archs), kernel, line if isinstance(line, int) else 0,
                   tuple(mods) if isinstance(mods, list) else (), bool(arm.get("triton", False)), refused or "",
                   tuple(fakes))
        if archs:
            branches.append(b)
        elif otherwise is None:
            otherwise = b
        else:
            err.add(wa, f + "archs", "only one arm may name no arch (the final else)")
            ok = False
    if not (ok and file and entry and digest and recorded):
        return None
    return WheelDispatch("", file, digest, entry, tuple(imports), tuple(branches), otherwise)


def loads(text: str, path: Path, *, bake_targets: set[str] | None = None) -> Pins:
    """Parse and validate ``text`` (the content of ``path``); with ``bake_targets``, every
    pin's targets must be among them."""
    err = Errors(path, text)
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
    except RecursionError:
        raise BadInput(f"{path.name}:{_deep_line(text)}: toml: arrays or tables nested too deeply") from None
    if not doc:
        raise BadInput(f"{path.name}:1: profiles: the file is empty; expected [profiles.*] tables and [[wheel]] entries")
    unknown_keys(err, (), "", doc, {"profiles", "wheel", "comfyui"})
    comfyui = comfyui_pin.load(err, doc["comfyui"]) if "comfyui" in doc else None
    profiles: dict[str, Profile | None] = {}
    raw_profiles = doc.get("profiles")
    if not isinstance(raw_profiles, dict) or not raw_profiles:
        err.add(("profiles",), "profiles", "missing or empty; expected at least one [profiles.NAME] table")
    else:
        for name, table in raw_profiles.items():
            profiles[name] = _load_profile(err, name, table)
    raw_wheels = doc.get("wheel", [])
    if not isinstance(raw_wheels, list):
        err.add(("wheel",), "wheel", f"expected an array of tables ([[wheel]]), got {type_name(raw_wheels)}")
        raw_wheels = []
    wheels = [w for i, t in enumerate(raw_wheels) if (w := _load_wheel(err, i, t, profiles, bake_targets))]
    _check_duplicates(err, wheels)
    P.check_platforms(err, wheels, profiles)
    err.raise_if_any()
    return Pins(path, {k: v for k, v in profiles.items() if v}, tuple(wheels), comfyui)


def _deep_line(text: str, limit: int = 50) -> int:
    """The line where brackets first nest deeper than ``limit`` (strings not told apart)."""
    depth = 0
    for no, line in enumerate(text.split("\n"), 1):
        for ch in line:
            depth += ch in "[{"
            depth -= ch in "]}"
            if depth > limit:
                return no
    return 1


def _check_duplicates(err: Errors, wheels: list[Pin]) -> None:
    seen_key: dict[tuple[str, str, str | None, str], Pin] = {}
    seen_url: dict[str, Pin] = {}
    for pin in wheels:
        where = ("wheel", pin.index)
        if first := seen_url.get(pin.url):
            err.add(where + ("url",), "url", f"the same URL is pinned at line {first.line}")
        seen_url.setdefault(pin.url, pin)
        for target in pin.targets:
            k = (canonicalize_name(pin.name), target, pin.arch, pin.platform)
            if first := seen_key.get(k):
                arch = f" for {pin.arch}" if pin.arch else ""
                arch += f" on {pin.platform}" if pin.platform != DEFAULT_PLATFORM else ""
                err.add(where + ("name",), "name",
                        f"duplicate pin of {pin.name}{arch} in {target} (first at line {first.line})")
            seen_key.setdefault(k, pin)


def load(path: Path, *, bake_targets: set[str] | None = None) -> Pins:
    return loads(read_text(path), path, bake_targets=bake_targets)


