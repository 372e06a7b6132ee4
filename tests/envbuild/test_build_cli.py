"""`envbuild build` / `debug` without an engine: options, offline LLB, usage errors, the content digest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import frontend
from envbuild.build import Prepared, input_digest, skip_check_names
from envbuild.cli.args import parse_owner
from envbuild.errors import UsageError
from envbuild.outputs import parse_build_options

ROOT = Path(__file__).resolve().parents[2]
ENVBUILD = str(Path(sys.executable).with_name("envbuild"))  # the installed script of the running Python


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ENVBUILD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_debug_llb_offline_without_engine() -> None:
    r = cli("debug", "llb", "-p", str(ROOT / "examples/jupyter"), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert r.returncode == 0, r.stderr
    ops = [json.loads(line) for line in r.stdout.splitlines()]
    assert ops[0]["Op"]["source"]["identifier"] == "docker-image://docker.io/local/debian:bookworm"
    assert "empty base config" in r.stderr


def test_debug_llb_dot_and_spec() -> None:
    r = cli(
        "debug", "llb", "-p", str(ROOT / "examples/requirements"), "--format", "dot", env={"DOCKER_HOST": "unix:///x"}
    )
    assert r.returncode == 0 and r.stdout.startswith("digraph")
    r = cli("debug", "spec", "-p", str(ROOT / "examples/requirements"))
    assert r.returncode == 0 and json.loads(r.stdout)["python_packages"][0]["requirements"] == "requirements.txt"


def test_build_file_mistake_is_exit_2_with_position(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(image="x", dev=True)\n    install.python_packages(name=[1])\n'
    )
    r = cli("build", "-p", str(tmp_path))
    assert r.returncode == 2
    assert "build.envd:3:5" in r.stderr


def test_too_much_inline_data_is_exit_2_at_the_call_that_holds_it(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(
        "def build():\n"
        '    base(image="local/debian:bookworm", dev=False)\n'
        '    run(commands=["echo small"])\n'
        '    run(commands=["echo " + "x" * (5 * 1024 * 1024)])\n'
    )
    r = cli("debug", "llb", "-p", str(tmp_path), env={"DOCKER_HOST": "unix:///nonexistent.sock"})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    (error,) = [ln for ln in r.stderr.splitlines() if ln.startswith("envbuild: error:")]
    assert error.startswith("envbuild: error: build.envd:4:5: the build definition is "), error
    assert "move" in error and len(error) < 600


def test_what_envd_builds_debug_llb_compiles(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(image="x", dev=True)\n    config.rstudio_server()\n    install.codex()\n'
    )
    r = cli("debug", "llb", "-p", str(tmp_path), env={"DOCKER_HOST": "unix:///x"})
    assert r.returncode == 0, r.stderr
    assert "build.envd:3:5: config.rstudio_server(): runs the image's RStudio Server" in r.stderr
    assert "build.envd:4:5: install.codex(): no version given, so codex rust-v0.98.0 is installed" in r.stderr


def test_digest_follows_content_not_mtime(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(image="x", dev=True)\n    install.python_packages(requirements="r.txt")\n'
    )
    req = tmp_path / "r.txt"
    req.write_text("six\n")
    spec = frontend.evaluate(tmp_path, user_config=False)
    d1 = input_digest(spec, tmp_path, owner=(1, 1), base_id="b")
    os.utime(req, (1, 1))
    assert input_digest(spec, tmp_path, owner=(1, 1), base_id="b") == d1
    req.write_text("six==1.17.0\n")
    assert input_digest(spec, tmp_path, owner=(1, 1), base_id="b") != d1
    assert input_digest(spec, tmp_path, owner=(2, 2), base_id="b") != d1


def test_options() -> None:
    assert parse_owner("1000") == (1000, 1000) and parse_owner("1:2") == (1, 2)
    with pytest.raises(UsageError):
        parse_owner("x")


def test_skip_check_only_for_plain_engine_store_exports() -> None:
    prep = Prepared(None, Path("/p"), "p", "p:dev", (1, 1), "sha256:x")  # type: ignore[arg-type]
    assert skip_check_names(prep, None) == ("p:dev",)
    assert skip_check_names(prep, parse_build_options()) == ("p:dev",)
    assert skip_check_names(prep, parse_build_options(tags=["a:1", "b:2"])) == ("a:1", "b:2")
    assert skip_check_names(prep, parse_build_options(outputs=["type=docker,name=c:3"])) == ("c:3",)
    for opts in (
        parse_build_options(tags=["r/a:1"], push=True),
        parse_build_options(outputs=["type=tar,dest=x.tar"]),
        parse_build_options(outputs=["type=docker,dest=x.tar"], tags=["a:1"]),
        parse_build_options(outputs=["type=local,dest=out"]),
        parse_build_options(platforms=["linux/arm64"]),
        parse_build_options(tags=["r/a:1"], push=True, export_cache=["type=inline"]),
    ):
        assert skip_check_names(prep, opts) == ()


def test_build_output_flags_are_usage_errors_before_building(tmp_path: Path) -> None:
    (tmp_path / "build.envd").write_text('def build():\n    base(image="local/debian:bookworm")\n')
    env = {"DOCKER_HOST": "unix:///nonexistent.sock", "BUILDKIT_HOST": ""}
    r = cli("build", "-p", str(tmp_path), "-t", "a:1", "-o", "type=docker,name=b:1", env=env)
    assert r.returncode == 2 and "disagree" in r.stderr
    r = cli("build", "-p", str(tmp_path), "--push", "-o", "type=tar,dest=x.tar", env=env)
    assert r.returncode == 2 and "--push needs an image output" in r.stderr
    r = cli("build", "-p", str(tmp_path), "-o", "type=zip", env=env)
    assert r.returncode == 2 and "unknown type" in r.stderr


def test_code_fingerprint_is_part_of_the_skip_digest(tmp_path, monkeypatch) -> None:
    """A changed compiler must rebuild even when envbuild's version number stayed the same."""
    import frontend
    from envbuild import build as build_mod
    from envbuild import quickcheck

    (tmp_path / "build.envd").write_text('def build():\n    base(image="local/debian:bookworm")\n')
    spec = frontend.evaluate(str(tmp_path), user_config=False)
    first = build_mod.input_digest(spec, tmp_path, owner=(1000, 1000), base_id="sha256:x")
    monkeypatch.setattr(quickcheck, "code_fingerprint", lambda: "0" * 16)
    assert build_mod.input_digest(spec, tmp_path, owner=(1000, 1000), base_id="sha256:x") != first


def test_a_build_that_is_not_up_to_date_evaluates_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI decides "up to date?" and builds from one evaluation (here the builder is unreachable,
    so the build stops right after deciding, with exit 3)."""
    from envbuild import build as build_module
    from envbuild.cli import main

    (tmp_path / "build.envd").write_text('def build():\n    base(image="local/debian:bookworm")\n')
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    calls: list[str] = []
    evaluate = build_module.evaluate

    def counting(options: build_module.BuildOptions) -> tuple[frontend.Spec, str]:
        calls.append(str(options.path))
        return evaluate(options)

    monkeypatch.setattr(build_module, "evaluate", counting)
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "-p", str(tmp_path), "--progress", "plain"])
    assert exit_info.value.code == 3, capsys.readouterr().err
    assert calls == [str(tmp_path)]


def test_default_tags_say_which_kind_of_image() -> None:
    from envbuild.naming import default_tag

    assert default_tag("My.Proj") == "my.proj:dev"
    assert default_tag("My.Proj", dev=False) == "my.proj:latest"
