"""`envbuild build`: build.envd -> an image in the engine's store (or pushed, or files), skipped
when nothing changed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from envbuild.cli.app import app
from envbuild.cli.args import PROGRESS_MODES, build_target, parse_owner
from envbuild.errors import UsageError


@app.command()
def build(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory (the build context)."),
    file: Optional[str] = typer.Option(None, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
    tag: Optional[List[str]] = typer.Option(
        None, "--tag", "-t", help="Image name, repeatable (default: <dir>:dev)."
    ),
    progress: str = typer.Option("auto", "--progress", help="auto, tty, plain, json or quiet."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-run every step (cache mounts are kept)."),
    ca_cert: Optional[Path] = typer.Option(
        None, "--ca-cert", help="PEM CA bundle build steps trust (also $ENVBUILD_CA_CERT); never stored in the image."
    ),
    output: Optional[str] = typer.Option(
        None, "--output", "-o",
        help="type=docker|image|registry|oci|tar|local with name=, push=true, dest= (docs/builders.md); a bare DIR is type=local.",
    ),
    push: bool = typer.Option(False, "--push", help="Push the -t images to their registry (type=image,push=true)."),
    platform: Optional[List[str]] = typer.Option(
        None, "--platform", help="Target platform(s), e.g. linux/amd64,linux/arm64 (default: the builder's own)."
    ),
    export_cache: Optional[List[str]] = typer.Option(
        None, "--export-cache", help="Cache export: type=inline | type=registry,ref=IMAGE[,mode=max]."
    ),
    import_cache: Optional[List[str]] = typer.Option(
        None, "--import-cache", help="Cache import: IMAGE | type=registry,ref=IMAGE."
    ),
    builder: Optional[str] = typer.Option(
        None, "--builder", help="Builder address (tcp://, unix://, docker-container://, ...) or context name."
    ),
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
    from envbuild.outputs import parse_build_options

    if progress not in PROGRESS_MODES:
        raise UsageError(f"invalid --progress {progress!r}: use one of {', '.join(PROGRESS_MODES)}")
    if network not in ("sandbox", "host"):
        raise UsageError(f"invalid --network {network!r}: use sandbox or host")
    target, function = build_target(path, file)
    outputs = parse_build_options(
        outputs=[output] if output is not None else [],
        tags=tag or [],
        push=push,
        platforms=platform or [],
        export_cache=export_cache or [],
        import_cache=import_cache or [],
    )
    out = outputs.outputs[0] if outputs.outputs else None
    if out is not None and out.names and outputs.tags and set(out.names) != set(outputs.tags):
        raise UsageError("--tag and --output name= disagree; give the names once")
    names = (out.names if out is not None else ()) or outputs.tags
    options = BuildOptions(
        path=target,
        function=function,
        tag=names[0] if names else None,
        no_cache=no_cache,
        ca_cert=str(ca_cert) if ca_cert else None,
        owner=parse_owner(owner),
        network=network,
        python_mirror=python_mirror,
        builder=builder,
        locked=locked,
        offline=offline,
        outputs=outputs,
    )
    from envbuild.progress import make_progress

    def note(text: str) -> None:
        print(f"note: {text}" if not text.startswith(("warning:", "pushing", "saving")) else text, file=sys.stderr)

    from envbuild.build import _all_up_to_date, prepare, skip_check_names

    if not no_cache:
        prep = prepare(options)
        if _all_up_to_date(prep, skip_check_names(prep, outputs)):
            print(f"{prep.tag} is up to date ({prep.digest[:19]})", file=sys.stderr)
            return
    with make_progress(progress, sys.stderr) as view:
        result = run_build(options, on_event=view, on_note=note)
    counts = view.summary()
    if result.up_to_date:
        print(f"{result.tag} is up to date ({result.digest[:19]})", file=sys.stderr)
        return
    if progress != "json":
        what = ", ".join(o.step.describe for o in result.outcomes) or result.tag
        print(
            f"built {what} in {result.duration:.1f}s ({counts['done']} steps run, {counts['cached']} cached)",
            file=sys.stderr,
        )
    for o in result.outcomes:
        for pushed in o.pushed:
            print(f"pushed {pushed.name}@{pushed.digest}", file=sys.stderr)
    images = [o.result.image_id for o in result.outcomes if o.step.image_names and o.result.image_id]
    if images:
        for image_id in images:
            typer.echo(image_id)
    elif not result.outcomes:
        typer.echo(result.tag)
