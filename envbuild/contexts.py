"""Build contexts: which BuildKit builder a command talks to and where environments run.

Contexts live in ``$XDG_CONFIG_HOME/envbuild/contexts.json`` (or ``~/.config/envbuild/``), written
atomically with mode 0600 because they name TLS key files and cluster settings. The built-in
``default`` context is the local Docker engine and is never stored.

Which builder a command uses, first match wins:
``--builder ADDRESS|CONTEXT`` > ``$BUILDKIT_HOST`` > the current context.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envbuild import paths
from envbuild._files import atomic_write
from envbuild.errors import EngineUnreachable, UsageError

__all__ = [
    "BUILDER_KINDS",
    "RUNNER_KINDS",
    "DEFAULT_CONTEXT",
    "TLSPaths",
    "KubernetesSettings",
    "Context",
    "ContextStore",
    "ResolvedBuilder",
    "contexts_path",
    "builder_kind",
    "normalize_address",
    "make_context",
    "resolve_builder",
]

BUILDER_KINDS: tuple[str, ...] = ("docker", "unix", "tcp", "docker-container", "kube-pod")
RUNNER_KINDS: tuple[str, ...] = ("docker", "kubernetes")
DEFAULT_CONTEXT = "default"
_SCHEMA = 1

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_CONTAINER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?)$")
_KUBE_QUERY_KEYS = frozenset({"namespace", "context", "container"})
_CONTEXT_KEYS = frozenset({"name", "builder", "address", "tls", "runner", "kubernetes", "description"})


def contexts_path() -> Path:
    """The contexts file; honours an absolute ``$XDG_CONFIG_HOME`` like the rest of envbuild."""
    return paths.config_dir() / "contexts.json"


@dataclass(frozen=True, slots=True)
class TLSPaths:
    """Client TLS material for a ``tcp://`` buildkitd, stored as absolute paths (never the keys)."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise UsageError("--tls-cert and --tls-key go together: give both or neither")

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("ca", self.ca), ("cert", self.cert), ("key", self.key),
                                  ("server_name", self.server_name)) if v}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TLSPaths:
        return cls(
            ca=data.get("ca") or None,
            cert=data.get("cert") or None,
            key=data.get("key") or None,
            server_name=data.get("server_name") or None,
        )


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """Where `envbuild up --runner kubernetes` creates pods and which registry their images go to."""

    namespace: str = "default"
    kube_context: str | None = None
    kubeconfig: str | None = None
    registry: str | None = None

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.namespace):
            raise UsageError(
                f"--namespace {self.namespace!r} is not a valid Kubernetes namespace "
                "(lowercase letters, digits and '-', at most 63 characters)"
            )
        if self.registry is not None:
            reg = self.registry.strip().rstrip("/")
            if not reg or "://" in reg or any(c.isspace() for c in reg):
                raise UsageError(
                    f"--registry {self.registry!r} must be a registry host and optional path, "
                    "e.g. registry.example.com:5000/team (no scheme)"
                )
            object.__setattr__(self, "registry", reg)

    def to_json(self) -> dict[str, str]:
        out = {"namespace": self.namespace}
        for k in ("kube_context", "kubeconfig", "registry"):
            v = getattr(self, k)
            if v:
                out[k] = v
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KubernetesSettings:
        return cls(
            namespace=data.get("namespace") or "default",
            kube_context=data.get("kube_context") or None,
            kubeconfig=data.get("kubeconfig") or None,
            registry=data.get("registry") or None,
        )


@dataclass(frozen=True, slots=True)
class Context:
    """A named builder (kind + normalised ``llb.connect`` address) and runner."""

    name: str
    builder: str = "docker"
    address: str = "docker://"
    tls: TLSPaths | None = None
    runner: str = "docker"
    kubernetes: KubernetesSettings | None = None
    description: str = ""

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_CONTEXT

    def tls_config(self) -> Any:
        """The ``llb.TLSConfig`` for this context, or None (imports the llb client lazily)."""
        if self.tls is None:
            return None
        from llb.connection import TLSConfig

        return TLSConfig(
            ca_cert=self.tls.ca, cert=self.tls.cert, key=self.tls.key, server_name=self.tls.server_name
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "builder": self.builder, "address": self.address,
                               "runner": self.runner}
        if self.tls is not None:
            out["tls"] = self.tls.to_json()
        if self.kubernetes is not None:
            out["kubernetes"] = self.kubernetes.to_json()
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Context:
        unknown = set(data) - _CONTEXT_KEYS
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        tls = data.get("tls")
        kube = data.get("kubernetes")
        return make_context(
            str(data["name"]),
            builder=str(data.get("builder", "docker")),
            address=str(data.get("address", "")),
            tls=TLSPaths.from_json(tls) if tls else None,
            runner=str(data.get("runner", "docker")),
            kubernetes=KubernetesSettings.from_json(kube) if kube else None,
            description=str(data.get("description", "")),
            check_files=False,
            allow_reserved=False,
        )


DEFAULT = Context(name=DEFAULT_CONTEXT, description="the local Docker engine's embedded BuildKit")


def validate_name(name: str, *, allow_reserved: bool = False) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(
            f"invalid context name {name!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, at most 63 characters)"
        )
    if name == DEFAULT_CONTEXT and not allow_reserved:
        raise UsageError("the context name 'default' is reserved for the local Docker engine")
    return name


def builder_kind(address: str) -> str:
    """The builder kind of a full address (``tcp://h:1234`` -> ``tcp``)."""
    scheme = address.split("://", 1)[0] if "://" in address else ""
    if scheme not in BUILDER_KINDS:
        raise UsageError(
            f"builder address {address!r} has an unknown scheme: use docker://, unix:///PATH, "
            "tcp://HOST:PORT, docker-container://NAME or kube-pod://POD[?namespace=NS&context=CTX]"
        )
    return scheme


def _strip_scheme(value: str, scheme: str) -> str:
    prefix = scheme + "://"
    return value[len(prefix):] if value.startswith(prefix) else value


def _port_ok(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


def _host_port(value: str, *, what: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not _HOST.match(host) or not _port_ok(port):
        raise UsageError(f"invalid {what} address {value!r}: expected HOST:PORT, e.g. buildkit.example.com:1234")
    return f"{host}:{int(port)}"


def normalize_address(builder: str, address: str | None) -> str:
    """The full ``llb.connect`` address for a builder kind and what the user typed for it.

    ``docker``: empty (``$DOCKER_HOST``, the docker context or the local socket), ``unix:///path``,
    ``tcp://host:port`` or ``ssh://[user@]host[:port]`` of the engine; ``unix``: a socket path; ``tcp``:
    ``host:port``; ``docker-container``: a container name (default ``buildkitd``); ``kube-pod``:
    ``POD[?namespace=NS&context=CTX&container=C]``.
    """
    if builder not in BUILDER_KINDS:
        raise UsageError(f"unknown builder {builder!r}: choose one of {', '.join(BUILDER_KINDS)}")
    raw = (address or "").strip()
    if any(c.isspace() for c in raw):
        raise UsageError(f"invalid --address {address!r}: it contains whitespace")
    scheme = raw.split("://", 1)[0] if "://" in raw else ""
    if scheme in BUILDER_KINDS and scheme != builder and not (builder == "docker" and scheme in ("unix", "tcp")):
        raise UsageError(f"--address {raw!r} is a {scheme} address but --builder is {builder}")
    if builder == "docker":
        rest = _strip_scheme(raw, "docker")
        if not rest:
            return "docker://"
        if rest.startswith("/"):
            return "docker://" + rest
        if rest.startswith("unix://"):
            path = rest[len("unix://"):]
            if not path.startswith("/"):
                raise UsageError(f"invalid Docker engine address {raw!r}: unix sockets need an absolute path")
            return "docker://" + path
        if rest.startswith(("tcp://", "http://", "https://")):
            scheme, _, hp = rest.partition("://")
            return f"docker://{scheme}://{_host_port(hp.rstrip('/'), what='Docker engine')}"
        if rest.startswith("ssh://"):
            from llb.sshdial import SSHDestination

            try:
                return "docker://" + SSHDestination.parse(rest).url
            except ValueError as exc:
                raise UsageError(f"invalid Docker engine address: {exc}") from None
        raise UsageError(
            f"invalid Docker engine address {raw!r}: use unix:///var/run/docker.sock, tcp://HOST:PORT or "
            "ssh://[USER@]HOST[:PORT] (or nothing for $DOCKER_HOST / the docker context / the local engine)"
        )
    if builder == "unix":
        path = _strip_scheme(raw, "unix")
        if not path:
            raise UsageError("--builder unix needs --address /path/to/buildkitd.sock")
        if not path.startswith("/"):
            raise UsageError(f"invalid unix socket {path!r}: give an absolute path")
        if len(path.encode()) > 107:
            raise UsageError(f"unix socket path {path!r} is longer than the 107 bytes sockets allow")
        return "unix://" + path
    if builder == "tcp":
        hp = _strip_scheme(raw, "tcp").rstrip("/")
        if not hp:
            raise UsageError("--builder tcp needs --address HOST:PORT of a buildkitd started with --addr tcp://…")
        return "tcp://" + _host_port(hp, what="tcp builder")
    if builder == "docker-container":
        name = _strip_scheme(raw, "docker-container") or "buildkitd"
        if not _CONTAINER.match(name):
            raise UsageError(f"invalid container name {name!r} for --builder docker-container")
        return "docker-container://" + name
    rest = _strip_scheme(raw, "kube-pod")
    pod, _, query = rest.partition("?")
    if not pod:
        raise UsageError("--builder kube-pod needs --address POD[?namespace=NS&context=CTX]")
    if not _DNS_SUBDOMAIN.match(pod):
        raise UsageError(f"invalid pod name {pod!r}: lowercase letters, digits, '-' and '.'")
    params = urllib.parse.parse_qs(query, keep_blank_values=True) if query else {}
    bad = set(params) - _KUBE_QUERY_KEYS
    if bad:
        raise UsageError(
            f"unknown kube-pod address parameter(s) {', '.join(sorted(bad))}: "
            "use namespace=, context= and container="
        )
    items: list[tuple[str, str]] = []
    for key in sorted(params):
        values = params[key]
        if len(values) != 1 or not values[0]:
            raise UsageError(f"kube-pod address parameter {key}= needs exactly one non-empty value")
        if key == "namespace" and not _DNS_LABEL.match(values[0]):
            raise UsageError(f"invalid namespace {values[0]!r} in the kube-pod address")
        items.append((key, values[0]))
    return "kube-pod://" + pod + (("?" + urllib.parse.urlencode(items)) if items else "")


def _tls_paths(tls: TLSPaths, *, check_files: bool) -> TLSPaths:
    def one(flag: str, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        if check_files:
            if not path.is_file():
                raise UsageError(f"{flag} {value}: no such file")
            path = path.resolve()
        return str(path)

    return replace(tls, ca=one("--tls-ca", tls.ca), cert=one("--tls-cert", tls.cert), key=one("--tls-key", tls.key))


def make_context(
    name: str,
    *,
    builder: str = "docker",
    address: str | None = None,
    tls: TLSPaths | None = None,
    runner: str = "docker",
    kubernetes: KubernetesSettings | None = None,
    description: str = "",
    check_files: bool = True,
    allow_reserved: bool = False,
) -> Context:
    """A validated Context; every mistake is a UsageError naming the option."""
    validate_name(name, allow_reserved=allow_reserved)
    full = normalize_address(builder, address)
    if tls is not None and not tls.to_json():
        tls = None
    if tls is not None:
        if builder != "tcp":
            raise UsageError(
                f"--tls-ca/--tls-cert/--tls-key apply to --builder tcp only, not {builder} "
                "(a Docker engine over TCP uses $DOCKER_CERT_PATH)"
            )
        tls = _tls_paths(tls, check_files=check_files)
    if runner not in RUNNER_KINDS:
        raise UsageError(f"unknown runner {runner!r}: choose one of {', '.join(RUNNER_KINDS)}")
    if runner == "kubernetes":
        kubernetes = kubernetes or KubernetesSettings()
        if kubernetes.kubeconfig and check_files:
            kc = Path(kubernetes.kubeconfig).expanduser()
            if not kc.is_file():
                raise UsageError(f"--kubeconfig {kubernetes.kubeconfig}: no such file")
            kubernetes = replace(kubernetes, kubeconfig=str(kc.resolve()))
    elif kubernetes is not None:
        raise UsageError("--namespace/--kube-context/--kubeconfig/--registry need --runner kubernetes")
    if "\n" in description:
        raise UsageError("--description must be one line")
    return Context(name=name, builder=builder, address=full, tls=tls, runner=runner,
                   kubernetes=kubernetes, description=description)


@dataclass(frozen=True, slots=True)
class _State:
    current: str = DEFAULT_CONTEXT
    contexts: dict[str, Context] = field(default_factory=dict)


class ContextStore:
    """Reads and writes the contexts file; every write replaces the whole file atomically."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else contexts_path()

    def _load(self) -> _State:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return _State()
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            contexts: dict[str, Context] = {}
            for entry in data.get("contexts", []):
                ctx = Context.from_json(entry)
                contexts[ctx.name] = ctx
            current = str(data.get("current") or DEFAULT_CONTEXT)
        except (ValueError, KeyError, TypeError, UsageError) as exc:
            raise UsageError(
                f"{self.path} is damaged ({exc}); fix or delete it (contexts are recreated with "
                "`envbuild context create`)"
            ) from None
        if current != DEFAULT_CONTEXT and current not in contexts:
            current = DEFAULT_CONTEXT
        return _State(current=current, contexts=contexts)

    def _save(self, state: _State) -> None:
        data = {
            "version": _SCHEMA,
            "current": state.current,
            "contexts": [state.contexts[n].to_json() for n in sorted(state.contexts)],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with atomic_write(self.path, mode=0o600, text=True) as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")

    def list(self) -> list[Context]:
        """The built-in default first, then the stored contexts by name."""
        state = self._load()
        return [DEFAULT, *(state.contexts[n] for n in sorted(state.contexts))]

    def current_name(self) -> str:
        return self._load().current

    def get(self, name: str) -> Context:
        if name == DEFAULT_CONTEXT:
            return DEFAULT
        state = self._load()
        try:
            return state.contexts[name]
        except KeyError:
            known = ", ".join([DEFAULT_CONTEXT, *sorted(state.contexts)])
            raise UsageError(f"no context named {name!r} (known: {known})") from None

    def current(self) -> Context:
        return self.get(self.current_name())

    def create(self, ctx: Context, *, use: bool = False, overwrite: bool = False) -> None:
        validate_name(ctx.name)
        state = self._load()
        if ctx.name in state.contexts and not overwrite:
            raise UsageError(f"context {ctx.name!r} already exists; remove it first or pass --force")
        contexts = {**state.contexts, ctx.name: ctx}
        self._save(_State(current=ctx.name if use else state.current, contexts=contexts))

    def use(self, name: str) -> Context:
        ctx = self.get(name)
        state = self._load()
        self._save(replace(state, current=name))
        return ctx

    def remove(self, name: str, *, force: bool = False) -> None:
        if name == DEFAULT_CONTEXT:
            raise UsageError("the built-in 'default' context cannot be removed")
        state = self._load()
        if name not in state.contexts:
            self.get(name)
        current = state.current
        if name == current:
            if not force:
                raise UsageError(
                    f"context {name!r} is in use; switch with `envbuild context use default` "
                    "or pass --force (the current context becomes 'default')"
                )
            current = DEFAULT_CONTEXT
        contexts = {k: v for k, v in state.contexts.items() if k != name}
        self._save(_State(current=current, contexts=contexts))


@dataclass(frozen=True, slots=True)
class ResolvedBuilder:
    """The builder one command uses, and why (``source``: flag, env or context)."""

    address: str
    kind: str
    source: str
    context: Context

    @property
    def is_docker_engine(self) -> bool:
        return self.kind == "docker"

    def tls_config(self) -> Any:
        return self.context.tls_config() if self.source == "context" else None

    @property
    def docker_host(self) -> str | None:
        """The Docker API endpoint of a ``docker`` builder, for the docker SDK (None: $DOCKER_HOST)."""
        if self.kind != "docker":
            return None
        rest = self.address[len("docker://"):]
        if not rest:
            return None
        return "unix://" + rest if rest.startswith("/") else rest

    def describe(self) -> str:
        if self.source == "flag":
            return f"{self.address} (from --builder)"
        if self.source == "env":
            return f"{self.address} (from $BUILDKIT_HOST)"
        if self.address == "docker://":  # the docker CLI's engine: say which one that is
            from envbuild import engine_api

            with contextlib.suppress(UsageError):
                host = engine_api.engine_host()
                if host.source != "default":
                    return f"{self.address} (context {self.context.name!r}: {host.url} from {host.source})"
        return f"{self.address} (context {self.context.name!r})"

    def unreachable(self, exc: BaseException) -> EngineUnreachable:
        """The EngineUnreachable for a builder that could not be reached or went away, naming it and,
        for an engine over ssh, what the ssh connection said when it ended."""
        from envbuild import engine_api

        engine = self.docker_host or (engine_api.engine_host().url if self.address == "docker://" else "")
        said = engine_api.lost_reason(engine) if engine else ""
        return EngineUnreachable(f"{exc}" + (f" ({said})" if said else "") + f" [{self.describe()}]")

    def preflight(self, *, timeout: float = 2.0) -> None:
        """Fail fast on addresses nothing listens at, instead of waiting out the gRPC connect timeout."""

        if self.kind == "tcp":
            import socket

            parsed = urllib.parse.urlparse(self.address)
            host, port = parsed.hostname or "", parsed.port or 0
            try:
                socket.create_connection((host, port), timeout=timeout).close()
            except OSError as exc:
                reason = exc.strerror or str(exc) or type(exc).__name__
                raise EngineUnreachable(
                    f"cannot reach BuildKit at {self.address} [{self.describe()}]: {reason}; start one with "
                    f"`buildkitd --addr tcp://0.0.0.0:{port}` there, or check the address and firewall"
                ) from None
        elif self.kind == "docker-container":
            import shutil
            import subprocess

            name = self.address[len("docker-container://"):]
            if shutil.which("docker") is None:
                raise EngineUnreachable(
                    f"cannot reach BuildKit at {self.address} [{self.describe()}]: the `docker` CLI is not on PATH"
                )
            try:
                probe = subprocess.run(
                    ["docker", "inspect", "--type", "container", "--format", "{{.State.Running}}", name],
                    capture_output=True, text=True, timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                return
            if probe.returncode != 0 or probe.stdout.strip() != "true":
                state = "is not running" if probe.returncode == 0 else "does not exist"
                raise EngineUnreachable(
                    f"cannot reach BuildKit at {self.address} [{self.describe()}]: container {name!r} {state}; "
                    f"start it with `docker run -d --name {name} --privileged moby/buildkit`"
                )

    def connect(self, *, timeout: float = 4.0) -> Any:
        """``llb.connect`` to this builder; an unreachable one becomes EngineUnreachable naming it,
        within `timeout` seconds (sooner when the pre-flight check sees nothing listening)."""
        import llb

        self.preflight(timeout=min(2.0, timeout))
        try:
            return llb.connect(self.address, tls=self.tls_config(), timeout=timeout)
        except llb.BuilderUnreachable as exc:
            raise EngineUnreachable(f"{exc} [{self.describe()}]") from None


def _address_from_value(value: str) -> tuple[str, str]:
    if value.startswith("ssh://"):  # another machine's Docker engine, as in DOCKER_HOST
        return normalize_address("docker", value), "docker"
    kind = builder_kind(value)
    rest = value[len(kind) + 3:]
    return normalize_address(kind, rest), kind


def resolve_builder(
    flag: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    store: ContextStore | None = None,
) -> ResolvedBuilder:
    """Apply the precedence ``--builder`` > ``$BUILDKIT_HOST`` > current context.

    ``--builder`` takes a full address (``tcp://host:1234``) or a context name.
    """
    environ = os.environ if env is None else env
    store = store if store is not None else ContextStore()
    if flag is not None and flag.strip():
        value = flag.strip()
        if "://" in value:
            try:
                address, kind = _address_from_value(value)
            except UsageError as exc:
                raise UsageError(f"--builder: {exc}") from None
            return ResolvedBuilder(address, kind, "flag", Context(name="(--builder)", builder=kind, address=address))
        try:
            ctx = store.get(value)
        except UsageError as exc:
            raise UsageError(f"--builder {value!r} is neither an address (SCHEME://…) nor a context: {exc}") from None
        return ResolvedBuilder(ctx.address, ctx.builder, "context", ctx)
    host = (environ.get("BUILDKIT_HOST") or "").strip()
    if host:
        try:
            address, kind = _address_from_value(host)
        except UsageError as exc:
            raise UsageError(f"$BUILDKIT_HOST: {exc}") from None
        return ResolvedBuilder(address, kind, "env", Context(name="(BUILDKIT_HOST)", builder=kind, address=address))
    ctx = store.current()
    return ResolvedBuilder(ctx.address, ctx.builder, "context", ctx)
