"""Build progress for people and programs: a live view like buildx's, plain lines, or JSON lines.

One line per step (cached / running / done / error, with timings); the failing step's log is shown
on error. Events arrive from the client's background thread, so every renderer takes a lock.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import IO, Any


class ProgressMode(str, Enum):
    """``--progress``: ``auto`` is ``tty`` on a terminal and ``plain`` elsewhere."""

    AUTO = "auto"
    TTY = "tty"
    PLAIN = "plain"
    JSON = "json"
    QUIET = "quiet"


@dataclass(slots=True)
class _Vertex:
    digest: str
    name: str
    index: int
    cached: bool = False
    started: float | None = None
    completed: float | None = None
    error: str = ""
    logs: list[str] = field(default_factory=list)
    partial: str = ""

    @property
    def state(self) -> str:
        if self.error:
            return "error"
        if self.cached:
            return "cached"
        if self.completed is not None:
            return "done"
        if self.started is not None:
            return "running"
        return "waiting"

    def duration(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.completed or now) - self.started

    def add_log(self, data: bytes) -> list[str]:
        text = self.partial + data.decode("utf-8", "replace").replace("\r", "\n")
        lines = text.split("\n")
        self.partial = lines.pop()
        self.logs.extend(lines)
        del self.logs[:-200]
        return lines


class Progress:
    """Base renderer: tracks vertices; subclasses draw. Use as ``on_event`` and a context manager."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.vertices: dict[str, _Vertex] = {}
        self.t0 = time.time()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def __call__(self, event: Any) -> None:
        from llb.progress import LogEvent, VertexEvent

        with self.lock:
            if isinstance(event, VertexEvent):
                v = self.vertices.get(event.digest)
                if v is None:
                    v = self.vertices[event.digest] = _Vertex(event.digest, event.name, len(self.vertices) + 1)
                before = v.state
                v.name = event.name or v.name
                v.cached = v.cached or event.cached
                v.started = event.started or v.started
                v.completed = event.completed or v.completed
                v.error = event.error or v.error
                if v.state != before:
                    self.on_vertex(v)
            elif isinstance(event, LogEvent):
                v = self.vertices.get(event.vertex)
                if v is not None:
                    for line in v.add_log(event.data):
                        self.on_log(v, line)

    def on_vertex(self, v: _Vertex) -> None:
        pass

    def on_log(self, v: _Vertex, line: str) -> None:
        pass

    def summary(self) -> dict[str, int]:
        counts = {"cached": 0, "done": 0, "error": 0}
        for v in self.vertices.values():
            if v.state in counts:
                counts[v.state] += 1
        return counts


class PlainProgress(Progress):
    """buildx ``--progress=plain``-like lines: ``#3 name``, log lines, ``#3 DONE 1.2s``."""

    def on_vertex(self, v: _Vertex) -> None:
        if v.state == "running":
            self.stream.write(f"#{v.index} {v.name}\n")
        elif v.state == "cached":
            self.stream.write(f"#{v.index} {v.name}\n#{v.index} CACHED\n")
        elif v.state == "done":
            self.stream.write(f"#{v.index} DONE {v.duration(time.time()) or 0:.1f}s\n")
        elif v.state == "error":
            self.stream.write(f"#{v.index} ERROR: {v.error}\n")
        self.stream.flush()

    def on_log(self, v: _Vertex, line: str) -> None:
        self.stream.write(f"#{v.index} {time.time() - self.t0:6.1f} {line}\n")


class JsonProgress(Progress):
    """One JSON object per state change or log line, for tools."""

    def _emit(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.stream.flush()

    def on_vertex(self, v: _Vertex) -> None:
        self._emit(
            {
                "type": "step",
                "index": v.index,
                "name": v.name,
                "state": v.state,
                "duration": v.duration(time.time()),
                "error": v.error or None,
                "digest": v.digest,
            }
        )

    def on_log(self, v: _Vertex, line: str) -> None:
        self._emit({"type": "log", "index": v.index, "line": line})


class QuietProgress(Progress):
    pass


class TtyProgress(Progress):
    """A rich live view: every step on one line, the running steps' last log lines under them."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=self.stream, highlight=False)
        self.live = Live(console=self.console, refresh_per_second=8, transient=False, get_renderable=self._render)
        self.live.start()

    def close(self) -> None:
        self.live.stop()

    def _render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        now = time.time()
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right", style="dim")
        table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
        table.add_column(justify="right")
        style = {"cached": "cyan", "done": "green", "running": "yellow", "error": "bold red", "waiting": "dim"}
        with self.lock:
            vs = list(self.vertices.values())
            head = Text(
                f"[+] Building {now - self.t0:.1f}s ({sum(v.state in ('cached', 'done') for v in vs)}/{len(vs)})"
            )
            table.add_row("", head, "")
            for v in vs:
                d = v.duration(now)
                right = "CACHED" if v.cached else (f"{d:.1f}s" if d is not None else "")
                table.add_row(f"#{v.index}", Text(v.name, style=style[v.state]), Text(right, style=style[v.state]))
                if v.state == "running":
                    for line in v.logs[-3:]:
                        table.add_row("", Text("  " + line.strip()[:200], style="dim"), "")
        return table


def make_progress(mode: ProgressMode | str, stream: IO[str] | None = None) -> Progress:
    """The renderer for ``mode`` (ValueError for a name that is not a `ProgressMode`)."""
    stream = stream or sys.stderr
    mode = ProgressMode(mode)
    if mode is ProgressMode.AUTO:
        mode = ProgressMode.TTY if stream.isatty() else ProgressMode.PLAIN
    renderers: dict[ProgressMode, type[Progress]] = {
        ProgressMode.TTY: TtyProgress,
        ProgressMode.PLAIN: PlainProgress,
        ProgressMode.JSON: JsonProgress,
        ProgressMode.QUIET: QuietProgress,
    }
    return renderers[mode](stream)
