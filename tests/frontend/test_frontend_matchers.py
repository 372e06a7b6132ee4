"""The hand-written scans on the evaluation path agree with the regular expressions they replace."""

from __future__ import annotations

import ipaddress
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from frontend._builtins import (
    find_call,
    is_ip_address,
    is_python3_version,
    is_ref_component,
    is_ref_domain,
    is_ref_tag,
    stack_frames,
)
from frontend.evaluator import syntax_version
from frontend.target import is_function_name

# Small alphabets make matches (and near misses) likely; a few non-ASCII letters, digits and spaces too.
TEXT = st.text(alphabet="ab3_.-:*, in\n\t\u00e9\u0663\u2028\u00a0(#syntax=v1Z", max_size=40)


@settings(max_examples=600)
@given(st.lists(st.one_of(TEXT, st.builds(
    lambda ws, f, n, tail: f"{ws}* {f}:{n}, in {tail}",
    st.sampled_from(["", "  ", " \n ", "\t"]), TEXT, st.integers(0, 999).map(str), TEXT,
)), max_size=5).map("\n".join))
@example("  * build.envd:7, in build\n  * <envbuild>:3, in base\n")
@example("* https://github.com/o/r@v1//lib.envd:12, in f")
@example("* a:1:2, in x")
@example("* :1, in x")
@example("* a:, in x\n* b:x1, in y\n* c:2, in z")
def test_stack_frames(stack: str) -> None:
    assert stack_frames(stack) == re.findall(r"^\s*\* (.+?):(\d+), in ", stack, re.MULTILINE)


@settings(max_examples=600)
@given(TEXT, st.sampled_from(["base", "install.python", ".python", "run", "a"]), st.booleans())
@example("    install.python (version='3.11')", "install.python", True)
@example("my_base(); base()", "base", True)
@example("x.base(", "base", True)
@example("xbase(); 3base(); \u00e9base(); base (", "base", True)
def test_find_call(text: str, callee: str, standalone: bool) -> None:
    pattern = (r"(?<![\w.])" if standalone else "") + re.escape(callee) + r"\s*\("
    m = re.search(pattern, text)
    assert find_call(text, callee, standalone=standalone) == (m.start() if m else -1)


@settings(max_examples=400)
@given(st.text(alphabet="3.1\u0663x ", max_size=8))
@example("3.11")
@example("3.11.4")
@example("3.")
@example("3.1.2.3")
def test_python3_version(v: str) -> None:
    assert is_python3_version(v) == bool(re.fullmatch(r"3\.\d+(\.\d+)?", v))


@settings(max_examples=600)
@given(st.text(alphabet="ab9._-A/\u00e9", max_size=12))
@example("a__b")
@example("a___b")
@example("a--b")
@example("a-_b")
@example("a._b")
def test_ref_component(s: str) -> None:
    assert is_ref_component(s) == bool(re.match(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z", s))


@settings(max_examples=1500)
@given(st.text(alphabet="aZ9f.-:[]\u00e9\u0663", max_size=14))
@example("127.0.0.1:5000")
@example("[::1]:5000")
@example("[]")
@example("a-.b")
def test_ref_domain(s: str) -> None:
    pattern = r"(?:[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9][A-Za-z0-9-]*)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?\Z"
    assert is_ref_domain(s) == bool(re.match(pattern, s))


@settings(max_examples=400)
@given(st.one_of(st.text(alphabet="aZ9_.-:/\u00e9\u0663 ", max_size=10), st.integers(120, 135).map(lambda n: "a" * n)))
@example(".x")
@example("-x")
@example("_x")
def test_ref_tag(s: str) -> None:
    assert is_ref_tag(s) == bool(re.match(r"\w[\w.-]{0,127}\Z", s))


@settings(max_examples=600)
@given(st.text(alphabet="# syntaxSY=v01\t\u00a0\u3000", max_size=20))
@example("# syntax=v1")
@example("#syntax = v0  ")
@example("# syntax=")
@example("# syntax=v1 x")
@example("# syntaxx=v1")
@example("#\tsyntax\u00a0=\u3000v1\t")
def test_syntax_version(line: str) -> None:
    m = re.fullmatch(r"#\s*syntax\s*=\s*(\S*)\s*", line)
    assert syntax_version(line) == (m[1] if m else None)


@settings(max_examples=400)
@given(st.text(alphabet="aZ_9\u00e9\u0663 -", max_size=6))
def test_function_name(s: str) -> None:
    assert is_function_name(s) == bool(re.fullmatch(r"[A-Za-z_]\w*", s))


def _ipaddress_accepts(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@settings(max_examples=600)
@given(st.one_of(
    st.lists(st.text(alphabet="0123456789\u0663a", min_size=0, max_size=4), min_size=3, max_size=5).map(".".join),
    st.text(alphabet="0129.:af%", max_size=12),
))
@example("127.0.0.1")
@example("0.0.0.0")
@example("01.2.3.4")
@example("256.1.1.1")
@example("1.2.3.\u0663")
@example("::1")
@example("fe80::1%eth0")
def test_ip_address(text: str) -> None:
    assert is_ip_address(text) == _ipaddress_accepts(text)


PATH_TEXT = st.text(alphabet="/.ab", max_size=12)


@settings(max_examples=600)
@given(PATH_TEXT)
@example("")
@example("//a//b/")
@example("///a")
@example("./build.envd")
def test_clean_path_is_pathlib_spelling(path: str) -> None:
    from pathlib import PurePosixPath

    from frontend.evaluator import _clean, _parent

    assert _clean(path) == str(PurePosixPath(path))
    assert _parent(_clean(path)) == str(PurePosixPath(path).parent)


@settings(max_examples=600)
@given(PATH_TEXT.map(lambda p: "/" + p), PATH_TEXT.map(lambda p: "/" + p))
@example("/a/b", "/a")
@example("/a", "/")
@example("/ab", "/a")
def test_relative_to_is_pathlib_relative_to(path: str, root: str) -> None:
    from pathlib import PurePosixPath

    from frontend.evaluator import _clean, _relative_to

    path, root = _clean(path), _clean(root)
    if path.startswith("//") or root.startswith("//"):
        return  # realpath never returns these
    try:
        expected: str | None = str(PurePosixPath(path).relative_to(root))
    except ValueError:
        expected = None
    assert _relative_to(path, root) == expected
