"""Values that can never be right where they end up (a config file line, an argv entry, a URL, a
shell word) are refused at evaluation, at the call's position, instead of breaking the image or
adding lines to a config file."""

from __future__ import annotations

import pytest

from frontend import spec as S
from frontend.errors import ValueError_


def body(*lines: str) -> str:
    return "def build():\n    base(dev=True)\n" + "".join(f"    {ln}\n" for ln in lines)


REFUSED = [
    ('runtime.environ(env={"A": "x\\nMatch all"})', "'A' must be one line"),
    ('runtime.environ(env={"A": "x\\rb"})', "'A' must be one line"),
    ('runtime.environ(extra_path=["/opt/x\\nbin"])', "'extra_path' must be one line"),
    ('runtime.daemon(commands=[["sleep", "1\\n[program:evil]"]])', "'commands' must be one line"),
    ('runtime.command(commands={"a\\nb": "ls"})', "'name' must be one line"),
    ('runtime.command(commands={"": "ls"})', "a command name must not be empty"),
    ('runtime.expose(8000, service="web\\nx")', "'service' must be one line"),
    ('git_config(name="n\\n[core]\\n\\tpager = evil")', "'name' must be one line"),
    ('git_config(email="a@b\\x1b[31m")', "'email' must be one line"),
    ('config.pip_index(url="https://m.example/simple\\n[global]")', "'url' must be an http(s) URL"),
    ('config.pip_index(url="https://m.example/simple", extra_url="https://x/\\"y")', "'extra_url' must be"),
    ('config.cran_mirror(url="https://cran.example/ x")', "'url' must be an http(s) URL"),
    ('config.julia_pkg_server(url="https://pkg.example/\\n")', "'url' must be an http(s) URL"),
    ('io.http(url="https://e.com/a\\nb")', "'url' must be an http(s) URL"),
    ('install.pixi(pypi_index="https://p.example/simple\\n")', "'pypi_index' must be an http(s) URL"),
    ('config.repo(url="https://github.com/o/r\\n")', "'url' must be one line"),
    ('config.jupyter(token="a b")', "'token' must be one word"),
    ('install.go(version="1.22\\"; rm -rf /; \\"")', "'version' must be a release name"),
    ('install.nodejs(version="20.1.0$(id)")', "'version' must be a release name"),
    ('install.rust(version="1.80\\nx")', "'version' must be a release name"),
    ('install.codex(version="rust-v0.98.0`id`")', "'version' must be a release name"),
    ('install.julia_packages(name=["Flux\\")"])', "is not a Julia package name"),
    ('install.julia_packages(name=["Flux$x"])', "is not a Julia package name"),
    ('install.r_packages(name=["ggplot2\\"); system(\\"id"])', "is not an R package name"),
]


@pytest.mark.parametrize(("call", "message"), REFUSED, ids=[c[0][:50] for c in REFUSED])
def test_value_refused_at_the_call(ev, call: str, message: str) -> None:
    with pytest.raises(ValueError_) as info:
        ev(body(call))
    assert (info.value.file, info.value.line, info.value.col) == ("build.envd", 3, 5)
    assert message in info.value.message
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ('install.conda_packages(name=["--override-channels"])', "name '--override-channels' begins with '-'"),
        ('install.conda_packages(name=["numpy"], channel=["-c"])', "channel '-c' begins with '-'"),
        ('install.conda_packages(name=["numpy\\nscipy"])', "'name' must be one line"),
    ],
)
def test_conda_names_that_read_as_options_are_refused(ev, call: str, message: str) -> None:
    with pytest.raises(ValueError_) as info:
        ev(body("install.conda()", call))
    assert (info.value.line, info.value.col) == (4, 5)
    assert message in info.value.message


def test_ordinary_values_still_pass(ev) -> None:
    spec = ev(
        body(
            'runtime.environ(env={"MSG": "hello \\"world\\" $HOME\\ttab"})',
            'runtime.command(commands={"go version": "go version", "rust version": "rustc --version"})',
            'install.go(version="1.22.1")',
            'install.nodejs(version="v20.1.0")',
            'install.codex(version="rust-v0.98.0")',
            'install.r_packages(name=["ggplot2", "data.table"])',
            'install.julia_packages(name=["Flux", "https://github.com/org/Pkg.jl"])',
            'git_config(name="Ada Lovelace", email="ada@example.com", editor="vim")',
            'config.pip_index(url="https://user:pw@m.example/simple")',
        )
    )
    assert spec.runtime.commands_dict == {"go version": "go version", "rust version": "rustc --version"}
    assert spec.runtime.environ_dict == {"MSG": 'hello "world" $HOME\ttab'}
    assert spec.go == S.Go("1.22.1", S.Pos("build.envd", 5, 5))
