"""Which kernel a wheel runs on which GPU arch, read from the wheel's own Python with :mod:`ast`.

SageAttention 2 decides in ``sageattention/core.py`` ``sageattn()``: ``arch`` is the device's
compute capability as ``"smXY"`` and an ``if``/``elif`` chain sends each arch to a kernel
function or ``raise``\\ s (refused). Three sources ship "2.2.0" wheels with different chains, so
the version number cannot say which; the wheel's Python can. Nothing is imported or executed:
the files are parsed, and the names each kernel function uses are followed through the
package's modules (``sm80_compile.py``, ``quant.py``, ``triton/…``) to the compiled modules
(``sageattention._qattn_sm80``…) whose GPU code the call launches. A condition on a constant
(an argument ``sageattn`` passes, or a parameter's default) picks its branch; any other
condition keeps both (a kernel that may run is needed). A name bound by an import in a
``try`` whose ``except`` sets it to ``None`` (Triton, which ships with torch on Linux) is taken
as imported.

:func:`read` gives a :class:`WheelDispatch` or raises :class:`Unreadable` with the reason;
the caller then falls back to the package table (``kernels/kernels.json``) and says why.
Bounded: each file is capped in bytes, AST nodes and depth; the whole read in time.

Over 500 lines on purpose: it is one reader. The name resolution across the package's files
(``_Reader``, ``_Module``), the walk through a kernel function (``_Walker``) and the analysis of the
``if``/``elif`` chain share private state and bounds; split, those private classes would become
an API between modules that nothing else uses.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import operator
import re
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyimg.kernels import rules as kernels

MAX_FILE_BYTES = 256 << 10  # the real core.py files are 40-50 kB
MAX_TOTAL_BYTES = 4 << 20
MAX_NODES = 100_000
SMALL_FILE_BYTES = 64 << 10  # below this, the node and depth walk is skipped (it costs more than the parse)
MAX_DEPTH = 120
MAX_SECONDS = 5.0
MAX_VISITS = 500_000
_ARCH_LITERAL = re.compile(r"^sm\d+$", re.ASCII)
_UNKNOWN: Any = object()
# The comparisons a dispatch condition is decided by (``arch == "sm90"``, ``arch in {…}``, …).
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.In: lambda a, b: a in b,
            ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not}


class Unreadable(ValueError):
    """The wheel's dispatch cannot be read (the reason is the message): use the table."""


@dataclass(frozen=True)
class Branch:
    """One arm of the arch chain: the archs it names and the kernel it calls (None: refused)."""

    archs: tuple[str, ...]
    kernel: str | None
    line: int
    modules: tuple[str, ...] = ()
    triton: bool = False
    text: str = ""  # for a refusal: the raise statement
    fakes: tuple[str, ...] = ()  # register_fake implementations the kernel calls (file:line name)
    # What the kernel calls on its compiled modules ("sageattention._qattn_sm89.qk_…"): the names
    # its kernels' entry points are looked up by (kernels.sass); read from the wheel, not recorded.
    calls: tuple[str, ...] = ()


@dataclass(frozen=True)
class WheelDispatch:
    package: str
    file: str  # e.g. sageattention/core.py
    sha256: str  # of that file
    entry: str
    imports: tuple[str, ...]
    branches: tuple[Branch, ...]
    otherwise: Branch | None  # the final else (or what follows the chain); None: falls through
    origin: str = "this wheel's"  # whose file it is, for the verdict's words

    def branch(self, arch: str) -> Branch | None:
        return next((b for b in self.branches if arch in b.archs), self.otherwise)

    def rules(self, version: str, package: str | None = None) -> kernels.Rules:
        """The same shape as a table entry, so :func:`kernels.judge` applies unchanged."""
        where = self.file.rsplit("/", 1)[-1]
        named = {a: b for b in self.branches for a in b.archs}
        dispatch = {a: _path(b, where) for a, b in named.items() if b.kernel}
        other = self.otherwise
        source = f"{self.origin} {self.file}"
        refused = (f"{source} raises at {where}:{other.line} ({other.text})"
                   if other and other.kernel is None else f"{source} has no branch for {{arch}}")
        return kernels.Rules(package or self.package, version, self.entry, self.imports, dispatch,
                             refused.replace("{", "{{").replace("}", "}}").replace("{{arch}}", "{arch}"),
                             None, source=source, from_wheel=True,
                             default=_path(other, where) if other and other.kernel else None)

    def as_json(self) -> dict[str, Any]:
        return {"source": "wheel", "file": self.file, "sha256": self.sha256, "entry": self.entry,
                "imports": list(self.imports),
                "branches": [_branch_json(b) for b in self.branches],
                "otherwise": _branch_json(self.otherwise) if self.otherwise else None}


def _branch_json(b: Branch) -> dict[str, Any]:
    return {"archs": list(b.archs), "kernel": b.kernel, "line": b.line, "modules": list(b.modules),
            "triton": b.triton, **({"raise": b.text} if b.text else {}),
            **({"fakes": list(b.fakes)} if b.fakes else {})}


def _path(b: Branch, where: str) -> kernels.Dispatch:
    how = "Triton, compiled on the first call" if b.triton and not b.modules else \
        ("also Triton kernels" if b.triton else "")
    broken = ""
    if b.fakes:
        broken = (f"it calls {', '.join(f.split(' ', 1)[1] for f in b.fakes)}, which this wheel binds to its "
                  f"torch.library.register_fake implementation ({', '.join(f.split(' ', 1)[0] for f in b.fakes)}): "
                  "no kernel is launched and the output is never written")
    return kernels.Dispatch(b.kernel or "", b.modules, f"{where}:{b.line}" + (f"; {how}" if how else ""),
                            line=b.line, broken=broken)


# --------------------------------------------------------------------------- reading sources


def sources(zf: zipfile.ZipFile, package: str) -> dict[str, bytes | None]:
    """The package's ``.py`` files (path → bytes; None for one over the size cap)."""
    out: dict[str, bytes | None] = {}
    total = 0
    for info in zf.infolist():
        name = info.filename
        if info.is_dir() or not name.endswith(".py") or not name.startswith(package + "/"):
            continue
        with zf.open(info) as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES or total + len(data) > MAX_TOTAL_BYTES:
            out[name] = None
            continue
        total += len(data)
        out[name] = data
    return out


def _modname(path: str) -> str:
    parts = path[:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@dataclass
class _Ref:
    kind: str  # "module", "attr" (from M import x), "func" (def in this module)
    module: str
    name: str = ""
    guarded: bool = False  # bound in a try whose except sets it to None


@dataclass
class _Module:
    name: str
    path: str
    tree: ast.Module
    is_pkg: bool
    binds: dict[str, _Ref] = field(default_factory=dict)
    funcs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    triton: bool = False
    import_time: list[tuple[str, str]] = field(default_factory=list)  # unguarded (module, name)


class _Reader:
    def __init__(self, files: Mapping[str, bytes | None], package: str) -> None:
        self.files = files
        self.package = package
        self.by_mod = {_modname(p): p for p in files}
        self.parsed: dict[str, _Module] = {}
        self.deadline = time.monotonic() + MAX_SECONDS
        self.visits = 0
        self.done: dict[tuple[str, str], tuple[frozenset[str], bool, frozenset[str], frozenset[str]]] = {}

    def tick(self) -> None:
        self.visits += 1
        if self.visits > MAX_VISITS or time.monotonic() > self.deadline:
            raise Unreadable(f"following the package's imports took over {MAX_VISITS} steps or "
                             f"{MAX_SECONDS:.0f} s")

    def is_py(self, mod: str) -> bool:
        return mod in self.by_mod

    def is_compiled(self, mod: str) -> bool:
        """A module of the package with no Python for it, in a package (a directory with an
        ``__init__.py``): a compiled extension (present in the wheel or not)."""
        parent = mod.rpartition(".")[0]
        return mod.startswith(self.package + ".") and not self.is_py(mod) and \
            self.by_mod.get(parent, "").endswith("/__init__.py") and \
            not any(m.startswith(mod + ".") for m in self.by_mod)

    def module(self, mod: str) -> _Module:
        if mod in self.parsed:
            return self.parsed[mod]
        path = self.by_mod[mod]
        m = _Module(mod, path, parse(path, self.files[path]), path.endswith("/__init__.py"))
        self._bind(m)
        self.parsed[mod] = m
        return m

    def _resolve_from(self, m: _Module, node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module if node.module and node.module.split(".")[0] == self.package else None
        base = m.name.split(".") if m.is_pkg else m.name.split(".")[:-1]
        if node.level > 1:
            base = base[:len(base) - node.level + 1]
        if not base:
            return None
        return ".".join([*base, *([node.module] if node.module else [])])

    def _bind(self, m: _Module) -> None:
        for stmt in m.tree.body:
            self._bind_stmt(m, stmt, guarded=False)

    def _bind_stmt(self, m: _Module, stmt: ast.stmt, guarded: bool) -> None:
        if isinstance(stmt, ast.Try):
            nones = {t.id for h in stmt.handlers for s in h.body if isinstance(s, ast.Assign)
                     and isinstance(s.value, ast.Constant) and s.value.value is None
                     for t in s.targets if isinstance(t, ast.Name)}
            for s in stmt.body:
                self._bind_stmt(m, s, guarded=True)
            for name in nones:
                if name in m.binds:
                    m.binds[name].guarded = True
            return
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            m.funcs[stmt.name] = stmt
            m.binds[stmt.name] = _Ref("func", m.name, stmt.name)
        elif isinstance(stmt, ast.Import):
            for alias in stmt.names:
                top = alias.name.split(".")[0]
                if top == "triton":
                    m.triton = True
                if top == self.package:
                    m.binds[alias.asname or top] = _Ref("module", alias.name if alias.asname else top)
                    if not guarded:
                        m.import_time.append((alias.name, ""))
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level == 0 and (stmt.module or "").split(".")[0] == "triton":
                m.triton = True
            base = self._resolve_from(m, stmt)
            if base is None:
                return
            for alias in stmt.names:
                sub = f"{base}.{alias.name}"
                ref = _Ref("module", sub) if self.is_py(sub) or self.is_compiled(sub) else \
                    _Ref("attr", base, alias.name)
                m.binds[alias.asname or alias.name] = ref
                if not guarded:
                    m.import_time.append((ref.module, ref.name))

    # ---- what a function reaches

    def reach_import(self, mod: str, seen: set[str]) -> set[str]:
        """Compiled modules loaded when ``mod`` is imported (unguarded imports only)."""
        self.tick()
        if mod in seen:
            return set()
        seen.add(mod)
        if self.is_compiled(mod):
            return {mod}
        if not self.is_py(mod):
            return set()
        out: set[str] = set()
        parts = mod.split(".")
        for i in range(1, len(parts)):  # importing a.b.c imports a and a.b first
            out |= self.reach_import(".".join(parts[:i]), seen)
        for target, _ in self.module(mod).import_time:
            out |= self.reach_import(target, seen)
        return out

    def reach_ref(self, ref: _Ref, attr: str | None, acc: _Reach) -> None:
        self.tick()
        if ref.kind == "func":
            self.reach_func(ref.module, ref.name, {}, acc)
        elif ref.kind == "module":
            if self.is_compiled(ref.module):
                acc.modules.add(ref.module)
                if attr:
                    acc.calls.add(f"{ref.module}.{attr}")
            elif self.is_py(ref.module):
                m = self.module(ref.module)
                if attr and attr in m.binds:
                    self.reach_ref(m.binds[attr], None, acc)
                elif m.triton:
                    acc.triton = True
        else:  # from M import name
            if self.is_py(ref.module):
                m = self.module(ref.module)
                if ref.name in m.binds:
                    self.reach_ref(m.binds[ref.name], attr, acc)
                elif m.triton:
                    acc.triton = True

    def reach_func(self, mod: str, name: str, env: dict[str, Any], acc: _Reach) -> None:
        key = (mod, name)
        if not env:
            if key in self.done:  # a helper already followed for another branch
                modules, triton, fakes, calls = self.done[key]
                acc.modules |= modules
                acc.triton |= triton
                acc.fakes |= fakes
                acc.calls |= calls
                return
            if key in acc.seen:
                return
        acc.seen.add(key)
        m = self.module(mod)
        fn = m.funcs[name]
        sub = _Reach(seen=acc.seen, triton=m.triton)
        if any(_is_fake(d) for d in fn.decorator_list):
            # The name is bound to a torch.library.register_fake implementation (a later def of
            # the same name replaced the custom op): calling it launches no kernel.
            sub.fakes.add(f"{m.path}:{fn.lineno} {name}")
        else:
            local = dict(env)
            for param, default in _defaults(fn).items():
                local.setdefault(param, default)
            _Walker(self, m, sub).block(fn.body, local)
        if not env:
            self.done[key] = (frozenset(sub.modules), sub.triton, frozenset(sub.fakes), frozenset(sub.calls))
        acc.modules |= sub.modules
        acc.triton |= sub.triton
        acc.fakes |= sub.fakes
        acc.calls |= sub.calls


@dataclass
class _Reach:
    modules: set[str] = field(default_factory=set)
    triton: bool = False
    seen: set[tuple[str, str]] = field(default_factory=set)
    fakes: set[str] = field(default_factory=set)
    calls: set[str] = field(default_factory=set)


def _defaults(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, Any]:
    args = fn.args
    positional = [*args.posonlyargs, *args.args]
    out: dict[str, Any] = {}
    for a, d in zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True):
        out[a.arg] = d.value if isinstance(d, ast.Constant) else _UNKNOWN
    for a, kd in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if kd is not None:
            out[a.arg] = kd.value if isinstance(kd, ast.Constant) else _UNKNOWN
    return out


class _Walker:
    """Walks a function body with the constants known so far; undecidable ``if``s both ways."""

    def __init__(self, reader: _Reader, m: _Module, acc: _Reach) -> None:
        self.r, self.m, self.acc = reader, m, acc

    def value(self, node: ast.expr, env: dict[str, Any]) -> Any:
        if isinstance(node, (ast.Constant, ast.Name)):
            return _known(node, env)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            vals = [self.value(e, env) for e in node.elts]
            return _UNKNOWN if any(v is _UNKNOWN for v in vals) else tuple(vals)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            v = self.value(node.operand, env)
            return _UNKNOWN if v is _UNKNOWN else not v
        if isinstance(node, ast.BoolOp):
            vals = [self.value(v, env) for v in node.values]
            if isinstance(node.op, ast.And):
                if any(v is not _UNKNOWN and not v for v in vals):
                    return False
                return _UNKNOWN if any(v is _UNKNOWN for v in vals) else True
            if any(v is not _UNKNOWN and v for v in vals):
                return True
            return _UNKNOWN if any(v is _UNKNOWN for v in vals) else False
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            op, right = node.ops[0], node.comparators[0]
            if isinstance(op, (ast.Is, ast.IsNot)) and isinstance(right, ast.Constant) and right.value is None \
                    and isinstance(node.left, ast.Name) and node.left.id not in env:
                ref = self.m.binds.get(node.left.id)
                if ref is not None and ref.guarded:  # an optional import: taken as present
                    return isinstance(op, ast.IsNot)
            left, rv = self.value(node.left, env), self.value(right, env)
            if left is _UNKNOWN or rv is _UNKNOWN:
                return _UNKNOWN
            compare = _COMPARE.get(type(op))
            try:
                return compare(left, rv) if compare else _UNKNOWN
            except TypeError:
                return _UNKNOWN
        return _UNKNOWN

    def uses(self, node: ast.AST, env: dict[str, Any]) -> None:
        """Follow every module-level name ``node`` loads (locals shadow nothing here: a local that
        reuses a global's name only makes the result larger, never smaller)."""
        for sub in ast.walk(node):
            self.r.tick()
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                ref = self.m.binds.get(sub.value.id)
                if ref is not None and sub.value.id not in env:
                    self.r.reach_ref(ref, sub.attr, self.acc)
            elif isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id not in env:
                ref = self.m.binds.get(sub.id)
                if ref is not None:
                    self.r.reach_ref(ref, None, self.acc)

    def block(self, body: list[ast.stmt], env: dict[str, Any]) -> bool:
        """Walk ``body``; True when it always ends in return/raise."""
        for stmt in body:
            if self.stmt(stmt, env):
                return True
        return False

    def stmt(self, s: ast.stmt, env: dict[str, Any]) -> bool:
        self.r.tick()
        if isinstance(s, ast.If):
            self.uses(s.test, env)
            v = self.value(s.test, env)
            if v is not _UNKNOWN:
                return self.block(s.body if v else s.orelse, env)
            e1, e2 = dict(env), dict(env)
            t1, t2 = self.block(s.body, e1), self.block(s.orelse, e2)
            env.clear()
            for k in set(e1) | set(e2):
                a, b = e1.get(k, _UNKNOWN), e2.get(k, _UNKNOWN)
                if t1:
                    env[k] = b
                elif t2:
                    env[k] = a
                else:
                    env[k] = a if a is not _UNKNOWN and b is not _UNKNOWN and a == b else _UNKNOWN
            return t1 and t2
        if isinstance(s, ast.Assign) and all(isinstance(t, ast.Name) for t in s.targets):
            self.uses(s.value, env)
            v = self.value(s.value, env)
            for t in s.targets:
                env[t.id] = v  # type: ignore[attr-defined]
            return False
        self.uses(s, env)
        for sub in ast.walk(s):  # every other store makes the name unknown
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                env[sub.id] = _UNKNOWN
        return isinstance(s, (ast.Return, ast.Raise))


# --------------------------------------------------------------------------- parsing, bounded


def parse(path: str, data: bytes | None) -> ast.Module:
    """``ast.parse`` within the caps; :class:`Unreadable` names the file and why."""
    if data is None:
        raise Unreadable(f"{path} is over {MAX_FILE_BYTES // 1024} KiB (or the package's Python is "
                         f"over {MAX_TOTAL_BYTES >> 20} MiB)")
    try:
        tree = ast.parse(data, filename=path)
    except SyntaxError as exc:
        at = f":{exc.lineno}" if exc.lineno else ""
        raise Unreadable(f"{path}{at}: a syntax error: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise Unreadable(f"{path} is nested too deeply to parse") from None
    except ValueError as exc:  # e.g. null bytes
        raise Unreadable(f"{path}: cannot be parsed: {exc}") from None
    if len(data) <= SMALL_FILE_BYTES:  # nodes bounded by the size; depth by the parser's own limits
        return tree
    nodes = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise Unreadable(f"{path} has over {MAX_NODES} syntax nodes")
        if depth > MAX_DEPTH:
            raise Unreadable(f"{path}:{getattr(node, 'lineno', '?')}: nested over {MAX_DEPTH} levels deep")
        stack.extend((c, depth + 1) for c in ast.iter_child_nodes(node))
    return tree


# --------------------------------------------------------------------------- the arch chain


def _arch_literals(test: ast.expr, arch: str) -> tuple[str, ...] | None:
    """``arch == "sm80"``, ``arch in {"sm80", …}`` or an ``or`` of those → the archs; else None."""
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or):
        parts = [_arch_literals(v, arch) for v in test.values]
        return None if any(p is None for p in parts) else tuple(a for p in parts for a in p or ())
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.left, ast.Name)
            and test.left.id == arch):
        return None
    op, right = test.ops[0], test.comparators[0]
    if isinstance(op, ast.Eq) and isinstance(right, ast.Constant):
        vals = [right.value]
    elif isinstance(op, ast.In) and isinstance(right, (ast.Set, ast.List, ast.Tuple)) and \
            all(isinstance(e, ast.Constant) for e in right.elts):
        vals = [e.value for e in right.elts]  # type: ignore[attr-defined]
    else:
        return None
    if not all(isinstance(v, str) and _ARCH_LITERAL.match(v) for v in vals):
        return None
    return tuple(str(v) for v in vals)


def _arch_name(fn: ast.FunctionDef | ast.AsyncFunctionDef, m: _Module) -> tuple[str, ast.If]:
    """The variable holding ``"smXY"`` and the ``if`` that starts the chain on it."""
    assigned: dict[str, ast.expr] = {}
    for s in fn.body:
        if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name):
            assigned[s.targets[0].id] = s.value
        elif isinstance(s, ast.If):
            for name, value in assigned.items():
                if _arch_literals(s.test, name) is not None:
                    if not _from_capability(value, m):
                        raise Unreadable(f"{m.path}:{s.lineno}: {name} is not computed from "
                                         "torch.cuda.get_device_capability as 'sm{major}{minor}'")
                    return name, s
    raise Unreadable(f"{m.path}:{fn.lineno}: {fn.name}() has no if/elif chain on the GPU arch "
                     "(arch == 'smXY' or arch in {…}); its dispatch may be built at run time")


def _from_capability(value: ast.expr, m: _Module) -> bool:
    """Does ``value`` come from a function or global of this module that formats
    ``torch.cuda.get_device_capability`` as ``f"sm{major}{minor}"``?"""
    names = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
    todo = list(names)
    seen: set[str] = set()
    sources: list[ast.AST] = [value]
    while todo:
        name = todo.pop()
        if name in seen or len(seen) > 50:
            continue
        seen.add(name)
        if name in m.funcs:
            sources.append(m.funcs[name])
        for s in m.tree.body:
            if isinstance(s, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in s.targets):
                sources.append(s.value)
                todo += [n.id for n in ast.walk(s.value) if isinstance(n, ast.Name)]
    capability = fstring = False
    for src in sources:
        for n in ast.walk(src):
            if isinstance(n, ast.Attribute) and n.attr == "get_device_capability":
                capability = True
            if isinstance(n, ast.JoinedStr) and n.values and isinstance(n.values[0], ast.Constant) \
                    and n.values[0].value == "sm":
                fstring = True
    return capability and fstring


def _arm(body: list[ast.stmt], archs: tuple[str, ...], line: int, env: dict[str, Any],
         m: _Module) -> tuple[Branch, str, ast.Call | None, dict[str, Any]]:
    """One arm: its last statement is ``return kernel(…)`` or ``raise``."""
    if not body:
        raise Unreadable(f"{m.path}:{line}: an empty branch")
    last = body[-1]
    if isinstance(last, ast.Raise):
        return Branch(archs, None, last.lineno, text=ast.unparse(last)[:200]), "", None, {}
    if isinstance(last, ast.Return) and isinstance(last.value, ast.Call) and \
            isinstance(last.value.func, ast.Name):
        local = dict(env)
        for s in body[:-1]:  # assignments before the call: constants or unknown
            for sub in ast.walk(s):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                    local[sub.id] = _UNKNOWN
            if isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant) and \
                    all(isinstance(t, ast.Name) for t in s.targets):
                for t in s.targets:
                    local[t.id] = s.value.value  # type: ignore[attr-defined]
        return Branch(archs, last.value.func.id, last.lineno), last.value.func.id, last.value, local
    raise Unreadable(f"{m.path}:{last.lineno}: the branch for {', '.join(archs) or 'other archs'} "
                     "does not end in `return kernel(…)` or `raise`")


def _known(node: ast.expr, env: dict[str, Any]) -> Any:
    """A constant's value, or what ``env`` knows of a name; anything else is unknown."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id, _UNKNOWN)
    return _UNKNOWN


def _call_env(call: ast.Call, fn: ast.FunctionDef | ast.AsyncFunctionDef, env: dict[str, Any]) -> dict[str, Any]:
    """The kernel's parameters the call fixes: constants, or names the caller knows."""
    out: dict[str, Any] = {}
    params = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
    for p, a in zip(params, call.args, strict=False):
        out[p] = _known(a, env)
    for kw in call.keywords:
        if kw.arg is None:  # **kwargs: anything may be overridden
            return {p: _UNKNOWN for p in (*params, *(a.arg for a in fn.args.kwonlyargs))}
        out[kw.arg] = _known(kw.value, env)
    return out


def analyse(files: Mapping[str, bytes | None], package: str, entry: str) -> WheelDispatch:
    """The dispatch of ``package``'s ``entry`` function, from the package's ``.py`` files."""
    r = _Reader(files, package)
    init = f"{package}/__init__.py"
    if init not in files:
        raise Unreadable(f"the wheel has no {init}")
    top = r.module(package)
    ref = top.binds.get(entry)
    hops = 0
    while ref is not None and ref.kind == "attr" and hops < 10:  # from .core import sageattn
        hops += 1
        if not r.is_py(ref.module):
            raise Unreadable(f"{entry} comes from {ref.module}, which is not Python in the wheel")
        m = r.module(ref.module)
        ref = m.binds.get(ref.name) if ref.name in m.binds else None
    if ref is None or ref.kind != "func":
        raise Unreadable(f"{init} does not define or import {entry}()")
    m = r.module(ref.module)
    fn = m.funcs[ref.name]
    arch, chain = _arch_name(fn, m)
    imports = r.reach_import(package, set())
    env: dict[str, Any] = {a: _UNKNOWN for a in _defaults(fn)}
    branches: list[Branch] = []
    otherwise: Branch | None = None
    node: ast.If | None = chain
    while node is not None:
        archs = _arch_literals(node.test, arch)
        if archs is None:
            raise Unreadable(f"{m.path}:{node.lineno}: the condition `{ast.unparse(node.test)[:120]}` is "
                             f"not {arch} == 'smXY' or {arch} in {{…}}")
        branches.append(_kernel_branch(r, m, node.body, archs, node.lineno, env))
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            node = node.orelse[0]
            continue
        rest = node.orelse
        if not rest:  # no else: what follows the chain in the function
            after = fn.body[fn.body.index(chain) + 1:]
            rest = after[:1] if after and isinstance(after[0], (ast.Raise, ast.Return)) else []
        if rest:
            otherwise = _kernel_branch(r, m, rest, (), rest[0].lineno, env)
        node = None
    if otherwise is None:
        raise Unreadable(f"{m.path}:{chain.lineno}: an arch the chain does not name falls through "
                         f"{fn.name}() without a kernel or a raise")
    data = files[m.path] or b""
    return WheelDispatch(package, m.path, hashlib.sha256(data).hexdigest(), entry,
                         tuple(sorted(imports)), tuple(branches), otherwise)


def _kernel_branch(r: _Reader, m: _Module, body: list[ast.stmt], archs: tuple[str, ...], line: int,
                   env: dict[str, Any]) -> Branch:
    branch, kernel, call, local = _arm(body, archs, line, env, m)
    if call is None:
        return branch
    ref = m.binds.get(kernel)
    if ref is None:
        raise Unreadable(f"{m.path}:{branch.line}: {kernel} is not defined or imported in {m.path}")
    acc = _Reach()
    hops = 0
    while ref.kind == "attr" and r.is_py(ref.module) and ref.name in r.module(ref.module).binds and hops < 10:
        hops += 1  # re-exported through a few modules at most (a cycle ends here)
        ref = r.module(ref.module).binds[ref.name]
    if ref.kind != "func":
        raise Unreadable(f"{m.path}:{branch.line}: cannot follow {kernel} to its definition")
    target = r.module(ref.module)
    fn = target.funcs[ref.name]
    r.reach_func(ref.module, ref.name, _call_env(call, fn, local), acc)
    return Branch(archs, kernel, branch.line, tuple(sorted(acc.modules)), acc.triton, fakes=tuple(sorted(acc.fakes)),
                  calls=tuple(sorted(acc.calls)))


def _is_fake(decorator: ast.expr) -> bool:
    """``@torch.library.register_fake(...)`` (or ``impl_abstract``, its old name)."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name in ("register_fake", "impl_abstract")


# --------------------------------------------------------------------------- from a wheel


def read(zf: zipfile.ZipFile, package: str, entry: str) -> WheelDispatch:
    """The dispatch of a wheel's ``package``; :class:`Unreadable` with the reason otherwise."""
    try:
        return analyse(sources(zf, package), package, entry)
    except Unreadable:
        raise
    except (RecursionError, MemoryError):
        raise Unreadable(f"{package}'s Python is nested too deeply to follow") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise Unreadable(f"{package}'s Python cannot be read from the wheel: {exc}") from None


def python_gates(zf: zipfile.ZipFile, package: str) -> list[str]:
    """Where the package's Python reads the GPU's compute capability (``file:line: code``): a
    gate written in Python, for a package whose dispatch lives in compiled code."""
    found: list[str] = []
    try:
        files = sources(zf, package)
    except (zipfile.BadZipFile, OSError, EOFError):
        return found
    for path, data in sorted(files.items()):
        try:
            tree = parse(path, data)
        except Unreadable as exc:
            found.append(f"{exc} (not read)")
            continue
        lines = (data or b"").decode("utf-8", "replace").splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("get_device_capability", "get_arch_list"):
                found.append(f"{path}:{node.lineno}: {lines[node.lineno - 1].strip()[:160]}")
    return found


# --------------------------------------------------------------------------- the verdict's rules

# Packages that dispatch in Python (the entry function); the others gate their arch in
# compiled code (SageAttention 3: TORCH_CHECK in api.cu), so the table holds their dispatch.
PYTHON_DISPATCH = {"sageattention": "sageattn"}


@dataclass(frozen=True)
class FromTable:
    """The wheel's dispatch was not read: the table applies, for this reason."""

    package: str
    why: str
    gates: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"source": "table", "why": self.why, "python_gates": list(self.gates)}


Found = WheelDispatch | FromTable


def from_zip(zf: zipfile.ZipFile) -> dict[str, Found]:
    """For each package the table knows that the wheel carries: its dispatch, or why not."""
    names = {i.filename for i in zf.infolist()}
    out: dict[str, Found] = {}
    for package in kernels.table()["packages"]:
        if f"{package}/__init__.py" not in names:
            continue
        entry = PYTHON_DISPATCH.get(package)
        if entry is None:
            gates = tuple(python_gates(zf, package))
            out[package] = FromTable(package, f"{package} gates its arch in compiled code; its Python "
                                     + ("reads the capability at " + "; ".join(gates) if gates
                                        else "has no arch gate"), gates)
            continue
        try:
            out[package] = read(zf, package, entry)
        except Unreadable as exc:
            out[package] = FromTable(package, str(exc))
    return out


def from_path(path: Path) -> dict[str, Found]:
    """:func:`from_zip` on the wheel at ``path``, with a handle of its own (for a worker thread);
    a wheel that cannot be opened gives no dispatch (the module listing reports it)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return from_zip(zf)
    except (zipfile.BadZipFile, OSError, EOFError):
        return {}


def rules(package: str, version: str | None, found: Found | None) -> kernels.Rules | None:
    """The rules a verdict uses: the wheel's own dispatch, else the table with the reason
    (``found`` None: where the dispatch comes from is not known, the table as it is)."""
    name = package.lower().replace("-", "_")
    if isinstance(found, WheelDispatch):
        return found.rules(version or "", name)
    table = kernels.rules_for(name, version)
    if table is None or found is None:
        return table
    return dataclasses.replace(table, fallback=found.why)
