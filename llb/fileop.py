"""File actions (mkdir, mkfile, rm, copy) combined into one FileOp per `State.file` call."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._proto import ops_pb2
from .errors import InvalidGraph
from .state import InputList, MarshalContext, OpOptions, Output, State, Vertex, resolve_path

__all__ = ["FileAction", "Owner", "mkdir", "mkfile", "rm", "copy", "MAX_INLINE_FILE_BYTES"]

# Docker 20.10's gRPC server rejects messages over 4 MiB; a file this large belongs in a local source.
MAX_INLINE_FILE_BYTES = 3 * 1024 * 1024

# A user or group name for chown, looked up in the target's /etc/passwd and /etc/group.
_USER_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?")

OwnerSpec = str | int | tuple[int, int] | tuple[str, str] | None
"""What `owner=` accepts besides an `Owner`: "user[:group]", a uid, or a (user, group) pair."""


@dataclass(frozen=True, slots=True)
class Owner:
    """File owner: numeric ids or names looked up in the target's /etc/passwd and /etc/group."""

    user: int | str
    group: int | str | None = None

    @classmethod
    def parse(cls, spec: OwnerSpec | Owner) -> Owner | None:
        if spec is None or isinstance(spec, Owner):
            return spec
        if isinstance(spec, bool):
            raise InvalidGraph(f"invalid owner {spec!r}")
        if isinstance(spec, int):
            return cls(_owner_part(spec, "user"))
        if isinstance(spec, tuple):
            if len(spec) != 2:
                raise InvalidGraph(f"owner tuple must be (user, group), got {spec!r}")
            return cls(_owner_part(spec[0], "user"), _owner_part(spec[1], "group"))
        if isinstance(spec, str):
            user, sep, group = spec.partition(":")
            return cls(_owner_part(user, "user"), _owner_part(group, "group") if sep else None)
        raise InvalidGraph(f"owner must be 'user[:group]', a uid or a (uid, gid) tuple; got {spec!r}")

    @property
    def by_name(self) -> bool:
        return isinstance(self.user, str) or isinstance(self.group, str)

    def __str__(self) -> str:
        return f"{self.user}" if self.group is None else f"{self.user}:{self.group}"


def _owner_part(value: int | str, what: str) -> int | str:
    if isinstance(value, bool):
        raise InvalidGraph(f"invalid owner {what} {value!r}")
    if isinstance(value, int):
        if not 0 <= value < 2**32:
            raise InvalidGraph(f"owner {what} id {value} out of range")
        return value
    if isinstance(value, str):
        if value.isdigit():
            return _owner_part(int(value), what)
        if not _USER_NAME.fullmatch(value):
            raise InvalidGraph(f"invalid owner {what} name {value!r}")
        return value
    raise InvalidGraph(f"invalid owner {what} {value!r}")


def _mode(mode: int, what: str) -> int:
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
        raise InvalidGraph(f"{what} mode must be an integer within 0o0..0o7777, got {mode!r}")
    return mode


def _path(path: str, what: str) -> str:
    if not isinstance(path, str) or not path:
        raise InvalidGraph(f"{what} path must be a non-empty string, got {path!r}")
    if "\x00" in path:
        raise InvalidGraph(f"{what} path {path!r} contains a NUL byte")
    return path


@dataclass(frozen=True, slots=True)
class _Mkdir:
    path: str
    mode: int
    parents: bool
    owner: Owner | None


@dataclass(frozen=True, slots=True)
class _Mkfile:
    path: str
    data: bytes
    mode: int
    owner: Owner | None


@dataclass(frozen=True, slots=True)
class _Rm:
    path: str
    allow_not_found: bool
    allow_wildcard: bool


@dataclass(frozen=True, slots=True)
class _Copy:
    source: State
    src: str
    dest: str
    owner: Owner | None
    mode: int | None
    follow_symlinks: bool
    copy_dir_contents: bool
    create_dest_path: bool
    allow_wildcard: bool
    allow_empty_wildcard: bool


_Step = _Mkdir | _Mkfile | _Rm | _Copy


@dataclass(frozen=True, slots=True)
class FileAction:
    """An ordered chain of file actions; apply with `State.file(action)`.

    Relative paths are resolved against the working directory of the state the
    chain is applied to (copy sources: against the source state's).
    """

    steps: tuple[_Step, ...] = ()

    def _then(self, step: _Step) -> FileAction:
        return FileAction((*self.steps, step))

    def mkdir(
        self, path: str, mode: int = 0o755, *, parents: bool = False, owner: OwnerSpec | Owner = None
    ) -> FileAction:
        return self._then(_Mkdir(_path(path, "mkdir"), _mode(mode, "mkdir"), bool(parents), Owner.parse(owner)))

    def mkfile(self, path: str, data: bytes | str, mode: int = 0o644, *, owner: OwnerSpec | Owner = None) -> FileAction:
        if isinstance(data, str):
            data = data.encode()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidGraph(f"mkfile data must be bytes or str, got {type(data).__name__}")
        data = bytes(data)
        if len(data) > MAX_INLINE_FILE_BYTES:
            raise InvalidGraph(
                f"mkfile {path!r}: {len(data)} bytes is too large to inline in the build definition "
                f"(limit {MAX_INLINE_FILE_BYTES}); ship large files with llb.local() and copy them instead"
            )
        return self._then(_Mkfile(_path(path, "mkfile"), data, _mode(mode, "mkfile"), Owner.parse(owner)))

    def rm(self, path: str, *, allow_not_found: bool = False, allow_wildcard: bool = False) -> FileAction:
        return self._then(_Rm(_path(path, "rm"), bool(allow_not_found), bool(allow_wildcard)))

    def copy(
        self,
        source: State,
        src: str,
        dest: str,
        *,
        owner: OwnerSpec | Owner = None,
        mode: int | None = None,
        follow_symlinks: bool = True,
        copy_dir_contents: bool = True,
        create_dest_path: bool = True,
        allow_wildcard: bool = True,
        allow_empty_wildcard: bool = True,
    ) -> FileAction:
        """Copies `src` from `source` to `dest`; a `dest` ending in '/' means "into this directory"."""
        if not isinstance(source, State):
            raise InvalidGraph(f"copy source must be a State, got {type(source).__name__}")
        if source.is_scratch:
            raise InvalidGraph(f"copy of {src!r}: the source state is scratch (empty), there is nothing to copy")
        return self._then(
            _Copy(
                source,
                _path(src, "copy source"),
                _path(dest, "copy destination"),
                Owner.parse(owner),
                None if mode is None else _mode(mode, "copy"),
                bool(follow_symlinks),
                bool(copy_dir_contents),
                bool(create_dest_path),
                bool(allow_wildcard),
                bool(allow_empty_wildcard),
            )
        )


def mkdir(path: str, mode: int = 0o755, *, parents: bool = False, owner: OwnerSpec | Owner = None) -> FileAction:
    """Creates a directory (with `parents=True`, like `mkdir -p`)."""
    return FileAction().mkdir(path, mode, parents=parents, owner=owner)


def mkfile(path: str, data: bytes | str, mode: int = 0o644, *, owner: OwnerSpec | Owner = None) -> FileAction:
    """Creates a file with inline contents (kept small: it travels inside the definition)."""
    return FileAction().mkfile(path, data, mode, owner=owner)


def rm(path: str, *, allow_not_found: bool = False, allow_wildcard: bool = False) -> FileAction:
    """Removes a path."""
    return FileAction().rm(path, allow_not_found=allow_not_found, allow_wildcard=allow_wildcard)


def copy(
    source: State,
    src: str,
    dest: str,
    *,
    owner: OwnerSpec | Owner = None,
    mode: int | None = None,
    follow_symlinks: bool = True,
    copy_dir_contents: bool = True,
    create_dest_path: bool = True,
    allow_wildcard: bool = True,
    allow_empty_wildcard: bool = True,
) -> FileAction:
    """Copies `src` from another state."""
    return FileAction().copy(
        source,
        src,
        dest,
        owner=owner,
        mode=mode,
        follow_symlinks=follow_symlinks,
        copy_dir_contents=copy_dir_contents,
        create_dest_path=create_dest_path,
        allow_wildcard=allow_wildcard,
        allow_empty_wildcard=allow_empty_wildcard,
    )


def _resolve(step: _Step, cwd: str) -> _Step:
    if isinstance(step, _Copy):
        return _Copy(
            step.source,
            resolve_path(step.source.cwd, step.src, what="copy source", keep_slash=True),
            resolve_path(cwd, step.dest, what="copy destination", keep_slash=True),
            step.owner,
            step.mode,
            step.follow_symlinks,
            step.copy_dir_contents,
            step.create_dest_path,
            step.allow_wildcard,
            step.allow_empty_wildcard,
        )
    if isinstance(step, _Mkdir):
        return _Mkdir(resolve_path(cwd, step.path, what="mkdir path"), step.mode, step.parents, step.owner)
    if isinstance(step, _Mkfile):
        return _Mkfile(resolve_path(cwd, step.path, what="mkfile path"), step.data, step.mode, step.owner)
    return _Rm(resolve_path(cwd, step.path, what="rm path"), step.allow_not_found, step.allow_wildcard)


def _describe(step: _Step) -> str:
    if isinstance(step, _Copy):
        return f"copy {step.src} {step.dest}"
    if isinstance(step, _Mkdir):
        return f"mkdir {step.path}"
    if isinstance(step, _Mkfile):
        return f"mkfile {step.path}"
    return f"rm {step.path}"


@dataclass(frozen=True, slots=True, eq=False)
class FileVertex(Vertex):
    base: Output | None
    steps: tuple[_Step, ...]
    options: OpOptions

    def dependencies(self) -> tuple[Output, ...]:
        deps: list[Output] = [] if self.base is None else [self.base]
        for step in self.steps:
            if isinstance(step, _Copy) and step.source.output is not None:
                deps.append(step.source.output)
        return tuple(deps)

    def label(self) -> str:
        return self.options.name or ", ".join(_describe(s) for s in self.steps)

    def to_op(self, ctx: MarshalContext) -> tuple[ops_pb2.Op, ops_pb2.OpMetadata]:
        inputs = InputList(ctx)
        base_index = inputs.index(self.base)
        secondary = [inputs.index(s.source.output) if isinstance(s, _Copy) else -1 for s in self.steps]
        caps = {"file.base"}
        actions = []
        for i, step in enumerate(self.steps):
            # The first action works on the base; each later one on the result of the action before
            # it, which BuildKit numbers after the op's inputs.
            index = base_index if i == 0 else len(inputs) + i - 1
            action = _action(step, index)
            action.input = index
            action.secondaryInput = secondary[i]
            action.output = 0 if i == len(self.steps) - 1 else -1
            actions.append(action)
            if isinstance(step, _Rm) and step.allow_wildcard:
                caps.add("file.rm.wildcard")
        op = ops_pb2.Op(inputs=inputs.inputs, file=ops_pb2.FileOp(actions=actions))
        return op, self.options.apply(ctx, op, caps)


def _action(step: _Step, index: int) -> ops_pb2.FileAction:
    """The pb.FileAction of one step applied to input `index` (-1: scratch)."""
    if isinstance(step, _Rm):
        rm = ops_pb2.FileActionRm(path=step.path, allowNotFound=step.allow_not_found, allowWildcard=step.allow_wildcard)
        return ops_pb2.FileAction(rm=rm)
    owner = None if step.owner is None else _chown(step, step.owner, index)
    if isinstance(step, _Copy):
        copy = ops_pb2.FileActionCopy(
            src=step.src,
            dest=step.dest,
            owner=owner,
            mode=-1 if step.mode is None else step.mode,
            followSymlink=step.follow_symlinks,
            dirCopyContents=step.copy_dir_contents,
            createDestPath=step.create_dest_path,
            allowWildcard=step.allow_wildcard,
            allowEmptyWildcard=step.allow_empty_wildcard,
            timestamp=-1,
        )
        return ops_pb2.FileAction(copy=copy)
    if isinstance(step, _Mkdir):
        mkdir = ops_pb2.FileActionMkDir(
            path=step.path, mode=step.mode, makeParents=step.parents, owner=owner, timestamp=-1
        )
        return ops_pb2.FileAction(mkdir=mkdir)
    mkfile = ops_pb2.FileActionMkFile(path=step.path, mode=step.mode, data=step.data, owner=owner, timestamp=-1)
    return ops_pb2.FileAction(mkfile=mkfile)


def _chown(step: _Step, owner: Owner, input_index: int) -> ops_pb2.ChownOpt:
    """A pb.ChownOpt; names are looked up in the /etc/passwd and /etc/group of the action's input."""
    if owner.by_name and input_index == -1:
        raise InvalidGraph(
            f"{_describe(step)}: owner {owner} is given by name but the target is scratch, "
            "which has no /etc/passwd; use numeric ids such as owner=(1000, 1000)"
        )
    chown = ops_pb2.ChownOpt(user=_user(owner.user, input_index))
    if owner.group is not None:
        chown.group.CopyFrom(_user(owner.group, input_index))
    return chown


def _user(value: int | str, input_index: int) -> ops_pb2.UserOpt:
    if isinstance(value, int):
        return ops_pb2.UserOpt(byID=value)
    return ops_pb2.UserOpt(byName=ops_pb2.NamedUserOpt(name=value, input=input_index))


def make_file(base: State, action: FileAction, *, name: str | None, ignore_cache: bool) -> State:
    if not isinstance(action, FileAction):
        raise InvalidGraph(f"State.file takes a FileAction (llb.mkdir, llb.copy, ...), got {type(action).__name__}")
    if not action.steps:
        raise InvalidGraph("State.file needs at least one action")
    steps = tuple(_resolve(s, base.cwd) for s in action.steps)
    vertex = FileVertex(
        base.output, steps, OpOptions(name=name, ignore_cache=bool(ignore_cache), platform=base.platform)
    )
    return base.with_output(Output(vertex, 0))
