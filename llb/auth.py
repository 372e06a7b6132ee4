"""Registry credentials from the user's Docker config, served to the builder
through the session's `Auth.Credentials` (what `docker login` stored)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Credentials", "DockerConfigAuth", "docker_config_path"]

_DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.docker.io"}


@dataclass(frozen=True, slots=True)
class Credentials:
    """`username` is empty when `secret` is an identity token."""

    username: str = ""
    secret: str = ""


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _hostname(key: str) -> str:
    """Registry key in config.json -> bare host[:port] (Docker's ConvertToHostname)."""
    for prefix in ("http://", "https://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    return key.split("/", 1)[0]


class DockerConfigAuth:
    """Looks credentials up like the Docker CLI: credHelpers, then credsStore, then `auths`."""

    def __init__(self, config_path: Path | None = None, helper_timeout: float = 10.0) -> None:
        self.path = config_path or docker_config_path()
        self.helper_timeout = helper_timeout
        self._config: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._config is None:
            try:
                self._config = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._config = {}
        return self._config

    def _helper(self, helper: str, server: str) -> Credentials | None:
        try:
            proc = subprocess.run(
                [f"docker-credential-{helper}", "get"],
                input=server.encode(),
                capture_output=True,
                timeout=self.helper_timeout,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if proc.returncode != 0:
            return None
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            return None
        user, secret = data.get("Username", ""), data.get("Secret", "")
        if user == "<token>":
            user = ""
        return Credentials(user, secret)

    def lookup(self, host: str) -> Credentials:
        cfg = self._load()
        is_hub = host in _DOCKER_HUB_HOSTS
        server = _DOCKER_HUB_KEY if is_hub else host
        helpers = cfg.get("credHelpers") or {}
        for key in (host, server):
            if key in helpers:
                found = self._helper(helpers[key], server)
                if found is not None:
                    return found
        auths = cfg.get("auths") or {}
        entry = None
        for key, value in auths.items():
            if key == server or _hostname(key) == host or (is_hub and _hostname(key) in _DOCKER_HUB_HOSTS):
                entry = value
                break
        if cfg.get("credsStore"):
            found = self._helper(cfg["credsStore"], server)
            if found is not None and (found.username or found.secret):
                return found
        if not entry:
            return Credentials()
        if entry.get("identitytoken"):
            return Credentials("", entry["identitytoken"])
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(entry["auth"]).decode()
            except (ValueError, UnicodeDecodeError):
                return Credentials()
            user, _, password = decoded.partition(":")
            return Credentials(user, password)
        return Credentials(entry.get("username", ""), entry.get("password", ""))
