"""``install.python_packages(name=[...])`` strings are split like a shell, as envd does; pip options
become ``PipOptions``; what pip would refuse is refused at evaluation with the call's position."""

from __future__ import annotations

import pytest

from frontend import pip
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


# ---- requirements files: pip's reading, lines uv reads differently ------------------------------

TORCH_INDEX = "https://download.pytorch.org/whl/cu116"


def test_options_after_a_requirement_go_on_a_line_of_their_own() -> None:
    text = (
        "# CUDA 11.6 wheels\n"
        "numpy==1.26.4\n"
        f"torch==1.12.1+cu116 --extra-index-url {TORCH_INDEX}\n"
        f"torchvision==0.13.1+cu116 --extra-index-url {TORCH_INDEX} \\\n"
        "    --hash=sha256:abc --hash sha256:def  # pinned\n"
        "--extra-index-url https://a.example/simple --pre\n"
    )
    edits, notes = pip.requirements_edits(text, "requirements.txt")
    assert edits == (
        S.LineEdit(3, 3, f"--extra-index-url {TORCH_INDEX}\ntorch==1.12.1+cu116"),
        S.LineEdit(4, 5, "torchvision==0.13.1+cu116 --hash=sha256:abc --hash sha256:def"),
        S.LineEdit(6, 6, "--extra-index-url https://a.example/simple"),
    )
    assert [(str(n.pos), n.message.split("`")[1]) for n in notes] == [
        ("requirements.txt:3:21", f"--extra-index-url {TORCH_INDEX}"),
        ("requirements.txt:6:1", "--extra-index-url https://a.example/simple"),
    ]
    assert "pip ignores it there" in notes[0].message and "one option per line" in notes[1].message


def test_pre_and_trusted_hosts_in_a_file_go_on_uvs_command_line() -> None:
    """uv ignores them in a file (with a warning); pip applies them to the whole install."""
    text = "--pre\nsix==1.16.0 --trusted-host=a.example\n--trusted-host b.example --extra-index-url https://b.example\n"
    options, notes = pip.command_line_options(text, "r.txt")
    assert options == S.PipOptions(pre=True, trusted_hosts=("a.example", "b.example"))
    assert [str(n.pos) for n in notes] == ["r.txt:1:1", "r.txt:2:13", "r.txt:3:1"]
    assert all("uv's command line" in n.message for n in notes)
    edits, _ = pip.requirements_edits(text, "r.txt")
    assert edits == (S.LineEdit(2, 2, "six==1.16.0"), S.LineEdit(3, 3, "--extra-index-url https://b.example"))
    with pytest.raises(ValueError_, match="--trusted-host needs a host name") as info:
        pip.command_line_options("--trusted-host 'a b'\n", "r.txt")
    assert (info.value.file, info.value.line, info.value.col) == ("r.txt", 1, 1)
    with pytest.raises(ValueError_, match="--trusted-host needs a value") as info:
        pip.command_line_options("six\n--trusted-host\n", "r.txt")
    assert (info.value.file, info.value.line, info.value.col) == ("r.txt", 2, 1)


def test_options_from_the_file_join_the_calls_own(ev) -> None:
    spec = ev(
        body('install.python_packages(name=["--trusted-host a.example"], requirements="requirements.txt")'),
        {"requirements.txt": "--pre\n-r more.txt\n", "more.txt": "--trusted-host c.example\nsix\n"},
    )
    assert spec.python_packages[0].options == S.PipOptions(pre=True, trusted_hosts=("a.example", "c.example"))


def test_a_file_uv_reads_as_pip_does_is_left_alone() -> None:
    text = "--index-url https://pypi.example/simple\nsix==1.16.0 --hash=sha256:abc\n-r base.txt\n# x --pre\n"
    assert pip.requirements_edits(text, "r.txt") == ((), ())
    assert pip.nested_files(text + "-c constraints.txt\n--requirement=dev.txt\n-r https://e.com/r.txt\n") == (
        "base.txt",
        "constraints.txt",
        "dev.txt",
    )


@pytest.mark.parametrize(
    ("line", "col", "message"),
    [
        ("x==1 --config-settings a=b", 6, "pip option '--config-settings' after a requirement cannot be applied by uv"),
        ("x==1 --no-deps", 6, "pip option '--no-deps' after a requirement"),
        ("x --extra-index-url https://u:p@h.example/simple", 3, "--extra-index-url with credentials in its URL"),
    ],
)
def test_what_uv_cannot_apply_is_refused_in_the_file(line: str, col: int, message: str) -> None:
    with pytest.raises(ValueError_) as info:
        pip.requirements_edits("six\n" + line + "\n", "reqs/r.txt")
    assert str(info.value).startswith(f"reqs/r.txt:2:{col}: {message}")


def test_a_call_reads_its_file_and_those_it_names(ev) -> None:
    spec = ev(
        body('install.python_packages(requirements="reqs/requirements.txt")'),
        files={
            "reqs/requirements.txt": f"torch --extra-index-url {TORCH_INDEX}\n-r base.txt\n",
            "reqs/base.txt": "six\n-c ../constraints.txt\n",
            "constraints.txt": "six<2\n",
        },
    )
    (call,) = spec.python_packages
    assert call.requirements_files == (
        S.RequirementsFile("reqs/requirements.txt", (S.LineEdit(1, 1, f"--extra-index-url {TORCH_INDEX}\ntorch"),)),
        S.RequirementsFile("reqs/base.txt"),
        S.RequirementsFile("constraints.txt"),
    )
    assert call.files == ("reqs/requirements.txt", "reqs/base.txt", "constraints.txt")
    assert set(spec.inputs) == {"reqs/requirements.txt", "reqs/base.txt", "constraints.txt"}
    assert [str(n.pos) for n in spec.notes] == ["reqs/requirements.txt:1:7"]
    assert S.Spec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError_, match=r"'-r in r.txt' '../../outside.txt' points outside the build context"):
        ev(body('install.python_packages(requirements="r.txt")'), files={"r.txt": "-r ../../outside.txt\n"})
