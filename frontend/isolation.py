"""Evaluation in a child process, so that no single operation of a build file can hurt the caller.

starlark-rust checks its deadline between bytecode instructions, but one native operation
(``"a" * 10**9``, ``str()`` of a list that doubled thirty times) runs for as long as it likes, and an
allocation it cannot make aborts the whole process. So each evaluation runs in a forked child with
an address-space limit (``memory`` bytes above what the caller already uses) and a deadline the
parent enforces by killing it. The child reports back through a pipe: ``print()`` lines as they
come, pauses of the deadline while git works, and finally the spec or the error. Forking costs a
few milliseconds; the interpreter, the prelude and the imports are shared with the parent.

Where a child died (memory, time), ``Probe`` marks say which statement it was in: a second run
with statement marks (``frontend.locate``) writes each statement's number into shared memory.
"""

from __future__ import annotations

import contextlib
import faulthandler
import mmap
import os
import pickle
import resource
import select
import signal
import struct
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum

GRACE = 1.0
"""Seconds past the evaluation's own time limit before the parent kills the child."""
STUCK_AFTER = 0.5
"""A locating run that has not started a statement for this long is inside one operation."""
_FRAME = struct.Struct("!I")
_MARK = struct.Struct("qq")


def available() -> bool:
    """Forking is how the limits are enforced (Linux: RLIMIT_AS is honoured, fork is cheap)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class End(Enum):
    """How a child's evaluation ended."""

    SPEC = "spec"
    ERROR = "error"
    MEMORY = "memory"
    TIME = "time"
    CRASH = "crash"


@dataclass(frozen=True, slots=True)
class Outcome:
    end: End
    value: object = None
    """The spec (SPEC), the ``EnvdError`` (ERROR), the signal name (CRASH)."""
    mark: tuple[str, int, int, str] | None = None
    """(label, line, column, source line) of the last statement a locating run started."""


class Channel:
    """The child's side: messages to the parent and, when locating, statement marks."""

    def __init__(self, fd: int, marks: mmap.mmap | None) -> None:
        self._fd = fd
        self._marks = marks
        self._seq = 0
        self._next_index = 0
        self.locating = marks is not None

    def send(self, kind: str, payload: object = None) -> None:
        data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_FRAME.pack(len(data)) + data)
        while view:
            view = view[os.write(self._fd, view) :]

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Host work (a git clone) that does not count against the deadline."""
        self.send("pause")
        try:
            yield
        finally:
            self.send("resume")

    def positions(
        self, label: str, positions: list[tuple[int, int, str]], suspect: tuple[int, int, str] | None = None
    ) -> int:
        """Announce the statements of a file about to be compiled and run; returns the number of its
        first one. ``suspect`` is where the file would fail while compiling, before any mark."""
        self.send("positions", (label, positions, suspect))
        first = self._next_index
        self._next_index += len(positions)
        return first

    def mark(self, index: int) -> None:
        if self._marks is not None:
            self._seq += 1
            _MARK.pack_into(self._marks, 0, self._seq, index)


@dataclass(slots=True)
class _Parent:
    """The parent's side of one child: its pipe, deadline and what it said so far."""

    pid: int
    fd: int
    timeout: float
    on_print: Callable[[str], None]
    marks: mmap.mmap | None
    buffer: bytearray = field(default_factory=bytearray)
    positions: list[tuple[str, int, int, str]] = field(default_factory=list)
    suspect: tuple[str, int, int, str] | None = None
    """The last announced file's compile-time suspect, while none of its statements has run."""
    last_file_first: int = 0
    result: Outcome | None = None
    paused_since: float | None = None
    deadline: float = 0.0

    def wait(self) -> Outcome:
        self.deadline = time.monotonic() + self.timeout + GRACE
        last_seq, last_change = -1, time.monotonic()
        while True:
            now = time.monotonic()
            if self.paused_since is None and now > self.deadline:
                return self._kill(End.TIME)
            if self.marks is not None and self.paused_since is None:
                seq, _ = _MARK.unpack_from(self.marks, 0)
                if seq != last_seq:
                    last_seq, last_change = seq, now
                elif now - last_change > STUCK_AFTER:
                    return self._kill(End.TIME)
            step = 0.1 if self.marks is not None or self.paused_since is not None else self.deadline - now
            ready, _, _ = select.select([self.fd], [], [], max(step, 0.0))
            if ready and not self._read():
                return self._finish()

    def _read(self) -> bool:
        """Take what the pipe holds; False at its end (the child exited)."""
        chunk = os.read(self.fd, 1 << 16)
        if not chunk:
            return False
        self.buffer += chunk
        while len(self.buffer) >= _FRAME.size:
            (size,) = _FRAME.unpack_from(self.buffer, 0)
            if len(self.buffer) < _FRAME.size + size:
                break
            kind, payload = pickle.loads(self.buffer[_FRAME.size : _FRAME.size + size])
            del self.buffer[: _FRAME.size + size]
            self._handle(kind, payload)
        return True

    def _handle(self, kind: str, payload: object) -> None:
        if kind == "print":
            self.on_print(str(payload))
        elif kind == "pause":
            self.paused_since = time.monotonic()
        elif kind == "resume" and self.paused_since is not None:
            self.deadline += time.monotonic() - self.paused_since
            self.paused_since = None
        elif kind == "positions":
            assert isinstance(payload, tuple)
            label: str = payload[0]
            positions: list[tuple[int, int, str]] = payload[1]
            suspect: tuple[int, int, str] | None = payload[2]
            self.last_file_first = len(self.positions)
            self.suspect = (label, *suspect) if suspect else None
            self.positions += [(label, line, col, text) for line, col, text in positions]
        else:
            self.result = Outcome(End(kind), payload)

    def _kill(self, end: End) -> Outcome:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        return Outcome(end, mark=self._mark())

    def _finish(self) -> Outcome:
        _, status = os.waitpid(self.pid, 0)
        if self.result is not None:
            return Outcome(self.result.end, self.result.value, self._mark())
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGABRT, signal.SIGKILL):
            return Outcome(End.MEMORY, mark=self._mark())  # an allocation failed (or the kernel's OOM killer)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        name = signal.Signals(sig).name if sig else f"exit status {os.WEXITSTATUS(status)}"
        return Outcome(End.CRASH, name, self._mark())

    def _mark(self) -> tuple[str, int, int, str] | None:
        """The statement running when the child stopped; or, when the last file announced never
        started, the expression that failed to compile there."""
        if self.marks is None:
            return None
        seq, index = _MARK.unpack_from(self.marks, 0)
        if self.suspect is not None and (not seq or index < self.last_file_first):
            return self.suspect
        return self.positions[index] if seq and 0 <= index < len(self.positions) else None


def _address_space() -> int:
    """This process's virtual size in bytes (what a child starts with), 0 if unknown."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _limit_memory(extra: int) -> None:
    base = _address_space()
    if base:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = base + extra if hard == resource.RLIM_INFINITY else min(base + extra, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def run(
    job: Callable[[Channel], object],
    *,
    timeout: float,
    memory: int,
    on_print: Callable[[str], None],
    locate: bool = False,
) -> Outcome:
    """Run ``job`` in a forked child: what it returns is the SPEC, an ``EnvdError`` it raises the ERROR."""
    from .errors import EnvdError, EvalError

    marks = mmap.mmap(-1, _MARK.size) if locate else None
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork in a threaded process: the child runs only this module's
        # job (no locks of other threads), reports through its pipe and leaves with os._exit.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        code = 0
        try:
            os.close(read_fd)
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends it; the parent reports
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)  # Rust's own panic and allocation messages are not for the user,
            os.dup2(devnull, 2)
            faulthandler.disable()  # nor a Python traceback dumped when an allocation aborts
            _limit_memory(memory)
            channel = Channel(write_fd, marks)
            try:
                channel.send("spec", job(channel))
            except EnvdError as e:
                channel.send("error", e)
            except MemoryError:
                channel.send("memory")
            except Exception as e:
                channel.send("error", EvalError(f"internal error: {type(e).__name__}: {e}"))
        except BaseException:
            code = 70
        finally:
            os._exit(code)
    os.close(write_fd)
    parent = _Parent(pid, read_fd, timeout, on_print, marks)
    try:
        return parent.wait()
    finally:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(read_fd)
        if marks is not None:
            marks.close()
