"""`envbuild debug llb|spec`, `version` and `build`'s option checks, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild import __version__

ROOT = Path(__file__).resolve().parents[2]
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent.sock"}


def envbuild(*args: str | Path, cwd: Path = ROOT) -> tuple[int, str, str]:
    r = subprocess.run(
        [sys.executable, "-c", "from envbuild.cli import main; main()", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **NO_ENGINE},
        check=False,
    )
    return r.returncode, r.stdout, r.stderr


def test_debug_llb_prints_one_json_op_per_line() -> None:
    code, out, err = envbuild("debug", "llb", "-p", "examples/jupyter")
    assert code == 0, err
    ops = [json.loads(line) for line in out.splitlines()]
    assert ops and all(isinstance(op, dict) for op in ops)


def test_debug_llb_other_outputs() -> None:
    code, out, err = envbuild("debug", "llb", "--path=examples/requirements", "--format", "dot")
    assert code == 0 and out.startswith("digraph"), err
    code, out, err = envbuild("debug", "llb", "-p", "examples/jupyter", "--image-config")
    assert code == 0 and "entrypoint" in json.loads(out), err


def test_debug_llb_and_spec_take_a_function() -> None:
    code, gpu, err = envbuild("debug", "llb", "-f", "examples/multi-target/build.envd:gpu")
    assert code == 0, err
    code, cpu, err = envbuild("debug", "llb", "-f", "examples/multi-target/build.envd")
    assert code == 0 and cpu != gpu, err
    code, out, err = envbuild("debug", "spec", "--file", "examples/multi-target/build.envd:gpu")
    assert code == 0 and json.loads(out)["target"] == "gpu", err


def test_version() -> None:
    assert envbuild("version", "--short")[:2] == (0, f"{__version__}\n")
    code, out, _ = envbuild("version")
    assert code == 0 and out.startswith(f"envbuild {__version__} (Python ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["debug", "llb", "-p", "examples/jupyter", "--owner", "x:y"], "invalid --owner"),
        (["debug", "llb", "-p", "examples/jupyter", "--format", "yaml"], "invalid --format"),
        (["debug", "llb", "-f", "examples/multi-target/build.envd:no-such"], "invalid --file"),
        (["debug", "llb", "--no-such-option"], "No such option"),
        (["debug", "spec", "-p", "/nonexistent/project"], "envbuild: error:"),
    ],
    ids=lambda a: " ".join(a) if isinstance(a, list) else "",
)
def test_usage_errors_are_one_line(args: list[str], message: str) -> None:
    code, out, err = envbuild(*args)
    assert code == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1, err


def bad_build_file(tmp_path: Path) -> Path:
    (tmp_path / "build.envd").write_text(
        'def build():\n    base(image="x", dev=True)\n    install.python_packages(name=[1])\n'
    )
    return tmp_path


def test_build_file_and_option_errors(tmp_path: Path) -> None:
    project = bad_build_file(tmp_path)
    for args in (["build", "-p", project], ["debug", "llb", "-p", project]):
        code, _, err = envbuild(*args)
        assert code == 2 and "build.envd:3:5" in err, err
    code, _, err = envbuild("build", "-p", project, "--progress", "fancy")
    assert code == 2 and "invalid --progress" in err
    code, _, err = envbuild("build", "-p", project, "--network=none")
    assert code == 2 and "invalid --network" in err
