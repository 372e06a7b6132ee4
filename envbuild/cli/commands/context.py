"""`envbuild context create|ls|use|rm|inspect`: named builders and runners."""

from __future__ import annotations

import json
from collections.abc import Sequence

import typer

from envbuild.cli.app import app

context_app = typer.Typer(
    name="context",
    help="Manage contexts: which BuildKit builder envbuild uses and where environments run.",
    no_args_is_help=True,
)
app.add_typer(context_app, name="context")


@context_app.command("create")
def create(
    name: str = typer.Argument(..., help="Context name (letters, digits, '_', '.', '-')."),
    builder: str = typer.Option(
        "docker", "--builder", "-b", help="Builder kind: docker, unix, tcp, docker-container or kube-pod."
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="Builder address: engine socket/tcp for docker, socket path for unix, HOST:PORT for tcp, "
        "container name for docker-container, POD[?namespace=NS&context=CTX] for kube-pod.",
    ),
    docker: str | None = typer.Option(
        None,
        "--docker",
        help="The Docker engine to build and run on: ssh://\\[USER@]HOST\\[:PORT] (another machine, through "
        "your ssh client and ~/.ssh/config), tcp://HOST:PORT or unix:///PATH.",
    ),
    tls_ca: str | None = typer.Option(None, "--tls-ca", help="CA bundle to verify a tcp buildkitd."),
    tls_cert: str | None = typer.Option(None, "--tls-cert", help="Client certificate for a tcp buildkitd."),
    tls_key: str | None = typer.Option(None, "--tls-key", help="Client key for a tcp buildkitd."),
    tls_server_name: str | None = typer.Option(
        None, "--tls-server-name", help="Server name to verify instead of the address's host."
    ),
    runner: str = typer.Option("docker", "--runner", help="Where `envbuild up` runs: docker or kubernetes."),
    namespace: str | None = typer.Option(None, "--namespace", help="Kubernetes namespace (runner kubernetes)."),
    kube_context: str | None = typer.Option(
        None, "--kube-context", help="kubeconfig context to use (runner kubernetes)."
    ),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", help="kubeconfig file (runner kubernetes)."),
    registry: str | None = typer.Option(
        None, "--registry", help="Registry (host\\[:port]\\[/path]) the cluster pulls environment images from."
    ),
    description: str = typer.Option("", "--description", help="A note shown by `context ls`."),
    use: bool = typer.Option(False, "--use", help="Make it the current context."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing context of that name."),
) -> None:
    """Create a context."""
    from envbuild.contexts import ContextStore, KubernetesSettings, TLSPaths, make_context
    from envbuild.errors import UsageError

    if docker is not None:
        if builder != "docker" or address is not None:
            raise UsageError("--docker names the engine of a docker builder: give it without --builder/--address")
        address = docker

    tls = None
    if any(v is not None for v in (tls_ca, tls_cert, tls_key, tls_server_name)):
        tls = TLSPaths(ca=tls_ca, cert=tls_cert, key=tls_key, server_name=tls_server_name)
    kube = None
    if any(v is not None for v in (namespace, kube_context, kubeconfig, registry)) or runner == "kubernetes":
        kube = KubernetesSettings(
            namespace=namespace or "default", kube_context=kube_context, kubeconfig=kubeconfig, registry=registry
        )
    ctx = make_context(
        name, builder=builder, address=address, tls=tls, runner=runner, kubernetes=kube, description=description
    )
    ContextStore().create(ctx, use=use, overwrite=force)
    typer.echo(f"created context {name!r}: {ctx.builder} builder at {ctx.address}" + (" (now current)" if use else ""))


@context_app.command("ls")
def ls(
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """List contexts, envbuild's and the docker CLI's; the current ones are marked with '*'."""
    from envbuild.contexts import ContextStore
    from envbuild.errors import UsageError
    from llb import dockerhost

    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt!r}: choose table or json")
    store = ContextStore()
    current = store.current_name()
    contexts = store.list()
    docker_contexts = dockerhost.list_contexts()
    try:
        docker_current = dockerhost.current_context_name()
    except dockerhost.DockerContextError:
        docker_current = ""
    if fmt == "json":
        listed = [{**c.to_json(), "source": "envbuild", "current": c.name == current} for c in contexts]
        listed += [
            {"name": d.name, "source": "docker", "engine": d.host, "description": d.description,
             "current": d.name == docker_current}
            for d in docker_contexts
        ]
        typer.echo(json.dumps(listed, indent=2))
        return
    rows = [("NAME", "BUILDER", "ADDRESS", "RUNNER", "DESCRIPTION")]
    for c in contexts:
        runner = c.runner
        if c.kubernetes is not None:
            runner += f" ({c.kubernetes.namespace})"
        rows.append((c.name + (" *" if c.name == current else ""), c.builder, c.address, runner, c.description))
    _table(rows)
    if docker_contexts:
        typer.echo("\nDocker contexts (the default context builds and runs on the docker CLI's current one, "
                   "unless DOCKER_HOST is set):")
        _table([("DOCKER CONTEXT", "ENGINE", "DESCRIPTION")]
               + [(d.name + (" *" if d.name == docker_current else ""), d.host, d.description)
                  for d in docker_contexts])


def _table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)) + "  " + r[-1])


@context_app.command("use")
def use_(name: str = typer.Argument(..., help="Context to make current.")) -> None:
    """Make a context the current one."""
    from envbuild.contexts import ContextStore

    ctx = ContextStore().use(name)
    typer.echo(f"current context is now {name!r} ({ctx.builder} builder at {ctx.address})")


@context_app.command("rm")
def rm(
    names: list[str] = typer.Argument(..., help="Contexts to remove."),
    force: bool = typer.Option(False, "--force", "-f", help="Also remove the current context (falls back to default)."),
) -> None:
    """Remove contexts."""
    from envbuild.contexts import ContextStore

    store = ContextStore()
    for name in names:
        store.remove(name, force=force)
        typer.echo(f"removed context {name!r}")


@context_app.command("inspect")
def inspect(name: str | None = typer.Argument(None, help="Context (default: the current one).")) -> None:
    """Print a context as JSON."""
    from envbuild.contexts import ContextStore

    store = ContextStore()
    ctx = store.get(name) if name else store.current()
    typer.echo(json.dumps({**ctx.to_json(), "current": ctx.name == store.current_name()}, indent=2))
