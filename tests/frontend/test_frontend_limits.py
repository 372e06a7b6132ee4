"""Runaway files end with a clean LimitExceeded, quickly."""

from __future__ import annotations

import time

import pytest

from frontend.errors import EvalError, LimitExceeded


def body(*lines: str) -> str:
    return "def build():\n" + "".join(f"    {ln}\n" for ln in lines)


@pytest.mark.parametrize(
    "source",
    [
        body("for i in range(1000000000):", "    pass"),
        body("x = []", "for i in range(100000000):", "    x.append(i)"),
        "def f(n):\n    return [g for g in range(n) for h in range(n)]\n" + body("f(1000000)"),
        body("for a in range(100000):", "    for b in range(100000):", "        pass"),
    ],
    ids=["loop", "growing-list", "comprehension", "nested"],
)
def test_runaway_loop_hits_time_limit(ev, source: str) -> None:
    t0 = time.monotonic()
    # the loop that grows a list may fill the memory limit before the time limit
    with pytest.raises(LimitExceeded, match=r"evaluation (took longer than 0\.3s|used too much memory)") as info:
        ev(source, timeout=0.3)
    assert time.monotonic() - t0 < 5
    assert info.value.file == "build.envd" and info.value.line is not None


def test_infinite_recursion_hits_depth_limit(ev) -> None:
    t0 = time.monotonic()
    with pytest.raises(LimitExceeded, match="recursion too deep") as info:
        ev("def f():\n    f()\n" + body("f()"))
    assert time.monotonic() - t0 < 5
    assert (info.value.line, info.value.col) == (2, 5)
    assert any("repeated" in t for t in info.value.trace)


def test_mutual_recursion_and_custom_depth(ev) -> None:
    src = "def a(n):\n    return b(n + 1)\ndef b(n):\n    return a(n + 1)\n" + body("a(0)")
    with pytest.raises(LimitExceeded):
        ev(src)
    deep = "def d(n):\n    return 0 if n == 0 else d(n - 1)\n" + body("d(50)")
    ev(deep, max_call_depth=100)
    with pytest.raises(LimitExceeded):
        ev(deep, max_call_depth=20)


def test_top_level_loop_in_loaded_file_is_bounded(ev) -> None:
    lib = "def spin():\n    for i in range(1000000000):\n        pass\nX = spin()\n"
    with pytest.raises(LimitExceeded) as info:
        ev('load("//lib.envd", "X")\n', files={"lib.envd": lib}, timeout=0.3)
    assert info.value.file == "lib.envd"


def test_out_of_range_int_is_a_clean_error(ev) -> None:
    # starlark-rust ints are 32-bit: repetition counts beyond that fail fast instead of allocating.
    with pytest.raises(EvalError, match="too big"):
        ev(body('x = "x" * 5000000000'))


def test_normal_files_are_fast(ev) -> None:
    src = body("base(dev=True)", "install.python()", 'install.python_packages(["numpy"])', "config.jupyter()")
    ev(src)
    t0 = time.perf_counter()
    for _ in range(20):
        ev(src)
    assert (time.perf_counter() - t0) / 20 < 0.05


# ---- one native operation: bounded from outside (a child process with a memory limit and a deadline)


@pytest.mark.parametrize(
    ("lines", "pos"),
    [
        (('x = "a" * 1000000000',), (3, 9)),  # folded while compiling: no statement has run yet
        (("x = [0] * 2000000000",), (3, 9)),  # a 16 GB allocation: the process would abort
        (("n = 500000000", 'print("a" * n)'), (4, 5)),  # print of 500 MB
        (("x = [1]", "for i in range(40):", "    x = [x, x]", "s = str(x)"), (6, 9)),  # str() of a doubling list
        (("n = 0", "for i in range(1000000000):", "    n += i * 1000000000000"), (5, 9)),  # big ints pile up
    ],
    ids=["constant-string", "list-repeat", "print-500MB", "str-of-doubling-list", "growing-ints"],
)
def test_one_operation_cannot_exhaust_memory(ev, lines: tuple[str, ...], pos: tuple[int, int]) -> None:
    t0 = time.monotonic()
    with pytest.raises(
        LimitExceeded, match=r"evaluation (used too much memory \(more than 256 MiB\)|took longer)"
    ) as info:
        ev(body("base()", *lines), timeout=3, max_memory=256 << 20)
    assert time.monotonic() - t0 < 3 + 1 + 3 + 2  # timeout, grace, the locating run, slack
    assert (info.value.file, info.value.line, info.value.col) == ("build.envd", *pos)


def test_one_slow_operation_is_stopped_at_the_deadline(ev) -> None:
    """starlark checks its deadline between operations: this one runs for seconds by itself."""
    t0 = time.monotonic()
    with pytest.raises(LimitExceeded, match=r"evaluation took longer than 1s \(time limit reached\)") as info:
        ev(body("base()", "n = 1500000000", 'x = "a" * n'), timeout=1, max_memory=3 << 30)
    assert time.monotonic() - t0 < 1 + 1 + 2
    assert (info.value.line, info.value.col) == (4, 9)


def test_a_file_that_prints_a_lot_is_cut_short(ev) -> None:
    out: list[str] = []
    ev(body('print("x" * 3000000)'), on_print=out.append)
    (line,) = out
    assert len(line) < 1100000 and line.endswith("... (1951424 more characters)")
