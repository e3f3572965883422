"""The one Docker client of the package (bake, checks, validate, smoke), and a failed docker
command as one line.

Every docker command line comes from :func:`command`: python-on-whales' own ``docker_cmd``
(its one ``DockerClient``, made on first use; importing a module never touches docker). It
runs here, and only here, in one of two ways, because python-on-whales' runners have neither
a time limit nor a handle on the child:

* :func:`complete` / :func:`run`: a short command (inspect, info, version, ``bake --print``,
  ``--call check``, ``run -d``, ``wait``, ``logs``) under the one timeout rule: the caller's
  limit, else ``$COMFYIMG_DOCKER_TIMEOUT`` (default 300 s); past it, the command is killed and
  :class:`DockerTimeout` says so in one line;
* :func:`stream`: a build, line by line, stopped with its caller (SIGTERM, then SIGKILL).

How containers are confined is :mod:`comfyimg.engine.containers`; :func:`error_line` is the
one way a ``DockerException`` becomes a message.
"""

from __future__ import annotations

import queue
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import IO, Any

from python_on_whales import ClientNotFoundError, DockerClient

from python_on_whales.exceptions import DockerException

from comfyimg.errors import WorkFailed, seconds_from_env

NO_DOCKER_CLI = "the docker CLI was not found on PATH; install it (tools/engine/install.sh on Debian)"
__all__ = ["NO_DOCKER_CLI", "ClientNotFoundError", "NoDockerCLI", "DockerException", "DockerTimeout", "client", "command",
           "Completed", "complete", "error_line", "run", "stream", "text", "versions"]


class NoDockerCLI(WorkFailed):
    """No docker executable on PATH."""


class DockerTimeout(WorkFailed):
    """A docker command ran past its limit (and was killed): one line naming it and the setting."""

    def __init__(self, args: list[str], limit: float) -> None:
        shown = shlex.join(str(a) for a in args[:4]) + (" …" if len(args) > 4 else "")
        super().__init__(f"`{shown}` did not finish within {limit:g} s ({TIMEOUT_ENV}); "
                         "is the Docker engine answering?")
        self.limit = limit


@cache
def client() -> DockerClient:
    return DockerClient()


def command(*args: str) -> list[str]:
    """``docker ARGS…`` as python-on-whales would run it; no docker CLI is a clear failure."""
    try:
        # docker_cmd itself raises ClientNotFoundError when no docker is on PATH.
        return [str(a) for a in (*client().docker_cmd, *args)]  # its first word is a Path
    except (ClientNotFoundError, FileNotFoundError, OSError):
        raise NoDockerCLI(NO_DOCKER_CLI) from None


TIMEOUT_ENV = "COMFYIMG_DOCKER_TIMEOUT"


def docker_timeout() -> float:
    """Seconds one docker command run by :func:`run` (inspect, info, version, ``bake --print``,
    ``--call check``) may take: ``$COMFYIMG_DOCKER_TIMEOUT``, 1 to 3600, default 300."""
    return seconds_from_env(TIMEOUT_ENV, 300)


@dataclass(frozen=True)
class Completed:
    """A docker command that ended: its exit code and output (bytes)."""

    code: int
    stdout: bytes
    stderr: bytes


def complete(args: Sequence[Any], *, env: Mapping[str, str] | None = None, timeout: float | None = None) -> Completed:
    """Run ``docker ARGS…`` (from :func:`command`) within ``timeout`` seconds (default
    :func:`docker_timeout`), whatever its exit code; past the limit it is killed and
    :class:`DockerTimeout` says so in one line. ``env``: the whole environment of the command
    (None: this process's). The one place a short docker command runs: python-on-whales'
    runner has no timeout, hence this one."""
    limit = docker_timeout() if timeout is None else timeout
    argv = [str(a) for a in args]  # file paths among them, as python-on-whales accepts
    try:
        proc = subprocess.run(argv, capture_output=True, env=dict(env) if env is not None else None, timeout=limit,
                              check=False)
    except subprocess.TimeoutExpired:
        raise DockerTimeout(argv, limit) from None
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def run(args: Sequence[Any], *, env: Mapping[str, str] | None = None, timeout: float | None = None) -> str:
    """:func:`complete`, for a command that must succeed: its stdout without the last newline,
    as python-on-whales returns it, or a ``DockerException``."""
    done = complete(args, env=env, timeout=timeout)
    if done.code:
        raise DockerException([str(a) for a in args], done.code, done.stdout, done.stderr)
    out = done.stdout.decode(errors="replace")
    return out[:-1] if out.endswith("\n") else out


STOP_GRACE = 10.0  # seconds a streamed command has to end after SIGTERM before it is killed


def stream(args: Sequence[Any], *, env: Mapping[str, str] | None = None,
           stopped: Callable[[int], None] | None = None) -> Iterator[tuple[str, bytes]]:
    """Run ``docker ARGS…`` (a build: no time limit of its own), yielding (``"stdout"``/``"stderr"``,
    line) as they come; a ``DockerException`` at the end when it failed. However the caller
    stops reading (Ctrl-C, SIGTERM, an error), the child is stopped too: SIGTERM, then SIGKILL
    after STOP_GRACE s; ``stopped(pid)`` is told when that happened."""
    argv = [str(a) for a in args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(env) if env is not None else None)
    lines: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
    stderr_tail = bytearray()

    def reader(pipe: IO[bytes], name: str) -> None:
        try:
            for line in iter(pipe.readline, b""):
                lines.put((name, line))
        finally:
            lines.put(None)

    for pipe, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
        threading.Thread(target=reader, args=(pipe, name), daemon=True).start()
    try:
        ended = 0
        while ended < 2:
            item = lines.get()
            if item is None:
                ended += 1
                continue
            if item[0] == "stderr":
                stderr_tail.extend(item[1])
                del stderr_tail[:-65536]
            yield item
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if stopped is not None:
                stopped(proc.pid)
    if code != 0:
        raise DockerException(argv, code, b"", bytes(stderr_tail))


def text(data: Any) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data or "")


def error_line(output: DockerException | Any) -> str:
    """The line that says what went wrong: the last error line of docker's output, else its
    last line."""
    stderr = output.stderr if isinstance(output, DockerException) else output
    lines = [ln.strip() for ln in text(stderr).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("ERROR:", "error:", "Error")) or "ERROR" in ln:
            return ln
    return lines[-1] if lines else "no output"


@cache
def versions() -> tuple[str, str | None, str]:
    """(client version, engine version or None, why the engine did not answer): one
    ``docker version`` call per process."""
    cmd = command("version", "--format", "{{.Client.Version}}|{{.Server.Version}}")
    try:
        client_version, _, server = run(cmd).strip().partition("|")
        return client_version, server, ""
    except DockerException as exc:
        client_version = text(exc.stdout).strip().partition("|")[0] or "unknown"
        return client_version, None, error_line(exc)
