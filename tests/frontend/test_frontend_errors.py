"""Each error class, with its exact position, message and rendering."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import frontend
from frontend.errors import (
    EnvdError,
    EvalError,
    LimitExceeded,
    LoadError,
    NameError_,
    SyntaxError_,
    TypeError_,
    V0Syntax,
    ValueError_,
)


def body(*lines: str) -> str:
    return "def build():\n" + "".join(f"    {ln}\n" for ln in lines)


# (source, error class, line, col, substring of the message)
CASES = [
    (
        body('install.python_packages(nam=["x"])'),
        NameError_,
        2,
        5,
        "unexpected keyword argument 'nam'; did you mean 'name'?",
    ),
    (body("install.python(version=3.11)"), TypeError_, 2, 5, "parameter 'version' must be a string, got float 3.11"),
    (body('install.apt_packages(name="git")'), TypeError_, 2, 5, "'name' must be a list of strings, got string"),
    (body("config.jupyter(port=True)"), TypeError_, 2, 5, "'port' must be an int, got bool"),
    (body('runtime.command(commands={"a": 1})'), TypeError_, 2, 5, "must be a dict of string to string"),
    (body('runtime.daemon(commands=["a"])'), TypeError_, 2, 5, "list of lists of strings"),
    (body('install.python("3.11", "x")'), TypeError_, 2, 5, "takes at most 1 positional argument but 2 were given"),
    (body("install.r_lang(1)"), TypeError_, 2, 5, "takes no positional arguments"),
    (body("install.cuda()"), TypeError_, 2, 5, "missing required argument 'version'"),
    (body('install.python("3.10", version="3.11")'), TypeError_, 2, 5, "multiple values for argument 'version'"),
    (body("install.python(version=lambda: 1)"), TypeError_, 2, 5, "must be plain values"),
    (body("x = 1", "    y = 2"), SyntaxError_, 3, 1, "syntax error"),
    ("def build(\n    install.python()\n", SyntaxError_, 2, 12, "syntax error: unexpected symbol '.'"),
    ("if True:\n    pass\n", SyntaxError_, 1, 1, "`if` cannot be used outside `def`"),
    ("for x in []:\n    pass\n", SyntaxError_, 1, 1, "`for` cannot be used outside `def`"),
    (body("while True:", "    pass"), SyntaxError_, 2, 5, "while"),
    (body('x = f"{1}"'), SyntaxError_, 2, 9, "f-strings are not supported"),
    ("# syntax=v0\ndef build():\n    pass\n", V0Syntax, 1, 1, "`# syntax=v0` is not supported"),
    ("\n  # syntax = v2\n", SyntaxError_, 2, 3, "unknown syntax version 'v2'"),
    (body("instal.python()"), NameError_, 2, 5, "`instal` is not defined; did you mean `install`?"),
    (
        body("install.pyhton()"),
        NameError_,
        2,
        5,
        "`install.pyhton` is not an envd function; did you mean `install.python`?",
    ),
    (body("x = [install.pyhton()]"), NameError_, 2, 10, "did you mean `install.python`?"),
    (body("config.jupiter()"), NameError_, 2, 5, "did you mean `config.jupyter`?"),
    (body("bse()"), NameError_, 2, 5, "did you mean `base`?"),
    (body('open("/etc/passwd")'), NameError_, 2, 5, "`open` is not defined"),
    (body("x = 1", "x.foo"), NameError_, 3, 5, "has no attribute `foo`"),
    (body("runtime.expose(envd_port=70000)"), ValueError_, 2, 5, "'envd_port' must be between 1 and 65535, got 70000"),
    (body("runtime.expose(envd_port=0)"), ValueError_, 2, 5, "between 1 and 65535"),
    (body("runtime.expose(8000, host_port=-1)"), ValueError_, 2, 5, "'host_port' must be between 0 and 65535"),
    (
        body("runtime.expose(8000)", "runtime.expose(8000)"),
        ValueError_,
        3,
        5,
        "port 8000 is already exposed at build.envd:2:5",
    ),
    (body("runtime.expose(1, 9000)", "runtime.expose(2, 9000)"), ValueError_, 3, 5, "host port 9000"),
    (body('runtime.expose(8000, listen_addr="localhost")'), ValueError_, 2, 5, "must be an IP address"),
    (body("config.jupyter(port=9000)", "runtime.expose(1, 9000)"), ValueError_, 2, 5, "also used by runtime.expose"),
    (
        body('config.entrypoint(["x"])', "base(dev=True)"),
        ValueError_,
        2,
        5,
        "`config.entrypoint` is only for custom image, maybe you need `runtime.init`",
    ),
    (
        body('install.conda_packages(name=["numpy"])'),
        ValueError_,
        2,
        5,
        "cannot install conda packages when conda is not installed",
    ),
    (
        body('install.conda_packages(name=["x"], env_file="e.yml")'),
        ValueError_,
        2,
        5,
        "env_file and name/channel are mutually exclusive",
    ),
    (
        body('install.cuda(version="12.8.1", cudnn="8")'),
        ValueError_,
        2,
        5,
        "no image with cuDNN 8 for CUDA 12.8.1; valid cudnn values: '9'",
    ),
    (body('install.cuda(version="10.2")'), ValueError_, 2, 5, "no images for CUDA 10.2"),
    (
        body('base(image="ubuntu:18.04")', 'install.cuda("12.1.1")'),
        ValueError_,
        3,
        5,
        "valid Ubuntu versions: 20.04, 22.04",
    ),
    (body('install.python("2.7")'), ValueError_, 2, 5, "Python 2 is not supported"),
    (body('shell("tcsh")'), ValueError_, 2, 5, "choose one of bash, zsh, fish"),
    (body("config.owner(70000, 1)"), ValueError_, 2, 5, "'uid' must be between 0 and 65535"),
    (body("config.shm_size(0)"), ValueError_, 2, 5, "must be positive"),
    (body("install.r_packages([])"), ValueError_, 2, 5, "'name' must not be empty"),
    (body('install.vscode_extensions(["python"])'), ValueError_, 2, 5, "is not an extension id"),
    (body('install.apt_packages(["git vim"])'), ValueError_, 2, 5, "is not an apt package name"),
    (
        body('install.python_packages(requirements="missing.txt")'),
        ValueError_,
        2,
        5,
        "requirements 'missing.txt' not found",
    ),
    (body('install.python_packages(requirements="/etc/passwd")'), ValueError_, 2, 5, "relative to the build context"),
    (body('io.copy(source="../x", target="/x")'), ValueError_, 2, 5, "points outside the build context"),
    (body('io.http("ftp://x")'), ValueError_, 2, 5, "must be an http(s) URL"),
    (body('io.http("https://x/a", checksum="md5:1")'), ValueError_, 2, 5, "sha256"),
    (body('runtime.environ(env={"1A": "x"})'), ValueError_, 2, 5, "not a valid environment variable name"),
    (body('runtime.mount("/a", "relative")'), ValueError_, 2, 5, "must be absolute"),
    (body('data.envd("../x")'), ValueError_, 2, 5, "must be a simple name"),
    (body('include("not-a-url")'), LoadError, 2, 5, "is not a git URL"),
    ('load("//nope.envd", "x")\n' + body("pass"), LoadError, 1, 1, "does not exist"),
    ('load("/etc/passwd", "x")\n' + body("pass"), LoadError, 1, 1, "absolute paths are not allowed"),
    ('load("../outside.envd", "x")\n' + body("pass"), LoadError, 1, 1, "points outside the build context"),
    (body('fail("custom failure")'), EvalError, 2, 5, "custom failure"),
    (body("x = [1][3]"), EvalError, 2, 9, "out of bound"),
    (body('x = 1 + "a"'), TypeError_, 2, 9, "Operation `+` not supported"),
    ("def f():\n    f()\n" + body("f()"), LimitExceeded, 2, 5, "recursion too deep"),
]


@pytest.mark.parametrize(("source", "cls", "line", "col", "text"), CASES, ids=[c[4][:40] for c in CASES])
def test_error_class_position_and_message(
    ev, source: str, cls: type[EnvdError], line: int, col: int, text: str
) -> None:
    with pytest.raises(cls) as info:
        ev(source)
    err = info.value
    assert type(err) is cls
    assert (err.file, err.line, err.col) == ("build.envd", line, col)
    assert text in err.message
    assert str(err).startswith(f"build.envd:{line}:{col}: ")
    assert err.source_line == source.splitlines()[line - 1]


def test_render_shows_source_line_and_caret(ev) -> None:
    with pytest.raises(TypeError_) as info:
        ev(body("x = 1", "install.python(version=3)"))
    assert info.value.render() == (
        "build.envd:3:5: install.python(): parameter 'version' must be a string, got int 3\n"
        "3 |     install.python(version=3)\n"
        "        ^\n"
        'hint: write version="3"'
    )


def test_error_inside_helper_reports_inner_call_and_trace(ev) -> None:
    src = "def helper(v):\n    install.python(version=v)\n" + body("helper(3)")
    with pytest.raises(TypeError_) as info:
        ev(src)
    assert (info.value.line, info.value.col) == (2, 5)
    assert info.value.trace == ("build.envd:4, in build",)


def test_missing_function_and_empty_file(ev) -> None:
    with pytest.raises(NameError_, match=r"no function build\(\) defined in build.envd"):
        ev("")
    with pytest.raises(NameError_, match=r"no function gpu\(\) defined in build.envd; did you mean gpu2\(\)\?"):
        ev("def gpu2():\n    pass\n", function="gpu")
    with pytest.raises(TypeError_, match="is not a function"):
        ev("build = 1\n")
    with pytest.raises(TypeError_, match="must take no arguments"):
        ev("def build(x):\n    pass\n")
    with pytest.raises(NameError_, match="is not a function name"):
        ev(body("pass"), function="a-b")


def test_non_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_bytes(b'def build():\n    x = "\xff"\n')
    with pytest.raises(SyntaxError_) as info:
        frontend.evaluate(tmp_path, user_config=False)
    assert (info.value.line, info.value.col) == (2, 10)
    assert "not valid UTF-8" in info.value.message


def test_byte_order_mark(tmp_path: Path) -> None:
    """A leading BOM is dropped, and does not shift the position of a bad byte after it."""
    (tmp_path / "build.envd").write_bytes(b'\xef\xbb\xbfdef build():\n    shell("zsh")\n')
    assert frontend.evaluate(tmp_path, user_config=False).shell.name == "zsh"
    (tmp_path / "build.envd").write_bytes(b'\xef\xbb\xbfx = "\xff"\ndef build():\n    pass\n')
    with pytest.raises(SyntaxError_) as info:
        frontend.evaluate(tmp_path, user_config=False)
    assert (info.value.line, info.value.col, info.value.source_line) == (1, 6, 'x = "')
    assert "(byte 0xff)" in info.value.message


def test_missing_build_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no build file"):
        frontend.evaluate(tmp_path, user_config=False)


def test_errors_pickle_and_subclass_root() -> None:
    e = TypeError_("m", "f", 1, 2, "src", hint="h", trace=("t",))
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is TypeError_ and str(e2) == "f:1:2: m" and e2.hint == "h" and e2.trace == ("t",)
    assert issubclass(V0Syntax, SyntaxError_) and issubclass(LimitExceeded, frontend.FrontendError)
