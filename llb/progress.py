"""Typed progress events from BuildKit's Status stream, and the per-vertex bookkeeping
that turns them into `SolveResult.vertices` and failure log tails."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.protobuf.message import Message
    from google.protobuf.timestamp_pb2 import Timestamp

    from ._proto import control_pb2

__all__ = ["VertexEvent", "StatusEvent", "LogEvent", "ProgressEvent", "VertexInfo", "ProgressTracker"]

LOG_TAIL_LINES = 20


def _ts(msg: Message, name: str) -> float | None:
    """A protobuf Timestamp field as epoch seconds, None when unset."""
    if not msg.HasField(name):
        return None
    t: Timestamp = getattr(msg, name)
    return t.seconds + t.nanos / 1e9


@dataclass(frozen=True, slots=True)
class VertexEvent:
    """A vertex was (re)reported: started, completed, cached or failed. Times are epoch seconds."""

    digest: str
    name: str
    inputs: tuple[str, ...]
    cached: bool
    started: float | None
    completed: float | None
    error: str


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """Progress of a sub-task of a vertex (a layer pull, an export step)."""

    vertex: str
    id: str
    name: str
    current: int
    total: int
    timestamp: float | None
    started: float | None
    completed: float | None


@dataclass(frozen=True, slots=True)
class LogEvent:
    """Output of a vertex; stream 1 is stdout, 2 is stderr."""

    vertex: str
    stream: int
    data: bytes
    timestamp: float | None


ProgressEvent = VertexEvent | StatusEvent | LogEvent


@dataclass(frozen=True, slots=True)
class VertexInfo:
    """The final state of one vertex of a solve."""

    digest: str
    name: str
    cached: bool
    started: float | None
    completed: float | None
    error: str

    @property
    def duration(self) -> float | None:
        if self.started is None or self.completed is None:
            return None
        return max(0.0, self.completed - self.started)


class _LineTail:
    def __init__(self) -> None:
        self.lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.partial = b""

    def feed(self, data: bytes) -> None:
        buf = self.partial + data
        *complete, self.partial = buf.replace(b"\r\n", b"\n").split(b"\n")
        for line in complete:
            self.lines.append(line.decode(errors="replace"))

    def tail(self) -> list[str]:
        out = list(self.lines)
        if self.partial:
            out.append(self.partial.decode(errors="replace"))
        return out[-LOG_TAIL_LINES:]


class ProgressTracker:
    """Folds Status responses into vertex state and forwards typed events."""

    def __init__(self, on_event: Callable[[ProgressEvent], None] | None = None) -> None:
        self._on_event = on_event
        self._vertices: dict[str, VertexInfo] = {}
        self._logs: dict[str, _LineTail] = {}
        self.callback_error: BaseException | None = None
        self.responses = 0

    def _emit(self, ev: ProgressEvent) -> None:
        if self._on_event is None or self.callback_error is not None:
            return
        try:
            self._on_event(ev)
        except Exception as exc:  # a broken UI must not break the build; SolveResult.warnings reports it
            self.callback_error = exc

    def feed(self, resp: control_pb2.StatusResponse) -> None:
        self.responses += 1
        for v in resp.vertexes:
            info = VertexInfo(
                digest=v.digest,
                name=v.name,
                cached=v.cached,
                started=_ts(v, "started"),
                completed=_ts(v, "completed"),
                error=v.error,
            )
            self._vertices[v.digest] = info
            self._emit(
                VertexEvent(
                    digest=v.digest,
                    name=v.name,
                    inputs=tuple(v.inputs),
                    cached=v.cached,
                    started=info.started,
                    completed=info.completed,
                    error=v.error,
                )
            )
        for s in resp.statuses:
            self._emit(
                StatusEvent(
                    vertex=s.vertex,
                    id=s.ID,
                    name=s.name,
                    current=s.current,
                    total=s.total,
                    timestamp=_ts(s, "timestamp"),
                    started=_ts(s, "started"),
                    completed=_ts(s, "completed"),
                )
            )
        for lg in resp.logs:
            self._logs.setdefault(lg.vertex, _LineTail()).feed(lg.msg)
            self._emit(LogEvent(vertex=lg.vertex, stream=lg.stream, data=lg.msg, timestamp=_ts(lg, "timestamp")))

    @property
    def vertices(self) -> list[VertexInfo]:
        return list(self._vertices.values())

    def failed_vertex(self) -> VertexInfo | None:
        failed = [v for v in self._vertices.values() if v.error]
        if not failed:
            return None
        return min(failed, key=lambda v: v.completed or float("inf"))

    def log_tail(self, digest: str) -> list[str]:
        t = self._logs.get(digest)
        return t.tail() if t else []
