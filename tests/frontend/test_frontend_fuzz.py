"""Random and mutated build files: only clean EnvdErrors may come out, never other exceptions."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import frontend
from frontend.errors import EnvdError

SCALE = int(os.environ.get("ENVBUILD_FUZZ_SCALE", "1"))  # raise for a longer local fuzzing run
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEEDS = [p.read_text() for p in sorted(EXAMPLES.glob("*/build.envd"))] + [
    (EXAMPLES / "shared-lib/lib/common.envd").read_text() + "\ndef build():\n    python_env()\n"
]
TOKENS = [
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "=",
    "==",
    ".",
    "*",
    "**",
    "+",
    "-",
    "%",
    '"',
    "'",
    '"""',
    "\\",
    "\n",
    "    ",
    "\t",
    "#",
    "def ",
    "build",
    "return",
    "lambda",
    "for x in ",
    "if ",
    "else",
    "load(",
    "include(",
    "install.",
    "config.",
    "runtime.",
    "io.",
    "data.",
    "base(",
    "run(",
    "shell(",
    "None",
    "True",
    "0",
    "-1",
    "65536",
    "3.11",
    "[]",
    "{}",
    '"x"',
    "name=",
    "version=",
    "dev=True",
    "install.cuda(",
    "# syntax=v0\n",
    "\x00",
    "\ufeff",
    "é",
    "🙂",
    "//",
    "../",
    "//lib/common.envd",
    "fail(",
    "pass",
    "struct(",
    "print(",
]


def check(tmp: Path, source: str | bytes) -> None:
    (tmp / "build.envd").write_bytes(source if isinstance(source, bytes) else source.encode("utf-8", "surrogatepass"))
    try:
        spec = frontend.evaluate(tmp, user_config=False, timeout=0.5, on_print=lambda _s: None, offline=True)
    except EnvdError as e:
        assert e.message
        e.render()
        str(e)
    else:
        assert frontend.Spec.from_json(spec.to_json()) == spec


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "dup-line", "drop-line"]))
        n = len(text)
        i = draw(st.integers(0, max(n - 1, 0)))
        j = min(n, i + draw(st.integers(0, 8)))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(TOKENS) | st.text(max_size=4)) + text[i:]
        elif op == "replace":
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[j:]
        else:
            lines = text.split("\n")
            k = draw(st.integers(0, len(lines) - 1))
            lines = lines[:k] + ([lines[k]] * 2 if op == "dup-line" else []) + lines[k + 1 :]
            text = "\n".join(lines)
    return text


def tmp_context(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("fuzz")
    (d / "lib").mkdir()
    (d / "lib/common.envd").write_text((EXAMPLES / "shared-lib/lib/common.envd").read_text())
    for name in ("requirements.txt", "environment.yml", "app.py"):
        (d / name).write_text("six\n")
    return d


@settings(max_examples=300 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=mutated())
def test_mutated_examples_fail_cleanly(tmp_path_factory, source: str) -> None:  # type: ignore[no-untyped-def]
    check(tmp_context(tmp_path_factory), source)


@settings(max_examples=200 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.lists(st.sampled_from(TOKENS) | st.text(max_size=3), max_size=40).map("".join))
def test_random_token_soup_fails_cleanly(tmp_path_factory, source: str) -> None:  # type: ignore[no-untyped-def]
    check(tmp_context(tmp_path_factory), source)


@settings(max_examples=100 * SCALE, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_random_bytes_fail_cleanly(tmp_path_factory, data: bytes) -> None:  # type: ignore[no-untyped-def]
    check(tmp_context(tmp_path_factory), b"def build():\n    " + data)
