"""Starlark's error text -> the ``EnvdError`` a user can act on, at the position to fix.

starlark-pyo3 raises one exception type whose only content is starlark-rust's rendered text. What
can be told by structure is: the phase (``parse`` failed -> a syntax error), an error a builtin
raised (kept on the recorder), and our own deadline. The rest (unknown names, type errors, stack
overflow) is told by the message, so the binding's version range is pinned in ``pyproject.toml``
and ``tests/frontend/test_frontend_errors.py`` checks each message it relies on.
"""

from __future__ import annotations

import difflib
import re

from .builtins import NAMESPACES, REGISTRY, UNIVERSE
from .errors import (
    EnvdError,
    EvalError,
    LimitExceeded,
    NameError_,
    SyntaxError_,
    TypeError_,
)
from .prelude import PRELUDE_LABEL, call_pos, stack_frames
from .recorder import Recorder

TOP_FRAME_LABEL = "<envd>"
"""The label of the one-line module that calls the target function."""

_LOCATION = re.compile(r"^\s*--> (.+?):(\d+):(\d+)", re.MULTILINE)
_MESSAGE = re.compile(r"^error: (.*?)(?=^\s*--> |\Z)", re.MULTILINE | re.DOTALL)
_PYTHON_EXCEPTION_PREFIX = re.compile(r"^[A-Za-z_]\w*(?:Error|Exception|Error_|Exceeded): ")
_TYPE_MARKERS = (
    "Missing parameter",
    "Found ",
    "Wrong number of",
    "not supported on type",
    "not supported for type",
    "not supported for types",
    "Type of parameter",
    "Expected type",
    "expected type",
    "Value of type",
    "Unexpected parameter",
)
_HERMETIC = frozenset({"open", "exec", "eval", "import", "os", "input", "getenv", "environ", "time", "sys"})
_STARLARK_NAMES = (
    "print",
    "fail",
    "len",
    "range",
    "str",
    "int",
    "list",
    "dict",
    "struct",
    "sorted",
    "enumerate",
    "zip",
    "True",
    "False",
    "None",
    "type",
    "bool",
    "hasattr",
    "getattr",
    "any",
    "all",
    "min",
    "max",
    "reversed",
    "repr",
    "tuple",
    "abs",
    "hash",
    "dir",
)


def source_line(rec: Recorder, file: str | None, line: int | None) -> str | None:
    if file is None or line is None:
        return None
    lines = rec.sources.get(file)
    if lines is None or not 0 < line <= len(lines):
        return None
    return lines[line - 1]


def _message(text: str) -> str:
    m = _MESSAGE.search(text)
    return _PYTHON_EXCEPTION_PREFIX.sub("", (m[1] if m else text).strip(), count=1)


def _location(text: str) -> tuple[str | None, int | None, int | None]:
    m = _LOCATION.search(text)
    return (m[1], int(m[2]), int(m[3])) if m else (None, None, None)


def _compress_trace(entries: list[str], keep: int = 12) -> tuple[str, ...]:
    """Fold runs of the same frame (deep recursion) and keep the outermost and innermost frames."""
    out: list[str] = []
    i = 0
    while i < len(entries):
        j = i
        while j + 1 < len(entries) and entries[j + 1] == entries[i]:
            j += 1
        out.append(entries[i] + (f" (repeated {j - i + 1} times)" if j > i else ""))
        i = j + 1
    if len(out) > keep:
        out = [*out[: keep // 2], f"... {len(out) - keep} more ...", *out[-keep // 2 :]]
    return tuple(out)


# ---- parse errors --------------------------------------------------------------------------------


def parse_error(text: str, rec: Recorder) -> SyntaxError_:
    """``starlark.parse`` failed: always a syntax error; the message is shortened and given a hint."""
    message = _message(text)
    file, line, col = _location(text)
    hint: str | None = None
    m = re.fullmatch(r"Parse error: (.*?), expected one of (.*)", message, re.DOTALL)
    if m and m[2].count(",") > 4:
        message = f"syntax error: {m[1]}"
    elif message.startswith("Parse error: "):
        message = "syntax error: " + message.removeprefix("Parse error: ")
    if "outside `def`" in message:
        hint = "envd files allow `if` and `for` only inside functions (def build(): ...)"
    elif "reserved keyword `while`" in message:
        hint = "`while` is not part of Starlark; use `for x in range(n):`"
    elif "f-strings" in message:
        message = "f-strings are not supported in build files"
        hint = 'use "...{}".format(x) or "..." + str(x)'
    elif "tabs are not allowed" in message:
        hint = "indent with spaces"
    return SyntaxError_(message, file, line, col, source_line(rec, file, line), hint=hint)


# ---- evaluation errors ---------------------------------------------------------------------------


def eval_error(text: str, rec: Recorder, *, timed_out: bool, timeout: float) -> EnvdError:
    """A ``StarlarkError`` raised while running Starlark, with the user's position and call trace."""
    frames = stack_frames(text)
    user_frames = [fr for fr in frames if fr[0] not in (PRELUDE_LABEL, TOP_FRAME_LABEL)]
    trace = _compress_trace([f"{f}:{ln}, in {fn}" for f, ln, fn in user_frames[:-1]])
    pending = rec.error
    if pending is not None:  # a builtin raised it: the object is exact, the text is not needed
        pending.trace = pending.trace or trace
        if pending.source_line is None:
            pending.source_line = source_line(rec, pending.file, pending.line)
        return pending
    file, line, col = _location(text)
    if file == PRELUDE_LABEL:  # failed inside a builtin's wrapper: point at the user's call
        wrapper = next((fn for f, _, fn in reversed(frames) if f == PRELUDE_LABEL), "")
        if user_frames:
            uf, ul, _ = user_frames[-1]
            pos = call_pos(rec, f"  * {uf}:{ul}, in x\n", wrapper.replace("__", "."))
            file, line, col = (pos.file, pos.line, pos.col) if pos else (uf, ul, None)
        else:
            file, line, col = None, None, None
    cls: type[EnvdError]
    hint: str | None
    if timed_out:
        cls, hint = LimitExceeded, "look for a loop that never ends"
        message = f"evaluation took longer than {timeout:g}s (time limit reached)"
    else:
        cls, message, hint = _classify(_message(text), rec, file, line, col)
    return cls(message, file, line, col, source_line(rec, file, line), hint=hint, trace=trace)


def _classify(
    message: str, rec: Recorder, file: str | None, line: int | None, col: int | None
) -> tuple[type[EnvdError], str, str | None]:
    """The error class for a message, made actionable (did-you-mean, plain words)."""
    m = re.match(r"Variable `([^`]+)` not found(?:, did you mean `([^`]+)`\?)?", message)
    if m:
        return _unknown_name(m[1], m[2], rec, file)
    m = re.match(r"Object of type `([^`]+)` has no attribute `([^`]+)`(?:, did you mean `([^`]+)`\?)?", message)
    if m:
        return _unknown_attribute(m[1], m[2], m[3], rec, file, line, col)
    if "serde::serialize" in message:
        tm = re.search(r"on type `([^`]+)`", message)
        what = tm[1] if tm else "this value"
        return (
            TypeError_,
            f"arguments of envd functions must be plain values (string, int, bool, list, dict, None), got a {what}",
            None,
        )
    if message.startswith("Starlark call stack overflow"):
        return (
            LimitExceeded,
            "recursion too deep (the call stack limit was reached)",
            "look for a function that calls itself without end",
        )
    if message.startswith("MemoryError"):
        return LimitExceeded, "evaluation used too much memory", "look for a value that grows without bound"
    if message.startswith("fail:"):
        return EvalError, message.removeprefix("fail:").strip(), None
    if any(k in message for k in _TYPE_MARKERS):
        return TypeError_, message, None
    return EvalError, message, None


def _known_names(rec: Recorder, file: str | None) -> list[str]:
    names = [*UNIVERSE, *NAMESPACES, *_STARLARK_NAMES]
    for ln in rec.sources.get(file or "", []):
        m = re.match(r"(?:def\s+([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*=[^=])", ln)
        if m:
            names.append(m[1] or m[2])
        for lm in re.finditer(r"load\([^)]*", ln):
            names += re.findall(r"""["']([A-Za-z_]\w*)["']""", lm[0])
    return names


def _unknown_name(
    name: str, suggestion: str | None, rec: Recorder, file: str | None
) -> tuple[type[EnvdError], str, str | None]:
    close = difflib.get_close_matches(name, sorted(set(_known_names(rec, file)) - {name}), n=1, cutoff=0.6)
    if close:
        suggestion = close[0]
    hint = None
    if name in _HERMETIC:
        suggestion = None
        hint = "build files are hermetic: they can only use envd's functions, not files or the environment"
    return NameError_, f"`{name}` is not defined" + (f"; did you mean `{suggestion}`?" if suggestion else ""), hint


def _namespace_attrs(ns: str) -> list[str]:
    if ns == "data":
        return ["envd", "path"]
    return [q.split(".", 1)[1] for q in REGISTRY if q.startswith(ns + ".")]


def _unknown_attribute(
    type_name: str,
    attr: str,
    suggestion: str | None,
    rec: Recorder,
    file: str | None,
    line: int | None,
    col: int | None,
) -> tuple[type[EnvdError], str, str | None]:
    text = source_line(rec, file, line)
    ns = None
    if text is not None and col is not None:
        nm = re.match(r"([A-Za-z_]\w*)(?:\.[A-Za-z_]\w*)*\.\s*" + re.escape(attr), text[col - 1 :])
        if nm:
            ns = nm[1]
    if ns in NAMESPACES and type_name == "struct":
        attrs = _namespace_attrs(ns)
        close = difflib.get_close_matches(attr, attrs, n=1, cutoff=0.5)
        message = f"`{ns}.{attr}` is not an envd function" + (f"; did you mean `{ns}.{close[0]}`?" if close else "")
        return NameError_, message, f"{ns}.* has: {', '.join(sorted(attrs))}"
    message = f"a value of type `{type_name}` has no attribute `{attr}`" + (
        f"; did you mean `{suggestion}`?" if suggestion else ""
    )
    return NameError_, message, None
