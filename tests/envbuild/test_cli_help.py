"""Every command's --help renders (a stray rich markup tag in a help text crashes it)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _command_paths() -> list[list[str]]:
    import typer

    from envbuild.cli.app import app

    paths: list[list[str]] = [[]]

    def walk(command, prefix: list[str]) -> None:  # type: ignore[no-untyped-def]
        for name, sub in getattr(command, "commands", {}).items():
            if getattr(sub, "hidden", False):
                continue
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("command", _command_paths(), ids=lambda p: " ".join(p) or "envbuild")
def test_help_renders(command: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from envbuild.cli import main; main()", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and "Traceback" not in proc.stderr
