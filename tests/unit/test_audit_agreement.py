"""`invoke audit --wheel`: the table, the verdict lines and `--json` come from one computed value,
so they agree on every arch, for every test wheel (issue 28: the table once said "runs: yes"
on sm90 for a thu-ml v2.2.0-tag wheel while its verdict and JSON said it cannot run)."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from comfyimg.audit import coverage, report
from comfyimg.kernels.read import read_wheel
from tests.lib.cudawheels import (FULL_SAGE2, PER_ARCH_SAGE2, SEED_SAGE2, TRAP_OBJECTS, sage2_wheel, sage3_wheel,
                                  trap_wheel)

ARCHS = ["sm70", "sm75", "sm80", "sm86", "sm87", "sm89", "sm90", "sm100", "sm103", "sm110", "sm120", "sm121"]
SOURCES = [None, "v2.2.0", "d1a57a5", "pixeloven-7bd3a0e"]
SAGE2 = {"seed": SEED_SAGE2, "full": FULL_SAGE2, **{f"per-{a}": m for a, m in PER_ARCH_SAGE2.items()}}
SAGE3 = ["r_100a", "r_120a_121a", "r_120f", "r_ptx120f", "r_121a"]
TRAPS = sorted(p.stem for p in TRAP_OBJECTS.glob("*.so"))  # compiled-out kernels (tests/fixtures/cuda-trap)


def _wheels(tmp_path):
    for name, modules in SAGE2.items():
        for source in SOURCES:
            yield f"sage2-{name}-{source}", sage2_wheel(tmp_path / f"{name}-{source}", modules, source=source)
    for obj in SAGE3:
        yield f"sage3-{obj}", sage3_wheel(tmp_path / obj, obj)
    for obj in TRAPS:
        yield f"trap-{obj}", trap_wheel(tmp_path / f"trap-{obj}", obj)


def _table_row(audit: coverage.WheelAudit) -> dict[str, str]:
    """The verdict row of the printed table, arch → cell."""
    console = Console(width=400, record=True, file=io.StringIO(), color_system=None)
    console.print(report.wheel_table(audit))
    text = console.export_text()
    header = next(ln for ln in text.splitlines() if "module" in ln)
    row = next(ln for ln in text.splitlines() if " runs " in ln)
    cells = [c.strip() for c in re.split(r"[|│┃]", row)[1:-1]]
    heads = [c.strip() for c in re.split(r"[|│┃]", header)[1:-1]]
    return dict(zip(heads[1:], cells[1:], strict=True))


def test_table_lines_and_json_agree_for_every_arch_on_every_test_wheel(tmp_path):
    checked = 0
    for label, wheel in _wheels(tmp_path):
        audit = coverage.audit_wheel(tmp_path, wheel, ARCHS)
        row = _table_row(audit)
        lines = dict(ln.split(": ", 1) for ln in report.wheel_lines(audit))
        data = json.loads(json.dumps(report.wheel_json(audit)))
        assert list(row) == list(lines) == list(data["archs"]) == ARCHS, label
        for arch in ARCHS:
            runs = data["archs"][arch]["runnable"]
            assert (row[arch] != "NO") == runs, (label, arch, row[arch], data["archs"][arch]["why"])
            assert lines[arch].startswith("runnable: " if runs else "NOT runnable: "), (label, arch)
        assert data["runnable"] == all(a["runnable"] for a in data["archs"].values()), label
        checked += len(ARCHS)
    assert TRAPS and checked == len(ARCHS) * (len(SAGE2) * len(SOURCES) + len(SAGE3) + len(TRAPS))


def test_the_v2_2_0_tag_wheel_on_sm90_is_not_runnable_in_the_table_either(tmp_path):
    """The case the issue names: the tag's own dispatch sends sm90 to a kernel its sm90 module
    never registers; the table says NO as the verdict does."""
    wheel = sage2_wheel(tmp_path, FULL_SAGE2, source="v2.2.0")
    audit = coverage.audit_wheel(tmp_path, wheel, ["sm90", "sm121"])
    assert not audit.verdicts["sm90"].runnable and not audit.verdicts["sm121"].runnable
    assert _table_row(audit) == {"sm90": "NO", "sm121": "NO"}
    assert read_wheel(wheel).dispatch  # read from the wheel, not the table
