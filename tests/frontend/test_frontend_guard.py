"""The pre-parse scan: shapes that would crash the native parser become positioned errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from frontend.errors import LimitExceeded
from frontend.guard import MAX_BLOCKS, MAX_DEPTH, MAX_NESTING, check_source, unclosed_error

ROOT = Path(__file__).resolve().parents[2]


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


def _expr(statement: str) -> str:
    return f"def build():\n    x = struct(a = 1)\n    {statement}\n"


DEEP_FILES = {
    "not": _expr("y = " + "not " * 5000 + "True"),
    "unary-minus": _expr("y = " + "-" * 5000 + "1"),
    "and": _expr("y = " + " and ".join(["True"] * 5000)),
    "ternary": _expr("y = " + "1 if True else " * 5000 + "0"),
    "attribute": _expr("y = x" + ".a" * 5000),
    "index": _expr("y = [0]" + "[0]" * 5000),
    "call": _expr("y = str" + "()" * 5000),
    "lambda": _expr("y = " + "lambda: " * 2000 + "1"),
    "operators-in-brackets": _expr("y = " + ("(" + "1 + " * 20) * 60 + "1" + ")" * 60),
    "blocks": "def build():\n" + "".join(" " * (i + 1) + "if True:\n" for i in range(2000)) + " " * 2001 + "pass\n",
}


@pytest.mark.parametrize("name", sorted(DEEP_FILES))
def test_deep_constructs_are_refused_with_a_position_not_a_crash(name: str, tmp_path: Path) -> None:
    """Each of these killed the process (SIGSEGV in starlark's compiler); a subprocess makes a crash a failure."""
    (tmp_path / "build.envd").write_text(DEEP_FILES[name])
    code = (
        "import sys, frontend\n"
        "try:\n"
        "    frontend.evaluate(sys.argv[1], user_config=False)\n"
        "except frontend.LimitExceeded as e:\n"
        "    print(f'{e.file}:{e.line}:{e.col}: {e.message}')\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr[-2000:]}"
    assert re.fullmatch(r"build\.envd:\d+:\d+: (expression|blocks|brackets) .*too deep.*\n", p.stdout), p.stdout


def test_ordinary_nesting_is_allowed() -> None:
    src = (
        "def build():\n"
        "    f = lambda x: lambda y: x + y\n"
        "    d = {'a': [1, 2, (3, 4)], 'b': {'c': [x for x in range(3) if x > 0 and not x == 2]}}\n"
        "    s = 'x' if d['a'][2][0] > 1 else 'y'\n"
        + "".join("    " * (i + 1) + "if True:\n" for i in range(MAX_BLOCKS - 1))
        + "    " * MAX_BLOCKS
        + "pass\n"
    )
    assert check_source("b.envd", src) is None
