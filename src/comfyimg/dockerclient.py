"""The Docker client, made in one place, and a failed docker command as one line.

Every docker call of the package goes through python-on-whales: :func:`client` is its one
``DockerClient``, made on first use (importing a module never touches docker), and
:func:`error_line` is the one way a ``DockerException`` becomes a message.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from python_on_whales import DockerClient
from python_on_whales.client_config import ClientNotFoundError
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run

from .errors import WorkFailed

NO_DOCKER_CLI = "the docker CLI was not found on PATH; install it (tools/engine/install.sh on Debian)"
__all__ = ["NO_DOCKER_CLI", "ClientNotFoundError", "NoDockerCLI", "DockerException", "client", "command",
           "error_line", "text", "versions"]


class NoDockerCLI(WorkFailed):
    """No docker executable on PATH."""


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
