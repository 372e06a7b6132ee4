"""The immutable `State` at the heart of the LLB builder.

A State is a pointer to one output of a graph vertex (or to scratch, the empty
filesystem) plus the metadata later `run` steps inherit: environment, working
directory, user, platform and network mode. Every method returns a new State;
nothing is executed until the graph is marshalled and solved by a builder.
"""

from __future__ import annotations

import dataclasses
import enum
import posixpath
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._proto import ops_pb2
from .errors import InvalidGraph
from .platform import Platform

if TYPE_CHECKING:
    from .definition import Definition
    from .exec import ExecState, Mount, ProxyEnv
    from .fileop import FileAction

__all__ = ["Network", "OpOptions", "Output", "State", "Vertex", "MarshalContext"]


class Network(enum.Enum):
    """Network mode of a `run` step.

    SANDBOX is the builder's default isolated network; HOST needs the
    `network.host` entitlement at solve time; NONE has only loopback.
    """

    SANDBOX = "sandbox"
    HOST = "host"
    NONE = "none"

    @classmethod
    def coerce(cls, value: Network | str) -> Network:
        """A member, or the one named by `value` in any case ("host", "HOST"); InvalidGraph otherwise."""
        if isinstance(value, Network):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise InvalidGraph(f"unknown network mode {value!r}: use one of sandbox, host, none") from None


class MarshalContext(ABC):
    """What a vertex needs from the marshaller: digests of its inputs and the default platform."""

    default_platform: Platform

    @abstractmethod
    def digest(self, vertex: Vertex) -> str: ...

    def input(self, output: Output) -> ops_pb2.Input:
        """The pb.Input pointing at `output`."""
        return ops_pb2.Input(digest=self.digest(output.vertex), index=output.index)


class InputList:
    """An op's pb.Input list, each distinct output once; `index` gives its position (-1 for none)."""

    def __init__(self, ctx: MarshalContext) -> None:
        self.ctx = ctx
        self._keys: list[tuple[str, int]] = []

    def index(self, output: Output | None) -> int:
        if output is None:
            return -1
        key = (self.ctx.digest(output.vertex), output.index)
        if key not in self._keys:
            self._keys.append(key)
        return self._keys.index(key)

    @property
    def inputs(self) -> list[ops_pb2.Input]:
        return [ops_pb2.Input(digest=digest, index=index) for digest, index in self._keys]

    def __len__(self) -> int:
        return len(self._keys)


class Vertex(ABC):
    """One LLB operation; compared by identity, de-duplicated by digest when marshalled."""

    __slots__ = ()

    @abstractmethod
    def dependencies(self) -> tuple[Output, ...]:
        """Outputs of other vertices this one reads, in input order."""

    @abstractmethod
    def to_op(self, ctx: MarshalContext) -> tuple[ops_pb2.Op, ops_pb2.OpMetadata]:
        """Builds the pb.Op and its pb.OpMetadata; raises InvalidGraph for graphs a builder would reject."""

    @abstractmethod
    def label(self) -> str:
        """Short human description for graph dumps."""


@dataclass(frozen=True, slots=True)
class Output:
    """Output `index` of `vertex`."""

    vertex: Vertex
    index: int = 0


@dataclass(frozen=True, slots=True)
class OpOptions:
    """Per-vertex constraints and metadata shared by every op kind."""

    name: str | None = None
    ignore_cache: bool = False
    platform: Platform | None = None

    def apply(self, ctx: MarshalContext, op: ops_pb2.Op, caps: Iterable[str] = ()) -> ops_pb2.OpMetadata:
        """Sets the op's platform and returns its OpMetadata (name, cache flag, caps)."""
        plat = self.platform or ctx.default_platform
        op.platform.CopyFrom(ops_pb2.Platform(OS=plat.os, Architecture=plat.architecture, Variant=plat.variant))
        return self.metadata(caps)

    def metadata(self, caps: Iterable[str] = ()) -> ops_pb2.OpMetadata:
        """The OpMetadata alone, for ops that are not platform specific (merge, diff)."""
        md = ops_pb2.OpMetadata(ignore_cache=self.ignore_cache)
        all_caps = set(caps)
        if self.name:
            md.description["llb.customname"] = self.name
            all_caps.add("meta.description")
        if self.ignore_cache:
            all_caps.add("meta.ignorecache")
        md.caps.update(dict.fromkeys(all_caps, True))
        return md


def _check_name(name: str | None) -> str | None:
    if name is not None and not isinstance(name, str):
        raise InvalidGraph(f"vertex name must be a string, got {type(name).__name__}")
    return name or None


def _check_env_key(key: str) -> str:
    if not isinstance(key, str) or not key or "=" in key or "\x00" in key:
        raise InvalidGraph(f"invalid environment variable name {key!r}: must be non-empty and contain no '=' or NUL")
    return key


def _check_env_value(key: str, value: str) -> str:
    if not isinstance(value, str):
        raise InvalidGraph(f"environment variable {key} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidGraph(f"environment variable {key} contains a NUL byte")
    return value


def resolve_path(cwd: str, path: str, *, what: str = "path", keep_slash: bool = False) -> str:
    """Joins `path` onto `cwd` like the Go client: relative paths follow the state's working directory."""
    if not isinstance(path, str) or not path:
        raise InvalidGraph(f"{what} must be a non-empty string, got {path!r}")
    if "\x00" in path:
        raise InvalidGraph(f"{what} {path!r} contains a NUL byte")
    joined = posixpath.normpath(posixpath.join(cwd or "/", path))
    if joined.startswith("//"):
        joined = "/" + joined.lstrip("/")
    if keep_slash and (path.endswith("/") or path.endswith("/.")) and joined != "/":
        joined += "/"
    return joined


@dataclass(frozen=True, slots=True)
class State:
    """An immutable filesystem state plus the settings that later `run` steps inherit.

    States are values: every method returns a new State linked to the previous
    one, and nothing runs until `marshal()` hands the graph to a builder.
    """

    output: Output | None = None
    env_vars: tuple[tuple[str, str], ...] = ()
    cwd: str = "/"
    user: str = ""
    platform: Platform | None = None
    network: Network = Network.SANDBOX

    def _derive(self, **changes: Any) -> State:
        """A plain State with these settings and `changes` (what an ExecState adds is left behind)."""
        base = self
        if type(self) is not State:
            base = State(self.output, self.env_vars, self.cwd, self.user, self.platform, self.network)
        return dataclasses.replace(base, **changes)

    @property
    def is_scratch(self) -> bool:
        return self.output is None

    def with_output(self, output: Output | None) -> State:
        """The same settings over another filesystem (used by op constructors)."""
        return self._derive(output=output)

    def with_env(self, key: str, value: str) -> State:
        """Sets one variable, keeping its position if it already exists (stable digests)."""
        return self.with_envs({key: value})

    def with_envs(self, env: Mapping[str, str]) -> State:
        return self._derive(env_vars=merge_env(self.env_vars, env))

    def without_env(self, key: str) -> State:
        return self._derive(env_vars=tuple((k, v) for k, v in self.env_vars if k != key))

    def env(self, key: str) -> str | None:
        for k, v in self.env_vars:
            if k == key:
                return v
        return None

    @property
    def envs(self) -> dict[str, str]:
        return dict(self.env_vars)

    def with_cwd(self, path: str) -> State:
        """Changes the working directory; a relative path is taken from the current one."""
        return self._derive(cwd=resolve_path(self.cwd, path, what="working directory"))

    def with_user(self, user: str) -> State:
        if not isinstance(user, str) or "\x00" in user:
            raise InvalidGraph(f"invalid user {user!r}")
        return self._derive(user=user)

    def with_platform(self, platform: Platform | str) -> State:
        """Platform for ops created from this state on (and for image sources resolved with it)."""
        if isinstance(platform, str):
            platform = Platform.parse(platform)
        if not isinstance(platform, Platform):
            raise InvalidGraph(f"platform must be a Platform or 'os/arch' string, got {platform!r}")
        return self._derive(platform=platform)

    def with_network(self, network: Network | str) -> State:
        """Default network mode for later `run` steps."""
        return self._derive(network=Network.coerce(network))

    def run(
        self,
        args: str | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        network: Network | str | None = None,
        mounts: Sequence[Mount] = (),
        name: str | None = None,
        ignore_cache: bool = False,
        shell: bool = False,
        proxy_env: ProxyEnv | Mapping[str, str] | None = None,
    ) -> ExecState:
        """Runs a command on top of this state; `ExecState.root()` is the resulting filesystem.

        A string `args` is split like a POSIX shell would (llb.Shlex); `shell=True`
        runs it through `/bin/sh -c` instead. `proxy_env` (an `llb.ProxyEnv` or a mapping such as
        ``{"HTTPS_PROXY": ...}``) reaches the process but not the cache key.
        """
        from .exec import make_exec

        return make_exec(
            self,
            args,
            env=env,
            cwd=cwd,
            user=user,
            network=network,
            mounts=mounts,
            name=_check_name(name),
            ignore_cache=ignore_cache,
            shell=shell,
            proxy_env=proxy_env,
        )

    def file(self, action: FileAction, *, name: str | None = None, ignore_cache: bool = False) -> State:
        """Applies a chain of file actions (mkdir, mkfile, copy, rm) as one FileOp."""
        from .fileop import make_file

        return make_file(self, action, name=_check_name(name), ignore_cache=ignore_cache)

    def marshal(self, *, platform: Platform | str | None = None) -> Definition:
        """Serialises the graph ending here; `platform` is used for ops that set none (default: host)."""
        from .definition import marshal

        if isinstance(platform, str):
            platform = Platform.parse(platform)
        return marshal(self.output, platform=platform)


def merge_env(
    base: tuple[tuple[str, str], ...], updates: Mapping[str, str] | Iterable[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """Overlays `updates` on `base`: existing keys keep their position, new keys append."""
    items = updates.items() if isinstance(updates, Mapping) else updates
    result = list(base)
    index = {k: i for i, (k, _) in enumerate(result)}
    for key, value in items:
        _check_env_key(key)
        _check_env_value(key, value)
        if key in index:
            result[index[key]] = (key, value)
        else:
            index[key] = len(result)
            result.append((key, value))
    return tuple(result)
