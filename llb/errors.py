"""Exception hierarchy shared by the LLB builder and the BuildKit client.

Every error raised by `llb` derives from `LLBError`, so callers can catch one
type; the subclasses say what the user can do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .errdetails import SourceRange

__all__ = [
    "LLBError",
    "InvalidGraph",
    "DefinitionTooLarge",
    "BuilderUnreachable",
    "ConnectionError_",
    "SolveError",
    "ExecError",
    "Cancelled",
    "UnsupportedByBuilder",
]


class LLBError(Exception):
    """Root of every error raised by the llb package."""


class InvalidGraph(LLBError, ValueError):
    """The graph cannot be sent to a builder; raised before any daemon is contacted."""


class DefinitionTooLarge(InvalidGraph):
    """The marshalled graph is over what the builder accepts. ``largest_op`` is the custom name of
    the op with the most bytes ("" if it has none), so a caller can point at what put them there."""

    def __init__(self, message: str, *, size: int, limit: int, largest_op: str = "") -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit
        self.largest_op = largest_op


class BuilderUnreachable(LLBError, ConnectionError):
    """No BuildKit could be reached at `address`; `hint` says how to start one."""

    def __init__(self, address: str, reason: str, hint: str = "") -> None:
        self.address = address
        self.reason = reason
        self.hint = hint
        message = f"cannot reach BuildKit at {address}: {reason}"
        if hint:
            message += f"\n  hint: {hint}"
        super().__init__(message)


ConnectionError_ = BuilderUnreachable


class SolveError(LLBError):
    """The builder rejected or failed the build. Where the builder said which vertex failed,
    ``vertex`` is its digest and ``vertex_name`` its name, and ``sources`` where in a source file its
    op came from (when the definition carried a source map); all empty otherwise."""

    def __init__(
        self, message: str, *, vertex: str = "", vertex_name: str = "", sources: Sequence[SourceRange] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.vertex = vertex
        self.vertex_name = vertex_name
        self.sources = tuple(sources)


class ExecError(SolveError):
    """A `run` step exited non-zero; carries what a user needs to fix it."""

    def __init__(
        self,
        message: str,
        *,
        vertex_name: str = "",
        exit_code: int | None = None,
        log_tail: Sequence[str] = (),
        vertex: str = "",
        sources: Sequence[SourceRange] = (),
    ) -> None:
        super().__init__(message, vertex=vertex, vertex_name=vertex_name, sources=sources)
        self.exit_code = exit_code
        self.log_tail = tuple(log_tail)

    def __str__(self) -> str:
        head = f"step {self.vertex_name!r} failed" if self.vertex_name else "step failed"
        if self.sources:
            head = f"{self.sources[0]}: {head}"
        if self.exit_code is not None:
            head += f" with exit code {self.exit_code}"
        parts = [head]
        if self.message and self.message != head:
            parts.append(f"  {self.message}")
        if self.log_tail:
            parts.append("  last output:")
            parts.extend(f"    {line}" for line in self.log_tail)
        return "\n".join(parts)


class Cancelled(LLBError):
    """The solve was cancelled by the caller (e.g. Ctrl-C) and stopped on the builder."""


class UnsupportedByBuilder(LLBError):
    """The builder lacks a feature the request needs (an exporter, an op type, an entitlement)."""
