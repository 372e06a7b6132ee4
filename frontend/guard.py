"""A cheap scan of a build file before starlark parses it.

starlark-rust parses and compiles recursively: thousands of nested brackets or a 20,000-term
expression overflow the native stack and kill the whole process (SIGSEGV), and a bracket left open
at the end of the file is reported at 1:1. This scan finds those shapes first and reports them
where they are. It only tracks strings, comments, brackets and binary operators; anything it
does not understand is left to the real parser.
"""

from __future__ import annotations

from frontend.errors import LimitExceeded, SyntaxError_

MAX_NESTING = 100
MAX_OPERATORS = 2000

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")", "]", "}"}
_OPERATOR_CHARS = set("+-*/%|&^<>")
_STRING_PREFIXES = set("rRbB")


def check_source(label: str, text: str) -> tuple[str, int, int] | None:
    """Raise a positioned error for shapes the native parser cannot survive.

    Returns the innermost bracket still open at the end of the file (opener, line, column), if
    any, so that a parse error starlark places at 1:1 can be reported where the bracket is.
    """
    lines = text.split("\n")
    stack: list[tuple[str, int, int]] = []
    chains: list[tuple[int, tuple[int, int] | None]] = []
    operators = 0
    chain_start: tuple[int, int] | None = None
    prev = ""
    i, n = 0, len(text)
    line, line_start = 1, 0

    def col(at: int) -> int:
        return at - line_start + 1

    while i < n:
        c = text[i]
        if c == "\n":
            if not stack:
                operators, chain_start = 0, None
            line, line_start = line + 1, i + 1
            i += 1
            continue
        if c in " \t\r\\":
            i += 1
            continue
        if c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if c in "\"'" or (c in _STRING_PREFIXES and i + 1 < n and text[i + 1] in "\"'"):
            if c in _STRING_PREFIXES:
                i += 1
            i, line, line_start = _skip_string(text, i, line, line_start)
            prev = "a"
            continue
        if c in _OPEN:
            stack.append((c, line, col(i)))
            if len(stack) > MAX_NESTING:
                _, first_line, first_col = stack[0]
                raise LimitExceeded(
                    f"brackets nested too deep (more than {MAX_NESTING} levels)",
                    label, first_line, first_col, _line(lines, first_line),
                    hint="build the value in steps, with helper variables or a loop",
                )
            chains.append((operators, chain_start))
            operators, chain_start = 0, None
        elif c in _CLOSE:
            if stack:
                stack.pop()
            if chains:
                operators, chain_start = chains.pop()
        elif c in ",=:;":
            operators, chain_start = 0, None
        elif c in _OPERATOR_CHARS and _ends_operand(prev):
            if chain_start is None:
                chain_start = (line, col(i))
            operators += 1
            if operators > MAX_OPERATORS:
                start_line, start_col = chain_start
                raise LimitExceeded(
                    f"expression too deep: more than {MAX_OPERATORS} operators in one chain",
                    label, start_line, start_col, _line(lines, start_line),
                    hint="split it into several statements, or use sum()/join() over a list",
                )
        prev = c
        i += 1
    return stack[-1] if stack else None


def unclosed_error(label: str, text: str, unclosed: tuple[str, int, int]) -> SyntaxError_:
    """The error for a bracket left open at the end of the file."""
    opener, open_line, open_col = unclosed
    return SyntaxError_(
        f"syntax error: `{opener}` is never closed (expected `{_OPEN[opener]}` before the end of the file)",
        label, open_line, open_col, _line(text.split("\n"), open_line),
    )


def _ends_operand(prev: str) -> bool:
    return prev.isalnum() or prev in "_)]}\"'."


def _skip_string(text: str, i: int, line: int, line_start: int) -> tuple[int, int, int]:
    """Return the index after the string literal starting at ``i`` (and the updated line counters)."""
    quote = text[i]
    triple = text.startswith(quote * 3, i)
    delim = quote * 3 if triple else quote
    i += len(delim)
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                line, line_start = line + 1, i + 2
            i += 2
            continue
        if c == "\n":
            if not triple:
                return i, line, line_start
            line, line_start = line + 1, i + 1
        elif text.startswith(delim, i):
            return i + len(delim), line, line_start
        i += 1
    return n, line, line_start


def _line(lines: list[str], number: int) -> str | None:
    return lines[number - 1] if 0 < number <= len(lines) else None
