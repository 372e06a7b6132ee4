"""`envbuild ls|exec|destroy|images|run|prune`: the rest of an environment's life."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from envbuild.cli.app import app
from envbuild.cli.commands.up import check_format, fail_on_problems, open_shell, report, run_options
from envbuild.errors import RuntimeFailure, UsageError

if TYPE_CHECKING:
    from envbuild.runtime.engine import Environment


@app.command("ls")
def ls(
    fmt: str = typer.Option("text", "--format", help="Output format: text or json."),
    runner: str | None = typer.Option(None, "--runner", help="docker or kubernetes (default: the context's runner)."),
) -> None:
    """List environments (running and stopped)."""
    from envbuild.kube.commands import resolve_runner

    check_format(fmt)
    if resolve_runner(runner) == "kubernetes":
        from envbuild.kube import commands as kube

        kube.ls(fmt)
        return
    from envbuild.runtime import engine, output, remote, services

    client = engine.connect()
    with engine.answering():
        envs = engine.list_environments(client)
        programs = services.of_environments(client, envs)
    machine = remote.current()
    if machine is not None:
        envs = [remote.attach(e, machine, start=False) for e in envs]
    if fmt == "json":
        listed = [
            {**e.to_dict(), "programs": [{"name": p.name, "state": p.describe()} for p in programs[e.name]]}
            for e in envs
        ]
        typer.echo(json.dumps(listed, indent=2))
        return
    rows = [
        [
            e.name,
            _status(e.status, services.summary(programs[e.name])),
            "-" if e.serving else e.ssh_target,
            _jupyter_column(e),
            e.image,
            "yes" if e.gpu else "no",
        ]
        for e in envs
    ]
    typer.echo(output.table(rows, ["NAME", "STATUS", "SSH TARGET", "JUPYTER", "IMAGE", "GPU"]))


def _status(status: str, programs: str) -> str:
    """The container's status, and what its inits or services are doing when that is not all well."""
    return f"{status} ({programs})" if programs else status


def _jupyter_column(env: Environment) -> str:
    if env.jupyter_url:
        return env.jupyter_url
    if env.jump and env.endpoint("jupyter") and env.running:
        return f"(envbuild jupyter {env.name})"
    return "-"


def _running(name: str) -> Environment:
    """The running environment ``name``, with its SSH entry written (through the engine's machine
    when that is another one)."""
    from envbuild import ssh
    from envbuild.runtime import engine, options, remote

    options.validate_name(name)
    client = engine.connect()
    container = engine.find(client, name)
    if container is None:
        raise UsageError(f"no environment named {name!r}; see `envbuild ls`")
    env = engine.environment_from(container)
    if not env.running:
        raise RuntimeFailure(f"environment {name!r} is {env.status}; start it with `envbuild up`")
    endpoint = env.endpoint("ssh")
    if endpoint is None:
        raise RuntimeFailure(f"environment {name!r} publishes no SSH port")
    machine = remote.current()
    if machine is not None:
        env = remote.attach(env, machine, start=False)
    ssh.write_host(ssh.HostEntry(name, endpoint.host_port, options.connect_host(endpoint.host_ip), jump=env.jump))
    return env


@app.command("exec")
def exec_(
    name: str = typer.Argument(..., help="Environment name."),
    cmd: list[str] = typer.Argument(None, help="Command to run (after --)."),
    command: str | None = typer.Option(None, "--command", "-c", help="Run a named runtime.command instead."),
) -> None:
    """Run a command in an environment over SSH (in its project directory) and exit with its status."""
    from envbuild import ssh
    from envbuild.runtime import engine

    if bool(cmd) == bool(command):
        raise UsageError("give either a command after `--` or --command NAME (one of them)")
    env = _running(name)
    if command is not None:
        spec = engine.spec_label(env.labels)
        commands = spec.runtime.commands_dict if spec is not None else {}
        if command not in commands:
            known = ", ".join(sorted(commands)) or "none"
            raise UsageError(f"environment {name!r} has no runtime.command {command!r} (it has: {known})")
        remote = commands[command]
    else:
        remote = shlex.join(cmd)
    script = f"cd {shlex.quote(env.workdir)} 2>/dev/null; {remote}"
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    result = subprocess.run(ssh.ssh_command(name, script, tty=tty or None, agent=True, jump=env.jump is not None))
    raise typer.Exit(result.returncode)


@app.command()
def jupyter(
    name: str = typer.Argument(..., help="Environment name."),
    open_browser: bool = typer.Option(False, "--open", help="Also open it in the web browser."),
) -> None:
    """Print the environment's Jupyter URL (with its token); on another machine's engine, start the
    local port forward to it first."""
    from envbuild.runtime import remote

    env = _running(name)
    if env.endpoint("jupyter") is None:
        raise UsageError(f"environment {name!r} runs no Jupyter (config.jupyter() in its build file)")
    machine = remote.current()
    if machine is not None:
        env = remote.attach(env, machine, start=True)
    url = env.jupyter_url
    assert url is not None
    typer.echo(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)


@app.command()
def destroy(
    path: Path | None = typer.Option(None, "--path", "-p", help="Project directory whose environment to remove."),
    name: str | None = typer.Option(None, "--name", "-n", help="Environment name."),
    image: bool = typer.Option(False, "--image", help="Also remove the environment's image."),
    runner: str | None = typer.Option(None, "--runner", help="docker or kubernetes (default: the context's runner)."),
    volumes: bool = typer.Option(
        False, "--volumes",
        help="Kubernetes: also delete the workspace claim (its files); another machine's engine: also the "
        "project volume `envbuild sync` filled (this machine's files stay).",
    ),
) -> None:
    """Stop and remove an environment and its SSH entry (and its Jupyter forward). Project files are never
    touched."""
    from envbuild.kube.commands import resolve_runner
    from envbuild.runtime.options import name_from_dir, project_dir, validate_name

    if path is not None and name is not None:
        raise UsageError("give --path or --name, not both")
    env_name = validate_name(name) if name is not None else name_from_dir(project_dir(path or Path(".")))
    if resolve_runner(runner) == "kubernetes":
        if image:
            raise UsageError("--image removes a local image; with the kubernetes runner the image is in the registry")
        from envbuild.kube import commands as kube

        kube.destroy(env_name, volumes=volumes)
        return
    from envbuild.runtime import engine, lifecycle, remote

    machine = remote.current()
    if volumes and machine is None:
        raise UsageError(
            "--volumes applies to the kubernetes runner (its workspace claim) and to another machine's engine "
            "(the synced project volume); a Docker environment's project directory here is a bind mount and is "
            "never deleted"
        )
    client = engine.connect()
    env, removed_image = lifecycle.destroy(client, env_name, remove_image=image)
    if volumes:
        removed = lifecycle.remove_project_volume(client, env_name)
        if removed:
            print(f"Removed the volume {removed} on {machine.jump if machine else 'the engine'}.", file=sys.stderr)
    if env is None:
        print(f"No environment named {env_name!r}; removed its SSH entry if there was one.", file=sys.stderr)
        return
    typer.echo(f"Removed environment {env_name}" + (f" and image {removed_image}" if removed_image else "") + ".")


@app.command()
def images(fmt: str = typer.Option("text", "--format", help="Output format: text or json.")) -> None:
    """List envbuild images."""
    from envbuild.runtime import output

    check_format(fmt)
    from envbuild.runtime import engine

    with engine.answering():
        client = engine.connect()
        found = client.images.list(filters={"label": "ai.envbuild.vendor=envbuild"})
    rows = []
    for img in found:
        labels = engine.image_labels(img)
        rows.append(
            {
                "tags": img.tags,
                "id": img.short_id.split(":")[-1],
                "project": labels.get("ai.envbuild.project", ""),
                "dev": labels.get("ai.envbuild.dev") == "true",
                "gpu": labels.get("ai.envbuild.gpu") == "true",
                "created": img.attrs.get("Created", "")[:19].replace("T", " "),
                "size_mb": round(img.attrs.get("Size", 0) / 1e6),
            }
        )
    rows.sort(key=lambda r: r["created"], reverse=True)
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    table = [
        [
            ", ".join(r["tags"]) or "<none>",
            r["id"],
            r["project"],
            "yes" if r["gpu"] else "no",
            r["created"],
            f"{r['size_mb']} MB",
        ]
        for r in rows
    ]
    typer.echo(output.table(table, ["IMAGE", "ID", "PROJECT", "GPU", "CREATED", "SIZE"]))


@app.command()
def run(
    command: list[str] = typer.Argument(None, help="A serving image's arguments for its entrypoint (after --)."),
    image: str = typer.Option(..., "--image", "-i", help="An envbuild image (local store)."),
    name: str | None = typer.Option(None, "--name", help="Environment name (default: the image's project)."),
    path: Path | None = typer.Option(None, "--path", "-p", help="Project directory to mount (optional)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Do not open a shell."),
    gpus: str | None = typer.Option(None, "--gpus", help="GPUs to attach: a count, 'all' or device=0,1."),
    no_gpu: bool = typer.Option(False, "--no-gpu", help="Attach no GPU."),
    volume: list[str] = typer.Option([], "--volume", "-v", help="Extra bind mount HOST:CONTAINER[:ro] (repeatable)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Host address to publish ports on."),
    shm_size: str | None = typer.Option(None, "--shm-size", help="Shared memory, e.g. 2g."),
    cpus: str | None = typer.Option(None, "--cpus", help="CPU limit in cores."),
    memory: str | None = typer.Option(None, "--memory", "-m", help="Memory limit, e.g. 8g."),
    force: bool = typer.Option(False, "--force", help="Recreate the environment if it exists."),
    fmt: str = typer.Option("text", "--format", help="Output format: text or json."),
    timeout: float = typer.Option(180.0, "--timeout", help="Seconds to wait for sshd and Jupyter, then init."),
) -> None:
    """Start an environment from an image someone else built (settings from its spec label, checked
    like a build file: host directories only with -v, addresses only with --host). A serving image
    (base(dev=False)) runs its own entrypoint, with the arguments after -- if any."""
    from envbuild.runtime import engine, lifecycle, remote
    from envbuild.runtime.options import check_options, name_from_dir, project_dir, validate_name

    check_format(fmt)
    project = project_dir(path) if path is not None else None
    options = run_options(host, gpus, no_gpu, volume, shm_size, cpus, memory)
    machine = remote.current()
    check_options(options, project or Path.cwd(), remote=machine is not None)
    if name is not None:
        validate_name(name)
    client = engine.connect()
    labels = engine.image_labels(engine.get_image(client, image))
    if name is not None:
        env_name = name
    elif project is not None:
        env_name = name_from_dir(project)
    else:
        env_name = name_from_dir(Path(labels.get("ai.envbuild.project") or image.split("/")[-1].split(":")[0]))
    result = lifecycle.bring_up(
        client,
        image=image,
        name=env_name,
        project=project,
        options=options,
        force=force,
        timeout=timeout,
        remote=machine,
        command=tuple(command or ()),
    )
    report(result.environment, action=result.action, built=None, image=image, fmt=fmt, refused=result.refused)
    fail_on_problems(result.problems)
    if not detach and not result.environment.serving:
        open_shell(result.environment.name, result.environment.workdir, jump=machine is not None)


@app.command()
def prune(
    build_cache: bool = typer.Option(
        False,
        "--build-cache",
        help="Also prune envbuild's unused build cache records. BuildKit keeps no owner per record: on a "
        "shared engine that is every envbuild user's unused records, never another tool's.",
    ),
) -> None:
    """Remove your dangling envbuild images and SSH entries of environments that no longer exist
    (never other users' images, nor build cache envbuild did not make)."""
    from envbuild import ssh
    from envbuild.kube import forward
    from envbuild.runtime import engine, remote
    from envbuild.runtime.prune import prune as prune_engine

    with engine.answering():
        client = engine.connect()
        existing = {e.name for e in engine.list_environments(client)}
        machine = remote.current()
        entries = ssh.hosts_through(machine.jump if machine is not None else None)  # this engine's only
        stale = [n for n in entries if n not in existing and forward.running_pid(n) is None]
        for n in stale:
            ssh.remove_host(n)
        pruned = prune_engine(client, build_cache=build_cache)
    typer.echo(
        f"Removed {len(pruned.images)} dangling image(s)"
        + (f", {pruned.cache_records} build cache record(s)" if build_cache else "")
        + f", {len(stale)} stale SSH entr{'y' if len(stale) == 1 else 'ies'}"
        + (f" ({', '.join(stale)})" if stale else "")
        + f"; reclaimed {pruned.reclaimed / 1e6:.0f} MB."
    )
