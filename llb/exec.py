"""`run` steps (ExecOp) and the mounts they can use."""

from __future__ import annotations

import dataclasses
import posixpath
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ._proto import ops_pb2
from .errors import InvalidGraph
from .state import InputList, MarshalContext, Network, OpOptions, Output, State, Vertex, merge_env, resolve_path

__all__ = ["ExecState", "Mount", "ProxyEnv", "bind", "cache", "secret", "ssh", "tmpfs", "Sharing", "MountKind"]

Sharing = Literal["shared", "private", "locked"]
MountKind = Literal["bind", "cache", "secret", "ssh", "tmpfs"]

_SHARING = {"shared": ops_pb2.SHARED, "private": ops_pb2.PRIVATE, "locked": ops_pb2.LOCKED}
_MOUNT_TYPES = {
    "bind": ops_pb2.BIND,
    "secret": ops_pb2.SECRET,
    "ssh": ops_pb2.SSH,
    "cache": ops_pb2.CACHE,
    "tmpfs": ops_pb2.TMPFS,
}
_NET_MODES = {Network.SANDBOX: ops_pb2.UNSET, Network.HOST: ops_pb2.HOST, Network.NONE: ops_pb2.NONE}


def _mount_dest(dest: str) -> str:
    if not isinstance(dest, str) or not dest:
        raise InvalidGraph(f"mount destination must be a non-empty string, got {dest!r}")
    if not dest.startswith("/"):
        raise InvalidGraph(f"mount destination {dest!r} must be an absolute path")
    if "\x00" in dest:
        raise InvalidGraph(f"mount destination {dest!r} contains a NUL byte")
    return posixpath.normpath(dest) if dest != "/" else "/"


def _check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidGraph(f"{kind} mount needs a non-empty id")
    return value


def _check_owner_mode(kind: str, uid: int, gid: int, mode: int) -> None:
    for label, value in (("uid", uid), ("gid", gid)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
            raise InvalidGraph(f"{kind} mount {label} must be an integer in 0..2^32-1, got {value!r}")
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise InvalidGraph(f"{kind} mount mode must be within 0o0..0o7777, got {mode!r}")


_PROXY_FIELDS = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy")


@dataclass(frozen=True, slots=True)
class ProxyEnv:
    """Proxy settings for a `run` step (ExecOp ``Meta.proxy_env``).

    BuildKit gives them to the process as ``HTTP_PROXY``/``http_proxy``, ... but leaves them out of
    the step's cache key, so a build behind a proxy shares its cache with one without. BuildKit
    before v0.11 ignores ``all_proxy``.
    """

    http_proxy: str = ""
    https_proxy: str = ""
    ftp_proxy: str = ""
    no_proxy: str = ""
    all_proxy: str = ""

    def __post_init__(self) -> None:
        for name in _PROXY_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise InvalidGraph(f"proxy_env {name} must be a string, got {type(value).__name__}")
            if "\x00" in value or "\n" in value:
                raise InvalidGraph(f"proxy_env {name} {value!r} contains a NUL byte or a line break")

    @classmethod
    def coerce(cls, value: ProxyEnv | Mapping[str, str] | None) -> ProxyEnv | None:
        """A ProxyEnv, a mapping (keys in either case: ``HTTPS_PROXY`` or ``https_proxy``) or None."""
        if value is None or isinstance(value, ProxyEnv):
            return value if value else None
        if not isinstance(value, Mapping):
            raise InvalidGraph(f"proxy_env must be a ProxyEnv or a mapping, got {type(value).__name__}")
        fields: dict[str, str] = {}
        for key, v in value.items():
            name = str(key).lower()
            if name not in _PROXY_FIELDS:
                raise InvalidGraph(f"unknown proxy_env key {key!r} (known: {', '.join(_PROXY_FIELDS)}, either case)")
            if name in fields and fields[name] != v:
                raise InvalidGraph(f"proxy_env gives {name} twice with different values")
            fields[name] = v
        made = cls(**fields)
        return made if made else None

    def __bool__(self) -> bool:
        return any(getattr(self, n) for n in _PROXY_FIELDS)


@dataclass(frozen=True, slots=True)
class Mount:
    """A filesystem mounted into a `run` step; build with the classmethods (or module functions)."""

    dest: str
    kind: MountKind
    source: State | None = None
    source_path: str = "/"
    readonly: bool = False
    id: str = ""
    sharing: Sharing = "shared"
    uid: int = 0
    gid: int = 0
    mode: int = 0
    optional: bool = False

    @classmethod
    def bind(cls, dest: str, source: State, *, source_path: str = "/", readonly: bool = True) -> Mount:
        """Mounts `source` (at `source_path`); a writable bind yields a new state via `ExecState.mount_state`."""
        if not isinstance(source, State):
            raise InvalidGraph(f"bind mount source for {dest!r} must be a State, got {type(source).__name__}")
        path = resolve_path("/", source_path, what="bind mount source path")
        return cls(_mount_dest(dest), "bind", source=source, source_path=path, readonly=bool(readonly))

    @classmethod
    def cache(cls, dest: str, id: str, *, sharing: Sharing = "shared") -> Mount:
        """A persistent cache directory shared between builds by `id` (not part of the result)."""
        if sharing not in _SHARING:
            raise InvalidGraph(f"cache mount sharing must be one of shared, private, locked; got {sharing!r}")
        return cls(_mount_dest(dest), "cache", id=_check_id("cache", id), sharing=sharing)

    @classmethod
    def secret(
        cls, dest: str, id: str, *, uid: int = 0, gid: int = 0, mode: int = 0o400, optional: bool = False
    ) -> Mount:
        """A file with the secret `id` from the client session; never stored in the result."""
        _check_owner_mode("secret", uid, gid, mode)
        return cls(
            _mount_dest(dest),
            "secret",
            id=_check_id("secret", id),
            uid=uid,
            gid=gid,
            mode=mode,
            optional=bool(optional),
        )

    @classmethod
    def ssh(
        cls,
        dest: str = "/run/buildkit/ssh_agent.0",
        id: str = "default",
        *,
        uid: int = 0,
        gid: int = 0,
        mode: int = 0o600,
        optional: bool = False,
    ) -> Mount:
        """A socket forwarding the client's ssh agent `id`."""
        _check_owner_mode("ssh", uid, gid, mode)
        return cls(
            _mount_dest(dest), "ssh", id=_check_id("ssh", id), uid=uid, gid=gid, mode=mode, optional=bool(optional)
        )

    @classmethod
    def tmpfs(cls, dest: str) -> Mount:
        """An empty in-memory filesystem for the duration of the step."""
        return cls(_mount_dest(dest), "tmpfs")

    @property
    def writable_bind(self) -> bool:
        return self.kind == "bind" and not self.readonly


bind = Mount.bind
cache = Mount.cache
secret = Mount.secret
ssh = Mount.ssh
tmpfs = Mount.tmpfs


@dataclass(frozen=True, slots=True, eq=False)
class ExecVertex(Vertex):
    root: Output | None
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    cwd: str
    user: str
    network: Network
    mounts: tuple[Mount, ...]
    options: OpOptions
    outputs: Mapping[str, int] = field(default_factory=dict)
    proxy_env: ProxyEnv | None = None

    def dependencies(self) -> tuple[Output, ...]:
        deps: list[Output] = [] if self.root is None else [self.root]
        for m in self.mounts:
            if m.kind == "bind" and m.source is not None and m.source.output is not None:
                deps.append(m.source.output)
        return tuple(deps)

    def label(self) -> str:
        return self.options.name or " ".join(self.args)

    def to_op(self, ctx: MarshalContext) -> tuple[ops_pb2.Op, ops_pb2.OpMetadata]:
        caps = {"exec.meta.base"}
        inputs = InputList(ctx)
        meta = ops_pb2.Meta(args=self.args, env=[f"{k}={v}" for k, v in self.env], cwd=self.cwd, user=self.user)
        if self.proxy_env:
            meta.proxy_env.CopyFrom(ops_pb2.ProxyEnv(**dataclasses.asdict(self.proxy_env)))
            caps.add("exec.meta.proxyenv")
        if self.network is not Network.SANDBOX:
            caps.add("exec.meta.network")
        mounts = [ops_pb2.Mount(input=inputs.index(self.root), dest="/", output=0)]
        for m in self.mounts:
            mount, mount_caps = self._mount(m, inputs)
            mounts.append(mount)
            caps.update(mount_caps)
        op = ops_pb2.Op(exec=ops_pb2.ExecOp(meta=meta, mounts=mounts, network=_NET_MODES[self.network]))
        op.inputs.extend(inputs.inputs)
        return op, self.options.apply(ctx, op, caps)

    def _mount(self, m: Mount, inputs: InputList) -> tuple[ops_pb2.Mount, tuple[str, ...]]:
        """The pb.Mount of one of the step's extra mounts and the caps it needs."""
        mount = ops_pb2.Mount(dest=m.dest, mountType=_MOUNT_TYPES[m.kind], input=-1, output=-1)
        if m.kind == "bind":
            assert m.source is not None
            mount.input = inputs.index(m.source.output)
            mount.readonly = m.readonly
            mount.output = self.outputs.get(m.dest, -1)
            if m.source_path == "/":
                return mount, ("exec.mount.bind",)
            mount.selector = m.source_path
            return mount, ("exec.mount.bind", "exec.mount.selector")
        if m.kind == "cache":
            mount.cacheOpt.CopyFrom(ops_pb2.CacheOpt(ID=m.id, sharing=_SHARING[m.sharing]))
            return mount, ("exec.mount.cache", "exec.mount.cache.sharing")
        if m.kind == "secret":
            mount.secretOpt.CopyFrom(ops_pb2.SecretOpt(ID=m.id, uid=m.uid, gid=m.gid, mode=m.mode, optional=m.optional))
            return mount, ("exec.mount.secret",)
        if m.kind == "ssh":
            mount.SSHOpt.CopyFrom(ops_pb2.SSHOpt(ID=m.id, uid=m.uid, gid=m.gid, mode=m.mode, optional=m.optional))
            return mount, ("exec.mount.ssh",)
        return mount, ("exec.mount.tmpfs",)


@dataclass(frozen=True, slots=True)
class ExecState(State):
    """The state after a `run`: itself the root filesystem, plus access to writable mounts."""

    exec_vertex: ExecVertex | None = field(default=None, repr=False, compare=False)

    def root(self) -> State:
        """The root filesystem after the command ran."""
        return self._derive()

    def mount_state(self, dest: str) -> State:
        """The contents of the writable bind mount at `dest` after the command ran."""
        assert self.exec_vertex is not None
        norm = _mount_dest(dest)
        if norm == "/":
            return self.root()
        index = self.exec_vertex.outputs.get(norm)
        if index is None:
            writable = sorted(self.exec_vertex.outputs) or ["none"]
            raise InvalidGraph(
                f"{dest!r} is not a writable bind mount of {self.exec_vertex.label()!r} "
                f"(writable mounts: {', '.join(writable)}); pass readonly=False to llb.bind"
            )
        return self._derive(output=Output(self.exec_vertex, index))


def _args(args: str | Sequence[str], shell: bool) -> tuple[str, ...]:
    if isinstance(args, str):
        if shell:
            result: Sequence[str] = ["/bin/sh", "-c", args]
        else:
            try:
                result = shlex.split(args)
            except ValueError as exc:
                raise InvalidGraph(f"cannot split command {args!r}: {exc}") from None
    elif isinstance(args, Sequence):
        result = ["/bin/sh", "-c", shlex.join(args)] if shell else list(args)
    else:
        raise InvalidGraph(f"run args must be a string or a sequence of strings, got {type(args).__name__}")
    if not result or (len(result) == 3 and shell and not result[2].strip()):
        raise InvalidGraph("run needs a command: args are empty")
    for a in result:
        if not isinstance(a, str):
            raise InvalidGraph(f"run args must be strings, got {a!r}")
        if "\x00" in a:
            raise InvalidGraph(f"run argument {a!r} contains a NUL byte")
    if not result[0]:
        raise InvalidGraph("run needs a command: the first argument is empty")
    return tuple(result)


def _sorted_mounts(mounts: Sequence[Mount], argv: Sequence[str]) -> tuple[Mount, ...]:
    """The step's mounts in destination order (stable digests), each destination once."""
    if isinstance(mounts, Mount):
        raise InvalidGraph("mounts must be a sequence of llb mounts, e.g. mounts=[llb.cache(...)]")
    by_dest: dict[str, Mount] = {}
    for m in mounts:
        if not isinstance(m, Mount):
            raise InvalidGraph(f"mounts must be llb mounts (llb.bind, llb.cache, ...), got {type(m).__name__}")
        if m.dest == "/":
            raise InvalidGraph("cannot mount over '/': run on the state you want as the root filesystem instead")
        if m.dest in by_dest:
            raise InvalidGraph(f"two mounts target {m.dest!r} in {' '.join(argv)!r}")
        by_dest[m.dest] = m
    return tuple(by_dest[d] for d in sorted(by_dest))


def make_exec(
    base: State,
    args: str | Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | None,
    user: str | None,
    network: Network | str | None,
    mounts: Sequence[Mount],
    name: str | None,
    ignore_cache: bool,
    shell: bool,
    proxy_env: ProxyEnv | Mapping[str, str] | None = None,
) -> ExecState:
    argv = _args(args, shell)
    env_vars = merge_env(base.env_vars, env or {})
    workdir = base.cwd if cwd is None else resolve_path(base.cwd, cwd, what="working directory")
    if user is not None and (not isinstance(user, str) or "\x00" in user):
        raise InvalidGraph(f"invalid user {user!r}")
    net = base.network if network is None else Network.coerce(network)
    ordered = _sorted_mounts(mounts, argv)
    # Output 0 is the root filesystem; each writable bind mount adds one, in destination order.
    writable = [m.dest for m in ordered if m.writable_bind]
    vertex = ExecVertex(
        root=base.output,
        args=argv,
        env=env_vars,
        cwd=workdir,
        user=base.user if user is None else user,
        network=net,
        mounts=ordered,
        options=OpOptions(name=name, ignore_cache=bool(ignore_cache), platform=base.platform),
        outputs={dest: index for index, dest in enumerate(writable, start=1)},
        proxy_env=ProxyEnv.coerce(proxy_env),
    )
    return ExecState(
        output=Output(vertex, 0),
        env_vars=base.env_vars,
        cwd=base.cwd,
        user=base.user,
        platform=base.platform,
        network=base.network,
        exec_vertex=vertex,
    )
