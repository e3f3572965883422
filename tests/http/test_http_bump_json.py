"""``invoke bump --json``: the bump table for scripts (the bump workflow), against the fake GitHub."""

from __future__ import annotations

import json

from tests.lib.bumpproject import NEW_SAGE
from tests.lib.github import asset_sha256 as sha


def test_json_has_every_pin_old_and_new_and_the_files_written(project):
    r = project.bump("--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)  # stdout is the JSON object and nothing else
    assert report["changed"] is True and report["dry_run"] is False
    assert "wheels.toml" in report["wrote"]
    by_pin = {p["pin"]: p for p in report["pins"]}
    sage = by_pin["sageattention"]
    assert sage["changed"] is True and set(sage["fields"]) >= {"url", "sha256", "version", "source"}
    assert sage["old"]["release"] == "v2.2.0-build.16" and sage["new"]["release"] == "v2.2.0-build.17"
    assert sage["new"]["file"] == NEW_SAGE and sage["new"]["sha256"] == sha(project.fake, NEW_SAGE)
    assert sage["new"]["digest_from"]
    assert f'sha256 = "{sage["new"]["sha256"]}"' in project.pins.read_text()

    again = json.loads(project.bump("--json").stdout)
    assert again["changed"] is False and again["wrote"] == []
    assert all(not p["changed"] and p["fields"] == [] for p in again["pins"])


def test_dry_run_json_carries_the_diff_and_writes_nothing(project):
    before = project.snapshot()
    r = project.bump("--dry-run", "--json", "--name", "sageattention")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["dry_run"] is True and report["changed"] is True and report["wrote"] == []
    assert report["diff"].startswith("--- a/wheels.toml\n+++ b/wheels.toml\n")
    assert project.snapshot() == before
