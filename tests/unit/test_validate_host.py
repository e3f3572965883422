"""The host side of validation, pure: how a probe's exit code and JSON become a verdict,
and the JUnit report written from it (validate.judge, validate._junit)."""

import xml.etree.ElementTree as ET

import pytest

from comfyimg.validate.reports import Outcome, _junit
from comfyimg.validate.verdict import judge

PASS = {"schema": 1, "status": "pass", "reason": "ok", "gpu_checks": "ran",
        "checks": [{"name": "version", "status": "pass", "detail": "2.2.0"}]}
GPU_SKIPPED = {**PASS, "gpu_checks": "skipped", "checks": [*PASS["checks"], {"name": "gpu", "status": "skip",
                                                                              "detail": "no GPU"}]}


@pytest.mark.parametrize(("result", "code", "require_gpu", "passed", "status", "reason"), [
    (PASS, 0, False, True, "pass", "ok"),
    (PASS, 0, True, True, "pass", "ok"),
    (GPU_SKIPPED, 0, False, True, "pass", "ok"),
    (GPU_SKIPPED, 0, True, False, "fail", "--require-gpu: GPU checks were not run (skipped)"),
    ({**PASS, "gpu_checks": None}, 0, True, False, "fail", "--require-gpu: GPU checks were not run (None)"),
    ({"status": "skip", "reason": "sm90", "gpu_checks": "skipped"}, 3, False, True, "skip", "sm90"),
    ({"status": "skip", "reason": "sm90", "gpu_checks": "skipped"}, 3, True, False, "fail", "--require-gpu"),
    ({"status": "fail", "reason": "numerics"}, 1, False, False, "fail", "numerics"),
    (PASS, 1, False, False, "fail", "probe said pass but exited 1"),
    (None, 0, False, False, "fail", "probe crashed (exit code 0) without a valid JSON result"),
    (None, 139, False, False, "fail", "probe crashed (killed by SIGSEGV) without a valid JSON result"),
    (PASS, 139, False, False, "fail", "probe ended with killed by SIGSEGV after printing its result (pass)"),
    (None, 125, False, False, "fail", "docker exit 125: the container did not start"),
    (None, 2, False, False, "fail", "probe crashed (exit code 2)"),
])
def test_judge(result, code, require_gpu, passed, status, reason):
    got_passed, verdict = judge(result, code, require_gpu)
    assert (got_passed, verdict["status"]) == (passed, status)
    assert reason in verdict["reason"]


def _suite(result, passed):
    xml = _junit(Outcome("sage2", "img", result, 0 if passed else 1, passed, 1.0))
    return ET.fromstring(xml)  # must parse: well-formed XML


def test_junit_counts_every_testcase_and_holds_no_control_characters():
    crash = {"status": "fail", "reason": "probe ended with killed by SIGSEGV", "crash": True,
             "checks": [{"name": "numerics", "status": "fail", "detail": "\x1b[31mboom\x1b[0m"},
                        {"name": "gpu", "status": "skip", "detail": None}]}
    suite = _suite(crash, False)
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["probe", "numerics", "gpu"]
    assert suite.get("tests") == "3" and suite.get("failures") == "2" and suite.get("skipped") == "1"
    assert cases[1].find("failure").get("message") == "[31mboom[0m"


def test_junit_null_reason_and_require_gpu_verdict():
    suite = _suite({**GPU_SKIPPED, "reason": None}, False)
    names = [c.get("name") for c in suite.findall("testcase")]
    assert names == ["version", "gpu", "verdict"]
    assert suite.get("tests") == "3" and suite.get("failures") == "1"


def test_the_probes_find_the_kernels_table_where_the_host_mounts_it():
    """kernels.json is the kernels stage's data (src/comfyimg/kernels); a probe runs standalone in
    the image, so the host mounts the table where the probe looks first: beside its folder."""
    import posixpath

    from comfyimg.kernels import rules
    from comfyimg.validate import containers

    source = (containers.PROBES_DIR / "table.py").read_text()
    assert 'os.path.join(_HERE, "..", "kernels.json")' in source  # the first place a probe looks
    mounts = {target: host for host, target in containers.container_options("comfy").read_only_binds}
    in_image = posixpath.normpath(posixpath.join(containers.PROBE_MOUNT, "..", "kernels.json"))
    assert mounts[in_image] == str(rules.TABLE) and rules.TABLE.is_file()
    assert mounts[containers.PROBE_MOUNT] == str(containers.PROBES_DIR)
    assert not (containers.PROBES_DIR / "kernels.json").exists()  # one table, not a copy
