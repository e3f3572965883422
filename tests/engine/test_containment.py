"""A hostile image under `python -m comfyimg smoke` cannot reach the host (issue 27, item 1).

The image below does what the fourth adversarial pass did: its "model builder" leaves
symlinks where the model belongs (to a host folder holding a secret, to ``/run`` where the
engine's socket lives, to ``/``), and its "ComfyUI" then reads through them, dials the
Docker socket, dials a port the test opened on the host's 127.0.0.1, writes to its root and
reports who it is, before it answers the smoke with hostile shapes. Under the old smoke (a
host temp folder bind-mounted into the ComfyUI containers, the host network, root) each of
these reached the host. Here each must fail, the smoke must end in one line, nothing of the
host may appear in any file it wrote, and no container or volume may be left.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest

from tests.lib.dockercli import docker
from tests.lib.engine import BASE, LABEL
from tests.lib.project import REPO

pytestmark = pytest.mark.engine

BUILDER = """#!/bin/sh
# The hostile image's python: as the smoke's model builder it plants symlinks instead of a model.
case "$*" in
  *smoke_model*)
    out=/app/ComfyUI/models
    ln -s "@SECRET_DIR@" "$out/unet"
    ln -s /run "$out/vae"
    ln -s / "$out/hostroot"
    echo '{"status": "pass", "detected_as": "Segmind_Vega", "unet_parameters": 1, "total_s": 0}'
    exit 0 ;;
esac
exec python3 "$@"
"""

COMFYUI = r"""
import http.server, json, os, socket, sys

port = int(sys.argv[sys.argv.index("--port") + 1])
said = []
def note(what, fn):
    try:
        said.append(f"{what}: ESCAPED {fn()!r}")
    except Exception as exc:
        said.append(f"{what}: blocked ({type(exc).__name__})")

note("secret via unet", lambda: open("/app/ComfyUI/models/unet/secret.txt").read())
note("host root via symlink", lambda: os.listdir("/app/ComfyUI/models/hostroot@SECRET_DIR@"))
for sock in ("/app/ComfyUI/models/vae/docker.sock", "/run/docker.sock", "/var/run/docker.sock"):
    def dial(path=sock):
        s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(path); return path
    note(f"socket {sock}", dial)
note("host port", lambda: socket.create_connection(("127.0.0.1", @HOST_PORT@), timeout=2).getpeername())
note("write to root", lambda: open("/planted", "w").write("x"))
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
said.append(f"uid={os.getuid()} CapEff={status['CapEff'].strip()} NoNewPrivs={status['NoNewPrivs'].strip()}")
for line in said:
    print("HOSTILE", line, flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(data))); self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self.answer({"system": {}})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer(["PASS: forged\nline", {"prompt_id": "x"}])  # a list where an object belongs

http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

DOCKERFILE = f"""FROM {BASE}
RUN useradd -u 1000 -m comfy && mkdir -p /app/ComfyUI/models && chown 1000:0 /app/ComfyUI/models \\
 && chmod 0775 /app/ComfyUI/models
COPY --chmod=0755 python /usr/local/bin/python
COPY main.py /app/ComfyUI/main.py
WORKDIR /app/ComfyUI
"""


def build_image(context: Path, python: str, main: str, name: str) -> str:
    context.mkdir()
    (context / "python").write_text(python)
    (context / "main.py").write_text(main)
    (context / "Dockerfile").write_text(DOCKERFILE)
    tag = f"local/comfyimg-{name}:{LABEL}"
    built = docker("build", "--network", "none", "-q", "-t", tag, str(context), timeout=300)
    assert built.returncode == 0, built.stderr
    return tag


class Listener:
    """A TCP port on the host's 127.0.0.1 that counts who dials it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.dialled = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.dialled += 1
            conn.close()


@pytest.fixture
def hostile(tmp_path):
    secret_dir = tmp_path / "host-secret"
    secret_dir.mkdir()
    token = f"HOSTSECRET-{secrets.token_hex(8)}"
    (secret_dir / "secret.txt").write_text(token)
    listener = Listener()
    tag = build_image(tmp_path / "image", BUILDER.replace("@SECRET_DIR@", str(secret_dir)),
                      COMFYUI.replace("@SECRET_DIR@", str(secret_dir)).replace("@HOST_PORT@", str(listener.port)),
                      "hostile")
    yield tag, token, listener
    listener.sock.close()
    docker("image", "rm", "-f", tag, timeout=120)


def left_behind() -> tuple[list[str], list[str]]:
    boxes = docker("ps", "-a", "--filter", "name=comfyimg-smoke", "--format", "{{.Names}}", timeout=60).stdout.split()
    volumes = docker("volume", "ls", "--filter", "name=comfyimg-smoke", "--format", "{{.Name}}", timeout=60)
    return boxes, volumes.stdout.split()


def test_a_hostile_image_under_smoke_reaches_nothing_of_the_host(hostile, tmp_path):
    tag, token, listener = hostile
    root = tmp_path / "project"
    (root / "compose").mkdir(parents=True)
    shutil.copy(REPO / "compose" / "complete-cuda.yml", root / "compose")
    from tests.lib.project import Project

    proc = Project(root).run(sys.executable, "-m", "comfyimg", "smoke", "--image", tag, "--gpus", "none",
                             "--timeout", "120", "--root", str(root), env={"COMFYIMG_HOST_GPU": "0"}, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    report = json.loads((root / "reports" / "smoke.json").read_text())
    tail = report["result"]["models"]["sdxl"]["log_tail"]["sage"]  # one verdict per model smoked (--model)
    hostile_lines = [ln for ln in tail.splitlines() if ln.startswith("HOSTILE ")]
    assert len(hostile_lines) == 8, tail  # every attempt ran, under the smoke's own start
    assert not [ln for ln in hostile_lines if "ESCAPED" in ln], hostile_lines
    assert "HOSTILE uid=1000 CapEff=0000000000000000 NoNewPrivs=1" in hostile_lines
    assert listener.dialled == 0
    # The hostile answer (a JSON list from POST /prompt) is one line in the verdict, escaped.
    reason = report["result"]["reason"]
    assert "POST /prompt answered a JSON list, not an object" in reason, reason
    # Nothing of the host in anything the smoke wrote or printed.
    for path in (root / "reports").rglob("*"):
        if path.is_file():
            assert token not in path.read_text(errors="replace"), path
    assert token not in proc.stdout + proc.stderr
    assert left_behind() == ([], [])


def test_the_sandbox_refuses_what_would_reach_the_host(tmp_path):
    """The one place containers are configured refuses, before docker runs: root not asked for,
    a host path that is a socket, under /run, or reached through a symlink, and option
    smuggling through a path."""
    from comfyimg.engine.containers import Refused, Sandbox

    assert Sandbox(user="comfy").args()[:6] == ["--network", "none", "--cap-drop", "ALL", "--security-opt",
                                              "no-new-privileges"]
    for user in ("", "0", "root", "0:0", "00:1000"):
        with pytest.raises(Refused, match="root"):
            Sandbox(user=user).args()
    assert "--user" in Sandbox(user="0:0", allow_root=True).args()
    link = tmp_path / "link"
    link.symlink_to("/run")
    sock_dir = tmp_path / "s"
    sock_dir.mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_dir / "engine.sock"))
    for host in ("/run", "/var/run/docker.sock", str(link), str(sock_dir / "engine.sock"), "/proc/1/root",
                 str(tmp_path / "a,readonly=false"), str(tmp_path / "a:/x")):
        with pytest.raises(Refused):
            Sandbox(user="comfy", read_only_binds=((host, "/x"),)).args()
    with pytest.raises(Refused):
        Sandbox(user="comfy", volumes=(("v", "/x:rw,z", True),)).args()
    with pytest.raises(Refused):
        Sandbox(user="comfy", gpu=("--network", "host")).args()
    sock.close()
    assert Path(tmp_path).exists()


# --------------------------------------------------------------------------- memory and drip

FLOOD = """#!/bin/sh
# A probe that prints 200 MB on one line, then more lines: the host keeps at most its cap.
case "$*" in
  *probes.*) head -c 200000000 /dev/zero | tr '\\0' x; echo; echo '{"schema": 1}'; exit 0 ;;
esac
exec python3 "$@"
"""

DRIP_MAIN = r"""
import http.server, sys, time
port = int(sys.argv[sys.argv.index("--port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def do_POST(self):  # the answer drips: one byte every 2 s, never ending within the smoke's timeout
        self.send_response(200); self.send_header("Content-Length", "100000"); self.end_headers()
        while True:
            self.wfile.write(b" "); self.wfile.flush(); time.sleep(2)
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

MODEL_OK = """#!/bin/sh
case "$*" in
  *smoke_model*) echo '{"status": "pass", "detected_as": "Segmind_Vega", "unet_parameters": 1}'; exit 0 ;;
esac
exec python3 "$@"
"""

PEAK_RSS = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stdout.write(p.stdout[-4000:]); sys.stderr.write(p.stderr[-4000:])\n"
            "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, 'RC', p.returncode)\n")


def measured(root: Path, *args: str, timeout: float) -> tuple[int, int, str]:
    """Run ``python -m comfyimg ARGS`` in a child whose own child is the command: (exit code, the
    command's peak RSS in MB, its output)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "comfyimg", *args],
                          cwd=root, text=True, capture_output=True, timeout=timeout,
                          env={**__import__("os").environ, "COMFYIMG_HOST_GPU": "0"})
    last = proc.stdout.strip().splitlines()[-1].split()
    assert last[0] == "PEAK_KB", proc.stdout + proc.stderr
    return int(last[3]), int(last[1]) // 1024, proc.stdout + proc.stderr


def test_a_probe_that_floods_its_output_is_one_line_and_memory_stays_bounded(tmp_path):
    tag = build_image(tmp_path / "image", FLOOD, "", "flood")
    try:
        code, peak_mb, out = measured(tmp_path, "validate", "sage2", "--image", tag, "--expect-version", "2.2.0",
                                      "--comfyui", "none", "--gpus", "none", "--timeout", "240",
                                      "--root", str(tmp_path), timeout=400)
        assert code == 1, out
        assert peak_mb < 300, f"peak RSS {peak_mb} MB"
        assert "Traceback" not in out
        reason = json.loads((tmp_path / "reports" / "sage2.json").read_text())["result"]["reason"]
        assert "more than 16 MiB on stdout" in reason, reason
        boxes = docker("ps", "-a", "--filter", "name=comfyimg-validate", "--format", "{{.Names}}", timeout=60)
        assert boxes.stdout.split() == []
    finally:
        docker("image", "rm", "-f", tag, timeout=120)


def test_a_port_that_drips_its_answer_is_bounded_by_the_smokes_timeout(tmp_path):
    import time

    tag = build_image(tmp_path / "image", MODEL_OK, DRIP_MAIN, "drip")
    root = tmp_path / "project"
    (root / "compose").mkdir(parents=True)
    shutil.copy(REPO / "compose" / "complete-cuda.yml", root / "compose")
    try:
        started = time.monotonic()
        code, peak_mb, out = measured(root, "smoke", "--image", tag, "--gpus", "none", "--timeout", "45",
                                      "--root", str(root), timeout=300)
        took = time.monotonic() - started
        assert code == 1, out
        assert took < 45 + 60, f"the smoke took {took:.0f} s for --timeout 45"  # + container starts and removal
        reason = json.loads((root / "reports" / "smoke.json").read_text())["result"]["reason"]
        assert "POST /prompt" in reason and ("deadline" in reason or "--timeout" in reason), reason
        assert peak_mb < 300
        assert left_behind() == ([], [])
    finally:
        docker("image", "rm", "-f", tag, timeout=120)
