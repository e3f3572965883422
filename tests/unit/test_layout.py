"""The import graph of src/comfyimg, read with ast (nothing is imported): edges point down the
pipeline, no cycle even under TYPE_CHECKING, nothing imports cli, and every import sits at the
top of its module unless it says why (an optional dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.lib.project import REPO

SRC = REPO / "src"
PACKAGE = SRC / "comfyimg"
PROBES = PACKAGE / "validate" / "probes"

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
REASON = "# optional:"  # a function-local import must say why, e.g. "# optional: needs rich"


def stage(module: str) -> int:
    """The stage of a module: the longest prefix named in STAGES."""
    best, rank = -1, -1
    for i, prefixes in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} belongs to no stage: add it to STAGES"
    return rank


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if PROBES not in p.parents}


def imports(path: Path, modules: set[str]) -> list[tuple[str, ast.stmt, bool]]:
    """(imported comfyimg module, the statement, whether it is at the top of the module)."""
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = set()
    for node in tree.body:
        top.add(node)
        if isinstance(node, ast.If):  # if TYPE_CHECKING: counts as the top, and as an edge
            top.update(node.body)
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            found.append((target, node, node in top))
    return found


def graph() -> dict[str, set[str]]:
    modules = package_modules()
    names = set(modules)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, _, _ in imports(path, names):
            if target.startswith("comfyimg") and target != "comfyimg" and target in names:
                edges[name].add(target)
    return edges


def test_the_graph_is_read():
    edges = graph()
    assert "comfyimg.pins.model" in edges["comfyimg.bake.bake"]  # the reader sees real edges
    assert "comfyimg.validate.probes.sage2" not in edges  # the probes are scripts, not modules


def test_no_import_cycle_even_under_type_checking():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_edges_point_down_the_pipeline_and_nothing_imports_cli():
    back = [f"{src} -> {dst}" for src, targets in graph().items() for dst in targets
            if stage(dst) > stage(src) or (dst == "comfyimg.cli" and src != "comfyimg.__main__")]
    assert back == []


def test_imports_sit_at_the_top_unless_they_say_why():
    modules = package_modules()
    lines = {}
    for path in modules.values():
        source = path.read_text().splitlines()
        for _, node, at_top in imports(path, set(modules)):
            if not at_top and REASON not in source[node.lineno - 1]:
                lines[f"{path.relative_to(REPO)}:{node.lineno}"] = source[node.lineno - 1].strip()
    assert lines == {}


def test_the_probes_import_nothing_from_the_package():
    for path in PROBES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("comfyimg"), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("comfyimg") for a in node.names), path
