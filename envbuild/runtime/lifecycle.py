"""Bring an environment up from an image: create, restart, re-attach or recreate, then wait.

Used by `envbuild up` (after the build) and `envbuild run --image`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from envbuild import ssh
from envbuild.errors import UsageError
from envbuild.runtime import engine
from envbuild.runtime.engine import Environment
from envbuild.runtime.options import (
    LABEL_DEV,
    LABEL_DIGEST,
    LABEL_NAME,
    LABEL_PROJECT_PATH,
    BindMount,
    RunOptions,
    connect_host,
    plan_container,
    project_volume,
    validate_name,
)

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from envbuild.runtime.remote import Remote
    from frontend.spec import Spec

Action = Literal["created", "recreated", "started", "attached"]


@dataclass(frozen=True, slots=True)
class UpResult:
    environment: Environment
    action: Action
    refused: tuple[str, ...] = ()
    """What the spec asked for and did not get (`options.ContainerPlan.refused`), for the user to read."""
    problems: tuple[str, ...] = ()
    """A ``runtime.init`` that failed or a service that does not stay up (`services.problems`)."""


@engine.answering()
def bring_up(
    client: docker.DockerClient,
    *,
    image: str,
    name: str,
    project: Path | None,
    options: RunOptions = RunOptions(),
    force: bool = False,
    timeout: float = 120.0,
    jupyter_token: str | None = None,
    spec: Spec | None = None,
    remote: Remote | None = None,
    command: tuple[str, ...] = (),
) -> UpResult:
    """Make environment ``name`` run ``image``; an existing one is reused unless forced or outdated.

    ``spec`` and ``jupyter_token`` come from the evaluated build file (`up`). Without a spec
    (`run --image`) the image's label is the spec: checked like a build file, and trusted with less
    (no host mounts; `options.plan_container`). The image never holds the token, so without one a
    random token is made. An environment running with another token than the build file's is
    recreated (the image may be unchanged). An environment of another project (or of none, when
    this one has a project) is never taken over. ``remote``: the engine is on another machine
    (`envbuild.runtime.remote`): the project comes from its synced volume or ``--remote-path``,
    readiness is probed through SSH, the SSH entry jumps there and Jupyter gets a local forward.
    A serving image (``base(dev=False)``) runs its own entrypoint (with ``command`` as its
    arguments) and is ready once it has stayed up for a moment."""
    validate_name(name)
    img = engine.get_image(client, image)
    labels = engine.image_labels(img)
    if not engine.is_envbuild_image(labels):
        raise UsageError(
            f"image {image!r} was not built by envbuild (no ai.envbuild.vendor label); build it from a build.envd"
        )
    serving = labels.get(LABEL_DEV) != "true"
    from_image = spec is None
    if from_image:
        spec = engine.image_spec(image, labels)
    project_mount = remote_project(client, name, project, options, remote) if remote is not None else None
    # Planned before anything is replaced: a refused label or a missing mount changes nothing.
    plan = plan_container(
        name=name,
        image=image,
        image_labels=labels,
        spec=spec,
        project=project,
        options=options,
        authorized_keys="" if serving else ssh.ensure_keypair().public_key(),
        token="" if serving else jupyter_token or secrets.token_urlsafe(24),
        from_image=from_image,
        remote=remote is not None,
        project_mount=project_mount,
        command=command,
    )
    existing = engine.find(client, name)
    action: Action = "created"
    if existing is not None:
        current = engine.environment_from(existing)
        if current.project_path != (str(project) if project is not None else None):
            owner = current.project_path or f"no project (started from image {current.image} by `envbuild run`)"
            raise UsageError(
                f"environment {name!r} already belongs to {owner}; "
                "pick another name with --name, or destroy it first"
            )
        token_changed = bool(jupyter_token) and current.jupyter_token != jupyter_token
        command_changed = serving and tuple((existing.attrs.get("Config") or {}).get("Cmd") or ()) != command
        if force or _outdated(current, img.id, labels) or token_changed or (command and command_changed):
            engine.remove(existing)
            ssh.forget_host_key(name)
            action = "recreated"
        else:
            if not current.running:
                engine.start(existing)
                action = "started"
            else:
                action = "attached"
            env, problems = _ready(existing, spec, timeout, remote, serving=serving)
            return UpResult(env, action, problems=problems)
    if plan.gpus is not None:
        engine.check_gpu_support(client, remote.url if remote is not None else None)
    ssh.forget_host_key(name)
    try:
        container = engine.create(client, plan)
    except engine.NameConflict:
        other = _the_winner(client, name)
        if other is None:
            raise
        env, problems = _ready(other, spec, timeout, remote, serving=serving)
        return UpResult(env, "attached", problems=problems)
    try:
        env, problems = _ready(container, spec, timeout, remote, serving=serving)
    except BaseException:
        engine.remove(container)
        raise
    return UpResult(env, action, plan.refused, problems)


def _settle(container: Container, spec: Spec | None, timeout: float) -> tuple[str, ...]:
    """Wait for the inits and services (`services.settle`); what failed or did not end, if anything.
    The environment stays up either way, for the user to look into."""
    from envbuild.runtime import services

    programs = services.settle(container, spec, timeout)
    return services.problems(container, spec, programs, timeout) if spec is not None else ()


SERVING_SETTLE = 1.0
"""Seconds a serving image's entrypoint must stay up to count as started (supervisor's startsecs)."""


def _ready(
    container: Container, spec: Spec | None, timeout: float, remote: Remote | None, *, serving: bool
) -> tuple[Environment, tuple[str, ...]]:
    """Wait for the environment's services, then make them reachable from this machine: its SSH
    entry, and on another machine's engine the Jupyter forward; then its inits and services
    (`_settle`). A serving image is ready once its entrypoint has stayed up for `SERVING_SETTLE`."""
    settle = SERVING_SETTLE if serving else 0.0
    if remote is None:
        env = engine.wait_ready(container, timeout, settle=settle)
        if serving:
            return env, ()
        _publish_ssh(env)
    else:
        from envbuild.runtime import remote as remote_mod

        ssh_probe, jupyter_probe = remote_mod.probes(remote)
        env = engine.wait_ready(container, timeout, ssh_probe=ssh_probe, jupyter_probe=jupyter_probe, settle=settle)
        if serving:
            return env, ()
        _publish_ssh(env, remote.jump)
        env = remote_mod.attach(env, remote, start=True)
    return env, _settle(container, spec, timeout)


def remote_project(
    client: docker.DockerClient, name: str, project: Path | None, options: RunOptions, remote: Remote
) -> BindMount | None:
    """Where the project directory comes from on another machine's engine: ``--remote-path``, else
    the volume `envbuild sync` filled; neither is a UsageError that offers both (an empty directory
    is never mounted in its place)."""
    from docker.errors import NotFound

    if options.remote_path is not None:
        return BindMount(options.remote_path, "", volume=False)
    if project is None:
        return None
    volume = project_volume(name)
    try:
        labels = client.volumes.get(volume).attrs.get("Labels") or {}
    except NotFound:
        raise UsageError(
            f"the Docker engine is on another machine ({remote.jump}), which has no copy of {project}. "
            f"Copy the project there with `envbuild sync` (again whenever you want your changes there; "
            f"it fills the volume {volume}), or name a directory on that machine with --remote-path /path/there"
        ) from None
    if labels.get(LABEL_NAME) != name or labels.get(LABEL_PROJECT_PATH) != str(project):
        raise UsageError(
            f"the volume {volume} on {remote.jump} was not made by `envbuild sync` for {project}; "
            "remove it there or choose another --name"
        )
    return BindMount(volume, "", volume=True)


def _the_winner(client: docker.DockerClient, name: str, wait: float = 10.0) -> Container | None:
    """The container another run created under ``name``: the engine reserves the name before the
    container can be read, so a run that lost the race may look a moment before it is there."""
    deadline = time.monotonic() + wait
    while True:
        other = engine.find(client, name)
        if other is not None or time.monotonic() > deadline:
            return other
        time.sleep(0.1)


def _outdated(current: Environment, image_id: str | None, labels: dict[str, str]) -> bool:
    """Whether the environment runs something else than the image: by content digest when both have
    one (a concurrent `up` of the same build exports an image with another id and the same digest),
    else by image id."""
    running, wanted = current.labels.get(LABEL_DIGEST), labels.get(LABEL_DIGEST)
    if running and wanted:
        return running != wanted
    return current.image_id != image_id


def _publish_ssh(env: Environment, jump: str | None = None) -> None:
    endpoint = env.endpoint("ssh")
    if endpoint is not None:
        ssh.write_host(ssh.HostEntry(env.name, endpoint.host_port, connect_host(endpoint.host_ip), jump=jump))


@engine.answering()
def destroy(
    client: docker.DockerClient, name: str, *, remove_image: bool = False
) -> tuple[Environment | None, str | None]:
    """Remove the container and its SSH entry (never the project files); optionally its image.

    Returns the removed environment (None when there was none) and the removed image id, if any.
    """
    from docker.errors import APIError, ImageNotFound

    from envbuild.runtime import remote

    container = engine.find(client, name)
    env = engine.environment_from(container) if container is not None else None
    if container is not None:
        engine.remove(container)
    remote.stop_forward(name)
    ssh.remove_host(name)
    removed_image: str | None = None
    if remove_image and env is not None:
        try:
            client.images.remove(env.image_id)
            removed_image = env.image
        except ImageNotFound:
            pass
        except APIError as exc:
            raise UsageError(
                f"environment removed, but its image {env.image!r} was kept: {exc.explanation or exc}"
            ) from None
    return env, removed_image


@engine.answering()
def remove_project_volume(client: docker.DockerClient, name: str) -> str | None:
    """Remove the volume `envbuild sync` filled for environment ``name`` (only one it made); its name,
    or None when there was none."""
    from docker.errors import APIError, NotFound

    volume = project_volume(name)
    try:
        found = client.volumes.get(volume)
    except NotFound:
        return None
    if (found.attrs.get("Labels") or {}).get(LABEL_NAME) != name:
        raise UsageError(f"the volume {volume} was not made by `envbuild sync`; it is left alone")
    try:
        found.remove()
    except APIError as exc:
        raise UsageError(f"the volume {volume} is kept: {exc.explanation or exc}") from None
    return volume
