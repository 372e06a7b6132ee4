"""`envbuild version` (the body is shared with the fast path in `envbuild.cli.fast`)."""

from __future__ import annotations

import typer

from envbuild.cli import fast
from envbuild.cli.app import app


@app.command()
def version(short: bool = typer.Option(False, "--short", help="Print only the version number.")) -> None:
    """Print envbuild's version."""
    fast.version(short)
