"""Marshalling a graph into a `pb.Definition`, and the Definition value itself.

The bytes are deterministic: ops are serialised like protobuf's deterministic
encoding (by `llb._wire`), digests are sha256 over exactly those bytes, and ops
appear in a fixed depth-first order. The same graph therefore always yields the same
digests, which is what makes BuildKit's cache hit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from . import _wire
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


def _merge_metadata(into: _wire.Message, other: _wire.Message) -> None:
    """Same op reached twice (e.g. with different names): the first description wins, flags add up."""
    if other.get("ignore_cache"):
        into["ignore_cache"] = True
    for key, value in other.get("description", {}).items():
        into.setdefault("description", {}).setdefault(key, value)
    for cap, value in other.get("caps", {}).items():
        if value:
            into.setdefault("caps", {})[cap] = True


def marshal(output: Output | None, *, platform: Platform | None = None) -> Definition:
    """Walks the graph ending at `output` and builds its Definition (raises InvalidGraph)."""
    ctx = _Context(platform or Platform.host())
    if output is None:
        return Definition((), ())
    order: list[tuple[str, bytes]] = []
    metadata: dict[str, _wire.Message] = {}
    labels: dict[str, str] = {}
    keep_alive: list[Vertex] = []
    messages: list[_wire.Message] = []
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
        data = _wire.encode("Op", op)
        digest = _digest(data)
        ctx.digests[id(vertex)] = digest
        keep_alive.append(vertex)
        if digest in metadata:
            _merge_metadata(metadata[digest], md)
            continue
        order.append((digest, data))
        messages.append(op)
        metadata[digest] = md
        labels[digest] = vertex.label()

    terminal = {"inputs": [ctx.input(output)]}
    data = _wire.encode("Op", terminal)
    order.append((_digest(data), data))
    messages.append(terminal)
    metadata.setdefault(order[-1][0], {})
    definition = Definition(
        tuple(order),
        tuple((d, _wire.encode("OpMetadata", metadata[d])) for d, _ in order),
        tuple(zip(messages, (metadata[d] for d, _ in order), strict=True)),
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
    messages: tuple[tuple[_wire.Message, _wire.Message], ...] = field(default=(), repr=False, compare=False)
    """The (op, metadata) messages `marshal` encoded, one pair per op, so that `to_json` need not
    decode the bytes again; empty for a definition read from bytes. Not part of equality."""

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
        """The generated protobuf message (imports protobuf; `to_bytes()` does not)."""
        from ._proto import ops_pb2

        return ops_pb2.Definition.FromString(self.to_bytes())

    def to_bytes(self) -> bytes:
        """The serialised pb.Definition, e.g. for `buildctl build` on stdin."""
        return _wire.encode_definition([data for _, data in self.ops], dict(self.metadata))

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

    def _decoded(self) -> Iterator[tuple[str, _wire.Message, _wire.Message]]:
        md = dict(self.metadata)
        for d, data in self.ops:
            yield d, _wire.decode("Op", data), _wire.decode("OpMetadata", md.get(d, b""))

    def to_json(self) -> list[dict[str, Any]]:
        """One entry per op, {"Op", "Digest", "OpMetadata"}, for debugging and golden tests.

        Shaped like protobuf's ``MessageToDict(..., preserving_proto_field_name=True)``.
        """
        decoded = (
            ((d, op, md) for (d, _), (op, md) in zip(self.ops, self.messages, strict=True))
            if len(self.messages) == len(self.ops)
            else self._decoded()
        )
        return [
            {"Op": _wire.to_dict("Op", op), "Digest": d, "OpMetadata": _wire.to_dict("OpMetadata", md)}
            for d, op, md in decoded
        ]

    def to_json_text(self) -> str:
        """`to_json()` as stable, indented text."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    def to_dot(self) -> str:
        """The graph in Graphviz dot syntax, inputs pointing at the ops that use them."""
        lines = ["digraph llb {", '  node [shape=box, fontname="monospace"];']
        for d, op, md in self._decoded():
            label = f"{_op_label(op, md)}\\n{d[7:19]}"
            lines.append(f'  "{d}" [label="{_dot_escape(label)}"];')
            for inp in op.get("inputs", ()):
                index = inp.get("index", 0)
                attr = f' [label="{index}"]' if index else ""
                lines.append(f'  "{inp.get("digest", "")}" -> "{d}"{attr};')
        lines.append("}")
        return "\n".join(lines) + "\n"


def _op_label(op: _wire.Message, md: _wire.Message) -> str:
    name = md.get("description", {}).get("llb.customname")
    if name:
        return name
    if "source" in op:
        return op["source"].get("identifier", "")
    if "exec" in op:
        return " ".join(op["exec"].get("meta", {}).get("args", ()))
    if "file" in op:
        parts = []
        for a in op["file"].get("actions", ()):
            if "copy" in a:
                parts.append(f"copy {a['copy'].get('src', '')} {a['copy'].get('dest', '')}")
            else:
                which = next((k for k in ("mkfile", "mkdir", "rm") if k in a), None)
                if which:
                    parts.append(f"{which} {a[which].get('path', '')}")
        return ", ".join(parts)
    return "build" if "build" in op else "result"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")
