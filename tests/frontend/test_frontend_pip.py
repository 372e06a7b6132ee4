"""``install.python_packages(name=[...])`` strings are split like a shell, as envd does; pip options
become ``PipOptions``; what pip would refuse is refused at evaluation with the call's position."""

from __future__ import annotations

import pytest

from frontend import spec as S
from frontend.errors import ValueError_


def body(*lines: str) -> str:
    return "def build():\n" + "".join(f"    {ln}\n" for ln in lines)


@pytest.mark.parametrize(
    ("names", "requirements", "options"),
    [
        (
            '["torch --index-url https://download.pytorch.org/whl/cpu"]',
            ("torch",),
            S.PipOptions(index_url="https://download.pytorch.org/whl/cpu"),
        ),
        ("[\"'transformers>=4.40'\"]", ("transformers>=4.40",), S.PipOptions()),
        ('["\\"numpy >= 2.0\\""]', ("numpy >= 2.0",), S.PipOptions()),
        (
            '["torch==1.13.1+cu117 torchvision -f https://download.pytorch.org/whl/torch_stable.html"]',
            ("torch==1.13.1+cu117", "torchvision"),
            S.PipOptions(find_links=("https://download.pytorch.org/whl/torch_stable.html",)),
        ),
        (
            '["--extra-index-url", "https://pypi.ngc.nvidia.com", "nvidia-dali-cuda120", "--pre", "-U"]',
            ("nvidia-dali-cuda120",),
            S.PipOptions(extra_index_urls=("https://pypi.ngc.nvidia.com",), pre=True, upgrade=True),
        ),
        (
            '["flash-attn --no-build-isolation --no-deps", "-ihttps://m.example/simple x"]',
            ("flash-attn", "x"),
            S.PipOptions(index_url="https://m.example/simple", no_deps=True, no_build_isolation=True),
        ),
        (
            '["pkg --trusted-host m.example:8080 --index-url=http://m.example:8080/simple --no-cache-dir"]',
            ("pkg",),
            S.PipOptions(index_url="http://m.example:8080/simple", trusted_hosts=("m.example:8080",)),
        ),
        (
            '["pkg[extra1,extra2]>=1.0,<2", "git+https://github.com/org/repo@v1"]',
            ("pkg[extra1,extra2]>=1.0,<2", "git+https://github.com/org/repo@v1"),
            S.PipOptions(),
        ),
    ],
)
def test_names_are_split_like_a_shell(ev, names: str, requirements: tuple[str, ...], options: S.PipOptions) -> None:
    spec = ev(body(f"install.python_packages(name={names})"))
    (call,) = spec.python_packages
    assert call.names == requirements and call.options == options
    assert call.pos == S.Pos("build.envd", 2, 5)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ('["numpy >= 2.0"]', "'>=' is not a Python requirement"),
        ('["-r requirements.txt"]', "pip option '-r' is not supported"),
        ('["-e ."]', "pip option '-e' is not supported"),
        ('["x --frobnicate"]', "pip option '--frobnicate' is not supported"),
        ('["--index-url"]', "--index-url needs a value"),
        ('["x --index-url ftp://m/simple"]', "--index-url needs an http(s) URL"),
        ('["x -i https://user:secret@m.example/simple"]', "holds credentials"),
        ('["\'unclosed"]', 'cannot split "\'unclosed" like a shell'),
        ('["./pkg"]', "'./pkg' is not a Python requirement"),
        ('["numpy,pandas"]', "'numpy,pandas' is not a Python requirement"),
        ("[\"'a\\nb'\"]", "is not a Python requirement"),
    ],
)
def test_what_pip_would_refuse_is_refused_at_evaluation(ev, names: str, message: str) -> None:
    with pytest.raises(ValueError_) as info:
        ev(body("base()", f"install.python_packages(name={names})"))
    assert (info.value.line, info.value.col) == (3, 5)
    assert message in info.value.message


def test_options_round_trip_through_the_label(ev) -> None:
    spec = ev(body('install.python_packages(name=["torch --index-url https://download.pytorch.org/whl/cu118 --pre"])'))
    assert S.Spec.from_json(spec.to_json()) == spec
