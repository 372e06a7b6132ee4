"""The typer application and the process entry point.

Each module of `envbuild.cli.commands` declares its commands and options on `app` (importing
`envbuild.cli` registers them all); heavy libraries (grpc, the docker SDK, rich) are imported inside
the command bodies, by the commands that use them.
"""

from __future__ import annotations

import sys

import typer

from envbuild.errors import EXIT_FAILURE, EXIT_USAGE, EnvbuildError

HELP = "Build AI development environments from build.envd, and run them with Jupyter and VS Code."

app = typer.Typer(
    name="envbuild",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root() -> None:
    """Build AI development environments from build.envd, and run them with Jupyter and VS Code."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; user mistakes end in a one-line error and a documented exit code, never a traceback."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        try:
            code = app(args=args, prog_name="envbuild", standalone_mode=False)
        except typer.TyperException as exc:
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


def _one_line(exc: Exception) -> str:
    """A usage error as one line, with where to read more (instead of typer's boxed usage text)."""
    format_message = getattr(exc, "format_message", None)
    message = " ".join((format_message() if format_message else str(exc)).split())
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and getattr(ctx, "command_path", None):
        return f"{message} (see '{ctx.command_path} --help')"
    return message


__all__ = ["EXIT_USAGE", "app", "main"]
