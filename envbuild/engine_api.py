"""The one way envbuild talks to the Docker engine's API: a docker SDK client.

The client is configured the way ``docker.from_env`` reads the environment (``DOCKER_HOST`` as
``unix://``, ``tcp://``, ``ssh://`` or ``npipe://``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``), or
for an explicit engine address (a builder context's). BuildKit's own gRPC transport is `llb`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from envbuild.errors import EngineUnreachable

if TYPE_CHECKING:
    import docker

TIMEOUT = 60
"""Seconds one API call may take; pushes and saves of large images pass longer ones."""

START_HINT = (
    "start it with `sudo systemctl start docker` (or `sudo dockerd &`), or point DOCKER_HOST at a running engine"
)
ACCESS_HINT = (
    "your user may not open the engine's socket: add it to the docker group "
    "(`sudo usermod -aG docker $USER`, then log in again) or run as root"
)


def client(
    docker_host: str | None = None, *, timeout: int = TIMEOUT, environ: Mapping[str, str] | None = None
) -> docker.DockerClient:
    """A client for ``docker_host``, else for the engine the environment names (no request made
    beyond the SDK's API version negotiation)."""
    import docker

    if docker_host:
        return docker.DockerClient(base_url=docker_host, timeout=timeout)
    return docker.from_env(timeout=timeout, environment=dict(environ) if environ is not None else None)


def connect(docker_host: str | None = None, *, timeout: int = TIMEOUT) -> docker.DockerClient:
    """A client for a reachable engine, or EngineUnreachable saying how to start or reach one."""
    from docker.errors import DockerException
    from requests import RequestException

    try:
        engine = client(docker_host, timeout=timeout)
        engine.ping()
    except (DockerException, RequestException, OSError) as exc:
        hint = ACCESS_HINT if "Permission denied" in str(exc) else START_HINT
        where = f" at {docker_host}" if docker_host else ""
        raise EngineUnreachable(f"cannot reach the Docker engine{where} ({first_line(exc)}); {hint}") from None
    return engine


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
