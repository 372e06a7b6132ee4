"""Base image configs and existing images, from the engine's own store first.

The engine is asked with one raw HTTP request over its unix socket (no docker SDK import, ~1 ms),
which keeps `envbuild build`'s "up to date" path and offline `debug llb` fast. Images the engine does
not have are resolved through the builder (`Client.resolve_image_config`), i.e. from the registry.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from envbuild.compiler.options import UNRESOLVED, BaseConfig

if TYPE_CHECKING:
    import llb

API_VERSION = "v1.41"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def engine_socket(environ: Mapping[str, str] | None = None) -> str | None:
    """The engine's unix socket path, or None when DOCKER_HOST names something else."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return None


def inspect_image(ref: str, *, timeout: float = 2.0) -> dict[str, Any] | None:
    """``docker image inspect`` over the socket: the JSON, or None if absent or no engine answers."""
    path = engine_socket()
    if path is None or not os.path.exists(path):
        return None
    conn = _UnixConnection(path, timeout)
    try:
        conn.request("GET", f"/{API_VERSION}/images/{urllib.parse.quote(ref, safe='')}/json")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        return json.loads(body)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def image_labels(ref: str) -> dict[str, str] | None:
    data = inspect_image(ref)
    if data is None:
        return None
    return dict((data.get("Config") or {}).get("Labels") or {})


def _engine_names(ref: str) -> list[str]:
    """The engine knows ``local/debian:bookworm`` and ``docker.io/local/debian:bookworm`` alike,
    but a bare name means ``:latest``."""
    last = ref.rsplit("/", 1)[-1]
    return [ref if (":" in last or "@" in last) else f"{ref}:latest"]


def resolve_local(ref: str) -> BaseConfig | None:
    for name in _engine_names(ref):
        data = inspect_image(name)
        if data is not None:
            return BaseConfig.from_docker(data.get("Config"), digest=str(data.get("Id") or ""))
    return None


def resolve(ref: str, client: llb.Client | None = None, *, platform: llb.Platform | None = None) -> BaseConfig:
    """Engine store first, then the builder (registry); UNRESOLVED when neither can answer."""
    found = resolve_local(ref)
    if found is not None:
        return found
    if client is None:
        return UNRESOLVED
    try:
        digest, config = client.resolve_image_config(ref, platform=platform)
    except Exception:  # noqa: BLE001 - any failure means "not resolvable"; the solve reports the real error
        return UNRESOLVED
    return BaseConfig.from_docker(config.get("config"), digest=digest)
