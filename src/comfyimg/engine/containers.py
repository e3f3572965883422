"""Every container the project starts, confined in one place, and its output brought back
bounded.

The images run here (validate, smoke) hold exactly the code that is not trusted yet, so a
container:

* runs as a non-root user unless a caller asks for root by name (:class:`Sandbox.allow_root`);
* has no network (``--network none``): the smoke reaches ComfyUI's port through
  ``docker exec`` into the container's own loopback, so no port is published and the host
  network is never given;
* has ``--cap-drop ALL`` and ``--security-opt no-new-privileges``;
* has a read-only root, its writable places being tmpfs mounts of its own;
* sees host paths only read-only, and only paths that are plain directories or files of
  the project (never a socket, never under ``/run`` or ``/var/run``, never a symlink);
* exchanges files with another container only through a fresh named volume, never through
  a host folder that it could fill with symlinks.

Each docker command runs under a timeout (:func:`comfyimg.engine.docker.run`); a container's
output goes to a file with a cap (:func:`capture`) and is read back in bounded pieces.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from comfyimg.engine.docker import DockerException, DockerTimeout, command, complete, docker_timeout, run

LABEL = "comfyimg.confined=1"  # every container and volume made here carries it
OUTPUT_CAP = 64 * 1024 * 1024  # bytes of a container's stdout kept on disk; the rest is cut
STDERR_CAP = 1024 * 1024
_FORBIDDEN_HOST = ("/run", "/var/run", "/proc", "/sys", "/dev")
_ROOT_NAMES = ("", "root")


class Refused(ValueError):
    """A container setting that would let the container reach the host."""


def is_root(user: str) -> bool:
    """uid 0 in any spelling: ``""``, ``0``, ``root``, ``0:0``, ``root:root``, ``00:1000``."""
    uid = user.split(":", 1)[0].strip()
    return uid.lower() in _ROOT_NAMES or (uid.isascii() and uid.isdigit() and int(uid) == 0)


def _plain(value: str, what: str) -> str:
    """A path or name that reaches docker's ``-v``/``--tmpfs`` syntax: no separator it could
    smuggle an option through."""
    if not value or any(c in value for c in ",:=\n\r\0"):
        raise Refused(f"{what} {value!r}: a path here may not contain ',', ':', '=' or a line break")
    return value


def _user(user: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?", user):
        raise Refused(f"user {user!r}: expected NAME, UID or UID:GID")
    return user


def check_host_path(path: str) -> str:
    """A host path given to a container (read-only): an existing plain directory or regular
    file, no symlink anywhere on it, nothing under /run, /var/run, /proc, /sys or /dev, no socket."""
    _plain(path, "host path")
    given = os.path.abspath(path)
    try:
        real = os.path.realpath(given, strict=True)
    except OSError as exc:
        raise Refused(f"host path {path}: {exc.strerror or exc}") from None
    for p in (given, real):
        if any(p == f or p.startswith(f + "/") for f in _FORBIDDEN_HOST) or "docker.sock" in p:
            raise Refused(f"host path {path}: never given to a container (engine sockets and host state live there)")
    if real != given:
        raise Refused(f"host path {path}: it goes through a symlink (to {real})")
    try:
        mode = os.lstat(real).st_mode
    except OSError as exc:
        raise Refused(f"host path {path}: {exc.strerror}") from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise Refused(f"host path {path}: not a plain directory or file")
    return real


@dataclass(frozen=True)
class Sandbox:
    """How one container runs. Nothing here can turn the confinement off but ``allow_root``."""

    user: str
    entrypoint: str | None = None
    workdir: str | None = None
    envs: dict[str, str] = field(default_factory=dict)
    tmpfs: tuple[str, ...] = ()  # "PATH" or "PATH:OPTIONS", each the container's own
    read_only_binds: tuple[tuple[str, str], ...] = ()  # (host path, container path), always read-only
    volumes: tuple[tuple[str, str, bool], ...] = ()  # (fresh named volume, container path, writable)
    gpu: tuple[str, ...] = ()  # ("--gpus", "all") or ("--device", "nvidia.com/gpu=all")
    read_only: bool = True
    allow_root: bool = False

    def args(self) -> list[str]:
        """The ``docker run`` options, every one of them checked."""
        if is_root(self.user) and not self.allow_root:
            raise Refused(f"user {self.user!r} is root; containers run non-root unless root is asked for")
        out = ["--network", "none", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "--label", LABEL, "--user", _user(self.user)]
        if self.read_only:
            out.append("--read-only")
        if self.entrypoint is not None:
            out += ["--entrypoint", self.entrypoint]
        if self.workdir:
            out += ["--workdir", self.workdir]
        for key, value in self.envs.items():
            if not key.isidentifier():
                raise Refused(f"environment name {key!r}")
            out += ["--env", f"{key}={value}"]
        for spec in self.tmpfs:
            path, _, opts = spec.partition(":")
            _plain(path, "tmpfs path")
            if any(c in opts for c in "\n\r\0"):
                raise Refused(f"tmpfs options {opts!r}")
            out += ["--tmpfs", spec]
        for host, inside in self.read_only_binds:
            out += ["--volume", f"{check_host_path(host)}:{_plain(inside, 'container path')}:ro"]
        for volume, inside, writable in self.volumes:
            out += ["--volume", f"{_plain(volume, 'volume')}:{_plain(inside, 'container path')}:{'rw' if writable else 'ro'}"]
        if self.gpu and self.gpu[0] not in ("--gpus", "--device"):
            raise Refused(f"GPU option {self.gpu[0]!r}")
        return [*out, *self.gpu]


# --------------------------------------------------------------------------- the commands


def start(image: str, argv: Sequence[str], sandbox: Sandbox, name: str) -> None:
    """``docker run -d`` of ``image`` with ``argv``, confined by ``sandbox``; a DockerException
    (docker's own reason) when it cannot start."""
    _plain(name, "container name")
    run(command("run", "--detach", "--name", name, *sandbox.args(), "--", image, *argv))


def wait(name: str, timeout: float) -> int:
    """The container's exit code, or DockerTimeout when it still runs after ``timeout`` s."""
    out = run(command("wait", name), timeout=max(timeout, 0.1))
    try:
        return int(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 125


def state(name: str) -> tuple[bool, int | None]:
    """(running, exit code once it has ended)."""
    out = run(command("inspect", "--format", "{{.State.Running}}|{{.State.ExitCode}}", name))
    running, _, code = out.strip().partition("|")
    return running == "true", (None if running == "true" else int(code) if code.lstrip("-").isdigit() else None)


def kill(name: str) -> None:
    try:
        run(command("kill", name), timeout=30)
    except (DockerException, DockerTimeout):
        pass


def remove(name: str) -> None:
    """Remove the container (and its anonymous volumes), also one that an interrupted
    ``docker run`` was still creating; never fails."""
    for _ in range(3):
        try:
            run(command("rm", "--force", "--volumes", name), timeout=60)
        except (DockerException, DockerTimeout):
            pass
        try:
            run(command("container", "inspect", "--format", "{{.Id}}", name), timeout=30)
        except DockerException:
            return  # gone
        except DockerTimeout:
            return
        time.sleep(0.5)


def volume_create(name: str) -> None:
    """A fresh named volume: the one way two containers exchange files."""
    run(command("volume", "create", "--label", LABEL, _plain(name, "volume")))


def volume_remove(name: str) -> None:
    try:
        run(command("volume", "rm", "--force", name), timeout=60)
    except (DockerException, DockerTimeout):
        pass


# --------------------------------------------------------------------------- bounded output


@dataclass(frozen=True)
class Captured:
    """A command's stdout on disk (at most ``cap`` bytes), its stderr's tail, its exit code."""

    path: Path
    size: int
    cut: bool  # more came than the cap: the command was stopped there
    code: int
    stderr: str


def capture(argv: Sequence[str], out: Path, *, timeout: float, cap: int = OUTPUT_CAP,
            stdin: bytes | None = None, merged: bool = False) -> Captured:
    """Run ``argv`` with its stdout streamed to ``out`` (a new file; at most ``cap`` bytes, then the
    command is killed) and its stderr's last ``STDERR_CAP`` bytes kept, within ``timeout`` s
    (then DockerTimeout). ``merged``: stderr goes to the file too. Memory stays at a 1 MiB
    buffer whatever the command prints."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merged else subprocess.PIPE)
    err = bytearray()
    size = 0
    cut = False

    def drain_stderr() -> None:
        if proc.stderr is None:
            return
        while chunk := proc.stderr.read(65536):
            err.extend(chunk)
            del err[:-STDERR_CAP]

    def feed() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin or b"")
            proc.stdin.close()
        except OSError:
            pass

    helpers = [threading.Thread(target=drain_stderr, daemon=True)]
    if stdin is not None:
        helpers.append(threading.Thread(target=feed, daemon=True))
    for t in helpers:
        t.start()
    expired = threading.Event()

    def on_deadline() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(max(timeout, 0.1), on_deadline)
    timer.start()
    try:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(1 << 20):  # type: ignore[attr-defined]
            keep = chunk[:max(0, cap - size)]
            os.write(fd, keep)
            size += len(keep)
            if len(keep) < len(chunk):
                cut = True
                proc.kill()
                break
        code = proc.wait()
    finally:
        timer.cancel()
        os.close(fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for t in helpers:
            t.join(5)
    if expired.is_set() and not cut:
        raise DockerTimeout(list(argv), timeout)
    return Captured(out, size, cut, code, bytes(err).decode(errors="replace"))


def logs(name: str, folder: Path, *, timeout: float | None = None, cap: int = OUTPUT_CAP,
         merged: bool = False) -> Captured:
    """The container's stdout (and its stderr, ``merged``) into ``folder/NAME.log`` (capped)."""
    limit = docker_timeout() if timeout is None else timeout
    return capture(command("logs", name), folder / f"{name}.log", timeout=limit, cap=cap, merged=merged)


def read_head(path: Path, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes from the start of a file this process wrote, and whether there was more."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    return data[:limit], len(data) > limit


def read_tail(path: Path, limit: int) -> str:
    """The last ``limit`` bytes of a file this process wrote, as text."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - limit))
        return f.read().decode(errors="replace")


def exec_capture(name: str, argv: Sequence[str], out: Path, *, timeout: float, cap: int,
                 stdin: bytes | None = None) -> Captured:
    """``docker exec`` in the running container (as its own user, with its own confinement)."""
    return capture(command("exec", *(["--interactive"] if stdin is not None else []), name, *argv), out,
                   timeout=timeout, cap=cap, stdin=stdin)


def image_user(image: str) -> str | None:
    """The image's ``USER`` (``""`` when unset), or None when the engine has no such image."""
    try:
        out = run(command("image", "inspect", "--format", "{{json .Config.User}}", image))
    except DockerException as exc:
        if "no such image" in str(exc.stderr or b"").lower():
            return None
        raise
    try:
        user = json.loads(out.strip() or '""')
    except ValueError:
        return ""
    return user if isinstance(user, str) else ""


LABELS_CAP = 1024 * 1024  # bytes of an image's labels read (a hostile image can carry megabytes)


def image_labels(image: str) -> dict[str, str]:
    """The image's labels (strings only); DockerException when it cannot be inspected."""
    done = complete(command("image", "inspect", "--format", "{{json .Config.Labels}}", image))
    if done.code:
        raise DockerException(command("image", "inspect", image), done.code, done.stdout, done.stderr)
    if len(done.stdout) > LABELS_CAP:
        raise DockerException(command("image", "inspect", image), 1, b"",
                              f"the image's labels are over {LABELS_CAP // 1024} KiB".encode())
    try:
        labels = json.loads(done.stdout or b"null")
    except ValueError:
        return {}
    return {k: v for k, v in labels.items() if isinstance(v, str)} if isinstance(labels, dict) else {}


def exists(name: str) -> bool:
    try:
        run(command("container", "inspect", "--format", "{{.Id}}", name), timeout=30)
        return True
    except DockerException:
        return False


__all__ = ["LABEL", "OUTPUT_CAP", "Captured", "DockerTimeout", "Refused", "Sandbox", "capture", "check_host_path",
           "exec_capture", "exists", "image_labels", "image_user", "is_root", "kill", "logs", "read_head", "read_tail", "remove", "start", "state",
           "volume_create", "volume_remove", "wait"]
