"""The pre-parse scan: shapes that would crash the native parser become positioned errors."""

from __future__ import annotations

import pytest

from frontend.errors import LimitExceeded
from frontend.guard import MAX_DEPTH, MAX_NESTING, check_source, unclosed_error


def test_ordinary_file_passes() -> None:
    src = 'def build():\n    base(image="x", dev=True)\n    run(["echo (", "[not a bracket"])  # ) ]\n'
    assert check_source("b.envd", src) is None


def test_brackets_inside_strings_and_comments_are_ignored() -> None:
    src = 'x = """((((\n[[[["""\ny = r"\\"(" + \'[\'  # (((((\n'
    assert check_source("b.envd", src) is None


def test_nesting_limit_points_at_the_outermost_bracket() -> None:
    deep = "x = " + "[" * (MAX_NESTING + 1) + "]" * (MAX_NESTING + 1) + "\n"
    with pytest.raises(LimitExceeded) as info:
        check_source("b.envd", "\n" + deep)
    assert (info.value.line, info.value.col) == (2, 5)
    assert "nested too deep" in info.value.message


def test_nesting_at_the_limit_is_allowed() -> None:
    ok = "x = " + "(" * MAX_NESTING + "1" + ")" * MAX_NESTING + "\n"
    assert check_source("b.envd", ok) is None


def test_long_operator_chain_is_refused() -> None:
    src = "x = " + "+".join(["1"] * (MAX_DEPTH + 2)) + "\n"
    with pytest.raises(LimitExceeded) as info:
        check_source("b.envd", src)
    assert info.value.line == 1 and "expression too deep" in info.value.message


def test_many_short_expressions_and_unary_minus_are_not_a_chain() -> None:
    items = ", ".join(f"-{i} + {i}" for i in range(MAX_DEPTH * 2))
    assert check_source("b.envd", f"x = [{items}]\n") is None
    lines = "".join(f"y{i} = {i} + 1\n" for i in range(MAX_DEPTH * 2))
    assert check_source("b.envd", lines) is None


def test_unclosed_bracket_is_reported_where_it_opens() -> None:
    src = 'def build():\n    install.python_packages(name=["numpy",\n'
    unclosed = check_source("b.envd", src)
    assert unclosed == ("[", 2, 34)
    err = unclosed_error("b.envd", src, unclosed)
    assert str(err).startswith("b.envd:2:34: syntax error: `[` is never closed")
