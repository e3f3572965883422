"""Fresh Docker engines for the build-cache tests and bench (tests/engine/test_cache.py,
bench/cache_rebuild.py).

A "fresh builder" must start with an empty BuildKit cache. buildx's docker-container
driver would give one, but it runs the moby/buildkit image, which cannot be pulled here
(no Docker Hub), and Debian packages no buildkitd to run with the remote driver. So a
fresh builder is the docker driver of a NEW dockerd: its own data root, exec root and
socket, no bridge network (like tools/engine/start.sh), and the containerd image store
(``containerd-snapshotter``), with which the docker driver exports registry and local
caches (the classic image store exports only inline cache). Images it needs are copied
in with ``docker save | docker load``. It is stopped and removed afterwards; the shared
engine is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Engine:
    host: str  # DOCKER_HOST value: unix:///…/sock
    root: Path
    pid: int

    @property
    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.host}

    def docker(self, *args: str, timeout: float = 300, env: dict[str, str] | None = None,
               ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", *args], text=True, capture_output=True, timeout=timeout,
                              env={**os.environ, **(env or {}), **self.env}, check=False)


def load_images(engine: Engine, *images: str, timeout: float = 600) -> None:
    """Copy images from the shared engine into ``engine`` (no registry involved)."""
    save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE,
                            env={k: v for k, v in os.environ.items() if k != "DOCKER_HOST"})
    load = subprocess.run(["docker", "load", "--quiet"], stdin=save.stdout, capture_output=True, text=True,
                          env={**os.environ, **engine.env}, timeout=timeout, check=False)
    save.stdout.close()
    if save.wait(timeout=timeout) != 0 or load.returncode != 0:
        raise RuntimeError(f"cannot copy {' '.join(images)} into {engine.host}: {load.stderr[-1000:]}")


@contextmanager
def fresh_engine(name: str, *, wait: float = 60, daemon: dict | None = None,
                 containerd_store: bool = True) -> Iterator[Engine]:
    """A new dockerd; ``daemon``: more daemon.json settings (e.g. CDI); ``containerd_store``:
    the containerd image store (off: the classic store, as the shared engine has)."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        raise RuntimeError("a fresh engine needs root and dockerd (tools/engine/install.sh)")
    # Short paths: containerd's socket lives under the exec root (unix sockets: 107 bytes).
    root = Path(tempfile.mkdtemp(prefix=f"eng-{name}-", dir="/tmp"))
    config = {**(daemon or {})}
    if containerd_store:
        config["features"] = {"containerd-snapshotter": True, **config.get("features", {})}
    (root / "daemon.json").write_text(json.dumps(config))
    host = f"unix://{root}/sock"
    log = open(root / "dockerd.log", "wb")
    proc = subprocess.Popen(
        ["dockerd", "--config-file", str(root / "daemon.json"), "--data-root", str(root / "data"),
         "--exec-root", str(root / "exec"), "--pidfile", str(root / "pid"), "-H", host,
         "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--userland-proxy=false"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    engine = Engine(host, root, proc.pid)
    try:
        deadline = time.monotonic() + wait
        while engine.docker("info", "--format", "{{.ServerVersion}}", timeout=30).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd ({host}) did not start:\n{(root / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield engine
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()
        subprocess.run(["umount", "-R", str(root / "data")], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
