"""Base image configs and existing images, from the engine's own store first.

The engine is asked through the docker SDK (`envbuild.engine_api`); images it does not have are
resolved through the builder (`llb.Client.resolve_image_config`), i.e. from the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envbuild import engine_api

if TYPE_CHECKING:
    from collections.abc import Mapping

    import llb
    from envbuild.compiler.options import BaseConfig

QUERY_TIMEOUT = 10
"""Seconds an image lookup may take: a lookup that gets no answer counts as "not in the store"."""


def inspect_image(ref: str) -> dict[str, Any] | None:
    """``docker image inspect``: the engine's answer, or None if it has no such image or no engine answers."""
    from docker.errors import DockerException
    from requests import RequestException

    try:
        engine = engine_api.client(timeout=QUERY_TIMEOUT)
    except (DockerException, RequestException, OSError):
        return None
    try:
        answer = engine.api.inspect_image(ref)
    except (DockerException, RequestException, OSError, ValueError, KeyError):  # the SDK on odd answers
        return None
    finally:
        engine.close()
    return answer if isinstance(answer, dict) else None


def image_labels(ref: str) -> dict[str, str] | None:
    data = inspect_image(ref)
    if data is None:
        return None
    return dict((data.get("Config") or {}).get("Labels") or {})


def engine_name(ref: str) -> str:
    """The engine knows ``local/debian:bookworm`` and ``docker.io/local/debian:bookworm`` alike,
    but a bare name means ``:latest``."""
    last = ref.rsplit("/", 1)[-1]
    return ref if (":" in last or "@" in last) else f"{ref}:latest"


def base_config(data: Mapping[str, Any]) -> BaseConfig:
    """The compiler's view of an ``image inspect`` answer."""
    from envbuild.compiler.options import BaseConfig

    return BaseConfig.from_docker(data.get("Config"), digest=str(data.get("Id") or ""))


def resolve_local(ref: str) -> BaseConfig | None:
    data = inspect_image(engine_name(ref))
    return base_config(data) if data is not None else None


def resolve(
    ref: str, client: llb.Client | None = None, *, platform: llb.Platform | None = None, local: bool = True
) -> BaseConfig:
    """Engine store first (``local=False``: the caller asked it already), then the builder (registry);
    UNRESOLVED when neither can answer."""
    from envbuild.compiler.options import UNRESOLVED, BaseConfig

    found = resolve_local(ref) if local else None
    if found is not None:
        return found
    if client is None:
        return UNRESOLVED
    try:
        digest, config = client.resolve_image_config(ref, platform=platform)
    except Exception:
        return UNRESOLVED
    return BaseConfig.from_docker(config.get("config"), digest=digest)
