"""The typer-free fast path gives the same stdout, stderr and exit code as the typer application."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from envbuild.cli import fast

ROOT = Path(__file__).resolve().parents[2]
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent.sock"}

_RUN = (
    "import sys, envbuild.cli.fast as f\n"
    "if sys.argv[1] == 'typer':\n"
    "    f.dispatch = lambda argv: False\n"
    "from envbuild.cli import main\n"
    "main(sys.argv[2:])\n"
)


def run(mode: str, args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    r = subprocess.run(
        [sys.executable, "-c", _RUN, mode, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, **env},
    )
    return r.returncode, r.stdout, r.stderr


def same(args: list[str], cwd: Path = ROOT, env: dict[str, str] = NO_ENGINE) -> tuple[int, str, str]:
    typer_result = run("typer", args, cwd, env)
    fast_result = run("fast", args, cwd, env)
    assert fast_result == typer_result
    return fast_result


def bad_build_file(tmp_path: Path) -> Path:
    (tmp_path / "build.envd").write_text('def build():\n    base(image="x", dev=True)\n    install.python_packages(name=[1])\n')
    return tmp_path


FAST = [
    ["debug", "llb", "-p", "examples/jupyter"],
    ["debug", "llb", "--path=examples/requirements", "--format", "dot"],
    ["debug", "llb", "-p", "examples/jupyter", "--image-config"],
    ["debug", "llb", "-p", "examples/serving", "--owner", "1000:1000", "--format=json"],
    ["debug", "llb", "-p", "examples/requirements", "-p", "examples/jupyter"],
    ["debug", "llb", "-f", "examples/multi-target/build.envd:gpu"],
    ["debug", "spec", "-p", "examples/requirements"],
    ["debug", "spec", "--file", "examples/multi-target/build.envd:gpu"],
    ["version"],
    ["version", "--short"],
]
FAST_ERRORS = [
    (["debug", "llb", "-p", "examples/jupyter", "--owner", "x:y"], "invalid --owner"),
    (["debug", "llb", "-p", "examples/jupyter", "--format", "yaml"], "invalid --format"),
    (["debug", "llb", "-f", "examples/multi-target/build.envd:no-such"], "invalid --file"),
    (["debug", "spec", "-p", "/nonexistent/project"], "envbuild: error:"),
]
TYPER_ONLY = [
    [],
    ["--help"],
    ["debug"],
    ["debug", "llb", "--help"],
    ["debug", "llb", "-h"],
    ["debug", "llb", "-p"],
    ["debug", "llb", "-pexamples/jupyter"],
    ["debug", "llb", "-p", "-x"],
    ["debug", "llb", "--path="],
    ["debug", "llb", "--image-config=yes"],
    ["debug", "llb", "--no-such-option"],
    ["debug", "llb", "extra-argument"],
    ["debug", "llb", "--", "-p"],
    ["version", "--shor"],
    ["build", "--help"],
    ["build", "--locked"],
    ["buildx"],
]


@pytest.mark.parametrize("args", FAST, ids=" ".join)
def test_fast_path_matches_typer(args: list[str]) -> None:
    assert fast.parse(args) is not None
    code, out, _ = same(args)
    assert code == 0 and out


@pytest.mark.parametrize(("args", "message"), FAST_ERRORS, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_fast_path_errors_match_typer(args: list[str], message: str) -> None:
    assert fast.parse(args) is not None
    code, _, err = same(args)
    assert code == 2 and message in err


@pytest.mark.parametrize("args", TYPER_ONLY, ids=lambda a: " ".join(a) or "(none)")
def test_doubtful_command_lines_go_to_typer(args: list[str]) -> None:
    assert fast.parse(args) is None
    same(args)


def test_build_usage_errors_match_typer(tmp_path: Path) -> None:
    code, _, err = same(["build", "-p", str(bad_build_file(tmp_path))])
    assert code == 2 and "build.envd:3:5" in err
    code, _, err = same(["debug", "llb", "-p", str(tmp_path)])
    assert code == 2 and "build.envd:3:5" in err
    code, _, err = same(["build", "-p", str(tmp_path), "--progress", "fancy"])
    assert code == 2 and "invalid --progress" in err
    code, _, err = same(["build", "-p", str(tmp_path), "--network=none"])
    assert code == 2 and "invalid --network" in err


def test_build_not_up_to_date_is_handed_to_typer(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text('def build():\n    base(image="local/debian:bookworm")\n')
    parsed = fast.parse(["build", "-p", str(tmp_path), "--no-cache"])
    assert parsed is not None
    runner, options = parsed
    os.environ.update(NO_ENGINE)
    try:
        assert runner(options) is False
    finally:
        del os.environ["DOCKER_HOST"]


@pytest.mark.engine
def test_up_to_date_build_matches_typer(tmp_path: Path) -> None:
    from envbuild.images import inspect_image

    if inspect_image("local/debian:bookworm") is None:
        pytest.skip("no engine answering with local/debian:bookworm (scripts/setup-engine.sh)")
    (tmp_path / "build.envd").write_text('def build():\n    base(image="local/debian:bookworm")\n')
    tag = f"envbuild-fast-{uuid.uuid4().hex[:8]}:dev"
    args = ["build", "-p", str(tmp_path), "-t", tag, "--progress", "plain"]
    env: dict[str, str] = {}
    code, _, err = run("typer", args, ROOT, env)
    try:
        assert code == 0, err
        code, out, err = same(args, env=env)
        assert code == 0 and out == "" and f"{tag} is up to date" in err
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=60)


def test_main_leaves_the_garbage_collector_as_it_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    """main pauses the collector for start-up; an in-process caller gets it back, also after an error."""
    import gc

    from envbuild.cli import main

    assert gc.isenabled()
    main(["version", "--short"])
    assert gc.isenabled()
    with pytest.raises(SystemExit):
        main(["debug", "llb", "--format", "yaml", "-p", str(ROOT / "examples" / "jupyter")])
    assert gc.isenabled()
    gc.disable()
    try:
        main(["version", "--short"])
        assert not gc.isenabled()
    finally:
        gc.enable()
    capsys.readouterr()
