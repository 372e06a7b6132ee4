"""How Starlark reaches the builtins: a generated prelude, and the call site of each call.

starlark-pyo3 gives a Python callback no position, so every builtin is wrapped in a Starlark
function that passes ``call_stack()`` first; the innermost user frame of that text, plus the callee's
name on that line, is the ``Pos`` the spec records and errors point at.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from . import spec as S
from .builtins import DATA_PATHS, REGISTRY, Builtin, bind, starlark_repr
from .errors import EnvdError
from .recorder import Recorder, current

PRELUDE_LABEL = "<envbuild>"

STACK_FRAME = re.compile(r"^\s*\* (.+?):(\d+), in (\S+)", re.MULTILINE)
"""One ``  * file:line, in function`` entry of a Starlark call stack (or traceback)."""


def stack_frames(stack: str) -> list[tuple[str, int, str]]:
    """(file, line, function) of every frame in a ``call_stack()`` or traceback text, outermost first."""
    return [(f, int(line), fn) for f, line, fn in STACK_FRAME.findall(stack)]


@functools.cache
def _call_patterns(qualname: str) -> tuple[re.Pattern[str], re.Pattern[str] | None]:
    """``install.python(`` (not ``my_install.python(``), and ``.python(`` for a call through an alias."""
    full = re.compile(rf"(?<![\w.]){re.escape(qualname)}\s*\(")
    attr = re.compile(rf"\.{re.escape(qualname.rsplit('.', 1)[1])}\s*\(") if "." in qualname else None
    return full, attr


def call_column(text: str, qualname: str) -> int:
    """1-based column of the call of ``qualname`` on a source line; the first non-blank column when
    the line does not show it."""
    full, attr = _call_patterns(qualname)
    m = full.search(text)
    if m:
        return m.start() + 1
    m = attr.search(text) if attr is not None else None
    if m:
        return m.start() + 2
    return len(text) - len(text.lstrip()) + 1


def call_pos(rec: Recorder, stack: str, qualname: str) -> S.Pos | None:
    """Where the innermost user frame of ``stack`` calls ``qualname``."""
    user = [(f, line) for f, line, _ in stack_frames(stack) if f != PRELUDE_LABEL]
    if not user:
        return None
    file, line = user[-1]
    lines = rec.sources.get(file)
    col = call_column(lines[line - 1], qualname) if lines is not None and 0 < line <= len(lines) else 1
    return S.Pos(file, line, col)


def make_callback(b: Builtin) -> Callable[..., object]:
    """The Python callable behind one prelude wrapper; it keeps the error object for exact positions."""

    def callback(stack: str, /, *args: object, **kwargs: object) -> object:
        rec = current.get()
        pos = call_pos(rec, stack, b.qualname)
        try:
            return b.impl(rec, pos, **bind(b, args, kwargs))
        except EnvdError as e:
            if e.file is None:
                e.at(pos)
            rec.error = e
            raise
        except Exception as e:  # a bug in a builtin must still name the call that hit it
            err = EnvdError(f"{b.qualname}(): internal error: {type(e).__name__}: {e}").at(pos)
            rec.error = err
            raise err from e

    callback.__name__ = b.ident
    _call_patterns(b.qualname)  # compiled with the prelude, before any evaluation forks
    return callback


def prelude_source() -> str:
    """Starlark that groups the callbacks into envd's namespaces (``install.python`` ...)."""
    lines: list[str] = []
    namespaces: dict[str, list[str]] = {}
    for b in REGISTRY.values():
        lines.append(f"def {b.ident}(*args, **kwargs):")
        lines.append(f"    return __cb_{b.ident}(call_stack(), *args, **kwargs)")
        if "." in b.qualname:
            ns, attr = b.qualname.split(".", 1)
            namespaces.setdefault(ns, []).append(f"{attr} = {b.ident}")
    data_paths = ", ".join(f"{k} = {starlark_repr(v)}" for k, v in DATA_PATHS.items())
    lines.append(f"data = struct(envd = data__envd, path = struct({data_paths}))")
    for ns, attrs in namespaces.items():
        if ns != "data":
            lines.append(f"{ns} = struct({', '.join(attrs)})")
    return "\n".join(lines) + "\n"
