"""`envbuild up`: build when needed, start the environment, print its endpoints, open a shell."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from envbuild.cli.app import app
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.runtime.engine import Environment
    from envbuild.runtime.options import RunOptions
    from frontend.spec import Spec

DEFAULT_FILE = "build.envd:build"


def parse_file_func(text: str) -> tuple[str, str | None]:
    """``file[:func]``; without a function the build file's default (``build``) applies."""
    file, _, func = text.partition(":")
    if not file or (func and not func.isidentifier()):
        raise UsageError(f"invalid --file {text!r}: expected FILE[:FUNCTION], e.g. build.envd:build")
    return file, func or None


def check_format(fmt: str) -> str:
    if fmt not in ("text", "json"):
        raise UsageError(f"invalid --format {fmt!r}: use text or json")
    return fmt


def open_shell(name: str, workdir: str, *, jump: bool = False) -> None:
    """Replace this process with the system ssh client: a login shell in the project dir, agent
    forwarded (``jump``: through the engine's machine, with the user's ssh settings for it)."""
    from envbuild import ssh

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("Not a terminal: not opening a shell (pass --detach to skip this).", file=sys.stderr)
        return
    argv = ssh.ssh_command(name, f'cd {workdir} 2>/dev/null; exec "$SHELL" -l', tty=True, jump=jump)
    sys.stdout.flush()
    os.execv(argv[0], argv)


def run_options(
    host: str,
    gpus: str | None,
    no_gpu: bool,
    volume: list[str],
    shm_size: str | None,
    cpus: str | None,
    memory: str | None,
    remote_path: str | None = None,
) -> RunOptions:
    from envbuild.runtime.options import RunOptions

    return RunOptions(
        host=host, gpus=gpus, no_gpu=no_gpu, volumes=tuple(volume), shm_size=shm_size, cpus=cpus, memory=memory,
        remote_path=remote_path,
    )


def report(
    env: Environment, *, action: str, built: bool | None, image: str, fmt: str, refused: tuple[str, ...] = ()
) -> None:
    from envbuild.runtime import output

    for text in refused:
        print(f"refused: {text}", file=sys.stderr)
    if fmt == "json":
        typer.echo(output.up_json(env, action=action, built=built, image=image))
    else:
        verb = {"created": "Started", "recreated": "Recreated", "started": "Restarted", "attached": "Re-attached to"}
        print(f"{verb.get(action, action)} {env.name}.", file=sys.stderr)
        typer.echo(output.endpoints_text(env))


def fail_on_problems(problems: tuple[str, ...]) -> None:
    """A failed ``runtime.init`` or a service that does not stay up ends the command with exit 1
    (the environment keeps running, to be looked into)."""
    if problems:
        from envbuild.errors import RuntimeFailure

        raise RuntimeFailure("\n".join(problems))


def build_image(
    project: Path, file: str, function: str | None, *, ca_cert: str | None, fmt: str, locked: bool = False
) -> tuple[str, bool, Spec]:
    """Build (or find up to date) the project's image with the build API: (image tag, whether it built,
    the evaluated spec, whose Jupyter token the image does not hold)."""
    from envbuild.build import BuildOptions, build
    from envbuild.progress import make_progress

    options = BuildOptions(path=str(project / file), function=function, ca_cert=ca_cert, locked=locked)
    with make_progress("auto" if fmt == "text" else "plain", sys.stderr) as progress:
        result = build(options, on_event=progress, on_note=lambda note: print(f"note: {note}", file=sys.stderr))
    return result.tag, not result.up_to_date, result.spec


@app.command()
def up(
    path: Path = typer.Option(Path("."), "--path", "-p", help="Project directory (mounted in the environment)."),
    file: str = typer.Option(DEFAULT_FILE, "--file", "-f", help="Build file and function, FILE[:FUNCTION]."),
    name: str | None = typer.Option(None, "--name", help="Environment name (default: the directory name)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Do not open a shell; just start and print endpoints."),
    gpus: str | None = typer.Option(None, "--gpus", help="GPUs to attach: a count, 'all' or device=0,1."),
    no_gpu: bool = typer.Option(False, "--no-gpu", help="Attach no GPU even when the environment uses CUDA."),
    volume: list[str] = typer.Option([], "--volume", "-v", help="Extra bind mount HOST:CONTAINER[:ro] (repeatable)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Host address to publish ports on."),
    shm_size: str | None = typer.Option(None, "--shm-size", help="Shared memory, e.g. 2g (plain numbers are MB)."),
    cpus: str | None = typer.Option(None, "--cpus", help="CPU limit in cores, e.g. 2 or 0.5."),
    memory: str | None = typer.Option(None, "--memory", "-m", help="Memory limit, e.g. 8g."),
    force: bool = typer.Option(False, "--force", help="Recreate the environment even if it is running."),
    fmt: str = typer.Option("text", "--format", help="Output format: text or json."),
    ca_cert: Path | None = typer.Option(
        None, "--ca-cert", help="CA bundle build steps trust (TLS-inspecting proxies)."
    ),
    timeout: float = typer.Option(180.0, "--timeout", help="Seconds to wait for sshd and Jupyter, then init."),
    locked: bool = typer.Option(False, "--locked", help="Exit 2 unless build.envd.lock is fresh and pins it all."),
    runner: str | None = typer.Option(None, "--runner", help="docker or kubernetes (default: the context's runner)."),
    remote_path: str | None = typer.Option(
        None, "--remote-path",
        help="On another machine's engine (DOCKER_HOST=ssh://...): the project directory there, mounted "
        "instead of the volume `envbuild sync` fills.",
    ),
) -> None:
    """Build if needed, start the environment, print its endpoints, and open a shell in it."""
    from envbuild.runtime.options import check_options, name_from_dir, project_dir, validate_name

    check_format(fmt)
    project = project_dir(path)
    env_name = validate_name(name) if name is not None else name_from_dir(project)
    build_file, function = parse_file_func(file)
    if not (project / build_file).is_file():
        raise UsageError(f"no build file {build_file!r} in {project}; create one with `envbuild init`")
    if ca_cert is not None and not ca_cert.is_file():
        raise UsageError(f"--ca-cert {str(ca_cert)!r} is not a file")
    options = run_options(host, gpus, no_gpu, volume, shm_size, cpus, memory, remote_path)

    from envbuild.kube.commands import resolve_runner
    from envbuild.runtime import remote

    kubernetes = resolve_runner(runner) == "kubernetes"
    machine = None if kubernetes else remote.current()
    check_options(options, project, remote=machine is not None)

    if kubernetes:
        from envbuild.kube import commands as kube

        env = kube.up(
            project=project,
            build_file=build_file,
            function=function,
            name=env_name,
            options=options,
            force=force,
            fmt=fmt,
            ca_cert=str(ca_cert) if ca_cert else None,
            timeout=timeout,
            locked=locked,
        )
        if not detach:
            open_shell(env.name, env.workdir)
        return

    from envbuild.runtime import engine, lifecycle

    client = engine.connect()
    if machine is not None:
        lifecycle.remote_project(client, env_name, project, options, machine)  # before a build, not after
    if gpus is not None and not no_gpu:
        engine.check_gpu_support(client, machine.url if machine is not None else None)
    image, built, spec = build_image(
        project, build_file, function, ca_cert=str(ca_cert) if ca_cert else None, fmt=fmt, locked=locked
    )
    if fmt == "text":
        waiting = "sshd and Jupyter" if spec.dev else "its entrypoint (a serving image)"
        print(f"Starting {env_name} from {image}; waiting for {waiting}...", file=sys.stderr)
    token = (spec.jupyter.token or None) if spec.jupyter is not None else None
    result = lifecycle.bring_up(
        client,
        image=image,
        name=env_name,
        project=project,
        options=options,
        force=force,
        timeout=timeout,
        jupyter_token=token,
        spec=spec,
        remote=machine,
    )
    report(result.environment, action=result.action, built=built, image=image, fmt=fmt, refused=result.refused)
    fail_on_problems(result.problems)
    if not detach and not result.environment.serving:
        open_shell(result.environment.name, result.environment.workdir, jump=machine is not None)
