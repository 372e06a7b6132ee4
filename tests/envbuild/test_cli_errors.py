"""Bad command-line input ends in exit code 2 and one clear line, before anything slow happens.

Every case runs the real ``envbuild`` console script. ``DOCKER_HOST`` points at a socket that does
not exist: a value checked only after connecting to the engine would end in exit 3 instead of 2,
so these tests also pin down that options are validated first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ENVBUILD = Path(sys.executable).with_name("envbuild")
NOWHERE = "unix:///nonexistent/envbuild-test/docker.sock"
BUILD_FILE = 'def build():\n    base(image="local/debian:bookworm", dev=True)\n'


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "DOCKER_HOST": NOWHERE,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "proj"
    p.mkdir()
    (p / "build.envd").write_text(BUILD_FILE)
    return p


def envbuild(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENVBUILD), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60, stdin=subprocess.DEVNULL
    )


def assert_usage_error(p: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2, no traceback, nothing on stdout, and an ``envbuild: error:`` line with the fragments."""
    assert p.returncode == 2, f"exit {p.returncode}, expected 2\nstdout: {p.stdout}\nstderr: {p.stderr}"
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert p.stdout == "", f"usage errors go to stderr, got stdout: {p.stdout!r}"
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("envbuild: error: ")]
    assert len(errors) == 1 and len(lines) == 1, f"expected one `envbuild: error:` line, got:\n{p.stderr}"
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"


def assert_parser_error(p: subprocess.CompletedProcess[str], fragment: str) -> None:
    """Errors typer/click itself reports (unknown flags, commands): exit 2 and the reason on stderr."""
    assert p.returncode == 2, f"exit {p.returncode}\n{p.stderr}"
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    assert p.stdout == ""
    assert fragment in p.stderr, p.stderr


# ---- unknown flags and commands ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--nope"], "No such option: --nope"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["up", "--nope"], "No such option: --nope"),
        (["up", "--detach=maybe"], "--detach"),
        (["ls", "extra-argument"], "unexpected extra argument"),
        (["destroy", "--image", "--name"], "--name"),
        (["up", "--timeout", "soon"], "--timeout"),
        (["context", "create"], "Missing argument"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_unknown_flags_and_commands(args: list[str], fragment: str, env: dict[str, str], project: Path) -> None:
    assert_parser_error(envbuild(args, env, cwd=project), fragment)


# ---- paths ---------------------------------------------------------------------------------------


def test_project_path_missing(env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    assert_usage_error(envbuild(["up", "-d", "-p", str(missing)], env), str(missing), "does not exist")


def test_project_path_is_a_file(env: dict[str, str], project: Path) -> None:
    file = project / "build.envd"
    assert_usage_error(envbuild(["up", "-d", "-p", str(file)], env), "is not a directory")


def test_destroy_path_missing(env: dict[str, str], tmp_path: Path) -> None:
    assert_usage_error(envbuild(["destroy", "-p", str(tmp_path / "gone")], env), "does not exist")


def test_run_path_missing(env: dict[str, str], tmp_path: Path) -> None:
    assert_usage_error(envbuild(["run", "-i", "img", "-d", "-p", str(tmp_path / "gone")], env), "does not exist")


def test_build_file_missing(env: dict[str, str], project: Path) -> None:
    assert_usage_error(envbuild(["up", "-d", "-p", str(project), "-f", "other.envd"], env), "other.envd")


def test_ca_cert_missing(env: dict[str, str], project: Path, tmp_path: Path) -> None:
    p = envbuild(["up", "-d", "-p", str(project), "--ca-cert", str(tmp_path / "nope.pem")], env)
    assert_usage_error(p, "--ca-cert", "nope.pem")


def test_project_without_build_file(env: dict[str, str], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_usage_error(envbuild(["up", "-d", "-p", str(empty)], env), "no build file")


# ---- names ---------------------------------------------------------------------------------------

BAD_NAMES = [
    "Bad Name!",
    "UPPER",
    "-leading-dash",
    "has/slash",
    "trailing.",
    "a" * 64,
    "naïve",
    "semi;colon",
    "$(id)",
    "",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_up_rejects_bad_names(name: str, env: dict[str, str], project: Path) -> None:
    p = envbuild(["up", "-d", "-p", str(project), "--name", name], env)
    assert_usage_error(p, "invalid environment name")


@pytest.mark.parametrize("name", ["Bad Name!", "has/slash", "$(id)", ""])
def test_destroy_and_exec_reject_bad_names(name: str, env: dict[str, str]) -> None:
    assert_usage_error(envbuild(["destroy", "--name", name], env), "invalid environment name")
    assert_usage_error(envbuild(["exec", name, "--", "true"], env), "invalid environment name")


def test_run_rejects_bad_name_before_touching_the_engine(env: dict[str, str]) -> None:
    assert_usage_error(
        envbuild(["run", "-i", "local/debian:bookworm", "-d", "--name", "Bad Name!"], env), "invalid environment name"
    )


def test_project_directory_with_no_usable_name(env: dict[str, str], tmp_path: Path) -> None:
    weird = tmp_path / "..."
    weird.mkdir()
    (weird / "build.envd").write_text(BUILD_FILE)
    assert_usage_error(envbuild(["up", "-d", "-p", str(weird)], env), "pass --name")


@pytest.mark.parametrize("name", ["bad name!", "", "../escape"])
def test_context_rejects_bad_names(name: str, env: dict[str, str]) -> None:
    assert_usage_error(envbuild(["context", "create", name, "--builder", "docker"], env), "context name")


# ---- run options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (["-v", "no-colon"], "invalid --volume"),
        (["-v", "/nonexistent/envbuild/x:/data"], "does not exist"),
        (["-v", ".:relative/path"], "must be absolute"),
        (["-v", ".:/data:rx"], "mode must be 'ro' or 'rw'"),
        (["-v", "a:b:c:d"], "invalid --volume"),
        (["-v", ":/data"], "invalid --volume"),
        (["--gpus", "many"], "invalid --gpus"),
        (["--gpus", "0"], "invalid --gpus"),
        (["--gpus", "\u00b9"], "invalid --gpus"),
        (["--gpus", "1", "--no-gpu"], "contradict"),
        (["--shm-size", "lots"], "invalid --shm-size"),
        (["--shm-size", "0"], "more than zero"),
        (["--cpus", "-1"], "invalid --cpus"),
        (["--cpus", "nan"], "invalid --cpus"),
        (["--memory", "8x"], "invalid --memory"),
        (["--host", "localhost"], "invalid --host"),
        (["--host", "0.0.0.0.0"], "invalid --host"),
        (["--format", "xml"], "invalid --format"),
        (["-f", ":build"], "invalid --file"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_up_rejects_bad_options(option: list[str], fragment: str, env: dict[str, str], project: Path) -> None:
    assert_usage_error(envbuild(["up", "-d", "-p", str(project), *option], env), fragment)


def test_run_rejects_bad_volume_before_touching_the_engine(env: dict[str, str], tmp_path: Path) -> None:
    p = envbuild(["run", "-i", "local/debian:bookworm", "-d", "-v", "nowhere"], env, cwd=tmp_path)
    assert_usage_error(p, "invalid --volume")


def test_exec_needs_exactly_one_command(env: dict[str, str]) -> None:
    assert_usage_error(envbuild(["exec", "myenv"], env), "either a command")


def test_destroy_path_and_name_conflict(env: dict[str, str], project: Path) -> None:
    assert_usage_error(envbuild(["destroy", "-p", str(project), "--name", "x"], env), "not both")


# ---- build options (the `build` command lands with the compiler) ---------------------------------

BUILD_OPTIONS = [
    (["--output", "type=bogus"], "unknown type='bogus'"),
    (["--output", "type=image,name=UPPER/case"], "not a valid image reference"),
    (["--output", 'type=image,"name=a'], "unterminated quote"),
    (["--output", "type=tar"], "needs dest=PATH"),
    (["--output", "type=local,dest=-"], "standard output"),
    (["--output", "type=image,push=maybe"], "not a boolean"),
    (["--output", "type=image,type=docker"], "given twice"),
    (["--output", ""], "empty value"),
    (["--platform", "linux/"], "--platform"),
    (["--platform", "windows/amd64/v9/extra"], "--platform"),
    (["--platform", ","], "--platform"),
    (["--tag", "Has Spaces"], "not a valid image reference"),
    (["--tag", "repo@sha256:" + "a" * 64], "digest"),
]


@pytest.mark.parametrize(
    ("option", "fragment"), BUILD_OPTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_build_rejects_bad_output_options(option: list[str], fragment: str, env: dict[str, str], project: Path) -> None:
    p = envbuild(["build", "-p", str(project), *option], env)
    assert "No such option" not in p.stderr, p.stderr
    assert_usage_error(p, fragment)


def test_build_of_broken_file_is_a_usage_error(env: dict[str, str], project: Path) -> None:
    (project / "build.envd").write_text("def build():\n    base(dev=True)\n    install.pyton()\n")
    p = envbuild(["build", "-p", str(project)], env)
    assert_usage_error(p, "build.envd:3:5:", "install.python")


@pytest.mark.parametrize(
    "argv",
    [["build", "--bogus"], ["nope"], ["up", "--volume"], ["context", "use"]],
)
def test_usage_errors_are_one_line_without_a_box(argv: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from envbuild.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("envbuild: error: "), proc.stderr
    assert "╭" not in proc.stderr and "Traceback" not in proc.stderr


def test_an_os_error_on_the_users_files_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "build.envd").mkdir()  # init --force must write a file where a directory stands
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from envbuild.cli import main; main()",
            "init",
            "-p",
            str(tmp_path),
            "--yes",
            "--force",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("envbuild: error: ") and "build.envd" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
