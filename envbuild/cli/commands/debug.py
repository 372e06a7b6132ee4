"""`envbuild debug llb|spec`: what a build would do, offline (no engine or registry needed).

The bodies live in `envbuild.cli.fast`, which also runs them without typer for simple command lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from envbuild.cli import fast
from envbuild.cli.app import app

debug_app = typer.Typer(help="Show the spec or the LLB a build file compiles to (offline).", no_args_is_help=True)
app.add_typer(debug_app, name="debug")


@debug_app.command("spec")
def spec_cmd(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
) -> None:
    """Print the evaluated spec as JSON."""
    fast.debug_spec(path, file)


@debug_app.command("llb")
def llb_cmd(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
    fmt: str = typer.Option("json", "--format", help="json (one op per line, like envd) or dot."),
    owner: Optional[str] = typer.Option(None, "--owner", help="UID[:GID] of the envd user (default: yours)."),
    image_config: bool = typer.Option(False, "--image-config", help="Print the image config instead."),
) -> None:
    """Print the LLB the build file compiles to (base image config from the engine's store if it has it)."""
    fast.debug_llb(path, file, fmt, owner, image_config)
