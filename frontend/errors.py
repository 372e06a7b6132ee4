"""Errors a build file can cause, each pointing at the file, line and column to fix.

Every mistake in a build file surfaces as an ``EnvdError`` subclass, never as a Python traceback.
``str(err)`` is the one-line ``file:line:col: message``; ``err.render()`` adds the source line and a
caret, which is what the CLI prints.
"""

from __future__ import annotations


class FrontendError(Exception):
    """Root of everything ``frontend`` raises on purpose."""


class EnvdError(FrontendError):
    """A problem in a build file (or in what it refers to), with the position to fix."""

    kind = "error"

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        source_line: str | None = None,
        *,
        hint: str | None = None,
        trace: tuple[str, ...] = (),
    ) -> None:
        message = _printable(message)
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.source_line = None if source_line is None else _printable(source_line)
        self.hint = hint
        self.trace = trace

    def at(self, pos: object) -> EnvdError:
        """Attach a position (anything with ``file``, ``line``, ``col``); returns self for ``raise``."""
        if pos is not None:
            self.file = getattr(pos, "file", None)
            self.line = getattr(pos, "line", None)
            self.col = getattr(pos, "col", None)
        return self

    @property
    def location(self) -> str:
        if self.file is None:
            return ""
        if self.line is None:
            return self.file
        if self.col is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"

    def __str__(self) -> str:
        loc = self.location
        return f"{loc}: {self.message}" if loc else self.message

    def render(self) -> str:
        """Multi-line form: location and message, the source line, a caret, then any hint."""
        out = [str(self)]
        if self.source_line is not None and self.line is not None:
            gutter = f"{self.line} | "
            out.append(gutter + self.source_line.rstrip("\n"))
            if self.col is not None:
                prefix = "".join(c if c == "\t" else " " for c in self.source_line[: self.col - 1])
                out.append(" " * len(gutter) + prefix + "^")
        if self.trace:
            out.append("called from:")
            out.extend(f"  {t}" for t in self.trace)
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled with its position (``Exception`` would keep only the message)."""
        return (
            _rebuild,
            (type(self), self.message, self.file, self.line, self.col, self.source_line, self.hint, self.trace),
        )


def _printable(text: str) -> str:
    """Control characters (a NUL in a build file, say) shown escaped, never written raw to a terminal."""
    if text.isprintable() or all(c.isprintable() or c in "\t\n" for c in text):
        return text
    return "".join(c if c.isprintable() or c in "\t\n" else f"\\x{ord(c):02x}" for c in text)


def _rebuild(
    cls: type[EnvdError],
    message: str,
    file: str | None,
    line: int | None,
    col: int | None,
    source_line: str | None,
    hint: str | None,
    trace: tuple[str, ...],
) -> EnvdError:
    return cls(message, file, line, col, source_line, hint=hint, trace=trace)


class SyntaxError_(EnvdError):
    """The file does not parse, or uses a construct envd's dialect forbids (top-level ``if``...)."""

    kind = "syntax error"


class NameError_(EnvdError):
    """An unknown variable, function, attribute or keyword argument."""

    kind = "name error"


class TypeError_(EnvdError):
    """An argument of the wrong type, or a call with the wrong number of arguments."""

    kind = "type error"


class ValueError_(EnvdError):
    """An argument with the right type but an unusable value (bad port, unknown CUDA tag...)."""

    kind = "value error"


class LoadError(EnvdError):
    """``load()``/``include()`` could not find, fetch or read what it names, or a cycle."""

    kind = "load error"


class NetworkError(EnvdError):
    """A repository a build file includes or loads could not be fetched (and no copy is cached).

    Not a mistake in the file: the same file works once the network (or a mirror) is there, so
    callers report it as a failure of the run, not of the input."""

    kind = "network error"


class LimitExceeded(EnvdError):
    """Evaluation ran too long or too deep (a runaway loop or recursion)."""

    kind = "limit exceeded"


class V0Syntax(SyntaxError_):
    """A ``# syntax=v0`` file: envd removed v0 in 1.0 and envbuild only speaks v1."""


class EvalError(EnvdError):
    """Any other failure while running the file (``fail()``, index out of range, ...)."""

    kind = "evaluation error"
