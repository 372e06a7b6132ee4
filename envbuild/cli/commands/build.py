"""`envbuild build`: build.envd -> an image in the engine's store, skipped when nothing changed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from envbuild.cli.app import app
from envbuild.cli.args import PROGRESS_MODES, build_target, output_tag, parse_owner
from envbuild.errors import UsageError


@app.command()
def build(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory (the build context)."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
    tag: Optional[str] = typer.Option(None, "--tag", "-t", help="Image name (default: <dir>:dev)."),
    progress: str = typer.Option("auto", "--progress", help="auto, tty, plain, json or quiet."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-run every step (cache mounts are kept)."),
    ca_cert: Optional[Path] = typer.Option(
        None, "--ca-cert", help="PEM CA bundle build steps trust (also $ENVBUILD_CA_CERT); never stored in the image."
    ),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Export, e.g. type=docker,name=NAME:TAG."),
    owner: Optional[str] = typer.Option(None, "--owner", help="UID[:GID] of the envd user (default: yours)."),
    network: str = typer.Option("sandbox", "--network", help="Network of build steps: sandbox or host."),
    python_mirror: Optional[str] = typer.Option(
        None, "--python-mirror", help="Mirror of CPython builds (uv's UV_PYTHON_INSTALL_MIRROR); also $ENVBUILD_PYTHON_MIRROR."
    ),
    locked: bool = typer.Option(False, "--locked", help="Fail (exit 2) unless build.envd.lock exists and is fresh."),
    offline: bool = typer.Option(
        False, "--offline", help="Use only the engine's images, caches and build.envd.lock; say what is missing."
    ),
) -> None:
    """Build the environment image; finishes at once when nothing changed."""
    from envbuild.build import BuildOptions
    from envbuild.build import build as run_build

    if progress not in PROGRESS_MODES:
        raise UsageError(f"invalid --progress {progress!r}: use one of {', '.join(PROGRESS_MODES)}")
    if network not in ("sandbox", "host"):
        raise UsageError(f"invalid --network {network!r}: use sandbox or host")
    target, function = build_target(path, file)
    options = BuildOptions(
        path=target,
        function=function,
        tag=output_tag(output, tag),
        no_cache=no_cache,
        ca_cert=str(ca_cert) if ca_cert else None,
        owner=parse_owner(owner),
        network=network,
        python_mirror=python_mirror,
        locked=locked,
        offline=offline,
    )
    from envbuild.progress import make_progress

    def note(text: str) -> None:
        print(f"note: {text}", file=sys.stderr)

    from envbuild.build import is_up_to_date, prepare

    if not no_cache:
        prep = prepare(options)
        if is_up_to_date(prep):
            print(f"{prep.tag} is up to date ({prep.digest[:19]})", file=sys.stderr)
            return
    with make_progress(progress, sys.stderr) as view:
        result = run_build(options, on_event=view, on_note=note)
    counts = view.summary()
    if progress != "json":
        print(
            f"built {result.tag} in {result.duration:.1f}s ({counts['done']} steps run, {counts['cached']} cached)",
            file=sys.stderr,
        )
    typer.echo(result.image_id or result.tag)
