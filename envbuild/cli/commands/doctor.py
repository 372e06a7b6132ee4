"""`envbuild doctor`: report what the builder and the engine can do."""

from __future__ import annotations

import json
from typing import Optional

import typer

from envbuild.cli.app import app


@app.command()
def doctor(
    builder: Optional[str] = typer.Option(
        None, "--builder", help="Builder address (tcp://…, docker-container://…) or context name; default: "
        "$BUILDKIT_HOST, then the current context."
    ),
    fmt: str = typer.Option("text", "--format", help="text or json."),
    timeout: float = typer.Option(4.0, "--timeout", help="Seconds to wait for the builder."),
) -> None:
    """Check the builder (workers, platforms, exporters, cache, MergeOp) and the engine's GPU runtime.

    Exits 3 when the builder is unreachable.
    """
    from envbuild.contexts import resolve_builder
    from envbuild.doctor import diagnose, render_text
    from envbuild.errors import EXIT_UNREACHABLE, UsageError

    if fmt not in ("text", "json"):
        raise UsageError(f"--format {fmt!r}: choose text or json")
    report = diagnose(resolve_builder(builder), timeout=timeout)
    if fmt == "json":
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        typer.echo(render_text(report))
    if not report.reachable:
        raise typer.Exit(EXIT_UNREACHABLE)
