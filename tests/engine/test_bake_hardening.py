"""invoke bake under attack (issue 27): no secret reaches a build (a bake file that declares variables named like
the caller's credentials gets none of their values, in ``--print``, the build log, an image
label, a build arg or the build record; and whatever the project writes or prints goes
through the one redaction (known secrets, ``user:password@`` in URLs); and a signal stops the
buildx child the command started."""

from __future__ import annotations

import json

import pytest

from tests.lib.engine import docker, wheels_toml

pytestmark = pytest.mark.engine

TOKEN = "ghp_leaktest0123456789abcdefABCDEF"
PASSWORD = "hunter2-leaktest-password"
URL_SECRET = "urlpass-leaktest"

LEAK_HCL = """
variable "GITHUB_TOKEN" { default = "none" }
variable "REGISTRY_PASSWORD" { default = "none" }
target "complete-cuda" {
  labels = { "leak.token" = "${GITHUB_TOKEN}", "leak.password" = "${REGISTRY_PASSWORD}" }
  args = { LEAK = "${GITHUB_TOKEN}" }
}
"""


def written_text(root) -> dict[str, str]:
    return {str(p): p.read_text(errors="replace") for p in root.rglob("*")
            if p.is_file() and ".git" not in p.parts and p.stat().st_size < 50_000_000}


def test_a_bake_file_that_asks_for_the_token_gets_nothing(served, engine_project):
    project = engine_project("leak", wheels_toml([served.pin("sage2"), served.pin("sage3")]))
    (project.root / "leak.hcl").write_text(LEAK_HCL)
    env = {"GITHUB_TOKEN": TOKEN, "REGISTRY_PASSWORD": PASSWORD,
           "IMAGE_SOURCE": f"https://bob:{URL_SECRET}@git.invalid/comfyimg"}
    before = written_text(project.root)

    printed = project.invoke("bake", "--print", "-t", "complete-cuda", "--file", "tests/engine/override.hcl",
                             "--file", "leak.hcl", "--label", project.label, env=env)
    assert printed.returncode == 0, printed.stderr[-3000:]
    plan = json.loads(printed.stdout)["target"]["complete-cuda"]
    assert plan["labels"]["leak.token"] == "none" and plan["labels"]["leak.password"] == "none"
    assert plan["args"]["LEAK"] == "none"

    built = project.bake("--file", "leak.hcl", env=env)
    assert built.code == 0, built.output[-4000:]
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", project.tag).stdout)
    assert labels["leak.token"] == "none" and labels["leak.password"] == "none"
    # The URL's password is cut from the label that carries it (the one redaction).
    assert labels["org.opencontainers.image.source"] == "https://***@git.invalid/comfyimg", labels

    after = written_text(project.root)
    new = {p: t for p, t in after.items() if before.get(p) != t}
    assert any(p.endswith("bake-record.json") for p in new), sorted(new)
    for secret in (TOKEN, PASSWORD, URL_SECRET):
        for text in (printed.stdout, printed.stderr, built.output, json.dumps(labels), *new.values()):
            assert secret not in text


SLOW_HCL = """
target "slow" {
  dockerfile-inline = "FROM local/debian-py:bookworm\\nRUN --network=none sleep 300\\n"
  tags = ["local/comfyimg-slow:@LABEL@"]
}
"""


def test_sigterm_to_bake_stops_the_buildx_child_and_says_so(served, engine_project):
    """Issue 27 item 7: SIGTERM to `invoke bake` during a build stops `docker buildx bake` (it
    was left running to the end before), says so, and exits 143."""
    import os
    import signal
    import subprocess
    import time

    from tests.lib.project import INVOKE

    project = engine_project("sigterm", wheels_toml([served.pin("sage2"), served.pin("sage3")]))
    (project.root / "slow.hcl").write_text(SLOW_HCL.replace("@LABEL@", project.label))
    proc = subprocess.Popen([*INVOKE, "bake", "-t", "slow", "--file", "slow.hcl", "--progress", "plain"],
                            cwd=project.root, env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen: list[str] = []
    deadline = time.monotonic() + 240
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "sleep 300" in line and "RUN" in line:
            break
        assert time.monotonic() < deadline, "".join(seen)
    time.sleep(2)  # the RUN step is running
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    output = "".join(seen) + rest
    assert proc.returncode == 143, output
    said = [ln for ln in output.splitlines() if "sent SIGTERM to docker buildx bake" in ln]
    assert len(said) == 1, output
    pid = int(said[0].split("(pid ")[1].split(")")[0])
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the buildx child is gone, not building on
    assert "Traceback" not in output
