"""Environments as Docker containers: create, find, list, start, wait for, remove.

State lives only in the engine: the container's labels say which environment it is and where its
project is, its port bindings say where its services are, its env holds its Jupyter token. Nothing
is cached on the side, so `ls` can never disagree with reality.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envbuild import engine_api
from envbuild.errors import EngineUnreachable, RuntimeFailure, UsageError
from envbuild.runtime.options import (
    ENV_JUPYTER_TOKEN,
    LABEL_DEV,
    LABEL_NAME,
    LABEL_PORTS,
    LABEL_PROJECT_PATH,
    LABEL_PROJECT_SOURCE,
    LABEL_SPEC,
    LABEL_VENDOR,
    ContainerPlan,
    connect_host,
    parse_ports_label,
)

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container
    from docker.models.images import Image

    from frontend.spec import Spec

class NameConflict(RuntimeFailure):
    """Another run created a container with this name between our check and our create."""


@contextlib.contextmanager
def answering() -> Iterator[None]:
    """Engine requests in this block (or function, as a decorator): an engine that goes away while
    they run (connection refused, reset or timed out) is EngineUnreachable, exit 3 with the usual
    hint, not a raw exception."""
    from requests import ConnectionError as Lost
    from requests import Timeout

    try:
        yield
    except (Lost, Timeout) as exc:
        reason = engine_api.first_line(exc)
        raise EngineUnreachable(f"lost the Docker engine ({reason}); {engine_api.START_HINT}") from None


def connect(timeout: int = 60) -> docker.DockerClient:
    """A docker SDK client for a reachable engine, or EngineUnreachable saying how to start one."""
    return engine_api.connect(timeout=timeout)


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    container_port: int
    host_ip: str
    host_port: int

    @property
    def address(self) -> str:
        host = connect_host(self.host_ip)
        return f"[{host}]:{self.host_port}" if ":" in host else f"{host}:{self.host_port}"


@dataclass(frozen=True, slots=True)
class Environment:
    """A running or stopped environment, read from its container."""

    name: str
    container_id: str
    status: str
    image: str
    image_id: str
    project_path: str | None
    workdir: str
    gpu: bool
    jupyter_token: str | None
    endpoints: tuple[Endpoint, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    restart_count: int = 0
    engine: str | None = None
    """The ``ssh://`` address of the engine's machine when it is not this one (`runtime.remote`)."""
    jump: str | None = None
    """``[user@]host[:port]`` SSH goes through to reach it (with ``engine``)."""
    tunnel: str | None = None
    """With ``engine``: this machine's address forwarded to the Jupyter port (None: no forward runs)."""

    @property
    def project_source(self) -> str | None:
        """With ``engine``: ``volume NAME`` or ``path /there`` (where the project directory comes from)."""
        return self.labels.get(LABEL_PROJECT_SOURCE)

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def serving(self) -> bool:
        """Started from a serving image (``base(dev=False)``): its own entrypoint, no sshd or Jupyter."""
        return self.labels.get(LABEL_DEV) == "false"

    def endpoint(self, name: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.name == name), None)

    @property
    def ssh_target(self) -> str:
        from envbuild.ssh import host_alias

        return host_alias(self.name)

    @property
    def jupyter_url(self) -> str | None:
        """Where this machine's browser opens Jupyter (on another machine's engine: the forward)."""
        ep = self.endpoint("jupyter")
        if ep is None or (self.engine is not None and self.tunnel is None):
            return None
        base = f"http://{self.tunnel or ep.address}/lab"
        return f"{base}?token={self.jupyter_token}" if self.jupyter_token else base

    @property
    def spec_json(self) -> str | None:
        return self.labels.get(LABEL_SPEC)

    def to_dict(self) -> dict[str, Any]:
        ssh = self.endpoint("ssh")
        return {
            "name": self.name,
            "status": self.status,
            "image": self.image,
            "gpu": self.gpu,
            "serving": self.serving,
            "project_path": self.project_path,
            "workdir": self.workdir,
            "ssh": None
            if self.serving
            else {
                "target": self.ssh_target,
                "host": connect_host(ssh.host_ip) if ssh else None,
                "port": ssh.host_port if ssh else None,
                "user": "envd",
                **({"jump": self.jump} if self.jump else {}),
            },
            **({"engine": self.engine, "project_source": self.project_source} if self.engine else {}),
            "jupyter": (
                {"url": self.jupyter_url, "token": self.jupyter_token,
                 **({"forward": self.tunnel} if self.engine else {})}
                if self.endpoint("jupyter") else None
            ),
            "ports": [
                {"name": e.name, "container_port": e.container_port, "host_ip": e.host_ip, "host_port": e.host_port}
                for e in self.endpoints
            ],
        }


def environment_from(container: Container) -> Environment:
    attrs = container.attrs
    config = attrs.get("Config") or {}
    labels: dict[str, str] = config.get("Labels") or {}
    env_list: list[str] = config.get("Env") or []
    token = next((e.split("=", 1)[1] for e in env_list if e.startswith(f"{ENV_JUPYTER_TOKEN}=")), None)
    names = dict((port, name) for name, port in parse_ports_label(labels.get(LABEL_PORTS)))
    bindings: dict[str, Any] = ((attrs.get("NetworkSettings") or {}).get("Ports")) or {}
    endpoints: list[Endpoint] = []
    for key, published in sorted(bindings.items()):
        if not published:
            continue
        cport = int(key.split("/")[0])
        first = published[0]
        name = names.get(cport, f"port-{cport}")
        endpoints.append(Endpoint(name, cport, first.get("HostIp", ""), int(first["HostPort"])))
    host_config = attrs.get("HostConfig") or {}
    state = attrs.get("State") or {}
    return Environment(
        name=labels.get(LABEL_NAME) or container.name or "",
        container_id=container.id or "",
        status=state.get("Status", "unknown"),
        image=config.get("Image", ""),
        image_id=attrs.get("Image", ""),
        project_path=labels.get(LABEL_PROJECT_PATH),
        workdir=config.get("WorkingDir", ""),
        gpu=bool(host_config.get("DeviceRequests")),
        jupyter_token=token,
        endpoints=tuple(endpoints),
        labels=labels,
        restart_count=int(attrs.get("RestartCount", 0) or 0),
    )


@answering()
def find(client: docker.DockerClient, name: str) -> Container | None:
    """The container of environment ``name``; an unrelated container of that name is an error."""
    from docker.errors import NotFound

    try:
        container = client.containers.get(name)
    except NotFound:
        return None
    if (container.labels or {}).get(LABEL_NAME) != name:
        raise UsageError(
            f"a container named {name!r} exists but is not an envbuild environment; "
            "choose another name with --name"
        )
    return container


@answering()
def list_environments(client: docker.DockerClient) -> list[Environment]:
    containers = client.containers.list(all=True, filters={"label": LABEL_NAME})
    return sorted((environment_from(c) for c in containers), key=lambda e: e.name)


def get_image(client: docker.DockerClient, ref: str) -> Image:
    from docker.errors import ImageNotFound

    try:
        return client.images.get(ref)
    except ImageNotFound:
        raise UsageError(f"image {ref!r} is not in the engine's store; build it first (envbuild build)") from None


def image_labels(image: Image) -> dict[str, str]:
    return dict(((image.attrs.get("Config") or {}).get("Labels")) or {})


def is_envbuild_image(labels: dict[str, str]) -> bool:
    return labels.get(LABEL_VENDOR) == "envbuild"


def check_gpu_support(client: docker.DockerClient, engine: str | None = None) -> None:
    """GPUs need the NVIDIA Container Toolkit's runtime in the engine (``docker info``'s Runtimes);
    ``engine`` is another machine's address, named in the message with what to do there."""
    runtimes = (client.info().get("Runtimes") or {})
    if "nvidia" not in runtimes:
        where = f"the Docker engine at {engine}" if engine else "the Docker engine"
        on = " on that machine" if engine else ""
        raise RuntimeFailure(
            f"GPUs were requested but {where} has no 'nvidia' runtime (its runtimes: "
            f"{', '.join(sorted(runtimes)) or 'none'}). Missing{on}: the NVIDIA driver (`nvidia-smi` works) and "
            "the NVIDIA Container Toolkit registered with Docker: `sudo apt-get install nvidia-container-toolkit`, "
            "`sudo nvidia-ctk runtime configure --runtime=docker`, `sudo systemctl restart docker`. "
            "Or run with --no-gpu"
        )


def create(client: docker.DockerClient, plan: ContainerPlan) -> Container:
    from docker.errors import APIError

    for mount in plan.mounts:
        if mount.create:
            make_data_dir(mount.source)
    try:
        container = client.containers.create(**plan.create_kwargs())
    except APIError as exc:
        if exc.status_code == 409:
            raise NameConflict(
                f"environment {plan.name!r} was created by another envbuild run at the same time; "
                "run the command again to attach to it"
            ) from None
        said = str(exc.explanation or exc)
        if "bind source path does not exist" in said:
            raise UsageError(
                f"could not create environment {plan.name!r}: {said} (on the engine's machine; "
                "check --remote-path / --volume)"
            ) from None
        raise RuntimeFailure(f"could not create environment {plan.name!r}: {said}") from None
    try:
        container.start()
    except APIError as exc:
        remove(container)
        raise RuntimeFailure(f"could not start environment {plan.name!r}: {exc.explanation or exc}") from None
    container.reload()
    return container


def make_data_dir(path: str) -> None:
    """Create a ``data.envd`` directory (0755, the user's own: the envd user has the user's uid) in
    a private data root; an existing one is used as it is, never re-permissioned, and must be a
    real directory there (not a symlink to somewhere else)."""
    root = os.path.dirname(path)
    os.makedirs(root, mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o755)
    if not stat.S_ISDIR(os.lstat(path).st_mode) or os.path.realpath(path) != os.path.join(os.path.realpath(root),
                                                                                           os.path.basename(path)):
        raise RuntimeFailure(f"{path} is not a directory of envbuild's data directory (a symlink?); "
                             "remove it and run the command again")


def remove(container: Container) -> None:
    from docker.errors import NotFound

    with contextlib.suppress(NotFound):
        container.remove(force=True, v=True)


def start(container: Container) -> None:
    from docker.errors import APIError

    try:
        container.start()
    except APIError as exc:
        raise RuntimeFailure(f"could not start {container.name!r}: {exc.explanation or exc}") from None
    container.reload()


def _logs_tail(container: Container, lines: int = 20) -> str:
    try:
        return container.logs(tail=lines).decode(errors="replace").strip()
    except Exception:  # the container may already be gone; the status message still helps
        return ""


def _ssh_banner(host: str, port: int) -> bool:
    """True once sshd itself answers: docker-proxy accepts TCP before the service listens."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _jupyter_ok(address: str, token: str | None) -> bool:
    request = urllib.request.Request(f"http://{address}/api/status")
    if token:
        request.add_header("Authorization", f"token {token}")
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


POLL_INTERVAL = 0.05


def wait_ready(
    container: Container,
    timeout: float = 120.0,
    *,
    interval: float = POLL_INTERVAL,
    ssh_probe: Callable[[str, int], bool] | None = None,
    jupyter_probe: Callable[[str, str | None], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    settle: float = 0.0,
) -> Environment:
    """Wait until sshd sends its banner and Jupyter (if any) answers ``/api/status`` with the token,
    and the container has been running for ``settle`` seconds without a restart (a serving image's
    entrypoint that exits at once is reported, not left restarting).

    Polls every ``interval`` (each round is ~2 ms of engine inspect and two local connections), so
    readiness is seen ~25 ms after it happens on average; a service that answered is not probed again.
    """
    ssh_probe = ssh_probe or _ssh_banner
    jupyter_probe = jupyter_probe or _jupyter_ok
    deadline = clock() + timeout
    ssh_ok = jupyter_ok = False
    first_restarts: int | None = None
    running_since: float | None = None
    while True:
        container.reload()
        env = environment_from(container)
        if first_restarts is None:
            first_restarts = env.restart_count
        if env.status in ("exited", "dead") or env.restart_count > first_restarts:
            logs = _logs_tail(container)
            raise RuntimeFailure(
                f"environment {env.name!r} stopped while starting (status {env.status})"
                + (f"; its last output:\n{logs}" if logs else "")
            )
        ssh = env.endpoint("ssh")
        jupyter = env.endpoint("jupyter")
        if env.running:
            running_since = clock() if running_since is None else running_since
            ssh_ok = ssh_ok or ssh is None or ssh_probe(connect_host(ssh.host_ip), ssh.host_port)
            jupyter_ok = jupyter_ok or jupyter is None or jupyter_probe(jupyter.address, env.jupyter_token)
            if ssh_ok and jupyter_ok and clock() - running_since >= settle:
                return env
        if clock() > deadline:
            waiting = [s for s, ok in (("sshd", ssh_ok), ("Jupyter", jupyter_ok)) if not ok]
            logs = _logs_tail(container)
            raise RuntimeFailure(
                f"environment {env.name!r} did not become ready within {timeout:.0f}s "
                f"(waiting for {' and '.join(waiting) or 'the container'})"
                + (f"; its last output:\n{logs}" if logs else "")
            )
        sleep(interval)


def image_spec(image: str, labels: dict[str, str]) -> Spec | None:
    """The spec an image's label claims it was built from, checked like a build file
    (`frontend.validate.validate_runtime`): a label is anyone's to write. None when there is none."""
    from frontend.errors import EnvdError
    from frontend.spec import Spec, SpecDecodeError
    from frontend.validate import validate_runtime

    text = labels.get(LABEL_SPEC)
    if not text:
        return None
    try:
        spec = Spec.from_json(text)
        validate_runtime(spec)
    except (SpecDecodeError, EnvdError) as exc:
        raise UsageError(f"image {image!r}: its {LABEL_SPEC} label is refused: {exc}") from None
    return spec


def spec_label(labels: dict[str, str]) -> Any:
    """The spec the image was built from (``frontend`` schema), or None when absent or unreadable."""
    text = labels.get(LABEL_SPEC)
    if not text:
        return None
    try:
        from frontend.spec import Spec
    except ImportError:  # pragma: no cover - frontend is part of this distribution
        return None
    try:
        return Spec.from_json(text)
    except ValueError:
        return None


__all__ = [
    "Endpoint",
    "Environment",
    "check_gpu_support",
    "connect",
    "answering",
    "create",
    "environment_from",
    "find",
    "get_image",
    "image_labels",
    "image_spec",
    "is_envbuild_image",
    "list_environments",
    "make_data_dir",
    "remove",
    "spec_label",
    "start",
    "wait_ready",
]
