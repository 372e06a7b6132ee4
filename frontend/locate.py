"""Statement marks: a copy of a build file that reports each statement as it starts.

Used only to find where an evaluation that ran out of memory or time was (``frontend.isolation``):
the file runs again with ``__envbuild_at(N); `` in front of each simple statement, on the same line,
so line numbers stay and only columns after the mark move (``Instrumented.column`` maps them back).
Starlark's statements are Python's, so the standard ``ast`` module finds them.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass, field

MARK_FUNCTION = "__envbuild_at"
_COMPOUND = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.If, ast.For, ast.While, ast.With, ast.Try)


@dataclass(frozen=True, slots=True)
class Instrumented:
    text: str
    positions: list[tuple[int, int, str]]
    """(line, column, source line) of mark N: at the statement's value where it has one
    (``x = [0] * n`` -> ``[0] * n``), else at the statement."""
    shifts: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Line -> (indentation, length of the mark put after it)."""

    def column(self, line: int, col: int) -> int:
        """A column of the instrumented text in the original one."""
        indent, shift = self.shifts.get(line, (0, 0))
        return col - shift if col > indent + shift else col


def _column(line: str, byte_offset: int) -> int:
    """``ast`` counts UTF-8 bytes; messages count characters (1-based)."""
    return len(line.encode()[:byte_offset].decode(errors="replace")) + 1


def _markable(stmt: ast.stmt, lines: list[str]) -> bool:
    if isinstance(stmt, _COMPOUND):
        return False
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "load":
        return False  # load() must stay a statement of its own
    text = lines[stmt.lineno - 1]
    return text[: _column(text, stmt.col_offset) - 1].strip() == ""  # the first statement of its line


def instrument(text: str) -> Instrumented | None:
    """The marked copy of ``text``, or None when Python's parser does not read it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like: starlark decides
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    lines = text.split("\n")
    statements = sorted(
        (node for node in ast.walk(tree) if isinstance(node, ast.stmt) and _markable(node, lines)),
        key=lambda node: (node.lineno, node.col_offset),
    )
    positions: list[tuple[int, int, str]] = []
    shifts: dict[int, tuple[int, int]] = {}
    for n, stmt in enumerate(statements):
        where = None if isinstance(stmt, ast.AugAssign) else getattr(stmt, "value", None)  # x += y: the whole
        target = where if isinstance(where, ast.expr) and where.lineno == stmt.lineno else stmt
        line = lines[stmt.lineno - 1]
        positions.append((stmt.lineno, _column(line, target.col_offset), line))
        indent = _column(line, stmt.col_offset) - 1
        mark = f"{MARK_FUNCTION}({n}); "
        lines[stmt.lineno - 1] = line[:indent] + mark + line[indent:]
        shifts[stmt.lineno] = (indent, len(mark))
    return Instrumented("\n".join(lines), positions, shifts)


BIG_CONSTANT = 1 << 24
"""Elements of a constant string or list beyond which its expression is a suspect (16 Mi)."""


def _constant(node: ast.AST) -> tuple[str, int] | None:
    """("seq", length) or ("int", value) of a constant expression, None if it is not one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return "seq", len(node.value)
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return "int", node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return "seq", len(node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _constant(node.operand)
        return ("int", -inner[1]) if inner and inner[0] == "int" else None
    if not isinstance(node, ast.BinOp):
        return None
    left, right = _constant(node.left), _constant(node.right)
    if left is None or right is None:
        return None
    kinds = (left[0], right[0])
    if isinstance(node.op, ast.Add) and kinds[0] == kinds[1]:
        return kinds[0], left[1] + right[1]
    if isinstance(node.op, ast.Mult) and "int" in kinds:
        return ("seq" if "seq" in kinds else "int"), left[1] * right[1]
    if isinstance(node.op, ast.Pow) and kinds == ("int", "int") and 0 <= right[1] <= 256 and abs(left[1]) < 1 << 64:
        return "int", left[1] ** right[1]
    return None


def constant_too_big(text: str) -> tuple[int, int, str] | None:
    """(line, column, source line) of the first constant string or list expression that would be
    enormous (``"a" * 10**9``): starlark folds such constants while compiling, before any
    statement runs, so no statement mark can point at it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    lines = text.split("\n")
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.BinOp)
        and (value := _constant(node)) is not None
        and value[0] == "seq"
        and value[1] >= BIG_CONSTANT
    ]
    if not found:
        return None
    first = min(found, key=lambda node: (node.lineno, node.col_offset))
    line = lines[first.lineno - 1]
    return first.lineno, _column(line, first.col_offset), line
