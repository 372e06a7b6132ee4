"""The one way envbuild talks to the Docker engine's API: a docker SDK client.

Which engine (`engine_host`): the current envbuild context's, when it names one; else the docker
CLI's own choice (``$DOCKER_HOST``, else ``$DOCKER_CONTEXT`` or ``docker context use``, else the local
socket; `llb.dockerhost`). ``unix://`` and ``tcp://`` engines are configured the way ``docker.from_env``
reads the environment (``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``) or from the docker context's TLS
files. An ``ssh://`` engine is reached through `llb.sshdial` (the system ssh client, one SSH connection
per command shared with BuildKit's): the SDK talks HTTP to a private local socket whose every
connection is one ``docker system dial-stdio`` stream on the remote machine. BuildKit's own gRPC
transport is `llb`'s.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.errors import EngineUnreachable, UsageError

if TYPE_CHECKING:
    import docker

    from llb.dockerhost import DockerHost

TIMEOUT = 60
"""Seconds one API call may take; pushes and saves of large images pass longer ones."""
ANSWER_TIMEOUT = 3
"""Seconds the engine has to answer its first request (the API version): an engine that accepts
connections and never answers fails a command as quickly as a missing one, not after `TIMEOUT`."""
SSH_ANSWER_TIMEOUT = 15
"""The same over ssh, where the request waits for a new ``docker system dial-stdio`` on the remote
machine (its ``/_ping`` already answered, within the ssh connection's own limit)."""

_silent: set[str] = set()
"""Engines (by address) that did not answer in this process: later lookups do not wait again."""

START_HINT = (
    "start it with `sudo systemctl start docker` (or `sudo dockerd &`), or point DOCKER_HOST at a running engine"
)
ACCESS_HINT = (
    "your user may not open the engine's socket: add it to the docker group "
    "(`sudo usermod -aG docker $USER`, then log in again) or run as root"
)


def engine_host(environ: Mapping[str, str] | None = None) -> DockerHost:
    """The Docker engine envbuild's commands use (see the module doc); a named docker context that
    does not exist or cannot be read is a UsageError."""
    from envbuild.contexts import ContextStore
    from llb.dockerhost import DockerContextError, DockerHost, resolve

    env = os.environ if environ is None else environ
    current = ContextStore().current()
    if current.builder == "docker" and current.address != "docker://":
        rest = current.address[len("docker://"):]
        return DockerHost("unix://" + rest if rest.startswith("/") else rest, f"envbuild context {current.name!r}")
    try:
        return resolve(env)
    except DockerContextError as exc:
        raise UsageError(str(exc)) from None


def is_remote(host: str) -> bool:
    """Whether an engine address is another machine's, whose 127.0.0.1 and files are not ours."""
    return host.startswith("ssh://")


def client(
    docker_host: str | None = None, *, timeout: int = TIMEOUT, environ: Mapping[str, str] | None = None
) -> docker.DockerClient:
    """A client for ``docker_host``, else for `engine_host` (no request made beyond the SDK's API
    version negotiation, which must be answered within `ANSWER_TIMEOUT`; EngineUnreachable
    otherwise, at once for an engine that was silent before)."""
    env = dict(os.environ if environ is None else environ)
    return _client(_host(docker_host, env), timeout, env)


def _client(host: DockerHost, timeout: int, env: Mapping[str, str]) -> docker.DockerClient:
    import docker
    from requests import Timeout

    address = host.url
    if address in _silent:
        raise EngineUnreachable(f"the Docker engine at {address} did not answer within {ANSWER_TIMEOUT}s; {START_HINT}")
    if is_remote(address) and (address, timeout) in _remote_clients:
        return _remote_clients[(address, timeout)]
    answer = SSH_ANSWER_TIMEOUT if is_remote(address) else ANSWER_TIMEOUT
    try:
        if is_remote(address):
            socket_path, version = _ssh_socket(address)
            engine = docker.DockerClient(base_url="unix://" + socket_path, timeout=answer, version=version)
            engine.api.mount("http+docker://", _one_pool(socket_path, timeout))
            _remote_clients[(address, timeout)] = engine
        elif host.source in ("DOCKER_HOST", "default"):
            engine = docker.from_env(timeout=answer, environment=env)
        else:
            engine = docker.DockerClient(base_url=address, timeout=answer, tls=_context_tls(host))
    except docker.errors.DockerException as exc:
        if not isinstance(exc.__context__, Timeout):
            raise
        _silent.add(address)
        raise EngineUnreachable(
            f"the Docker engine at {address} did not answer within {answer}s; {START_HINT}"
        ) from None
    engine.api.timeout = timeout  # the first answer came quickly: later requests get the full time
    return engine


_remote_clients: dict[tuple[str, int], docker.DockerClient] = {}
"""Clients of engines over ssh, one per (address, timeout) for the whole process."""


def _one_pool(socket_path: str, timeout: int) -> Any:
    """The SDK's unix-socket adapter with one connection pool for every URL. The SDK keeps a pool per
    URL, so each new path is a new connection: here that is a new ``docker system dial-stdio`` on the
    remote machine (~0.3 s), and ``images.list()`` alone would start one per image."""
    from docker.transport import UnixHTTPAdapter

    class OnePool(UnixHTTPAdapter):
        def get_connection(self, url: str | bytes, proxies: Any = None) -> Any:
            return super().get_connection("http+docker://localhost", proxies)

    return OnePool("http+unix://" + socket_path, timeout)


def _host(docker_host: str | None, env: Mapping[str, str]) -> DockerHost:
    from llb.dockerhost import DockerHost

    if docker_host:
        return DockerHost(docker_host, "address")
    return engine_host(env)


def _ssh_socket(address: str) -> tuple[str, str]:
    """The local socket serving the remote engine's API (the command's one SSH connection), and the
    engine's API version its first answer named ("auto": the SDK asks)."""
    import llb
    from llb import sshdial

    try:
        dialer = sshdial.dialer(address)
        return dialer.api_socket(), dialer.api_version or "auto"
    except llb.BuilderUnreachable as exc:
        raise EngineUnreachable(
            f"cannot reach the Docker engine at {address}: {exc.reason}" + (f"; {exc.hint}" if exc.hint else "")
        ) from None


def _context_tls(host: DockerHost) -> Any:
    """The SDK's TLS settings from a docker context's TLS files and SkipTLSVerify (None: plain TCP)."""
    import docker.tls

    context = host.context
    if context is None or (context.tls_dir is None and not context.skip_tls_verify):
        return None
    files = Path(context.tls_dir) if context.tls_dir else None
    ca = files / "ca.pem" if files is not None and (files / "ca.pem").is_file() else None
    cert = files / "cert.pem" if files is not None and (files / "cert.pem").is_file() else None
    return docker.tls.TLSConfig(
        client_cert=(str(cert), str(files / "key.pem")) if cert is not None and files is not None else None,
        ca_cert=str(ca) if ca is not None else None,
        verify=False if context.skip_tls_verify else (str(ca) if ca is not None else True),
    )


def lost_reason(address: str) -> str:
    """What the ssh connection to ``address`` said when it ended ("" when there is none)."""
    if not is_remote(address):
        return ""
    from llb import sshdial

    return sshdial.dialer(address).last_failure()


def connect(docker_host: str | None = None, *, timeout: int = TIMEOUT) -> docker.DockerClient:
    """A client for a reachable engine, or EngineUnreachable saying how to start or reach one."""
    from docker.errors import DockerException
    from requests import RequestException

    host = _host(docker_host, os.environ)
    try:
        engine = _client(host, timeout, os.environ)
        engine.ping()
    except EngineUnreachable:
        raise
    except (DockerException, RequestException, OSError) as exc:
        hint = ACCESS_HINT if "Permission denied" in str(exc) else START_HINT
        reason = lost_reason(host.url) or first_line(exc)
        where = f" at {host.url}" if docker_host or host.source != "default" else ""
        raise EngineUnreachable(f"cannot reach the Docker engine{where} ({reason}); {hint}") from None
    return engine


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What the engine says of itself (``/version`` and ``/info``). ``containerd_store``: images live in
    containerd's image store (the ``containerd-snapshotter`` feature, Docker Desktop's and new installs'
    default): the engine's builder then has the image, oci and docker exporters, pushes itself, exports
    registry cache and runs MergeOp/DiffOp."""

    version: str
    api_version: str
    os_arch: str
    driver: str
    containerd_store: bool
    runtimes: tuple[str, ...]
    default_runtime: str

    @classmethod
    def from_api(cls, version: Mapping[str, Any], info: Mapping[str, Any]) -> EngineInfo:
        driver_status = info.get("DriverStatus") or []
        return cls(
            version=str(version.get("Version", "")),
            api_version=str(version.get("ApiVersion", "")),
            os_arch=f"{version.get('Os', '')}/{version.get('Arch', '')}",
            driver=str(info.get("Driver", "")),
            containerd_store=any("io.containerd.snapshotter" in str(v) for pair in driver_status for v in pair),
            runtimes=tuple(sorted((info.get("Runtimes") or {}).keys())),
            default_runtime=str(info.get("DefaultRuntime", "")),
        )

    @property
    def store(self) -> str:
        """The image store, as a person would name it."""
        return f"containerd image store ({self.driver})" if self.containerd_store else f"{self.driver} graph driver"


def engine_info(docker_host: str | None = None, *, timeout: int = 5) -> EngineInfo:
    """The engine's version and storage (EngineUnreachable when it does not answer)."""
    engine = connect(docker_host, timeout=timeout)
    try:
        return EngineInfo.from_api(engine.version(), engine.info())
    finally:
        engine.close()
