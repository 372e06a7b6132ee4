"""The one way envbuild talks to the Docker engine's API: a docker SDK client.

The client is configured the way ``docker.from_env`` reads the environment (``DOCKER_HOST`` as
``unix://``, ``tcp://``, ``ssh://`` or ``npipe://``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``), or
for an explicit engine address (a builder context's). BuildKit's own gRPC transport is `llb`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from envbuild.errors import EngineUnreachable

if TYPE_CHECKING:
    import docker

TIMEOUT = 60
"""Seconds one API call may take; pushes and saves of large images pass longer ones."""
ANSWER_TIMEOUT = 3
"""Seconds the engine has to answer its first request (the API version): an engine that accepts
connections and never answers fails a command as quickly as a missing one, not after `TIMEOUT`."""

_silent: set[str] = set()
"""Engines (by address) that did not answer in this process: later lookups do not wait again."""

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
    beyond the SDK's API version negotiation, which must be answered within `ANSWER_TIMEOUT`;
    EngineUnreachable otherwise, at once for an engine that was silent before)."""
    import docker
    from requests import Timeout

    env = dict(os.environ if environ is None else environ)
    address = docker_host or env.get("DOCKER_HOST") or "the local socket"
    if address in _silent:
        raise EngineUnreachable(f"the Docker engine at {address} did not answer within {ANSWER_TIMEOUT}s; {START_HINT}")
    try:
        if docker_host:
            engine = docker.DockerClient(base_url=docker_host, timeout=ANSWER_TIMEOUT)
        else:
            engine = docker.from_env(timeout=ANSWER_TIMEOUT, environment=env)
    except docker.errors.DockerException as exc:
        if not isinstance(exc.__context__, Timeout):
            raise
        _silent.add(address)
        raise EngineUnreachable(
            f"the Docker engine at {address} did not answer within {ANSWER_TIMEOUT}s; {START_HINT}"
        ) from None
    engine.api.timeout = timeout  # the first answer came quickly: later requests get the full time
    return engine


def connect(docker_host: str | None = None, *, timeout: int = TIMEOUT) -> docker.DockerClient:
    """A client for a reachable engine, or EngineUnreachable saying how to start or reach one."""
    from docker.errors import DockerException
    from requests import RequestException

    try:
        engine = client(docker_host, timeout=timeout)
        engine.ping()
    except EngineUnreachable:
        raise
    except (DockerException, RequestException, OSError) as exc:
        hint = ACCESS_HINT if "Permission denied" in str(exc) else START_HINT
        where = f" at {docker_host}" if docker_host else ""
        raise EngineUnreachable(f"cannot reach the Docker engine{where} ({first_line(exc)}); {hint}") from None
    return engine


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__
