"""What BuildKit says about a failed request beyond its message: the failing vertex, where in a
source file its op came from, a step's exit code.

They travel as a google.rpc.Status in the ``grpc-status-details-bin`` trailer, each detail a
google.protobuf.Any whose type URL ends in the message name (``…/errdefs.Vertex+json``). With a
``+json`` suffix the value is the message's JSON form (Docker 26's BuildKit), otherwise its protobuf
encoding; both are read into the messages of ``_proto/errdefs.proto`` and ``gateway.proto``. Of the
stack traces (``stack.Stack``) only the function names are kept; details of unknown types are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from ._proto import errdefs_pb2, gateway_pb2, status_pb2

if TYPE_CHECKING:
    import grpc

__all__ = ["SourceRange", "ErrorDetails", "error_details", "status_of"]

DETAILS_KEY = "grpc-status-details-bin"
_KINDS: dict[str, type[Message]] = {
    "Vertex": errdefs_pb2.Vertex,
    "Source": errdefs_pb2.Source,
    "ExitMessage": gateway_pb2.ExitMessage,
    "Stack": errdefs_pb2.Stack,
}


@dataclass(frozen=True, slots=True)
class SourceRange:
    """A place in a source file, as the source map of the definition gave it (lines from 1, columns
    from 1; BuildKit counts characters from 0)."""

    filename: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class ErrorDetails:
    """The builder's account of a failure: its full message, the digest of the vertex whose op failed
    ("" when it named none), the source ranges of that op, and the exit code of a failed exec."""

    code: int
    message: str
    vertex: str = ""
    sources: tuple[SourceRange, ...] = ()
    exit_code: int | None = None
    functions: tuple[str, ...] = ()
    """The functions of the builder's stack traces, innermost first (none when it sent no trace)."""


def status_of(exc: grpc.RpcError) -> status_pb2.Status:
    """The google.rpc.Status of a failed call: the trailer's when the builder sent one, else made
    from the call's code and message."""
    for key, value in _trailers(exc):
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                return status_pb2.Status.FromString(value)
            except DecodeError:
                break
    return status_pb2.Status(code=exc.code().value[0], message=exc.details() or "")


def error_details(exc: grpc.RpcError) -> ErrorDetails:
    """What the builder said about the failure of `exc` (the code and message alone when it sent no
    details, as BuildKit before 0.8 does)."""
    status = status_of(exc)
    vertex, exit_code = "", None
    sources: list[SourceRange] = []
    functions: list[str] = []
    for detail in status.details:
        message = _decode(detail.type_url, detail.value)
        if isinstance(message, errdefs_pb2.Vertex):
            vertex = vertex or message.digest
        elif isinstance(message, errdefs_pb2.Source):
            sources.extend(_ranges(message))
        elif isinstance(message, gateway_pb2.ExitMessage):
            exit_code = message.Code
        elif isinstance(message, errdefs_pb2.Stack):
            functions.extend(frame.Name for frame in message.frames)
    return ErrorDetails(status.code, status.message, vertex, tuple(sources), exit_code, tuple(functions))


def _trailers(exc: grpc.RpcError) -> tuple[tuple[str, str | bytes], ...]:
    trailing = getattr(exc, "trailing_metadata", None)
    metadata = trailing() if callable(trailing) else None
    return tuple(metadata or ())


def _decode(type_url: str, value: bytes) -> Message | None:
    name = type_url.rsplit("/", 1)[-1]
    is_json = name.endswith("+json")
    kind = _KINDS.get(name.removesuffix("+json").rsplit(".", 1)[-1])
    if kind is None:
        return None
    message = kind()
    try:
        if is_json:
            json_format.Parse(value, message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(value)
    except (json_format.ParseError, DecodeError, UnicodeDecodeError):
        return None
    return message


def _ranges(source: errdefs_pb2.Source) -> list[SourceRange]:
    name = source.info.filename
    return [
        SourceRange(name, r.start.line, r.start.character + 1, r.end.line or r.start.line, r.end.character + 1)
        for r in source.ranges
    ]
