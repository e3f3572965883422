"""`invoke check`'s drift output stays readable (issue 27, item 8): a 10 MB line is cut, a
diff over 64 KiB is one summary line, and the whole diff goes to build/check-drift.diff."""

from __future__ import annotations

from pathlib import Path

from comfyimg.render import DIFF_FILE, Drift, shown_diff


def test_a_small_diff_is_printed_whole(tmp_path):
    drifts = [Drift(Path("generated/a.txt"), "--- a\n+++ b\n-x\n+y\n")]
    assert shown_diff(drifts, tmp_path) == "--- a\n+++ b\n-x\n+y\n"
    assert not (tmp_path / DIFF_FILE).exists()


def test_a_ten_megabyte_line_is_cut_and_kept_whole_in_a_file(tmp_path):
    url = "https://example.invalid/" + "x" * 10_000_000
    drifts = [Drift(Path("generated/a.txt"), f"--- a\n+++ b\n-{url}\n+y\n")]
    shown = shown_diff(drifts, tmp_path)
    assert len(shown) < 2000 and "(10000026 characters)" in shown and str(DIFF_FILE) in shown
    assert (tmp_path / DIFF_FILE).read_text() == drifts[0].diff


def test_a_huge_diff_is_one_summary_line(tmp_path):
    body = "".join(f"-pin{i}==1\n+pin{i}==2\n" for i in range(10_000))
    drifts = [Drift(Path("generated/a.txt"), "--- a\n+++ b\n" + body)]
    shown = shown_diff(drifts, tmp_path)
    assert shown == (f"20000 changed line(s) in 1 file(s), {len(drifts[0].diff)} characters of diff: "
                     f"the whole diff is in {DIFF_FILE}\n")
    assert (tmp_path / DIFF_FILE).read_text() == drifts[0].diff
