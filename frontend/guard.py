"""A scan of a build file's tokens before starlark parses it.

starlark-rust compiles recursively: a few thousand nested operators (``not not ...``, ``-``,
``and``, ternaries, ``x.a.a...``, ``x[0][0]...``, calls), nested ``lambda:``s or blocks overflow the
native stack and kill the process. Starlark's tokens are Python's, so the standard ``tokenize``
module finds those shapes first and reports them where they start; a bracket left open at the end of
the file (which starlark reports at 1:1) is found on the way. Anything the tokenizer cannot read is
left to the real parser, which reports it.
"""

from __future__ import annotations

import io
import tokenize
from dataclasses import dataclass, field

from .errors import LimitExceeded, SyntaxError_

MAX_NESTING = 100
"""Brackets open at once."""
MAX_BLOCKS = 50
"""Indented blocks (``def``/``if``/``for`` bodies) inside one another."""
MAX_DEPTH = 1000
"""Operations nested in one expression: each operator, keyword operator, attribute, bracket or
``lambda`` on the way from the statement to the innermost operand counts one."""

_CLOSING = {"(": ")", "[": "]", "{": "}"}
_KEYWORD_OPERATORS = frozenset({"not", "and", "or", "if", "else", "in", "for", "lambda"})
_RESETS = frozenset({",", "=", ":", ";", "+=", "-=", "*=", "/=", "//=", "%=", "&=", "|=", "^=", "<<=", ">>="})


@dataclass(slots=True)
class _Level:
    """One bracket level: where it opened and the depth its items start from."""

    opener: str
    line: int
    col: int
    base: int
    pending_lambdas: int = 0


@dataclass(slots=True)
class _Scan:
    label: str
    lines: list[str]
    levels: list[_Level] = field(default_factory=list)
    depth: int = 0
    start: tuple[int, int] = (1, 1)
    blocks: int = 0
    top_lambdas: int = 0

    def limit(self, message: str, hint: str, line: int, col: int) -> LimitExceeded:
        return LimitExceeded(message, self.label, line, col, _line(self.lines, line), hint=hint)

    def deeper(self, line: int, col: int) -> None:
        if self.depth == (self.levels[-1].base if self.levels else 0):
            self.start = (line, col)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.limit(
                f"expression too deep: more than {MAX_DEPTH} operations nested in one expression",
                "split it into several statements, or use sum()/join() over a list",
                *self.start,
            )

    def open(self, opener: str, line: int, col: int) -> None:
        self.deeper(line, col)
        self.levels.append(_Level(opener, line, col, self.depth))
        if len(self.levels) > MAX_NESTING:
            first = self.levels[0]
            raise self.limit(
                f"brackets nested too deep (more than {MAX_NESTING} levels)",
                "build the value in steps, with helper variables or a loop",
                first.line,
                first.col,
            )

    def close(self) -> None:
        """A closed group is one operand: ``f()()`` and ``x[0][0]`` chains keep growing."""
        if self.levels:
            self.depth = self.levels.pop().base

    def pending_lambdas(self, change: int = 0) -> int:
        """Lambdas at this level whose ``:`` has not come yet (their parameters are no items)."""
        if self.levels:
            self.levels[-1].pending_lambdas += change
            return self.levels[-1].pending_lambdas
        self.top_lambdas += change
        return self.top_lambdas

    def reset(self, op: str) -> None:
        """``,``, ``=``, ``:`` and ``;`` end an item: the next one starts at the level's base."""
        if self.pending_lambdas() > 0:
            if op == ":":
                self.pending_lambdas(-1)
            return
        self.depth = self.levels[-1].base if self.levels else 0

    def token(self, tok: tokenize.TokenInfo) -> None:
        (line, col0), col = tok.start, tok.start[1] + 1
        if tok.type == tokenize.INDENT:
            self.blocks += 1
            if self.blocks > MAX_BLOCKS:
                raise self.limit(
                    f"blocks nested too deep (more than {MAX_BLOCKS} levels)",
                    "move the inner part into a function of its own",
                    line,
                    col0 + 1,
                )
        elif tok.type == tokenize.DEDENT:
            self.blocks -= 1
        elif tok.type == tokenize.NEWLINE:
            self.levels.clear()
            self.depth = self.top_lambdas = 0
        elif tok.type == tokenize.NAME and tok.string in _KEYWORD_OPERATORS:
            if tok.string == "lambda":
                self.pending_lambdas(+1)
            self.deeper(line, col)
        elif tok.type == tokenize.OP:
            if tok.string in _CLOSING:
                self.open(tok.string, line, col)
            elif tok.string in ")]}":
                self.close()
            elif tok.string in _RESETS:
                self.reset(tok.string)
            else:
                self.deeper(line, col)


def check_source(label: str, text: str) -> tuple[str, int, int] | None:
    """Raise a positioned ``LimitExceeded`` for shapes the native parser cannot survive.

    Returns the innermost bracket still open at the end of the file (opener, line, column), if
    any, so that a parse error starlark places at 1:1 can be reported where the bracket is.
    """
    scan = _Scan(label, text.split("\n"))
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            scan.token(tok)
    except (tokenize.TokenError, SyntaxError):
        pass  # what the tokenizer cannot read, starlark's parser reports
    if scan.levels:
        innermost = scan.levels[-1]
        return innermost.opener, innermost.line, innermost.col
    return None


def unclosed_error(label: str, text: str, unclosed: tuple[str, int, int]) -> SyntaxError_:
    """The error for a bracket left open at the end of the file."""
    opener, open_line, open_col = unclosed
    return SyntaxError_(
        f"syntax error: `{opener}` is never closed (expected `{_CLOSING[opener]}` before the end of the file)",
        label,
        open_line,
        open_col,
        _line(text.split("\n"), open_line),
    )


def _line(lines: list[str], number: int) -> str | None:
    return lines[number - 1] if 0 < number <= len(lines) else None
