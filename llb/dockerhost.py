"""Which Docker engine "the Docker engine" is: the docker CLI's own rules, so a user's
``DOCKER_HOST`` or ``docker context use`` points llb (and its callers) where it points ``docker``.

First match wins: ``$DOCKER_HOST``; the context ``$DOCKER_CONTEXT`` names; the ``currentContext`` of
the docker CLI's ``config.json`` (``$DOCKER_CONFIG``, else ``~/.docker``); the local socket. A context
is ``contexts/meta/<sha256 of its name>/meta.json`` under that directory, its TLS files (a ``tcp://``
engine's) ``contexts/tls/<same>/docker/{ca,cert,key}.pem``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import LLBError

__all__ = [
    "DEFAULT_HOST",
    "DockerContext",
    "DockerContextError",
    "DockerHost",
    "docker_config_dir",
    "list_contexts",
    "read_context",
    "resolve",
]

DEFAULT_HOST = "unix:///var/run/docker.sock"
DEFAULT_CONTEXT = "default"


class DockerContextError(LLBError):
    """A docker context that is named (by ``DOCKER_CONTEXT`` or ``config.json``) but unusable."""


@dataclass(frozen=True, slots=True)
class DockerContext:
    """One context of the docker CLI's store; ``tls_dir`` holds its TLS files, if it has any."""

    name: str
    host: str
    description: str = ""
    skip_tls_verify: bool = False
    tls_dir: str | None = None


@dataclass(frozen=True, slots=True)
class DockerHost:
    """The engine's address and where it came from (``DOCKER_HOST``, a context, or the default)."""

    url: str
    source: str
    context: DockerContext | None = None

    @property
    def is_ssh(self) -> bool:
        return self.url.startswith("ssh://")


def docker_config_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    configured = env.get("DOCKER_CONFIG", "").strip()
    return Path(configured) if configured else Path(os.path.expanduser("~")) / ".docker"


def _context_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _parse_meta(path: Path, tls_root: Path) -> DockerContext:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        name = data["Name"]
        endpoint = (data.get("Endpoints") or {}).get("docker") or {}
        host = endpoint.get("Host") or ""
        metadata = data.get("Metadata") or {}
        description = (metadata.get("Description") or "") if isinstance(metadata, dict) else ""
        if not isinstance(name, str) or not isinstance(host, str) or not isinstance(description, str):
            raise TypeError("Name, Host and Description must be strings")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DockerContextError(f"the docker context file {path} is unreadable ({exc})") from None
    tls_dir = tls_root / _context_id(name) / "docker"
    return DockerContext(
        name=name,
        host=host,
        description=description,
        skip_tls_verify=bool(endpoint.get("SkipTLSVerify")),
        tls_dir=str(tls_dir) if tls_dir.is_dir() else None,
    )


def read_context(name: str, environ: Mapping[str, str] | None = None) -> DockerContext:
    """The stored context ``name`` (not ``default``, which is not stored)."""
    root = docker_config_dir(environ) / "contexts"
    meta = root / "meta" / _context_id(name) / "meta.json"
    if not meta.is_file():
        raise DockerContextError(f"docker context {name!r} does not exist (no {meta}); see `docker context ls`")
    return _parse_meta(meta, root / "tls")


def list_contexts(environ: Mapping[str, str] | None = None) -> list[DockerContext]:
    """The stored contexts, by name; an unreadable one is left out (``read_context`` says why)."""
    root = docker_config_dir(environ) / "contexts"
    found: list[DockerContext] = []
    for meta in sorted((root / "meta").glob("*/meta.json")):
        try:
            found.append(_parse_meta(meta, root / "tls"))
        except DockerContextError:
            continue
    return sorted(found, key=lambda c: c.name)


def current_context_name(environ: Mapping[str, str] | None = None) -> str:
    """The context the docker CLI would use when ``DOCKER_HOST`` is not set."""
    env = os.environ if environ is None else environ
    named = env.get("DOCKER_CONTEXT", "").strip()
    if named:
        return named
    config = docker_config_dir(environ) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return DEFAULT_CONTEXT
    except (OSError, ValueError) as exc:
        raise DockerContextError(f"the docker CLI's {config} is unreadable ({exc})") from None
    current = data.get("currentContext") if isinstance(data, dict) else None
    return current if isinstance(current, str) and current else DEFAULT_CONTEXT


def resolve(environ: Mapping[str, str] | None = None) -> DockerHost:
    """The engine the docker CLI would talk to in this environment."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "").strip()
    if host:
        return DockerHost(host, "DOCKER_HOST")
    name = current_context_name(environ)
    if name == DEFAULT_CONTEXT:
        return DockerHost(DEFAULT_HOST, "default")
    context = read_context(name, environ)
    if not context.host:
        raise DockerContextError(f"docker context {name!r} has no Docker endpoint")
    return DockerHost(context.host, f"docker context {name!r}", context)
