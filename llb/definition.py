"""Marshalling a graph into a `pb.Definition`, and the Definition value itself.

The bytes are deterministic: ops are serialised with deterministic protobuf
encoding, digests are sha256 over exactly those bytes, and ops appear in a
fixed depth-first order. The same graph therefore always yields the same
digests, which is what makes BuildKit's cache hit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from .errors import InvalidGraph
from .platform import Platform
from .state import MarshalContext, Output, Vertex

if TYPE_CHECKING:
    from ._proto import ops_pb2

__all__ = ["Definition", "marshal", "MAX_DEFINITION_BYTES"]

# The Docker engine's gRPC server keeps the default 4 MiB receive limit for the
# whole SolveRequest; leave room for the request envelope around the Definition.
MAX_DEFINITION_BYTES = 4 * 1024 * 1024 - 64 * 1024


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Context(MarshalContext):
    def __init__(self, default_platform: Platform) -> None:
        self.default_platform = default_platform
        self.digests: dict[int, str] = {}

    def digest(self, vertex: Vertex) -> str:
        try:
            return self.digests[id(vertex)]
        except KeyError:
            raise InvalidGraph(f"internal error: input {vertex.label()!r} marshalled out of order") from None


def _merge_metadata(into: ops_pb2.OpMetadata, other: ops_pb2.OpMetadata) -> None:
    """Same op reached twice (e.g. with different names): the first description wins, flags add up."""
    into.ignore_cache = into.ignore_cache or other.ignore_cache
    for key, value in other.description.items():
        if key not in into.description:
            into.description[key] = value
    for cap, value in other.caps.items():
        if value:
            into.caps[cap] = True


def marshal(output: Output | None, *, platform: Platform | None = None) -> Definition:
    """Walks the graph ending at `output` and builds its Definition (raises InvalidGraph)."""
    from ._proto import ops_pb2

    ctx = _Context(platform or Platform.host())
    if output is None:
        return Definition((), ())
    order: list[tuple[str, bytes]] = []
    metadata: dict[str, ops_pb2.OpMetadata] = {}
    labels: dict[str, str] = {}
    keep_alive: list[Vertex] = []
    stack: list[tuple[Vertex, bool]] = [(output.vertex, False)]
    while stack:
        vertex, expanded = stack.pop()
        if id(vertex) in ctx.digests:
            continue
        if not expanded:
            stack.append((vertex, True))
            for dep in reversed(vertex.dependencies()):
                if id(dep.vertex) not in ctx.digests:
                    stack.append((dep.vertex, False))
            continue
        op, md = vertex.to_op(ctx)
        data = op.SerializeToString(deterministic=True)
        digest = _digest(data)
        ctx.digests[id(vertex)] = digest
        keep_alive.append(vertex)
        if digest in metadata:
            _merge_metadata(metadata[digest], md)
            continue
        order.append((digest, data))
        metadata[digest] = md
        labels[digest] = vertex.label()

    terminal = ops_pb2.Op(inputs=[ctx.input(output)])
    data = terminal.SerializeToString(deterministic=True)
    order.append((_digest(data), data))
    metadata.setdefault(order[-1][0], ops_pb2.OpMetadata())
    definition = Definition(
        tuple(order),
        tuple((d, metadata[d].SerializeToString(deterministic=True)) for d, _ in order),
    )
    size = len(definition.to_bytes())
    if size > MAX_DEFINITION_BYTES:
        biggest = max(order, key=lambda item: len(item[1]))
        raise InvalidGraph(
            f"the build definition is {size} bytes, over the {MAX_DEFINITION_BYTES}-byte limit the builder "
            f"accepts (largest op: {labels.get(biggest[0], 'result')!r}, {len(biggest[1])} bytes); "
            "move large inline data (mkfile) into a local source, llb.local(), and copy it in"
        )
    return definition


@dataclass(frozen=True, slots=True)
class Definition:
    """A marshalled LLB graph: serialised ops (terminal last) and per-op metadata."""

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
        from ._proto import ops_pb2

        for d, data in self.ops:
            if d == digest:
                return ops_pb2.Op.FromString(data)
        raise KeyError(digest)

    def op_metadata(self, digest: str) -> ops_pb2.OpMetadata:
        from ._proto import ops_pb2

        for d, data in self.metadata:
            if d == digest:
                return ops_pb2.OpMetadata.FromString(data)
        raise KeyError(digest)

    def iter_ops(self) -> Iterator[tuple[str, ops_pb2.Op, ops_pb2.OpMetadata]]:
        from ._proto import ops_pb2

        md = dict(self.metadata)
        for d, data in self.ops:
            yield d, ops_pb2.Op.FromString(data), ops_pb2.OpMetadata.FromString(md.get(d, b""))

    def to_pb(self) -> ops_pb2.Definition:
        from ._proto import ops_pb2

        pb = ops_pb2.Definition()
        getattr(pb, "def").extend(data for _, data in self.ops)
        for d, data in self.metadata:
            pb.metadata[d].MergeFromString(data)
        return pb

    def to_bytes(self) -> bytes:
        """The serialised pb.Definition, e.g. for `buildctl build` on stdin."""
        return self.to_pb().SerializeToString(deterministic=True)

    def write_to(self, fileobj: IO[bytes] | IO[str]) -> None:
        """Writes `to_bytes()`; text streams such as sys.stdout are written through their binary buffer."""
        data = self.to_bytes()
        buffer = getattr(fileobj, "buffer", None)
        if buffer is not None:
            fileobj.flush()
            buffer.write(data)
            buffer.flush()
        else:
            fileobj.write(data)  # type: ignore[arg-type]

    @classmethod
    def from_pb(cls, pb: ops_pb2.Definition) -> Definition:
        ops = tuple((_digest(data), bytes(data)) for data in getattr(pb, "def"))
        known = {d for d, _ in ops}
        unknown = sorted(set(pb.metadata) - known)
        if unknown:
            raise InvalidGraph(f"definition has metadata for unknown ops: {', '.join(unknown)}")
        metadata = tuple((d, pb.metadata[d].SerializeToString(deterministic=True)) for d, _ in ops if d in pb.metadata)
        return cls(ops, metadata)

    @classmethod
    def from_bytes(cls, data: bytes) -> Definition:
        from google.protobuf.message import DecodeError

        from ._proto import ops_pb2

        try:
            pb = ops_pb2.Definition.FromString(data)
        except DecodeError as exc:
            raise InvalidGraph(f"not a serialised pb.Definition: {exc}") from None
        return cls.from_pb(pb)

    def to_json(self) -> list[dict[str, Any]]:
        """One entry per op, {"Op", "Digest", "OpMetadata"}, for debugging and golden tests."""
        from google.protobuf import json_format

        return [
            {
                "Op": json_format.MessageToDict(op, preserving_proto_field_name=True),
                "Digest": d,
                "OpMetadata": json_format.MessageToDict(md, preserving_proto_field_name=True),
            }
            for d, op, md in self.iter_ops()
        ]

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
        parts = []
        for a in op.file.actions:
            which = a.WhichOneof("action")
            if which == "copy":
                parts.append(f"copy {a.copy.src} {a.copy.dest}")
            elif which:
                parts.append(f"{which} {getattr(a, which).path}")
        return ", ".join(parts)
    return "result" if kind is None else kind


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")
