"""load() labels, include() from git (a local bare repository), cycles and escapes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import frontend
from frontend.errors import LoadError

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def ev(path: Path | str, **kw: object) -> frontend.Spec:
    kw.setdefault("user_config", False)
    return frontend.evaluate(path, **kw)  # type: ignore[arg-type]


def test_local_load_forms(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "lib/common.envd": 'load(":sib.envd", "sib")\nload("//lib:other.envd", "other")\n'
            "def common():\n    sib()\n    other()\n",
            "lib/sib.envd": 'def sib():\n    install.apt_packages(["sib"])\n',
            "lib/other.envd": 'load("./deeper/d.envd", "d")\ndef other():\n    d()\n',
            "lib/deeper/d.envd": 'def d():\n    install.apt_packages(["d"])\n',
            "build.envd": 'load("//lib/common.envd", "common")\nload("lib/sib.envd", s = "sib")\n'
            "def build():\n    common()\n    s()\n",
        },
    )
    s = ev(tmp_path)
    assert [a.names[0] for a in s.apt_packages] == ["sib", "d", "sib"]
    assert s.apt_packages[1].pos == frontend.Pos("lib/deeper/d.envd", 2, 5)
    labels = [f.label for f in s.source_files]
    assert labels == ["build.envd", "lib/common.envd", "lib/sib.envd", "lib/other.envd", "lib/deeper/d.envd"]


def test_loaded_module_is_evaluated_once(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.envd": 'install.apt_packages(["once"])\nX = 1\n',
            "b.envd": 'load("//a.envd", "X")\nY = X\n',
            "build.envd": 'load("//a.envd", "X")\nload("//b.envd", "Y")\ndef build():\n    pass\n',
        },
    )
    assert len(ev(tmp_path).apt_packages) == 1


def test_cycle_detected(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "build.envd": 'load("//a.envd", "a")\ndef build():\n    pass\n',
            "a.envd": 'load("//b.envd", "b")\na = 1\n',
            "b.envd": 'load("//a.envd", "a")\nb = 1\n',
        },
    )
    with pytest.raises(LoadError) as info:
        ev(tmp_path)
    assert info.value.message == "load cycle: a.envd -> b.envd -> a.envd"
    assert (info.value.file, info.value.line, info.value.col) == ("b.envd", 1, 1)


def test_self_load_is_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, {"build.envd": 'load("//build.envd", "x")\nx = 1\n'})
    with pytest.raises(LoadError, match=r"load cycle: build\.envd -> build\.envd"):
        ev(tmp_path)


def test_error_inside_loaded_file_points_there(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "lib.envd": 'def tools():\n    install.apt_packages(name="git")\n',
            "build.envd": 'load("//lib.envd", "tools")\ndef build():\n    tools()\n',
        },
    )
    with pytest.raises(frontend.TypeError_) as info:
        ev(tmp_path)
    assert (info.value.file, info.value.line, info.value.col) == ("lib.envd", 2, 5)
    assert info.value.trace == ("build.envd:3, in build",)


def test_syntax_error_in_loaded_file(tmp_path: Path) -> None:
    write(tmp_path, {"lib.envd": "def x(:\n", "build.envd": 'load("//lib.envd", "x")\n'})
    with pytest.raises(frontend.SyntaxError_) as info:
        ev(tmp_path)
    assert info.value.file == "lib.envd" and info.value.line == 1


def test_missing_symbol(tmp_path: Path) -> None:
    write(tmp_path, {"lib.envd": "a = 1\n", "build.envd": 'load("//lib.envd", "b")\n'})
    with pytest.raises(frontend.EnvdError) as info:
        ev(tmp_path)
    assert info.value.line == 1 and "b" in info.value.message


def test_symlink_out_of_context_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    ctx = tmp_path / "ctx"
    write(outside, {"evil.envd": "x = 1\n", "secret.txt": "s"})
    write(ctx, {"build.envd": 'load("//link.envd", "x")\ndef build():\n    pass\n'})
    os.symlink(outside / "evil.envd", ctx / "link.envd")
    with pytest.raises(LoadError, match="resolves outside the build context"):
        ev(ctx)
    (ctx / "build.envd").write_text('def build():\n    install.python_packages(requirements="req.txt")\n')
    os.symlink(outside / "secret.txt", ctx / "req.txt")
    with pytest.raises(frontend.ValueError_, match="symlink that leaves the build context"):
        ev(ctx)


def test_context_dir_option(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "envs/build.envd": 'load("//lib.envd", "f")\ndef build():\n    f()\n',
            "lib.envd": 'def f():\n    install.python_packages(requirements="envs/req.txt")\n',
            "envs/req.txt": "six\n",
        },
    )
    s = ev(tmp_path / "envs", context_dir=tmp_path)
    assert s.inputs == ("envs/req.txt",)
    assert s.source_files[0].label == "envs/build.envd"


# ---- git ---------------------------------------------------------------------------------------


def git(*args: str, cwd: Path) -> str:
    env = dict(
        os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@e"
    )
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def bare_repo(tmp_path: Path) -> tuple[str, Path]:
    """A bare repository with envdlib-like files, tag v1; returns (file:// URL, work tree)."""
    work = tmp_path / "work"
    write(
        work,
        {
            "jupyter.envd": 'def jupyter_lab(host_port = 8888):\n    install.python_packages(name = ["jupyterlab"])\n'
            '    runtime.expose(envd_port = 8888, host_port = host_port, service = "jupyterlab")\n'
            '_private = 1\nVERSION = "1"\n',
            "tools.envd": "def tensorboard(port = 6006):\n"
            '    runtime.daemon(commands = [["tensorboard", "--port", str(port)]])\n',
            "lib/extra.envd": 'def extra():\n    install.apt_packages(name = ["htop"])\n',
        },
    )
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "v1", cwd=work)
    git("tag", "v1", cwd=work)
    bare = tmp_path / "repo.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return f"file://{bare}", work


@needs_git
def test_include_and_git_load(tmp_path: Path, bare_repo: tuple[str, Path]) -> None:
    url, _ = bare_repo
    ctx = tmp_path / "ctx"
    write(
        ctx,
        {
            "build.envd": (
                f'load("{url}@v1//lib/extra.envd", "extra")\n'
                f'envdlib = include("{url}")\n'
                "def build():\n    extra()\n    envdlib.jupyter_lab(host_port = 9999)\n    envdlib.tensorboard()\n"
                "    print(envdlib.VERSION)\n"
            )
        },
    )
    out: list[str] = []
    s = ev(ctx, on_print=out.append, git_cache_dir=tmp_path / "cache")
    assert out == ["1"]
    assert s.apt_packages[0].pos == frontend.Pos(f"{url}@v1//lib/extra.envd", 2, 5)
    assert s.runtime.exposes[0].host_port == 9999
    assert s.runtime.exposes[0].pos.file == f"{url}//jupyter.envd"
    assert s.runtime.daemons[0].argv == ("tensorboard", "--port", "6006")
    assert len(list((tmp_path / "cache").iterdir())) == 2


@needs_git
def test_include_private_names_hidden(tmp_path: Path, bare_repo: tuple[str, Path]) -> None:
    url, _ = bare_repo
    ctx = tmp_path / "ctx"
    write(ctx, {"build.envd": f'lib = include(git = "{url}")\ndef build():\n    print(lib._private)\n'})
    with pytest.raises(frontend.NameError_, match="has no attribute `_private`"):
        ev(ctx, git_cache_dir=tmp_path / "cache")


@needs_git
def test_git_cache_used_offline_and_updated(tmp_path: Path, bare_repo: tuple[str, Path]) -> None:
    url, work = bare_repo
    ctx = tmp_path / "ctx"
    write(ctx, {"build.envd": f'load("{url}//tools.envd", "tensorboard")\ndef build():\n    tensorboard()\n'})
    cache = tmp_path / "cache"
    ev(ctx, git_cache_dir=cache)
    # New commit upstream: offline mode keeps the cached copy, an update picks the change up.
    (work / "tools.envd").write_text('def tensorboard():\n    runtime.daemon(commands = [["tb2"]])\n')
    git("commit", "-qam", "v2", cwd=work)
    git("push", "-q", str(tmp_path / "repo.git"), "main", cwd=work)
    assert ev(ctx, git_cache_dir=cache, offline=True).runtime.daemons[0].argv[0] == "tensorboard"
    assert ev(ctx, git_cache_dir=cache).runtime.daemons[0].argv[0] == "tensorboard"  # within update_after
    assert ev(ctx, git_cache_dir=cache, git_update_after=0).runtime.daemons[0].argv == ("tb2",)


@needs_git
def test_git_unreachable_and_offline_errors(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write(ctx, {"build.envd": f'load("file://{tmp_path}/nope.git//x.envd", "x")\n'})
    with pytest.raises(LoadError) as info:
        ev(ctx, git_cache_dir=tmp_path / "cache")
    assert info.value.message.startswith(f"cannot clone file://{tmp_path}/nope.git")
    assert (info.value.line, info.value.col) == (1, 1)
    with pytest.raises(LoadError, match="offline mode is on"):
        ev(ctx, git_cache_dir=tmp_path / "cache", offline=True)


@needs_git
def test_git_bad_ref_and_missing_file(tmp_path: Path, bare_repo: tuple[str, Path]) -> None:
    url, _ = bare_repo
    ctx = tmp_path / "ctx"
    write(ctx, {"build.envd": f'load("{url}@nope//tools.envd", "x")\n'})
    with pytest.raises(LoadError, match="no branch, tag or commit named 'nope'"):
        ev(ctx, git_cache_dir=tmp_path / "cache")
    (ctx / "build.envd").write_text(f'load("{url}//missing.envd", "x")\n')
    with pytest.raises(LoadError, match="does not exist"):
        ev(ctx, git_cache_dir=tmp_path / "cache")
    (ctx / "build.envd").write_text(f'load("{url}//../escape.envd", "x")\n')
    with pytest.raises(LoadError, match="outside the repository"):
        ev(ctx, git_cache_dir=tmp_path / "cache")
    (ctx / "build.envd").write_text(f'load("{url}", "x")\n')
    with pytest.raises(LoadError, match="must name a file"):
        ev(ctx, git_cache_dir=tmp_path / "cache")
