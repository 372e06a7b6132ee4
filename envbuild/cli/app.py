"""The typer application and the process entry point.

Command modules live in `envbuild.cli.commands`; each one registers itself on `app` when imported.
They import heavy libraries (grpc, docker, rich) inside the command bodies, so `--help` and the
offline commands stay fast.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from envbuild.errors import EXIT_USAGE, EnvbuildError

app = typer.Typer(
    name="envbuild",
    help="Build AI development environments from build.envd, and run them with Jupyter and VS Code.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Build AI development environments from build.envd, and run them with Jupyter and VS Code."""


def _register_commands() -> None:
    from envbuild.cli import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"envbuild.cli.commands.{info.name}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes end in a one-line error and a documented exit code, never a traceback."""
    _register_commands()
    try:
        app(args=argv, prog_name="envbuild", standalone_mode=True)
    except EnvbuildError as exc:
        print(f"envbuild: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        print("envbuild: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


__all__ = ["app", "main", "EXIT_USAGE"]
