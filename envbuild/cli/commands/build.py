"""`envbuild build`: build.envd -> an image in the engine's store (or pushed, or files), skipped
when nothing changed."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from envbuild.cli.app import app
from envbuild.cli.args import NETWORKS, PROGRESS_MODES, build_target, parse_owner
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.build import BuildOptions, BuildResult


@app.command()
def build(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory (the build context)."),
    file: str | None = typer.Option(None, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
    tag: list[str] | None = typer.Option(None, "--tag", "-t", help="Image name, repeatable (default: <dir>:dev)."),
    progress: str = typer.Option("auto", "--progress", help="auto, tty, plain, json or quiet."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Re-run every step (cache mounts are kept)."),
    ca_cert: Path | None = typer.Option(
        None, "--ca-cert", help="PEM CA bundle build steps trust (also $ENVBUILD_CA_CERT); never stored in the image."
    ),
    output: list[str] | None = typer.Option(
        None,
        "--output",
        "-o",
        help="type=docker|image|registry|oci|tar|local with name=, push=true, dest= (docs/builders.md); "
        "a bare DIR is type=local.",
    ),
    force: bool = typer.Option(False, "--force", help="Let -o DIR write into a directory that is not empty."),
    push: bool = typer.Option(False, "--push", help="Push the -t images to their registry (type=image,push=true)."),
    platform: list[str] | None = typer.Option(
        None, "--platform", help="Target platform(s), e.g. linux/amd64,linux/arm64 (default: the builder's own)."
    ),
    export_cache: list[str] | None = typer.Option(
        None, "--export-cache", help="Cache export: type=inline | type=registry,ref=IMAGE[,mode=max]."
    ),
    import_cache: list[str] | None = typer.Option(
        None, "--import-cache", help="Cache import: IMAGE | type=registry,ref=IMAGE."
    ),
    builder: str | None = typer.Option(
        None, "--builder", help="Builder address (tcp://, unix://, docker-container://, ...) or context name."
    ),
    owner: str | None = typer.Option(None, "--owner", help="UID[:GID] of the envd user (default: yours)."),
    network: str = typer.Option("sandbox", "--network", help="Network of build steps: sandbox or host."),
    python_mirror: str | None = typer.Option(
        None,
        "--python-mirror",
        help="Mirror of CPython builds (uv's UV_PYTHON_INSTALL_MIRROR); also $ENVBUILD_PYTHON_MIRROR.",
    ),
    locked: bool = typer.Option(False, "--locked", help="Exit 2 unless build.envd.lock is fresh and pins it all."),
    offline: bool = typer.Option(
        False, "--offline", help="Use only the engine's images, caches and build.envd.lock; say what is missing."
    ),
    linear: bool = typer.Option(
        False,
        "--linear",
        help="One chain of steps even where the builder merges layers (MergeOp/DiffOp); same files, "
        "but a change re-runs every step after it.",
    ),
) -> None:
    """Build the environment image; finishes at once when nothing changed."""
    if progress not in PROGRESS_MODES:
        raise UsageError(f"invalid --progress {progress!r}: use one of {', '.join(PROGRESS_MODES)}")
    if network not in NETWORKS:
        raise UsageError(f"invalid --network {network!r}: use sandbox or host")
    options = _build_options(
        path,
        file,
        tag or [],
        output or [],
        push=push,
        force=force,
        platform=platform or [],
        export_cache=export_cache or [],
        import_cache=import_cache or [],
        no_cache=no_cache,
        ca_cert=ca_cert,
        owner=owner,
        network=network,
        python_mirror=python_mirror,
        builder=builder,
        locked=locked,
        offline=offline,
        linear=linear,
    )
    from envbuild.build import build_prepared, one_build_at_a_time, prepare, quick_up_to_date, up_to_date

    quick = quick_up_to_date(options)  # the image's inputs unchanged: no need to evaluate build.envd
    if quick is not None:
        print(f"{quick[0]} is up to date ({quick[1][:19]})", file=sys.stderr)
        return
    prep = prepare(options)
    with one_build_at_a_time(prep.tag):
        if up_to_date(prep, options):
            print(f"{prep.tag} is up to date ({prep.digest[:19]})", file=sys.stderr)
            return
        from envbuild.progress import make_progress

        with make_progress(progress, sys.stderr) as view:
            result = build_prepared(prep, options, on_event=view, on_note=_note)
    _report(result, view.summary(), progress)


def _build_options(
    path: Path,
    file: str | None,
    tags: list[str],
    output: list[str],
    *,
    push: bool,
    force: bool,
    platform: list[str],
    export_cache: list[str],
    import_cache: list[str],
    no_cache: bool,
    ca_cert: Path | None,
    owner: str | None,
    network: str,
    python_mirror: str | None,
    builder: str | None,
    locked: bool,
    offline: bool,
    linear: bool,
) -> BuildOptions:
    """The command line as `BuildOptions`, with the CLI's usage errors."""
    from envbuild.build import BuildOptions
    from envbuild.outputs import parse_build_options

    target, function = build_target(path, file)
    outputs = parse_build_options(
        outputs=output,
        tags=tags,
        push=push,
        platforms=platform,
        export_cache=export_cache,
        import_cache=import_cache,
        force=force,
    )
    out = outputs.outputs[0] if outputs.outputs else None
    if out is not None and out.names and outputs.tags and set(out.names) != set(outputs.tags):
        raise UsageError("--tag and --output name= disagree; give the names once")
    names = (out.names if out is not None else ()) or outputs.tags
    return BuildOptions(
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
        linear=linear,
    )


def _note(text: str) -> None:
    print(f"note: {text}" if not text.startswith(("warning:", "pushing", "saving")) else text, file=sys.stderr)


def human_bytes(n: int) -> str:
    """1234567 -> "1.2 MB" (decimal units, as docker prints sizes)."""
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _report(result: BuildResult, counts: Mapping[str, int], progress: str) -> None:
    """What was built and pushed on stderr; the image ids (or the tag) on stdout, for scripts."""
    if progress != "json":
        what = ", ".join(o.step.describe for o in result.outcomes) or result.tag
        files, sent = result.sent
        context = f"; build context: {files} file{'s' if files != 1 else ''}, {human_bytes(sent)} sent" if files else ""
        print(
            f"built {what} in {result.duration:.1f}s ({counts['done']} steps run, {counts['cached']} cached{context})",
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
