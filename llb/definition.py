"""Marshalling a graph into a `pb.Definition`, and the Definition value itself.

The bytes are deterministic: every op is a generated `ops_pb2` message serialised with protobuf's
deterministic encoding, its digest is the sha256 of exactly those bytes, and ops appear in a fixed
depth-first order. The same graph therefore always yields the same digests, which is what makes
BuildKit's cache hit. (The digests are those of protobuf's C backend, upb, the default: it sorts a
map key before its own prefixes, "source.image.resolvemode" before "source.image", where the
pure-Python backend sorts plainly, so PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python changes them.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from ._proto import ops_pb2
from .errors import DefinitionTooLarge, InvalidGraph
from .platform import Platform
from .state import MarshalContext, Output, Vertex

__all__ = ["Definition", "marshal", "MAX_DEFINITION_BYTES"]

# The Docker engine's gRPC server keeps the default 4 MiB receive limit for the
# whole SolveRequest; leave room for the request envelope around the Definition.
MAX_DEFINITION_BYTES = 4 * 1024 * 1024 - 64 * 1024


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _serialise(message: ops_pb2.Op | ops_pb2.OpMetadata | ops_pb2.Definition) -> bytes:
    """Deterministic bytes: map entries sorted, so equal messages always hash alike."""
    return message.SerializeToString(deterministic=True)


class _Context(MarshalContext):
    def __init__(self, default_platform: Platform) -> None:
        self.default_platform = default_platform
        self.digests: dict[Vertex, str] = {}

    def digest(self, vertex: Vertex) -> str:
        try:
            return self.digests[vertex]
        except KeyError:
            raise InvalidGraph(f"internal error: input {vertex.label()!r} marshalled out of order") from None


def _dependencies_first(root: Vertex) -> Iterator[Vertex]:
    """Every vertex reachable from `root` once, each after the vertices it reads (depth first, inputs
    in order); iterative, as graphs can be deeper than Python's recursion limit."""
    done: set[Vertex] = set()
    stack: list[tuple[Vertex, bool]] = [(root, False)]
    while stack:
        vertex, expanded = stack.pop()
        if vertex in done:
            continue
        if expanded:
            done.add(vertex)
            yield vertex
            continue
        stack.append((vertex, True))
        stack.extend((dep.vertex, False) for dep in reversed(vertex.dependencies()) if dep.vertex not in done)


def _merge_metadata(into: ops_pb2.OpMetadata, other: ops_pb2.OpMetadata) -> None:
    """Same op reached twice (e.g. with different names): the first description wins, flags add up."""
    if other.ignore_cache:
        into.ignore_cache = True
    for key, text in other.description.items():
        into.description.setdefault(key, text)
    for cap, enabled in other.caps.items():
        if enabled:
            into.caps[cap] = True


def marshal(output: Output | None, *, platform: Platform | None = None) -> Definition:
    """Walks the graph ending at `output` and builds its Definition (raises InvalidGraph)."""
    if output is None:
        return Definition((), ())
    ctx = _Context(platform or Platform.host())
    ops: dict[str, bytes] = {}
    metadata: dict[str, ops_pb2.OpMetadata] = {}
    labels: dict[str, str] = {}
    for vertex in _dependencies_first(output.vertex):
        op, md = vertex.to_op(ctx)
        data = _serialise(op)
        digest = ctx.digests[vertex] = _digest(data)
        if digest in metadata:
            _merge_metadata(metadata[digest], md)
        else:
            ops[digest], metadata[digest], labels[digest] = data, md, vertex.label()
    terminal = _serialise(ops_pb2.Op(inputs=[ctx.input(output)]))
    ops[_digest(terminal)] = terminal
    definition = Definition(
        tuple(ops.items()),
        tuple((d, _serialise(metadata.get(d, ops_pb2.OpMetadata()))) for d in ops),
    )
    _check_size(definition, labels)
    return definition


_LOCAL_SESSION = "local.session"


def bind_local_sources(pb: ops_pb2.Definition, session_id: str) -> ops_pb2.Definition:
    """`pb` with every ``local://`` source that names no session bound to `session_id` (its
    ``local.session`` attribute), and the digests of the ops that read those sources updated.

    BuildKit shares one vertex among all the builds running at once whose ops have the same digest,
    and serves an unbound local source from the session of any of those builds: two projects built
    at the same time on one engine, whose graphs read a local source of the same name and file
    patterns, would each get the files of whichever session answered first. Bound to the solve's own
    session, the op is that solve's alone (BuildKit's Dockerfile frontend binds its context the same
    way). Cache hits are unaffected: steps that read a local source are keyed by its content."""
    raw_ops = list(getattr(pb, "def"))
    if not any(b"local://" in raw for raw in raw_ops):
        return pb
    by_digest = {_digest(raw): raw for raw in raw_ops}
    renamed: dict[str, str] = {}
    rewritten: dict[str, bytes] = {}
    bound: set[str] = set()
    for digest in _inputs_first(by_digest):
        op = ops_pb2.Op.FromString(by_digest[digest])
        changed = False
        source = op.source if op.WhichOneof("op") == "source" else None
        if source is not None and source.identifier.startswith("local://") and _LOCAL_SESSION not in source.attrs:
            source.attrs[_LOCAL_SESSION] = session_id
            changed = True
        for item in op.inputs:
            if item.digest in renamed:
                item.digest = renamed[item.digest]
                changed = True
        data = _serialise(op) if changed else by_digest[digest]
        rewritten[digest] = data
        new = _digest(data)
        if new != digest:
            renamed[digest] = new
            if source is not None and changed:
                bound.add(new)
    out = ops_pb2.Definition()
    getattr(out, "def").extend(rewritten[_digest(raw)] for raw in raw_ops)
    for digest, md in pb.metadata.items():
        out.metadata[renamed.get(digest, digest)].CopyFrom(md)
    for digest in bound:
        out.metadata[digest].caps["source.local.sessionid"] = True
    if pb.HasField("Source"):
        out.Source.infos.extend(pb.Source.infos)
        for digest, locations in pb.Source.locations.items():
            out.Source.locations[renamed.get(digest, digest)].CopyFrom(locations)
    return out


def _inputs_first(ops: dict[str, bytes]) -> list[str]:
    """The digests of `ops`, each after the ops it reads (iteratively: graphs can be deep)."""
    order: list[str] = []
    done: set[str] = set()
    for start in ops:
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            digest, expanded = stack.pop()
            if digest in done or digest not in ops:
                continue
            if expanded:
                done.add(digest)
                order.append(digest)
                continue
            stack.append((digest, True))
            stack.extend((i.digest, False) for i in ops_pb2.Op.FromString(ops[digest]).inputs if i.digest not in done)
    return order


def _check_size(definition: Definition, labels: dict[str, str]) -> None:
    size = len(definition.to_bytes())
    if size > MAX_DEFINITION_BYTES:
        digest, data = max(definition.ops, key=lambda item: len(item[1]))
        raise DefinitionTooLarge(
            f"the build definition is {size} bytes, over the {MAX_DEFINITION_BYTES}-byte limit the builder "
            f"accepts (largest op: {_short(labels.get(digest, 'result'))!r}, {len(data)} bytes); "
            "move large inline data (mkfile) into a local source, llb.local(), and copy it in",
            size=size,
            limit=MAX_DEFINITION_BYTES,
            largest_op=labels.get(digest, ""),
        )


def _short(name: str, limit: int = 80) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


@dataclass(frozen=True, slots=True)
class Definition:
    """A marshalled LLB graph: serialised ops (terminal last) and per-op metadata, by digest."""

    ops: tuple[tuple[str, bytes], ...]
    metadata: tuple[tuple[str, bytes], ...]

    @property
    def digests(self) -> list[str]:
        return [d for d, _ in self.ops]

    @property
    def terminal(self) -> str:
        """Digest of the result vertex ("" for an empty graph)."""
        return self.ops[-1][0] if self.ops else ""

    def __len__(self) -> int:
        return len(self.ops)

    def op(self, digest: str) -> ops_pb2.Op:
        for d, data in self.ops:
            if d == digest:
                return ops_pb2.Op.FromString(data)
        raise KeyError(digest)

    def op_metadata(self, digest: str) -> ops_pb2.OpMetadata:
        for d, data in self.metadata:
            if d == digest:
                return ops_pb2.OpMetadata.FromString(data)
        raise KeyError(digest)

    def iter_ops(self) -> Iterator[tuple[str, ops_pb2.Op, ops_pb2.OpMetadata]]:
        md = dict(self.metadata)
        for d, data in self.ops:
            yield d, ops_pb2.Op.FromString(data), ops_pb2.OpMetadata.FromString(md.get(d, b""))

    def to_pb(self) -> ops_pb2.Definition:
        """The generated protobuf message."""
        pb = ops_pb2.Definition()
        getattr(pb, "def").extend(data for _, data in self.ops)  # `def` is a Python keyword
        for d, data in self.metadata:
            pb.metadata[d].MergeFromString(data)
        return pb

    def to_bytes(self) -> bytes:
        """The serialised pb.Definition, e.g. for `buildctl build` on stdin."""
        return _serialise(self.to_pb())

    def write_to(self, fileobj: IO[Any]) -> None:
        """Writes `to_bytes()`; text streams such as sys.stdout are written through their binary buffer."""
        fileobj.flush()
        binary: IO[Any] = getattr(fileobj, "buffer", fileobj)
        binary.write(self.to_bytes())
        binary.flush()

    @classmethod
    def from_pb(cls, pb: ops_pb2.Definition) -> Definition:
        ops = tuple((_digest(data), bytes(data)) for data in getattr(pb, "def"))
        known = {d for d, _ in ops}
        unknown = sorted(set(pb.metadata) - known)
        if unknown:
            raise InvalidGraph(f"definition has metadata for unknown ops: {', '.join(unknown)}")
        metadata = tuple((d, _serialise(pb.metadata[d])) for d, _ in ops if d in pb.metadata)
        return cls(ops, metadata)

    @classmethod
    def from_bytes(cls, data: bytes) -> Definition:
        try:
            pb = ops_pb2.Definition.FromString(data)
        except DecodeError as exc:
            raise InvalidGraph(f"not a serialised pb.Definition: {exc}") from None
        return cls.from_pb(pb)

    def to_json(self) -> list[dict[str, Any]]:
        """One entry per op, {"Op", "Digest", "OpMetadata"}, for debugging and golden tests.

        Each message as protobuf's JSON mapping renders it, with the .proto field names.
        """
        return [{"Op": _to_dict(op), "Digest": d, "OpMetadata": _to_dict(md)} for d, op, md in self.iter_ops()]

    def to_json_text(self) -> str:
        """`to_json()` as stable, indented text."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    def to_dot(self) -> str:
        """The graph in Graphviz dot syntax, inputs pointing at the ops that use them."""
        lines = ["digraph llb {", '  node [shape=box, fontname="monospace"];']
        for d, op, md in self.iter_ops():
            label = f"{_op_label(op, md)}\\n{d[7:19]}"
            lines.append(f'  "{d}" [label="{_dot_escape(label)}"];')
            for inp in op.inputs:
                attr = f' [label="{inp.index}"]' if inp.index else ""
                lines.append(f'  "{inp.digest}" -> "{d}"{attr};')
        lines.append("}")
        return "\n".join(lines) + "\n"


def _to_dict(message: ops_pb2.Op | ops_pb2.OpMetadata) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _op_label(op: ops_pb2.Op, md: ops_pb2.OpMetadata) -> str:
    name = md.description.get("llb.customname")
    if name:
        return name
    kind = op.WhichOneof("op")
    if kind == "source":
        return op.source.identifier
    if kind == "exec":
        return " ".join(op.exec.meta.args)
    if kind == "file":
        return ", ".join(label for label in map(_action_label, op.file.actions) if label)
    if kind == "merge":
        return f"merge of {len(op.merge.inputs)} layers"
    if kind == "diff":
        return "diff"
    return "build" if kind == "build" else "result"


def _action_label(action: ops_pb2.FileAction) -> str:
    kind = action.WhichOneof("action")
    if kind == "copy":
        return f"copy {action.copy.src} {action.copy.dest}"
    if kind == "mkfile":
        return f"mkfile {action.mkfile.path}"
    if kind == "mkdir":
        return f"mkdir {action.mkdir.path}"
    if kind == "rm":
        return f"rm {action.rm.path}"
    return ""


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")
