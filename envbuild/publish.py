"""What envbuild does itself after a build when the builder cannot: push and save engine images.

The Docker engine's embedded BuildKit (20.10) only writes into the engine's image store, so
``--output type=image,push=true`` is a ``moby`` export followed by a push through the engine API
(credentials from ``~/.docker/config.json`` and its credential helpers, via the docker SDK), and
``--output type=docker,dest=FILE`` is a ``moby`` export followed by the engine's ``docker save``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.errors import EngineUnreachable, EnvbuildError
from envbuild.outputs import BuildPlan, PlannedSolve, PostAction, PushImage, SaveImage

if TYPE_CHECKING:
    import docker

__all__ = [
    "PublishError",
    "PushResult",
    "engine_client",
    "push_images",
    "save_images",
    "run_post_actions",
    "StepOutcome",
    "execute_plan",
]

MessageFn = Callable[[str], None]


class PublishError(EnvbuildError):
    """Pushing or saving a built image failed after a successful build."""


@dataclass(frozen=True)
class PushResult:
    name: str
    digest: str


def engine_client(docker_host: str | None = None, *, timeout: int = 300) -> "docker.DockerClient":
    """A docker SDK client for `docker_host` (None: ``$DOCKER_HOST`` or the local socket)."""
    import docker
    from docker.errors import DockerException

    try:
        if docker_host:
            client = docker.DockerClient(base_url=docker_host, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except (DockerException, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EngineUnreachable(
            f"cannot reach the Docker engine at {docker_host or os.environ.get('DOCKER_HOST') or 'the local socket'}"
            f" ({first}); start it (`sudo systemctl start docker`) or set DOCKER_HOST"
        ) from None
    return client


def _registry_of(name: str) -> str:
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _push_hint(name: str, message: str) -> str:
    low = message.lower()
    registry = _registry_of(name)
    if any(s in low for s in ("unauthorized", "authentication required", "denied", "401", "403")):
        return f"log in first: `docker login {registry}` (envbuild uses the credentials in ~/.docker/config.json)"
    if "server gave http response to https client" in low:
        return (
            f"{registry} speaks plain HTTP: add it to \"insecure-registries\" in /etc/docker/daemon.json "
            "and restart the engine"
        )
    if any(s in low for s in ("connection refused", "no such host", "i/o timeout", "dial tcp")):
        return f"the registry {registry} is not reachable from the Docker engine"
    return ""


def _split_tag(name: str) -> tuple[str, str]:
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:]
    return name, "latest"


def push_images(
    names: Sequence[str],
    *,
    client: "docker.DockerClient | None" = None,
    on_message: MessageFn | None = None,
) -> list[PushResult]:
    """Push engine-store images by name; returns the manifest digest the registry reported."""
    from docker.errors import APIError

    client = client or engine_client()
    results: list[PushResult] = []
    for name in names:
        repo, tag = _split_tag(name)
        if on_message:
            on_message(f"pushing {name}")
        digest = ""
        try:
            for event in client.api.push(repo, tag=tag, stream=True, decode=True):
                error = event.get("error") or (event.get("errorDetail") or {}).get("message")
                if error:
                    hint = _push_hint(name, error)
                    raise PublishError(f"pushing {name} failed: {error}" + (f"; {hint}" if hint else ""))
                aux = event.get("aux") or {}
                if aux.get("Digest"):
                    digest = aux["Digest"]
                status = event.get("status")
                if on_message and status and not event.get("progressDetail"):
                    on_message(f"{event.get('id', '')}: {status}".lstrip(": "))
        except APIError as exc:
            detail = exc.explanation or str(exc)
            if exc.status_code == 404:
                raise PublishError(f"pushing {name} failed: no such image in the engine ({detail})") from None
            hint = _push_hint(name, str(detail))
            raise PublishError(f"pushing {name} failed: {detail}" + (f"; {hint}" if hint else "")) from None
        if not digest:
            raise PublishError(f"pushing {name} ended without a digest from the registry")
        results.append(PushResult(name, digest))
    return results


def save_images(
    names: Sequence[str],
    dest: str | os.PathLike[str],
    *,
    client: "docker.DockerClient | None" = None,
) -> Path:
    """Write engine images as one `docker load` tarball (with their tags), atomically."""
    from docker.errors import APIError

    if not names:
        raise ValueError("save_images needs at least one image name")
    client = client or engine_client()
    api = client.api
    target = Path(dest).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            try:
                res = api._get(api._url("/images/get"), params={"names": list(names)}, stream=True)
                api._raise_for_status(res)
                for chunk in res.iter_content(chunk_size=1 << 20):
                    fh.write(chunk)
            except APIError as exc:
                raise PublishError(f"saving {', '.join(names)} to {target} failed: {exc.explanation or exc}") from None
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def run_post_actions(
    actions: Sequence[PostAction],
    *,
    client: "docker.DockerClient | None" = None,
    docker_host: str | None = None,
    on_message: MessageFn | None = None,
) -> dict[str, Any]:
    """Carry out a PlannedSolve's ``post`` steps; returns ``{"pushed": [...], "saved": [...]}``."""
    summary: dict[str, Any] = {"pushed": [], "saved": []}
    if not actions:
        return summary
    client = client or engine_client(docker_host)
    for action in actions:
        if isinstance(action, PushImage):
            summary["pushed"].extend(push_images(action.names, client=client, on_message=on_message))
        elif isinstance(action, SaveImage):
            if on_message:
                on_message(f"saving {', '.join(action.names)} to {action.dest}")
            summary["saved"].append(save_images(action.names, action.dest, client=client))
        else:
            raise TypeError(f"unknown post action {action!r}")
    return summary


@dataclass(frozen=True)
class StepOutcome:
    step: PlannedSolve
    result: Any
    pushed: tuple[PushResult, ...]
    saved: tuple[Path, ...]


def execute_plan(
    plan: BuildPlan,
    solve: Callable[[PlannedSolve], Any],
    *,
    client: "docker.DockerClient | None" = None,
    docker_host: str | None = None,
    on_message: MessageFn | None = None,
) -> list[StepOutcome]:
    """Run every planned solve through `solve(step)` (the caller's ``llb.Client.solve`` call with
    ``export=step.export``, ``cache_imports``/``cache_exports`` and, when ``step.is_image``, the image
    config), then the step's push/save actions on the engine."""
    if on_message:
        for warning in plan.warnings:
            on_message(f"warning: {warning}")
    outcomes: list[StepOutcome] = []
    for step in plan.solves:
        result = solve(step)
        if step.post and client is None:
            client = engine_client(docker_host)
        summary = run_post_actions(step.post, client=client, on_message=on_message)
        outcomes.append(StepOutcome(step, result, tuple(summary["pushed"]), tuple(summary["saved"])))
    return outcomes
