"""`python -m comfyimg audit` stays within 2x of reading the wheel (issue 19, performance): it
must not import the docker stack (python-on-whales and its pydantic), GitHub's client (httpx),
invoke, or the TOML editor (tomlkit: only recording coverage needs it), which together cost more
than the audit of a 100 MB wheel itself. Checked in a fresh process that runs a real audit, then
lists what it imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.lib.cudawheels import SEED_SAGE2, sage2_wheel
from tests.lib.project import REPO

HEAVY = ("python_on_whales", "pydantic", "pydantic_core", "invoke", "httpx", "tomlkit")

AUDIT_THEN_LIST = """
import json, runpy, sys
sys.argv = ["comfyimg", *sys.argv[1:]]
try:
    runpy.run_module("comfyimg", run_name="__main__")
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))}))
""".replace("HEAVY", repr(HEAVY))


def run_audit(*args: str) -> tuple[str, dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)])}
    r = subprocess.run([sys.executable, "-c", AUDIT_THEN_LIST, *args], cwd=REPO, env=env, text=True,
                       capture_output=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    head, _, last = r.stdout.rstrip("\n").rpartition("\n")
    return head, json.loads(last)


def test_auditing_a_wheel_imports_neither_the_docker_stack_nor_httpx_invoke_or_tomlkit(tmp_path):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2, source="pixeloven-7bd3a0e")
    out, seen = run_audit("audit", "--wheel", str(wheel), "--arch", "sm90", "--json")
    assert seen["code"] == 0, out
    assert json.loads(out)["archs"]["sm90"]["runnable"] is True  # the audit really ran
    assert seen["heavy"] == []


def test_the_check_itself_sees_a_heavy_import():
    # The same listing after a command that drives docker: it names python-on-whales, so the
    # test above cannot pass by listing nothing. (`smoke --help` no longer imports it: the
    # options are defined without the docker stack; validate looks its probes up in it.)
    _, seen = run_audit("validate", "nosuch-probe")
    assert "python_on_whales" in seen["heavy"] and "pydantic" in seen["heavy"]
