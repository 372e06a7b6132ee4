"""`envbuild doctor`: report what the builder and the engine can do."""

from __future__ import annotations

import json

import typer

from envbuild.cli.app import app


@app.command()
def doctor(
    builder: str | None = typer.Option(
        None,
        "--builder",
        help="Builder address (tcp://…, docker-container://…) or context name; default: "
        "$BUILDKIT_HOST, then the current context.",
    ),
    all_contexts: bool = typer.Option(False, "--all", help="Check every context, not only the one in use."),
    fmt: str = typer.Option("text", "--format", help="text or json."),
    timeout: float = typer.Option(4.0, "--timeout", help="Seconds to wait for each builder."),
) -> None:
    """What the builder and the engine report they can do: caps (MergeOp/DiffOp, with the builder's
    reason for each one disabled), workers and platforms, exporters, cache, image store, GPU runtime.

    Exits 3 when the builder in use is unreachable.
    """
    from envbuild.contexts import ContextStore, ResolvedBuilder, resolve_builder
    from envbuild.doctor import diagnose, render_text
    from envbuild.errors import EXIT_UNREACHABLE, UsageError

    if fmt not in ("text", "json"):
        raise UsageError(f"--format {fmt!r}: choose text or json")
    if all_contexts and builder:
        raise UsageError("--all checks every context; leave out --builder")
    in_use = resolve_builder(builder)
    targets = [in_use]
    if all_contexts:
        targets = [
            in_use
            if (c.name == in_use.context.name and in_use.source == "context")
            else ResolvedBuilder(c.address, c.builder, "context", c)
            for c in ContextStore().list()
        ]
        if in_use.source != "context":
            targets.insert(0, in_use)
    reports = [diagnose(t, timeout=timeout) for t in targets]
    if fmt == "json":
        data = [r.to_json() for r in reports]
        typer.echo(json.dumps(data if all_contexts else data[0], indent=2))
    else:
        typer.echo("\n\n".join(render_text(r) for r in reports))
    current = next(r for t, r in zip(targets, reports, strict=True) if t is in_use)
    if not current.reachable:
        raise typer.Exit(EXIT_UNREACHABLE)
