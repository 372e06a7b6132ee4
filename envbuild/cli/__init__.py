"""The `envbuild` command line: thin typer commands over importable library calls."""

from envbuild.cli import commands  # noqa: F401 - each command module registers its commands on `app`
from envbuild.cli.app import app, main

__all__ = ["app", "main"]
