"""Checks of single fields of ``wheels.toml``: type, shape, and the rules between two fields
(a torch index against the CUDA version, a URL against the pin's name, version and arch).
Each adds its error to a :class:`~comfyimg.tomllines.Errors` and returns the value or None."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name
from packaging.version import Version

from comfyimg.pins.abi import InvalidWheelName, WheelABI, arch_mismatch, parse_wheel
from comfyimg.pins.lines import Errors

# Every pattern is used with fullmatch: the whole value, never "up to a final newline".
_FORMATS = {
    "PY": r"cp3\d+",
    "CUDA": r"\d{2}\.\d",
    "GLIBC": r"(\d+)\.(\d+)",
    "REPO": r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+",
    "PROJECT": r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?",
    "IDENT": r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*",
    "INDEX": r"cpu|cu\d{3}|rocm\d+(\.\d+)*",
    "HEX64": r"[0-9a-f]{64}",
    "PLATFORM": r"[a-z0-9_]+",
    "PROFILE": r"[a-z][a-z0-9_]*",  # also the prefix of its bake variables (CUDA_TORCH_VERSION)
    "TARGET": r"[A-Za-z0-9_-]+",  # what buildx allows in a target name
}
PY, CUDA, GLIBC, REPO, PROJECT, IDENT, INDEX, HEX64, PLATFORM, PROFILE, TARGET = (
    re.compile(p, re.ASCII) for p in _FORMATS.values())
_TAG_FORBIDDEN = frozenset(" ~^:?*[\\")


def tag_problem(tag: str) -> str | None:
    """Why ``tag`` is not a git tag name (``git check-ref-format``), if it is not one."""
    if not tag:
        return "is empty"
    if bad := sorted({c for c in tag if c in _TAG_FORBIDDEN or not c.isprintable() or ord(c) < 0x20}):
        return f"contains {', '.join(map(repr, bad))}"
    if ".." in tag or "@{" in tag or "//" in tag or tag == "@":
        return "contains '..', '@{' or '//', or is '@'"
    if tag.startswith(("/", ".", "-")) or tag.endswith(("/", ".", ".lock")) or "/." in tag:
        return "starts or ends with '/' or '.', starts with '-', or ends with '.lock'"
    return None
_URL_FORBIDDEN = frozenset(' \t"\'#\\<>')  # each would change a requirements line


def wheel_filename(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def type_name(value: Any) -> str:
    return {str: "a string", int: "an integer", float: "a float", bool: "a boolean",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _present(err: Errors, where: tuple[Any, ...], field: str, table: dict, key: str, required: bool,
             kind: str, missing: str, fits: Any, empty: Any) -> Any:
    """``table[key]`` when it is there and of ``kind``; else None, with the error added."""
    if key not in table:
        if required:
            err.add(where, field, f"missing; {missing} is required")
        return None
    value = table[key]
    if not fits(value):
        err.add(where + (key,), field, f"expected {kind}, got {type_name(value)}")
        return None
    if required and empty(value):
        err.add(where + (key,), field, "must not be empty")
        return None
    for text in [value] if isinstance(value, str) else value:
        if why := _one_line_problem(text):
            err.add(where + (key,), field, f"{text!r} {why}")
            return None
    return value


def _one_line_problem(text: str) -> str | None:
    """Every string of wheels.toml is one line of plain text: it ends up in generated files."""
    if any(not c.isprintable() for c in text):
        return "contains a line break or another control character; a value is one line"
    if text != text.strip():
        return "has white space around it"
    return None


def string(err: Errors, where: tuple[Any, ...], field: str, table: dict, key: str,
           *, required: bool = True) -> str | None:
    return _present(err, where, field, table, key, required, "a string", "a string",
                    lambda v: isinstance(v, str), lambda v: not v.strip())


def matching(err: Errors, where: tuple[Any, ...], field: str, table: dict, key: str, pattern: re.Pattern,
             expected: str, *, required: bool = True) -> tuple[str | None, bool]:
    """A string that must fullmatch ``pattern``: (the value, whether it is valid)."""
    value = string(err, where, field, table, key, required=required)
    if value is not None and not pattern.fullmatch(value):
        err.add(where + (key,), field, f"{value!r} is not {expected}")
        return value, False
    return value, True


def sub_table(err: Errors, where: tuple[Any, ...], key: str, raw: Any, keys: set[str], shape: str) -> bool:
    """Whether ``raw`` (the value of ``key``) is a table of only ``keys``; errors added otherwise."""
    if not isinstance(raw, dict):
        err.add(where + (key,), key, f"expected a table {shape}, got {type_name(raw)}")
        return False
    unknown_keys(err, where + (key,), f"{key}.", raw, keys)
    return True


def str_list(err: Errors, where: tuple[Any, ...], field: str, table: dict, key: str,
             *, required: bool = True) -> tuple[str, ...] | None:
    value = _present(err, where, field, table, key, required, "an array of strings",
                     "a non-empty array of strings",
                     lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), lambda v: not v)
    if value is None:
        return None
    if len(set(value)) != len(value):
        err.add(where + (key,), field, "lists an entry twice")
    return tuple(value)


def unknown_keys(err: Errors, where: tuple[Any, ...], prefix: str, table: dict, allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            err.add(where + (key,), f"{prefix}{key}",
                    f"unknown key; expected one of {', '.join(sorted(allowed))}")


def index_vs_cuda(index: str, cuda: str | None) -> str | None:
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


def check_url(err: Errors, where: tuple[Any, ...], name: str | None, version: Version | None,
               arch: str | None, url: str) -> WheelABI | None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        err.add(where + ("url",), "url", f"{url!r} is not an http(s) URL ({exc})")
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        err.add(where + ("url",), "url", f"{url!r} is not an http(s) URL")
        return None
    if not parts.netloc.isascii() or "xn--" in parts.netloc.lower():
        # Refused, not converted: a look-alike host (a Cyrillic letter in github.com) must not
        # pass as the real one; write the host in ASCII.
        err.add(where + ("url",), "url", f"{url!r}: the host {parts.netloc!r} is not plain ASCII (an "
                "internationalized or look-alike name); only ASCII host names are accepted")
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
    except InvalidWheelName as exc:
        err.add(where + ("url",), "url", f"file name {filename!r}: {exc}")
        return None
    if name and wheel.name != canonicalize_name(name):
        err.add(where + ("url",), "url", f"file {filename} is distribution {wheel.name!r}, but name is {name!r}")
    if version is not None:
        same = wheel.version == version if version.local else wheel.version.public == version.public
        if not same:
            err.add(where + ("url",), "url", f"file {filename} is version {wheel.version}, but version is {version}")
    if why := arch_mismatch(wheel, arch):
        if arch is None:
            err.add(where, "arch", f"missing; file {filename} is {why.split(';')[0]}, so set arch = {wheel.sm!r}")
        else:
            err.add(where + ("arch",), "arch", f"file {filename} is {why}")
    return wheel
