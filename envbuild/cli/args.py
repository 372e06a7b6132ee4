"""Option helpers shared by the typer commands and the fast dispatcher (`envbuild.cli.fast`).

Typer-free on purpose: the fast path must not import typer, so everything both paths need to
turn options into library calls lives here.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from envbuild.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from envbuild.build import BuildOptions

PROGRESS_MODES = ("auto", "tty", "plain", "json", "quiet")
NETWORKS = ("sandbox", "host")


def parse_owner(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    uid, _, gid = text.partition(":")
    try:
        owner = (int(uid), int(gid or uid))
    except ValueError:
        raise UsageError(f"invalid --owner {text!r}: expected UID[:GID], e.g. 1000:1000") from None
    if not all(0 <= v <= 65535 for v in owner):
        raise UsageError(f"invalid --owner {text!r}: ids must be 0..65535")
    return owner


def build_target(path: str | os.PathLike[str], file: str | None) -> tuple[str, str | None]:
    """``-p DIR`` and ``-f FILE[:FUNC]`` -> (path for frontend.evaluate, function)."""
    if file is None:
        return str(path), None
    name, _, func = file.partition(":")
    if not name or (func and not func.isidentifier()):
        raise UsageError(f"invalid --file {file!r}: expected FILE[:FUNCTION], e.g. build.envd:build")
    base = os.fspath(path)
    target = name if os.path.isabs(name) or base in ("", ".") else os.path.join(base, name)
    return target, func or None


def output_tag(output: str | None, tag: str | None) -> str | None:
    """``--output`` is limited to the engine's image store for now; other exporters say so."""
    if output is None:
        return tag
    from envbuild.outputs import parse_output

    spec = parse_output(output)
    if spec.type in ("docker", "image") and not spec.push and not spec.dest:
        names = spec.names
        if tag and names and tag not in names:
            raise UsageError("--tag and --output name= disagree; give the name once")
        return tag or (names[0] if names else None)
    raise UsageError(
        f"--output type={spec.type}{' with push' if spec.push else ''}{' with dest' if spec.dest else ''} is not "
        "supported by `envbuild build` yet; the image goes to the engine's store (type=docker,name=NAME:TAG)"
    )


def build_options(
    *,
    path: Path,
    file: str | None,
    tag: str | None,
    progress: str,
    no_cache: bool,
    ca_cert: Path | None,
    output: str | None,
    owner: str | None,
    network: str,
    python_mirror: str | None,
) -> BuildOptions:
    """`envbuild build`'s options -> BuildOptions, with the CLI's usage errors."""
    from envbuild.build import BuildOptions

    if progress not in PROGRESS_MODES:
        raise UsageError(f"invalid --progress {progress!r}: use one of {', '.join(PROGRESS_MODES)}")
    if network not in NETWORKS:
        raise UsageError(f"invalid --network {network!r}: use sandbox or host")
    target, function = build_target(path, file)
    return BuildOptions(
        path=target,
        function=function,
        tag=output_tag(output, tag),
        no_cache=no_cache,
        ca_cert=str(ca_cert) if ca_cert else None,
        owner=parse_owner(owner),
        network=network,
        python_mirror=python_mirror,
    )


def report_if_up_to_date(options: BuildOptions) -> bool:
    """The skip check of `envbuild build` (no BuildKit connection): True, with the note on stderr,
    when the tagged image was built from exactly these inputs."""
    from envbuild.build import is_up_to_date, prepare

    if options.no_cache:
        return False
    prep = prepare(options)
    if not is_up_to_date(prep):
        return False
    print(f"{prep.tag} is up to date ({prep.digest[:19]})", file=sys.stderr)
    return True


def quick_up_to_date(
    *,
    path: str | os.PathLike[str],
    file: str | None,
    tag: str | None,
    progress: str,
    no_cache: bool,
    owner: str | None,
    network: str,
    **_ignored: object,
) -> bool:
    """The skip check without evaluating build.envd (`envbuild.quickcheck`): True, with the note on
    stderr, only when sure; False means "run the full check". Invalid options are left to the full
    path, which reports them; an invalid ``--tag`` is one the engine cannot find."""
    if no_cache or progress not in PROGRESS_MODES or network not in NETWORKS:
        return False
    from envbuild import quickcheck
    from envbuild.naming import default_tag, project_name
    from frontend.target import split_target_text

    target, function = build_target(path, file)
    owner_ids = parse_owner(owner)
    build_file, from_path = split_target_text(target)
    function = function or from_path
    context_dir, build_file = quickcheck.locate(build_file)
    project = project_name(os.path.basename(context_dir))
    name = tag or default_tag(project)
    digest = quickcheck.up_to_date(
        build_file=build_file, function=function or "build", tag=name, project=project, owner=owner_ids, network=network
    )
    if digest is None:
        return False
    print(f"{name} is up to date ({digest[:19]})", file=sys.stderr)
    return True


def echo(text: str) -> None:
    """``click.echo`` for text: one line to stdout, flushed, ANSI styles dropped when not a terminal."""
    out = sys.stdout
    if "\x1b" in text and not out.isatty():
        import re

        text = re.sub(r"\033\[[;?0-9]*[a-zA-Z]", "", text)
    out.write(text + "\n")
    out.flush()
