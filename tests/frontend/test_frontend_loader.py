"""load() labels, include() from git (a local bare repository), cycles and escapes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable
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


LIB_URL = "https://example.com/org/envdlib"


@pytest.fixture
def bare_repo(tmp_path: Path) -> tuple[str, Path]:
    """A bare repository with envdlib-like files (one under src/), tag v1, served from a git mirror
    directory as example.com/org/envdlib; returns (the mirror, the work tree)."""
    work = tmp_path / "work"
    write(
        work,
        {
            "jupyter.envd": 'def jupyter_lab(host_port = 8888):\n    install.python_packages(name = ["jupyterlab"])\n'
            '    runtime.expose(envd_port = 8888, host_port = host_port, service = "jupyterlab")\n'
            '_private = 1\nVERSION = "1"\n',
            "src/tools.envd": "def tensorboard(port = 6006):\n"
            '    runtime.daemon(commands = [["tensorboard", "--port", str(port)]])\n',
            "lib/extra.envd": 'def extra():\n    install.apt_packages(name = ["htop"])\n',
            "README.md": "not a build file\n",
        },
    )
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-qm", "v1", cwd=work)
    git("tag", "v1", cwd=work)
    mirror = tmp_path / "mirror"
    (mirror / "example.com" / "org").mkdir(parents=True)
    git("clone", "-q", "--bare", str(work), str(mirror / "example.com" / "org" / "envdlib"), cwd=tmp_path)
    return str(mirror), work


@needs_git
def test_include_merges_every_envd_file_of_the_repository(tmp_path: Path, bare_repo: tuple[str, Path]) -> None:
    """envd's include walks the whole repository (a library may keep its code under src/)."""
    mirror, _ = bare_repo
    ctx = tmp_path / "ctx"
    write(
        ctx,
        {
            "build.envd": (
                f'load("{LIB_URL}@v1//lib/extra.envd", "extra")\n'
                f'envdlib = include("{LIB_URL}")\n'
                "def build():\n    envdlib.extra()\n    envdlib.jupyter_lab(host_port = 9999)\n"
                "    envdlib.tensorboard()\n    print(envdlib.VERSION)\n"
            )
        },
    )
    out: list[str] = []
    s = ev(ctx, on_print=out.append, git_cache_dir=tmp_path / "cache", git_mirror=mirror)
    assert out == ["1"]
    assert s.apt_packages[0].pos == frontend.Pos(f"{LIB_URL}//lib/extra.envd", 2, 5)
    assert s.runtime.exposes[0].host_port == 9999
    assert s.runtime.exposes[0].pos.file == f"{LIB_URL}//jupyter.envd"
    assert s.runtime.daemons[0].argv == ("tensorboard", "--port", "6006")
    assert s.runtime.daemons[0].pos.file == f"{LIB_URL}//src/tools.envd"
    assert len(list((tmp_path / "cache").iterdir())) == 2
    # the cached copies serve the same file without the mirror
    assert ev(ctx, git_cache_dir=tmp_path / "cache") == s


@needs_git
def test_include_refuses_a_name_defined_in_two_files(tmp_path: Path, bare_repo: tuple[str, Path]) -> None:
    mirror, work = bare_repo
    (work / "src" / "more.envd").write_text("def jupyter_lab():\n    pass\n")
    git("add", "-A", cwd=work)
    git("commit", "-qm", "v2", cwd=work)
    git("push", "-q", str(Path(mirror) / "example.com" / "org" / "envdlib"), "main", cwd=work)
    ctx = tmp_path / "ctx"
    write(ctx, {"build.envd": f'\nlib = include("{LIB_URL}")\ndef build():\n    pass\n'})
    with pytest.raises(LoadError) as info:
        ev(ctx, git_cache_dir=tmp_path / "cache", git_mirror=f"file://{mirror}")
    assert str(info.value) == (
        f"build.envd:2:7: include(): `jupyter_lab` is defined in both {LIB_URL}//jupyter.envd and "
        f"{LIB_URL}//src/more.envd"
    )


@needs_git
def test_include_private_names_hidden(tmp_path: Path, bare_repo: tuple[str, Path]) -> None:
    mirror, _ = bare_repo
    ctx = tmp_path / "ctx"
    write(ctx, {"build.envd": f'lib = include(git = "{LIB_URL}")\ndef build():\n    print(lib._private)\n'})
    with pytest.raises(frontend.NameError_, match="has no attribute `_private`"):
        ev(ctx, git_cache_dir=tmp_path / "cache", git_mirror=mirror)


@needs_git
def test_git_cache_used_offline_and_updated(tmp_path: Path, bare_repo: tuple[str, Path]) -> None:
    mirror, work = bare_repo
    ctx = tmp_path / "ctx"
    write(ctx, {"build.envd": f'load("{LIB_URL}//src/tools.envd", "tensorboard")\ndef build():\n    tensorboard()\n'})
    cache = tmp_path / "cache"
    ev(ctx, git_cache_dir=cache, git_mirror=mirror)
    # New commit upstream: offline mode keeps the cached copy, an update picks the change up.
    (work / "src" / "tools.envd").write_text('def tensorboard():\n    runtime.daemon(commands = [["tb2"]])\n')
    git("commit", "-qam", "v2", cwd=work)
    git("push", "-q", str(Path(mirror) / "example.com" / "org" / "envdlib"), "main", cwd=work)
    assert ev(ctx, git_cache_dir=cache, offline=True).runtime.daemons[0].argv[0] == "tensorboard"
    assert ev(ctx, git_cache_dir=cache, git_mirror=mirror).runtime.daemons[0].argv[0] == "tensorboard"
    updated = ev(ctx, git_cache_dir=cache, git_update_after=0, git_mirror=mirror)
    assert updated.runtime.daemons[0].argv == ("tb2",)


@needs_git
def test_a_repository_that_cannot_be_fetched_is_a_network_error(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write(ctx, {"build.envd": '\nlib = include("https://example.invalid/org/nope")\n'})
    (tmp_path / "mirror").mkdir()
    with pytest.raises(frontend.NetworkError) as info:
        ev(ctx, git_cache_dir=tmp_path / "cache", git_mirror=str(tmp_path / "mirror"))
    message = str(info.value)
    assert message.startswith(
        "build.envd:2:7: cannot fetch https://example.invalid/org/nope (through the mirror, "
        f"{tmp_path}/mirror/example.invalid/org/nope): "
    )
    assert f"a copy cached at {tmp_path}/cache/example.invalid_org_nope-" in message
    assert "ENVBUILD_MIRROR_GIT" in message and "that holds example.invalid/org/nope" in message
    assert "\n" not in message
    with pytest.raises(frontend.NetworkError, match="offline mode is on"):
        ev(ctx, git_cache_dir=tmp_path / "cache", offline=True)


@needs_git
@pytest.mark.parametrize(
    "call",
    [
        'include("file://{repo}")',
        'load("file://{repo}//x.envd", "x")',
        'load("git+file://{repo}//x.envd", "x")',
        'include("git+ext::sh -c id")',
    ],
)
def test_repositories_on_this_machine_are_refused(tmp_path: Path, bare_repo: tuple[str, Path], call: str) -> None:
    """A build file must not read a repository outside its context through a file:// URL."""
    mirror, _ = bare_repo
    repo = Path(mirror) / "example.com" / "org" / "envdlib"
    ctx = tmp_path / "ctx"
    write(ctx, {"build.envd": "\n" + call.format(repo=repo) + "\n"})
    with pytest.raises(LoadError) as info:
        ev(ctx, git_cache_dir=tmp_path / "cache")
    assert (info.value.file, info.value.line) == ("build.envd", 2)
    assert "is a repository on this machine" in info.value.message or "is not a git URL" in info.value.message
    assert not (tmp_path / "cache").exists()


@needs_git
def test_git_bad_ref_and_missing_file(tmp_path: Path, bare_repo: tuple[str, Path]) -> None:
    mirror, _ = bare_repo
    ctx = tmp_path / "ctx"
    cache = tmp_path / "cache"
    write(ctx, {"build.envd": f'load("{LIB_URL}@nope//jupyter.envd", "x")\n'})
    with pytest.raises(LoadError, match="no branch, tag or commit named 'nope'"):
        ev(ctx, git_cache_dir=cache, git_mirror=mirror)
    (ctx / "build.envd").write_text(f'load("{LIB_URL}//missing.envd", "x")\n')
    with pytest.raises(LoadError, match="does not exist"):
        ev(ctx, git_cache_dir=cache, git_mirror=mirror)
    (ctx / "build.envd").write_text(f'load("{LIB_URL}//../escape.envd", "x")\n')
    with pytest.raises(LoadError, match="outside the repository"):
        ev(ctx, git_cache_dir=cache, git_mirror=mirror)
    (ctx / "build.envd").write_text(f'load("{LIB_URL}", "x")\n')
    with pytest.raises(LoadError, match="must name a file"):
        ev(ctx, git_cache_dir=cache, git_mirror=mirror)


# ---- what the build reads: regular files (and directories for io.copy) inside the context -------


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _device(path: Path) -> None:
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("creating a device node needs root")


@pytest.mark.parametrize("make", [_fifo, _device], ids=["fifo", "device"])
def test_special_files_are_refused_as_inputs_and_loads(tmp_path: Path, make: Callable[[Path], None]) -> None:
    """A FIFO would block the evaluation (or the build's context upload) forever; a device streams."""
    make(tmp_path / "special")
    write(tmp_path, {"build.envd": 'def build():\n    install.python_packages(requirements="special")\n'})
    with pytest.raises(frontend.ValueError_) as info:
        ev(tmp_path)
    assert str(info.value) == (
        "build.envd:2:5: install.python_packages(): requirements 'special' is not a regular file "
        "(a FIFO, device or socket cannot be sent)"
    )
    (tmp_path / "build.envd").write_text('def build():\n    io.copy("special", "/x")\n')
    with pytest.raises(frontend.ValueError_, match="is not a regular file"):
        ev(tmp_path)
    (tmp_path / "build.envd").write_text('load("//special", "x")\n')
    with pytest.raises(LoadError) as info:
        ev(tmp_path, timeout=2)
    assert (
        str(info.value)
        == "build.envd:1:1: special is not a regular file (a FIFO, device or socket cannot be a build file)"
    )


def test_directories_and_dangling_symlinks_fail_at_their_call(tmp_path: Path) -> None:
    (tmp_path / "reqs").mkdir()
    os.symlink("missing.txt", tmp_path / "dangling.txt")
    write(tmp_path, {"build.envd": 'def build():\n    install.python_packages(requirements="reqs")\n'})
    with pytest.raises(
        frontend.ValueError_, match=r"install.python_packages\(\): requirements 'reqs' is a directory, not a file"
    ) as info:
        ev(tmp_path)
    assert (info.value.line, info.value.col) == (2, 5)
    for call in ('install.python_packages(requirements="dangling.txt")', 'io.copy("dangling.txt", "/x")'):
        (tmp_path / "build.envd").write_text(f"def build():\n    base()\n    {call}\n")
        with pytest.raises(frontend.ValueError_, match=r"'dangling\.txt' is a symlink to nothing") as info:
            ev(tmp_path)
        assert (info.value.line, info.value.col) == (3, 5)


def test_a_symlink_inside_the_context_is_recorded_as_its_target(tmp_path: Path) -> None:
    """The build receives the named files only: a link to another file of the context would arrive dangling."""
    write(tmp_path, {"deps/requirements.txt": "six\n", "src/app.py": "print(1)\n"})
    os.symlink("deps/requirements.txt", tmp_path / "requirements.txt")
    write(
        tmp_path,
        {
            "build.envd": 'def build():\n    install.python_packages(requirements="requirements.txt")\n'
            '    io.copy("src", "/app")\n'
        },
    )
    s = ev(tmp_path)
    assert s.python_packages[0].requirements == "deps/requirements.txt"
    assert s.copies[0].source == "src" and s.inputs == ("deps/requirements.txt", "src")
