"""`envbuild version`."""

from __future__ import annotations

import platform

import typer

from envbuild import __version__
from envbuild.cli.app import app


@app.command()
def version(short: bool = typer.Option(False, "--short", help="Print only the version number.")) -> None:
    """Print envbuild's version."""
    typer.echo(__version__ if short else f"envbuild {__version__} (Python {platform.python_version()})")
