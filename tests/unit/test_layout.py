"""The import graph of src/comfyimg, read with ast (nothing is imported): edges point down the
pipeline, no cycle even under TYPE_CHECKING, nothing imports cli, every import sits at the top
of its module unless it says why (an optional dependency), no module reaches another folder's
data by a path from ``__file__``, and the probes (scripts that run inside the image) import only
the standard library, torch, ComfyUI and each other.

What counts as an import: ``import``/``from`` statements (relative ones resolved), also under
``if TYPE_CHECKING:``, and ``importlib.import_module("…")``/``__import__("…")`` with a literal
name; in every sub-folder, the probes' included. ``test_every_planted_hole_is_caught`` plants
each kind of violation in a copy of the package and asserts these checks fail on it."""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.lib.project import REPO

SRC = REPO / "src"
PACKAGE = SRC / "comfyimg"
PROBES = Path("validate") / "probes"  # relative to the package folder

# The stages in pipeline order, one folder (or top-level module) a line. A module may import
# from its own stage or an earlier one; no exceptions.
STAGES: list[tuple[str, ...]] = [
    ("comfyimg.errors", "comfyimg.untrusted", "comfyimg.fsutil", "comfyimg.output"),
    ("comfyimg.net",),
    ("comfyimg.engine",),
    ("comfyimg.kernels",),
    ("comfyimg.pins",),
    ("comfyimg.audit",),
    ("comfyimg.render",),
    ("comfyimg.sources",),
    ("comfyimg.bump",),
    ("comfyimg.bake",),
    ("comfyimg.validate",),
    ("comfyimg.cli", "comfyimg.__main__"),
]
REASON = re.compile(r"# optional:\s*\S")  # a function-local import says why, e.g. "# optional: needs rich"

# What a probe may import besides the standard library and the other probes: it runs inside the
# image with nothing of this package installed.
PROBE_MAY_IMPORT = {
    "torch", "triton",  # the image's torch (and the Triton it ships)
    "sageattention", "sageattn3",  # the packages under test
    # ComfyUI: its own modules and the libraries it requires (its requirements.txt)
    "comfy", "comfy_extras", "comfy_execution", "comfy_api", "nodes", "folder_paths", "server", "execution",
    "node_helpers", "latent_preview", "aiohttp", "safetensors",
}


def stage(module: str) -> int:
    """The stage of a module: the longest prefix named in STAGES."""
    best, rank = -1, -1
    for i, prefixes in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} belongs to no stage: add it to STAGES"
    return rank


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = ["comfyimg", *path.relative_to(package).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_probe(path: Path, package: Path = PACKAGE) -> bool:
    return (package / PROBES) in path.parents


def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py")) if not is_probe(p, package)}


def probe_files(package: Path = PACKAGE) -> list[Path]:
    return sorted((package / PROBES).rglob("*.py"))


def _literal_import(node: ast.Call) -> str | None:
    """``importlib.import_module("x")`` / ``import_module("x")`` / ``__import__("x")``: ``x``."""
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
    if name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imports(path: Path, name: str, modules: set[str]) -> list[tuple[str, int, ast.AST, bool]]:
    """(imported module, relative level, the node, whether it is at the top of the module) for
    every import of ``path`` (module ``name``): statements, relative ones resolved against its
    package, and literal dynamic imports (never at the top: they run when called)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top: set[ast.AST] = set()
    for node in tree.body:
        top.add(node)
        if isinstance(node, ast.If):  # if TYPE_CHECKING: counts as the top, and as an edge
            top.update(node.body)
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        level = 0
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base, level = node.module or "", node.level
            if level:
                parts = package.split(".")
                up = parts[: len(parts) - level + 1] if level <= len(parts) else ["<above the top>"]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        elif isinstance(node, ast.Call) and (literal := _literal_import(node)):
            if literal.startswith("."):
                level = len(literal) - len(literal.lstrip("."))
                parts = package.split(".")
                literal = ".".join(parts[: len(parts) - level + 1] + [literal.lstrip(".")])
            targets = [literal]
        else:
            continue
        for target in targets:
            found.append((target, level, node, node in top))
    return found


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = package_modules(package)
    names = set(modules)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _, _, _ in imports(path, name, names):
            if target.startswith("comfyimg"):
                # an import of a name inside a module (comfyimg.x.y where y is not a module) is an edge to x
                while target not in names and "." in target:
                    target = target.rpartition(".")[0]
                if target != "comfyimg" and target in names:
                    edges[name].add(target)
    return edges


# --------------------------------------------------------------------------- the checks, on any copy


def back_edges(package: Path = PACKAGE) -> list[str]:
    return [f"{src} -> {dst}" for src, targets in sorted(graph(package).items()) for dst in sorted(targets)
            if stage(dst) > stage(src) or (dst == "comfyimg.cli" and src != "comfyimg.__main__")]


def cycles(package: Path = PACKAGE) -> list[list[str]]:
    edges = graph(package)
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def unexplained_imports(package: Path = PACKAGE) -> dict[str, str]:
    modules = package_modules(package)
    lines = {}
    for name, path in modules.items():
        source = path.read_text().splitlines()
        for _, _, node, at_top in imports(path, name, set(modules)):
            line = source[node.lineno - 1]
            if not at_top and not REASON.search(line):
                lines[f"{path.relative_to(package.parent)}:{node.lineno}"] = line.strip()
    return lines


def _from_file(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(node))


def data_by_path(package: Path = PACKAGE) -> list[str]:
    """A module that reaches a file outside its own folder from ``__file__`` (``parents[1]``,
    ``.parent.parent``, ``".."``, a second ``dirname``) reads another stage's data by path."""
    found = []
    for name, path in package_modules(package).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not _from_file(node):
                continue
            up = (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                  and node.value.attr == "parents" and not (isinstance(node.slice, ast.Constant) and node.slice.value == 0))
            up |= (isinstance(node, ast.Attribute) and node.attr == "parent" and isinstance(node.value, ast.Attribute)
                   and node.value.attr == "parent")
            up |= isinstance(node, ast.BinOp) and isinstance(node.right, ast.Constant) and node.right.value == ".."
            up |= (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "dirname"
                   and any(isinstance(a, ast.Call) and isinstance(a.func, ast.Attribute) and a.func.attr == "dirname"
                           for a in node.args))
            if up:
                found.append(f"{path.relative_to(package.parent)}:{node.lineno}: {name} reaches outside its "
                             "folder from __file__")
    return sorted(set(found))


def probe_imports(package: Path = PACKAGE) -> list[str]:
    """Imports of a probe that are not the standard library, torch, ComfyUI or another probe;
    relative ones must stay inside the probes folder."""
    root = package / PROBES
    probes = {module_name(p, package) for p in probe_files(package)}
    siblings = {p.stem if p.name != "__init__.py" else p.parent.name for p in probe_files(package)}
    probes_package = module_name(root / "__init__.py", package)
    bad = []
    for path in probe_files(package):
        name = module_name(path, package)
        for target, level, node, _ in imports(path, name, probes):
            where = f"{path.relative_to(package.parent)}:{node.lineno}"
            if level:
                if not (target == probes_package or target.startswith(probes_package + ".")):
                    bad.append(f"{where}: relative import leaves the probes folder ({target})")
                continue
            top = target.split(".")[0]
            if top in sys.stdlib_module_names or top in PROBE_MAY_IMPORT or top in siblings:
                continue
            bad.append(f"{where}: a probe imports {target}, which the image does not have")
    return bad


# --------------------------------------------------------------------------- the tests


def test_the_graph_is_read():
    edges = graph()
    assert "comfyimg.pins.model" in edges["comfyimg.bake.bake"]  # the reader sees real edges
    assert "comfyimg.validate.probes.sage2" not in edges  # the probes are scripts, not modules
    assert probe_files() and any(p.parent.name == "comfyimg_smoke" for p in probe_files())  # sub-folders too


def test_no_import_cycle_even_under_type_checking():
    assert cycles() == []


def test_edges_point_down_the_pipeline_and_nothing_imports_cli():
    assert back_edges() == []


def test_imports_sit_at_the_top_unless_they_say_why():
    assert unexplained_imports() == {}


def test_no_module_reads_another_folders_data_by_path():
    assert data_by_path() == []


def test_the_probes_import_only_the_stdlib_torch_comfyui_and_each_other():
    assert probe_imports() == []


def _all_problems(package: Path) -> list[str]:
    return [*back_edges(package), *map(str, cycles(package)), *unexplained_imports(package),
            *data_by_path(package), *probe_imports(package)]


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n" + text)


# Each hole the layout test once had (issue 26), planted in a copy: (file, text appended, what
# the report must name).
HOLES = {
    "a probe imports the package": ("validate/probes/sage2.py", "import comfyimg.cli\n", "imports comfyimg.cli"),
    "a probe imports what the image lacks": ("validate/probes/table.py", "import numpy\n", "imports numpy"),
    "a probe in a sub-folder imports the package": (
        "validate/probes/comfyimg_smoke/__init__.py", "from comfyimg import cli\n", "imports comfyimg"),
    "a probe's relative import leaves the probes folder": (
        "validate/probes/table.py", "from ...kernels import rules\n", "leaves the probes folder"),
    "import_module with a literal name runs back up": (
        "pins/model.py",
        "def _late():\n    import importlib  # optional: test\n"
        "    return importlib.import_module('comfyimg.cli')  # optional: test\n",
        "comfyimg.pins.model -> comfyimg.cli"),
    "__import__ with a literal name runs back up": (
        "kernels/elf.py", "def _late():\n    return __import__('comfyimg.bake.bake')  # optional: test\n",
        "comfyimg.kernels.elf -> comfyimg.bake.bake"),
    "a relative import runs back up": ("pins/model.py", "from ..bump import plan\n", "comfyimg.pins.model -> comfyimg.bump.plan"),
    "an optional marker with no reason": (
        "pins/model.py", "def _late():\n    import json  # optional:\n    return json\n", "pins/model.py"),
    "a stage reads another folder's data by path": (
        "kernels/rules.py", 'OTHER = Path(__file__).parents[1] / "validate" / "probes" / "kernels.json"\n',
        "reaches outside its folder"),
    "a cycle": ("errors.py", "from comfyimg import fsutil\n", "comfyimg.errors"),
}


@pytest.mark.parametrize("hole", sorted(HOLES))
def test_every_planted_hole_is_caught(tmp_path, hole):
    copy = tmp_path / "comfyimg"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert _all_problems(copy) == []  # the copy is as clean as the package
    rel, text, named = HOLES[hole]
    _append(copy / rel, text)
    problems = _all_problems(copy)
    assert any(named in p for p in problems), (hole, problems)
