"""The process entry point and the typer application.

Command modules live in `envbuild.cli.commands`; each one registers itself on `app` when imported.
They import heavy libraries (grpc, docker, rich) inside the command bodies. The typer application
itself (~35 ms to import typer) is built on first use of `app`: `main` first offers the command line
to `envbuild.cli.fast`, which runs `debug llb|spec`, `version` and an up-to-date `build` without
typer and hands everything else back.
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING

from envbuild.errors import EXIT_FAILURE, EXIT_USAGE, EnvbuildError

if TYPE_CHECKING:
    from typing import Any

    import typer

    app: typer.Typer

HELP = "Build AI development environments from build.envd, and run them with Jupyter and VS Code."


def _make_app() -> typer.Typer:
    import typer

    application = typer.Typer(
        name="envbuild",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @application.callback()
    def _root() -> None:
        """Build AI development environments from build.envd, and run them with Jupyter and VS Code."""

    return application


def _register_commands() -> None:
    import importlib
    import pkgutil

    from envbuild.cli import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"envbuild.cli.commands.{info.name}")


def __getattr__(name: str) -> Any:
    """``app`` is made on first use; the command modules import it to register themselves."""
    if name == "app":
        application = globals()["app"] = _make_app()
        _register_commands()
        return application
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes end in a one-line error and a documented exit code, never a traceback."""
    args = sys.argv[1:] if argv is None else list(argv)
    collecting = gc.isenabled()
    # Start-up allocates thousands of long-lived objects and next to no cyclic garbage: the collector's
    # passes over them cost the hot commands ~2 ms. It runs again for everything typer handles.
    gc.disable()
    try:
        from envbuild.cli import fast

        if fast.dispatch(args):
            return
        if collecting:
            gc.enable()
        from typer.exceptions import TyperException

        from envbuild.cli.app import app

        try:
            code = app(args=args, prog_name="envbuild", standalone_mode=False)
        except TyperException as exc:
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                print(ctx.get_help())
                return
            print(f"envbuild: error: {_one_line(exc)}", file=sys.stderr)
            raise SystemExit(getattr(exc, "exit_code", EXIT_USAGE)) from None
        raise SystemExit(code if isinstance(code, int) and not isinstance(code, bool) else 0)
    except EnvbuildError as exc:
        print(f"envbuild: error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except OSError as exc:  # a file or directory of the user's that cannot be read or written
        print(f"envbuild: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILURE) from None
    except KeyboardInterrupt:
        print("envbuild: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if collecting:
            gc.enable()


def _one_line(exc: Exception) -> str:
    """A usage error as one line, with where to read more (instead of typer's boxed usage text)."""
    format_message = getattr(exc, "format_message", None)
    message = " ".join((format_message() if format_message else str(exc)).split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        return f"{message} (see '{ctx.command_path} --help')"
    return message


__all__ = ["app", "main", "EXIT_USAGE"]
