"""`envbuild debug llb|spec`: what a build would do, offline (no engine or registry needed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from envbuild.cli.app import app
from envbuild.cli.args import build_target, parse_owner
from envbuild.errors import UsageError

debug_app = typer.Typer(help="Show the spec or the LLB a build file compiles to (offline).", no_args_is_help=True)
app.add_typer(debug_app, name="debug")


@debug_app.command("spec")
def spec_cmd(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory."),
    file: str | None = typer.Option(None, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
) -> None:
    """Print the evaluated spec as JSON."""
    from envbuild.build import BuildOptions, evaluate

    target, function = build_target(path, file)
    spec, _ = evaluate(BuildOptions(path=target, function=function))
    typer.echo(spec.to_json(indent=2))


@debug_app.command("llb")
def llb_cmd(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory."),
    file: str | None = typer.Option(None, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
    fmt: str = typer.Option("json", "--format", help="json (one op per line, like envd) or dot."),
    owner: str | None = typer.Option(None, "--owner", help="UID[:GID] of the envd user (default: yours)."),
    image_config: bool = typer.Option(False, "--image-config", help="Print the image config instead."),
    merged: bool = typer.Option(
        False,
        "--merged",
        help="The graph for a builder that merges layers (MergeOp/DiffOp); default: the one chain every builder runs.",
    ),
) -> None:
    """Print the LLB the build file compiles to (base image config from the engine's store if it has it)."""
    from envbuild.build import BuildOptions, compile_for, prepare

    if fmt not in ("json", "dot"):
        raise UsageError(f"invalid --format {fmt!r}: use json or dot")
    target, function = build_target(path, file)
    options = BuildOptions(path=target, function=function, owner=parse_owner(owner))
    compiled = compile_for(prepare(options, labels=image_config), options, merge_layers=merged)  # no labels in LLB
    for note in compiled.notes:
        print(f"note: {note}", file=sys.stderr)
    if image_config:
        typer.echo(json.dumps(dict(compiled.image), indent=2, sort_keys=True, default=list))
        return
    definition = compiled.definition()
    if fmt == "dot":
        typer.echo(definition.to_dot())
        return
    lines = [json.dumps(op, sort_keys=True, separators=(",", ":")) for op in definition.to_json()]
    if lines:
        typer.echo("\n".join(lines))
