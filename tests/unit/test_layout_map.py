"""docs/dev/layout-map.md is a map of the tree: every module and data file of src/comfyimg
listed once, with the stage test_layout.py gives it and a purpose; no row names a path that is
gone. No module over 500 lines without a reason at its top."""

from __future__ import annotations

import re

from tests.lib.project import REPO
from tests.unit.test_layout import PACKAGE, STAGES, is_probe, module_name, stage

MAP = REPO / "docs" / "dev" / "layout-map.md"
ROW = re.compile(r"^\| `(?P<path>src/comfyimg/[^`]+)` \| (?P<stage>[^|]+?) \| (?P<purpose>[^|]*?) \|$", re.M)
NAMES = ["base", "net", "engine", "kernels", "pins", "audit", "render", "sources", "bump", "bake", "validate", "cli"]


def expected_stage(rel: str) -> str:
    path = REPO / rel
    if path.suffix != ".py":
        return NAMES[stage(module_name(path.parent / "__init__.py"))]
    if is_probe(path):
        return "validate (probe)"
    name = module_name(path)
    return "package" if name == "comfyimg" else NAMES[stage(name)]


def test_the_stage_names_follow_stages():
    assert len(NAMES) == len(STAGES)
    assert all(NAMES[i] in prefixes[0] for i, prefixes in enumerate(STAGES) if i)  # net → comfyimg.net


def test_the_map_lists_every_module_once_with_its_stage_and_a_purpose():
    rows = [m.groupdict() for m in ROW.finditer(MAP.read_text())]
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "a path listed twice"
    tree = sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*")
                  if p.is_file() and p.suffix in (".py", ".json") and "__pycache__" not in p.parts)
    assert sorted(paths) == tree  # every module and data file, and nothing that is gone
    wrong = {r["path"]: (r["stage"], expected_stage(r["path"])) for r in rows if r["stage"] != expected_stage(r["path"])}
    assert wrong == {}
    assert [r["path"] for r in rows if not r["purpose"].strip()] == []


def test_no_module_over_500_lines_without_a_reason_at_its_top():
    long = [p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts and len(p.read_text().splitlines()) > 500]
    unexplained = [str(p.relative_to(REPO)) for p in long
                   if not re.search(r"Over 500 lines", p.read_text()[:4000])]
    assert unexplained == []
