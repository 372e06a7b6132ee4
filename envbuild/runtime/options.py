"""Pure run-time decisions: names, user option parsing, port publishing and labels.

Nothing here talks to the engine, so it is all unit-tested; `envbuild.runtime.engine` turns a
`ContainerPlan` into a container.
"""

from __future__ import annotations

import ipaddress
import json
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.errors import UsageError

if TYPE_CHECKING:
    from frontend.spec import Expose, Mount

LABEL_PREFIX = "ai.envbuild."
LABEL_VENDOR = "ai.envbuild.vendor"
LABEL_NAME = "ai.envbuild.name"
LABEL_PROJECT_PATH = "ai.envbuild.project.path"
LABEL_PROJECT = "ai.envbuild.project"
LABEL_PORTS = "ai.envbuild.ports"
LABEL_SPEC = "ai.envbuild.spec"
LABEL_DIGEST = "ai.envbuild.digest"
LABEL_GPU = "ai.envbuild.gpu"
LABEL_DEV = "ai.envbuild.dev"
LABEL_HOST = "ai.envbuild.host"
LABEL_PROJECT_SOURCE = "ai.envbuild.project.source"
"""On another machine's engine: where the project directory comes from (a volume or a path there)."""

ENV_AUTHORIZED_KEYS = "ENVBUILD_AUTHORIZED_KEYS"
ENV_JUPYTER_TOKEN = "ENVBUILD_JUPYTER_TOKEN"
HOME = "/home/envd"
SSH_PORT = 2222
JUPYTER_PORT = 8888
DEFAULT_SHM_MB = 2048
MAX_NAME = 63
DATA_DIR = "~/.cache/envbuild/data"
"""Where ``data.envd(NAME)`` directories live on the host (``~`` from ``$HOME``); `up` creates them."""

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_DATA_NAME = re.compile(r"[A-Za-z0-9][\w.-]*")  # what data.envd() accepts
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def validate_name(name: str) -> str:
    """An environment name is its container name and its SSH host, so it must suit both."""
    if not NAME_RE.match(name) or len(name) > MAX_NAME or name.endswith("."):
        raise UsageError(
            f"invalid environment name {name!r}: use lowercase letters, digits, '_', '.' and '-', "
            f"starting with a letter or digit, at most {MAX_NAME} characters"
        )
    return name


def name_from_dir(directory: Path) -> str:
    """The default environment name: the project directory's basename, made legal and lowercase."""
    raw = directory.resolve().name.lower()
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", raw).lstrip("_.-").rstrip(".-")[:MAX_NAME].rstrip(".-")
    if not cleaned:
        raise UsageError(f"cannot derive an environment name from {str(directory)!r}; pass --name")
    return cleaned


def project_name(directory: Path) -> str:
    """The directory name under /home/envd, as the build side computes it (contract: sanitised basename)."""
    raw = directory.resolve().name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "", raw).lstrip("_.-")
    return cleaned or "project"


def project_dir(path: str | os.PathLike[str]) -> Path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise UsageError(f"project directory {str(path)!r} does not exist or is not a directory")
    return directory.resolve()


@dataclass(frozen=True, slots=True)
class BindMount:
    """``create``: a ``data.envd`` directory that `engine.create` makes when it is missing;
    ``volume``: ``source`` names a volume of the engine, not a path."""

    source: str
    target: str
    read_only: bool = False
    create: bool = False
    volume: bool = False

    def to_docker(self) -> dict[str, Any]:
        kind = "volume" if self.volume else "bind"
        return {"Type": kind, "Source": self.source, "Target": self.target, "ReadOnly": self.read_only}


def project_volume(name: str) -> str:
    """The volume `envbuild sync` copies environment ``name``'s project into (another machine's engine)."""
    return f"envbuild-{name}-project"


def data_volume(name: str) -> str:
    """The volume that stands for ``data.envd(name)`` on another machine's engine."""
    return f"envbuild-data-{name}"


def remote_path(text: str, what: str) -> str:
    """A path on the engine's machine, as ``--remote-path`` or a ``-v`` source names it there."""
    if not text.startswith("/") or any(not c.isprintable() for c in text) or "," in text:
        raise UsageError(f"invalid {what} {text!r}: give an absolute path on the engine's machine")
    return posixpath.normpath(text)


def parse_volume(text: str, base: Path, *, remote: bool = False) -> BindMount:
    """``HOST:CTR[:ro|rw]``; a relative host path is relative to the project directory. On another
    machine's engine (``remote``) HOST is a path there: absolute, and not looked for here."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise UsageError(f"invalid --volume {text!r}: expected HOST_PATH:CONTAINER_PATH[:ro|rw]")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        raise UsageError(f"invalid --volume {text!r}: mode must be 'ro' or 'rw', got {mode!r}")
    target = parts[1]
    if not target.startswith("/"):
        raise UsageError(f"invalid --volume {text!r}: the container path must be absolute")
    if remote:
        return BindMount(remote_path(parts[0], "--volume"), os.path.normpath(target), read_only=mode == "ro")
    host = Path(parts[0]).expanduser()
    if not host.is_absolute():
        host = base / host
    if not host.exists():
        raise UsageError(f"invalid --volume {text!r}: {str(host)!r} does not exist on this machine")
    return BindMount(str(host.resolve()), os.path.normpath(target), read_only=mode == "ro")


def parse_size(text: str, *, what: str, default_unit: str = "") -> int:
    """Bytes from ``512m``, ``2g``, ``2GiB``, ``1024`` (plain numbers use ``default_unit``)."""
    match = _SIZE_RE.match(text)
    if not match:
        raise UsageError(f"invalid {what} {text!r}: expected a size like 512m or 2g")
    number, unit, suffix = match.groups()
    unit = unit.lower() or (default_unit if not suffix else "")
    value = int(float(number) * _UNITS[unit])
    if value <= 0:
        raise UsageError(f"invalid {what} {text!r}: must be more than zero")
    return value


def parse_cpus(text: str | float) -> int:
    """NanoCPUs: 1.5 cores -> 1_500_000_000 (envd passes cores x 1e6 as a CFS quota: 10x too many)."""
    try:
        cpus = float(text)
    except ValueError:
        raise UsageError(f"invalid --cpus {text!r}: expected a number of cores like 2 or 0.5") from None
    if not cpus > 0 or cpus > 4096:
        raise UsageError(f"invalid --cpus {text!r}: must be more than 0")
    return round(cpus * 1e9)


@dataclass(frozen=True, slots=True)
class GpuRequest:
    """``count`` -1 means all GPUs; ``device_ids`` wins when given."""

    count: int = -1
    device_ids: tuple[str, ...] = ()


def parse_gpus(text: str) -> GpuRequest:
    """``--gpus``: ``all``, ``N``, or ``device=0,2``."""
    value = text.strip().lower()
    if value == "all":
        return GpuRequest(-1)
    if value.startswith("device="):
        ids = tuple(v.strip() for v in value[len("device="):].split(",") if v.strip())
        if ids:
            return GpuRequest(0, ids)
    elif value.isascii() and value.isdigit() and int(value) > 0:
        return GpuRequest(int(value))
    raise UsageError(f"invalid --gpus {text!r}: expected 'all', a count like 1, or device=0,1")


def gpu_request(*, image_gpu: bool, spec_count: int | None, gpus: str | None, no_gpu: bool) -> GpuRequest | None:
    """GPUs attach when the image uses CUDA or ``--gpus`` asks; ``--no-gpu`` wins; default all of them
    unless ``config.gpu(n)`` says otherwise."""
    if no_gpu:
        return None
    if gpus is not None:
        return parse_gpus(gpus)
    if image_gpu:
        return GpuRequest(spec_count if spec_count and spec_count > 0 else -1)
    return None


@dataclass(frozen=True, slots=True)
class Port:
    """A container port and how it is published; ``host_port`` 0 lets the engine assign one."""

    name: str
    container_port: int
    host_ip: str
    host_port: int = 0

    @property
    def key(self) -> str:
        return f"{self.container_port}/tcp"


def parse_ports_label(value: str | None) -> list[tuple[str, int]]:
    if not value:
        return []
    try:
        items = json.loads(value)
        return [(str(i["name"]), int(i["port"])) for i in items]
    except (ValueError, TypeError, KeyError) as exc:
        raise UsageError(f"image label {LABEL_PORTS} is malformed ({exc}); rebuild the image") from None


def plan_ports(
    ports: list[tuple[str, int]], host: str, *, jupyter_host_port: int = 0,
    exposes: tuple[tuple[int, int, str], ...] = (),
) -> list[Port]:
    """Publish every labelled port on ``host``; fixed host ports only where the spec asked for them.

    ``exposes`` is ``(container_port, host_port, listen_addr)`` from ``runtime.expose``, with the
    addresses `listen_address` allowed.
    """
    fixed = {cport: (hport, addr or host) for cport, hport, addr in exposes}
    planned: dict[int, Port] = {}
    for name, cport in ports:
        if cport in planned:
            continue
        hport, addr = fixed.get(cport, (0, host))
        if name == "jupyter" and jupyter_host_port:
            hport = jupyter_host_port
        planned[cport] = Port(name, cport, addr, hport)
    for cport, (hport, addr) in fixed.items():
        planned.setdefault(cport, Port(f"port-{cport}", cport, addr, hport))
    return list(planned.values())


def port_bindings(ports: list[Port]) -> dict[str, dict[str, str]]:
    return {p.key: {"HostIp": p.host_ip, "HostPort": str(p.host_port) if p.host_port else ""} for p in ports}


def validate_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"invalid --host {host!r}: expected an IP address such as 127.0.0.1 or 0.0.0.0") from None
    return host


def connect_host(host_ip: str) -> str:
    """Where a client on this machine reaches a port published on ``host_ip``."""
    return "127.0.0.1" if host_ip in ("", "0.0.0.0") else ("::1" if host_ip == "::" else host_ip)


@dataclass(frozen=True, slots=True)
class ContainerPlan:
    """Everything `engine.create` needs; built from the image, the spec and the user's options."""

    name: str
    image: str
    project_path: str | None
    workdir: str
    host: str
    env: dict[str, str]
    labels: dict[str, str]
    ports: list[Port]
    mounts: list[BindMount] = field(default_factory=list)
    gpus: GpuRequest | None = None
    shm_size: int = DEFAULT_SHM_MB * 1024 * 1024
    nano_cpus: int | None = None
    memory: int | None = None
    refused: tuple[str, ...] = ()
    """What the spec asked for and did not get (host mounts from an image, addresses beyond ``--host``)."""
    serving: bool = False
    """A serving image (``base(dev=False)``): it runs its own entrypoint as its own user, in its own
    working directory, with ``command`` as its arguments when given; no sshd, no Jupyter."""
    command: tuple[str, ...] = ()

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for docker SDK's ``containers.create``."""
        import docker.types

        kwargs: dict[str, Any] = {
            "image": self.image,
            "name": self.name,
            "hostname": self.name.replace("_", "-").replace(".", "-")[:63],
            "detach": True,
            "environment": self.env,
            "labels": self.labels,
            "ports": {p.key: port_bindings([p])[p.key] for p in self.ports},
            "mounts": [
                docker.types.Mount(m.target, m.source, type="volume" if m.volume else "bind", read_only=m.read_only)
                for m in self.mounts
            ],
            "restart_policy": {"Name": "unless-stopped"},
            "shm_size": self.shm_size,
            "init": False,
        }
        if not self.serving:  # the entrypoint starts as root; the services drop to envd
            kwargs.update(user="root", working_dir=self.workdir)
        if self.command:
            kwargs["command"] = list(self.command)
        if self.nano_cpus:
            kwargs["nano_cpus"] = self.nano_cpus
        if self.memory:
            kwargs["mem_limit"] = self.memory
        if self.gpus is not None:
            kwargs["device_requests"] = [
                docker.types.DeviceRequest(
                    driver="nvidia",
                    count=0 if self.gpus.device_ids else self.gpus.count,
                    device_ids=list(self.gpus.device_ids),
                    capabilities=[["gpu"]],
                )
            ]
        return kwargs


def container_labels(name: str, project_path: str | None, host: str) -> dict[str, str]:
    labels = {LABEL_NAME: name, LABEL_HOST: host}
    if project_path:
        labels[LABEL_PROJECT_PATH] = project_path
    return labels


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What the user asked for on the command line (``up`` / ``run``), still as text."""

    host: str = "127.0.0.1"
    gpus: str | None = None
    no_gpu: bool = False
    volumes: tuple[str, ...] = ()
    shm_size: str | None = None
    cpus: str | None = None
    memory: str | None = None
    remote_path: str | None = None
    """The project directory on the engine's machine (``--remote-path``; another machine's engine)."""


def plan_container(
    *,
    name: str,
    image: str,
    image_labels: dict[str, str],
    spec: Any,
    project: Path | None,
    options: RunOptions,
    authorized_keys: str,
    token: str,
    from_image: bool = False,
    remote: bool = False,
    project_mount: BindMount | None = None,
    command: tuple[str, ...] = (),
) -> ContainerPlan:
    """Decide every container setting from the image's labels, its spec and the user's options.

    ``spec`` is a ``frontend.spec.Spec`` or None (an image without a spec runs with defaults).
    ``from_image``: the spec is an image's label (`run --image`), not the user's own build file, so
    it mounts no host directory but its ``data.envd`` ones. From either, a port goes beyond the
    loopback only where ``--host`` allows it. `ContainerPlan.refused` says what was not done.
    ``remote``: the engine is on another machine, where this one's paths mean nothing: the project
    comes from ``project_mount`` (a synced volume or ``--remote-path``; mounted at the project
    directory whatever its target says), ``data.envd`` directories are volumes there, ``-v`` names
    paths there, and other host mounts are refused.
    A serving image (label ``ai.envbuild.dev`` not ``true``) gets its ports and mounts the same way,
    and neither keys nor a token; ``command`` (its arguments) is only for a serving image.
    """
    validate_name(name)
    validate_host(options.host)
    project_label = image_labels.get(LABEL_PROJECT) or (project_name(project) if project else "project")
    if not _PROJECT_RE.match(project_label) or "/" in project_label:
        raise UsageError(f"image label {LABEL_PROJECT} has an unusable value {project_label!r}; rebuild the image")
    workdir = f"{HOME}/{project_label}"
    base = project if project is not None else Path.cwd()
    mounts: list[BindMount] = []
    if remote:
        if project_mount is not None:
            mounts.append(BindMount(project_mount.source, workdir, volume=project_mount.volume))
    elif project is not None:
        mounts.append(BindMount(str(project), workdir))
    env: dict[str, str] = {}
    exposes: tuple[tuple[int, int, str], ...] = ()
    jupyter_port = 0
    shm_mb = DEFAULT_SHM_MB
    spec_gpu_count: int | None = None
    refused: list[str] = []
    user_mounts = [parse_volume(v, base, remote=remote) for v in options.volumes]
    if spec is not None:
        runtime = spec.runtime
        for m in runtime.mounts:
            if (from_image or remote) and any(u.target == container_path(m.envd_path) for u in user_mounts):
                continue  # the user's -v decides where this one comes from
            mount = spec_mount(m, base, from_image=from_image, remote=remote)
            if mount is not None:
                mounts.append(mount)
            elif remote:
                refused.append(
                    f"not mounting {m.host_path} at {m.envd_path} ({_where(m)}runtime.mount): the engine is on "
                    f"another machine, which has no copy of it; pass -v PATH_THERE:{m.envd_path} to mount a "
                    "directory of that machine"
                )
            else:
                refused.append(
                    f"not mounting {m.host_path} at {m.envd_path} ({_where(m)}runtime.mount in the image's spec): "
                    f"an image cannot choose host directories; pass -v {m.host_path}:{m.envd_path} to mount it"
                )
        env.update(runtime.environ_dict)
        allowed: list[tuple[int, int, str]] = []
        for e in runtime.exposes:
            addr = listen_address(e.listen_addr, options.host)
            if addr != e.listen_addr:
                refused.append(
                    f"publishing port {e.envd_port} on {addr}, not {e.listen_addr} ({_where(e)}runtime.expose): "
                    f"only the command line publishes beyond this machine; pass --host {e.listen_addr} to allow it"
                )
            allowed.append((e.envd_port, e.host_port, addr))
        exposes = tuple(allowed)
        if spec.jupyter is not None:
            jupyter_port = spec.jupyter.port
        if spec.shm_size is not None:
            shm_mb = spec.shm_size.size_mb
        if spec.gpu is not None:
            spec_gpu_count = spec.gpu.count
    mounts.extend(user_mounts)
    seen: set[str] = set()
    for m in mounts:
        if m.target in seen:
            raise UsageError(f"two mounts target {m.target!r} in the container; drop one of them")
        seen.add(m.target)
    serving = image_labels.get(LABEL_DEV) != "true"
    if command and not serving:
        raise UsageError(
            f"image {image!r} is a development image: it starts sshd and its services, not a command; "
            "run commands in it with `envbuild exec`"
        )
    if not serving:
        env[ENV_AUTHORIZED_KEYS] = authorized_keys
        env[ENV_JUPYTER_TOKEN] = token
        env["ENVD_WORKDIR"] = workdir
    ports = plan_ports(parse_ports_label(image_labels.get(LABEL_PORTS)), options.host,
                       jupyter_host_port=jupyter_port, exposes=exposes)
    if not serving and not any(p.name == "ssh" for p in ports):
        raise UsageError(f"image {image!r} publishes no ssh port (label {LABEL_PORTS}); is it a development image?")
    gpus = gpu_request(
        image_gpu=image_labels.get(LABEL_GPU) == "true",
        spec_count=spec_gpu_count,
        gpus=options.gpus,
        no_gpu=options.no_gpu,
    )
    return ContainerPlan(
        name=name,
        image=image,
        project_path=str(project) if project is not None else None,
        workdir=workdir,
        host=options.host,
        env=env,
        labels={
            **container_labels(name, str(project) if project is not None else None, options.host),
            **({LABEL_PROJECT_SOURCE: _source_label(project_mount)} if remote and project_mount is not None else {}),
        },
        ports=ports,
        mounts=mounts,
        gpus=gpus,
        shm_size=(
            parse_size(options.shm_size, what="--shm-size", default_unit="m")
            if options.shm_size
            else shm_mb * 1024 * 1024
        ),
        nano_cpus=parse_cpus(options.cpus) if options.cpus else None,
        memory=parse_size(options.memory, what="--memory") if options.memory else None,
        refused=tuple(refused),
        serving=serving,
        command=command,
    )


def _source_label(mount: BindMount) -> str:
    return f"volume {mount.source}" if mount.volume else f"path {mount.source}"


def _where(item: Mount | Expose) -> str:
    return f"{item.pos}: " if item.pos is not None else ""


def data_root() -> str:
    """`DATA_DIR` as an absolute, normalised path."""
    return os.path.normpath(os.path.expanduser(DATA_DIR))


def spec_mount(m: Mount, base: Path, *, from_image: bool, remote: bool = False) -> BindMount | None:
    """A ``runtime.mount`` as a bind mount, or None when an image may not have it.

    The host path is normalised before anything is decided, so ``data/../../x`` is ``x``. Only a
    directory directly inside `data_root` (what ``data.envd(NAME)`` names) is created, never any
    other path; a build file's other mounts must exist, an image's are refused. On another machine's
    engine (``remote``) a ``data.envd`` directory is a volume there (`data_volume`) and any other
    host path is refused.
    """
    raw = Path(os.path.expandvars(m.host_path)).expanduser()
    host = os.path.normpath(raw if raw.is_absolute() else base / raw)
    target = container_path(m.envd_path)
    if os.path.dirname(host) == data_root() and _DATA_NAME.fullmatch(os.path.basename(host)):
        if remote:
            return BindMount(data_volume(os.path.basename(host)), target, volume=True)
        return BindMount(host, target, create=True)
    if from_image or remote:
        return None
    if not os.path.exists(host):
        raise UsageError(
            f"{_where(m)}runtime.mount(): the host path {m.host_path!r} ({host}) does not exist; "
            "create it, or mount a data.envd(NAME) directory, which envbuild creates"
        )
    return BindMount(host, target)


def container_path(path: str) -> str:
    """A ``runtime.mount`` target in the container: ``~`` is the envd user's home."""
    if path == "~" or path.startswith("~/"):
        path = HOME + path[1:]
    return posixpath.normpath(path)


def listen_address(wanted: str, host: str) -> str:
    """The address a spec's ``runtime.expose(listen_addr=...)`` gets: its own when that stays on this
    machine or the command line's ``--host`` covers it, else ``host``."""
    asked = ipaddress.ip_address(wanted)
    given = ipaddress.ip_address(host)
    if asked.is_loopback or asked == given or (given.is_unspecified and given.version == asked.version):
        return wanted
    return host


def check_options(options: RunOptions, base: Path, *, remote: bool = False) -> None:
    """Reject bad command-line values before anything slow (a build) happens."""
    validate_host(options.host)
    for volume in options.volumes:
        parse_volume(volume, base, remote=remote)
    if options.remote_path is not None:
        if not remote:
            raise UsageError(
                "--remote-path names the project directory on another machine's engine (DOCKER_HOST=ssh://...); "
                "this engine is on this machine, where the project directory itself is mounted"
            )
        remote_path(options.remote_path, "--remote-path")
    if options.shm_size:
        parse_size(options.shm_size, what="--shm-size", default_unit="m")
    if options.memory:
        parse_size(options.memory, what="--memory")
    if options.cpus:
        parse_cpus(options.cpus)
    if options.gpus is not None:
        if options.no_gpu:
            raise UsageError("--gpus and --no-gpu contradict each other; pass one of them")
        parse_gpus(options.gpus)
