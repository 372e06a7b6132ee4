"""`envbuild sync`: copy the project to another machine's engine, where `up` mounts it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from envbuild.cli.app import app
from envbuild.cli.commands.up import DEFAULT_FILE, build_image, parse_file_func
from envbuild.errors import UsageError


@app.command()
def sync(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory to copy."),
    file: str = typer.Option(DEFAULT_FILE, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
    name: str | None = typer.Option(None, "--name", help="Environment name (default: the directory name)."),
    ca_cert: Path | None = typer.Option(
        None, "--ca-cert", help="CA bundle build steps trust (TLS-inspecting proxies)."
    ),
) -> None:
    """Copy the project into a volume on another machine's engine (DOCKER_HOST=ssh://...), which `up`
    mounts as the project directory. Files .envdignore excludes stay here; nothing there is deleted.
    Builds the environment's image first when it is not up to date (the copy is made with it)."""
    import os

    from envbuild.cli.commands.build import human_bytes
    from envbuild.runtime import engine, remote
    from envbuild.runtime.options import name_from_dir, project_dir, validate_name
    from envbuild.runtime.sync import sync as sync_project

    project = project_dir(path)
    env_name = validate_name(name) if name is not None else name_from_dir(project)
    build_file, function = parse_file_func(file)
    if not (project / build_file).is_file():
        raise UsageError(f"no build file {build_file!r} in {project}; create one with `envbuild init`")
    machine = remote.current()
    if machine is None:
        raise UsageError(
            "the Docker engine is on this machine, where `envbuild up` mounts the project directory itself; "
            "sync is for an engine on another machine (DOCKER_HOST=ssh://..., or a context with --docker ssh://...)"
        )
    client = engine.connect()
    image, _, spec = build_image(project, build_file, function, ca_cert=str(ca_cert) if ca_cert else None, fmt="text")
    owner = (spec.owner.uid, spec.owner.gid) if spec.owner is not None else (os.getuid(), os.getgid())
    result = sync_project(client, name=env_name, project=project, image=image, owner=owner)
    print(
        f"Copied {result.files} file{'s' if result.files != 1 else ''} ({human_bytes(result.size)}) from {project} "
        f"into the volume {result.volume} on {machine.jump}"
        + (" (new)" if result.created else "")
        + "; `envbuild up` mounts it. Files deleted here stay there.",
        file=sys.stderr,
    )
