"""The `envbuild` command line: thin typer commands over importable library calls."""

from envbuild.cli.app import main

__all__ = ["main"]
