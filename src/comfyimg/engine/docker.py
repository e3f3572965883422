"""The Docker client, made in one place, and a failed docker command as one line.

Every docker call of the package goes through python-on-whales: :func:`client` is its one
``DockerClient``, made on first use (importing a module never touches docker), and
:func:`error_line` is the one way a ``DockerException`` becomes a message.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterable
from functools import cache
from typing import Any

from python_on_whales import ClientNotFoundError, DockerClient

# python-on-whales has no public call for a docker command it does not wrap (`buildx bake
# --allow`, `--call check`): its own streaming runner is used for the build, here only, and
# tests/unit/test_dependencies.py fails naming the python-on-whales version if it changes.
from python_on_whales import utils as whales_utils
from python_on_whales.exceptions import DockerException

from comfyimg.errors import WorkFailed, seconds_from_env

NO_DOCKER_CLI = "the docker CLI was not found on PATH; install it (tools/engine/install.sh on Debian)"
__all__ = ["NO_DOCKER_CLI", "ClientNotFoundError", "NoDockerCLI", "DockerException", "DockerTimeout", "client", "command",
           "error_line", "run", "stream_stdout_and_stderr", "text", "versions"]


class NoDockerCLI(WorkFailed):
    """No docker executable on PATH."""


class DockerTimeout(WorkFailed):
    """A docker command ran past its limit (and was killed): one line naming it and the setting."""

    def __init__(self, args: list[str], limit: float) -> None:
        shown = shlex.join(args[:4]) + (" …" if len(args) > 4 else "")
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
        return [*client().docker_cmd, *args]
    except (ClientNotFoundError, FileNotFoundError, OSError):
        raise NoDockerCLI(NO_DOCKER_CLI) from None


TIMEOUT_ENV = "COMFYIMG_DOCKER_TIMEOUT"


def docker_timeout() -> float:
    """Seconds one docker command run by :func:`run` (inspect, info, version, ``bake --print``,
    ``--call check``) may take: ``$COMFYIMG_DOCKER_TIMEOUT``, 1 to 3600, default 300."""
    return seconds_from_env(TIMEOUT_ENV, 300)


def run(args: list[Any], *, env: dict[str, str] | None = None, timeout: float | None = None) -> str:
    """Run ``docker ARGS…`` (from :func:`command`, python-on-whales' own command line) within
    ``timeout`` seconds (default :func:`docker_timeout`): its stdout without the last newline,
    as python-on-whales returns it, or a ``DockerException``; past the limit, one line (exit 1)
    naming the command and the setting. python-on-whales' runner has no timeout, hence this one."""
    limit = docker_timeout() if timeout is None else timeout
    args = [str(a) for a in args]  # file paths among them, as python-on-whales accepts
    try:
        proc = subprocess.run(args, capture_output=True, env={**os.environ, **(env or {})}, timeout=limit,
                              check=False)
    except subprocess.TimeoutExpired:
        raise DockerTimeout(args, limit) from None
    if proc.returncode:
        raise DockerException(args, proc.returncode, proc.stdout, proc.stderr)
    out = proc.stdout.decode(errors="replace")
    return out[:-1] if out.endswith("\n") else out


def stream_stdout_and_stderr(args: list[str], *, env: dict[str, str] | None = None) -> Iterable[tuple[str, bytes]]:
    """Run ``docker ARGS…``, yielding (``"stdout"``/``"stderr"``, line) as they come; a
    ``DockerException`` at the end when it failed."""
    return whales_utils.stream_stdout_and_stderr(args, env=env)  # type: ignore[arg-type]


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
