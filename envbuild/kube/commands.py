"""The Kubernetes runner behind `envbuild up|destroy|ls` (``--runner kubernetes`` or the context's).

`up`: build and push to the context's registry, pin the Pod's image by the pushed digest, create the
objects, wait, copy the project in, start the background forwarder (`envbuild.kube.forward`), write
the SSH entry for its local port and print the endpoints as the Docker runner does. The cluster is
reached only through `envbuild.kube.runner.load_core_api` and `new_runner`, which tests replace.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.errors import RuntimeFailure, UsageError

if TYPE_CHECKING:
    from envbuild.build import BuildResult
    from envbuild.contexts import Context, KubernetesSettings
    from envbuild.kube.runner import KubernetesRunner
    from envbuild.runtime.engine import Environment
    from envbuild.runtime.options import RunOptions

__all__ = ["resolve_runner", "up", "destroy", "ls", "pushed_digest", "pod_resources", "new_runner"]

new_runner: Callable[[Any], KubernetesRunner] | None = None
"""Makes the runner for a ``CoreV1Api`` (None: `KubernetesRunner`); tests swap it to inject fakes."""

CREATE_HINT = (
    "envbuild context create NAME --runner kubernetes --registry REGISTRY/PATH "
    "[--namespace NS] [--kube-context CTX] --use"
)


def resolve_runner(runner: str | None) -> str:
    """``--runner`` when given, else the current context's runner."""
    from envbuild.contexts import RUNNER_KINDS, ContextStore

    if runner is not None:
        if runner not in RUNNER_KINDS:
            raise UsageError(f"invalid --runner {runner!r}: use one of {', '.join(RUNNER_KINDS)}")
        return runner
    return ContextStore().current().runner


def _context() -> tuple[Context, KubernetesSettings]:
    from envbuild.contexts import ContextStore, KubernetesSettings

    ctx = ContextStore().current()
    return ctx, ctx.kubernetes or KubernetesSettings()


def connect(settings: KubernetesSettings) -> KubernetesRunner:
    """The runner for the context's cluster, after one call that proves the API server answers."""
    from envbuild.kube import runner as runner_mod

    runner = (new_runner or runner_mod.KubernetesRunner)(runner_mod.load_core_api(settings))
    runner.preflight(settings.namespace)
    return runner


def pushed_digest(result: BuildResult, ref: str) -> str:
    """The manifest digest the registry reported for ``ref`` (engine push), else the image
    exporter's (a BuildKit daemon pushing itself)."""
    fallback = ""
    for outcome in result.outcomes:
        for pushed in getattr(outcome, "pushed", ()):
            if pushed.name == ref:
                return str(pushed.digest)
            fallback = fallback or str(pushed.digest)
    if fallback:
        return fallback
    for outcome in result.outcomes:
        response = getattr(outcome.result, "exporter_response", None) or {}
        digest = response.get("containerimage.digest")
        if digest:
            return str(digest)
    raise RuntimeFailure(f"the build of {ref} reported no pushed digest; was it pushed? (try `envbuild build --push`)")


def spec_ports(spec: Any) -> tuple[tuple[str, int], ...]:
    """The ports an image built from ``spec`` exposes (what its ``ai.envbuild.ports`` label says),
    for builders whose images never reach the local engine."""
    from envbuild.kube.manifests import JUPYTER_PORT, SSH_PORT

    ports: list[tuple[str, int]] = []
    if spec.dev:
        ports.append(("ssh", SSH_PORT))
        if spec.jupyter:
            ports.append(("jupyter", JUPYTER_PORT))
    for e in spec.runtime.exposes:
        ports.append((e.service or f"port-{e.envd_port}", e.envd_port))
    return tuple(ports)


def _quantity_bytes(n: int) -> str:
    for unit, size in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


@dataclass(frozen=True, slots=True)
class PodResources:
    gpus: int
    cpu: str | None
    memory: str | None
    shm_size: str
    note: str = ""


def pod_resources(options: RunOptions, *, image_gpu: bool, spec: Any) -> PodResources:
    """The Docker runner's rules (`--gpus`/CUDA, `--shm-size`, `--cpus`, `--memory`) as Pod resources."""
    from envbuild.runtime.options import (
        DEFAULT_SHM_MB,
        gpu_request,
        parse_cpus,
        parse_size,
    )

    gpu = gpu_request(
        image_gpu=image_gpu,
        spec_count=spec.gpu.count if spec.gpu is not None else None,
        gpus=options.gpus,
        no_gpu=options.no_gpu,
    )
    note = ""
    if gpu is None:
        gpus = 0
    elif gpu.device_ids:
        raise UsageError(
            "--gpus device=... names devices of this machine; on Kubernetes give a count "
            "(--gpus 1): the scheduler picks a node and its devices"
        )
    elif gpu.count == -1 and options.gpus is None:
        gpus = 1
        note = "requesting 1 GPU (the image uses CUDA); pass --gpus N for more"
    else:
        gpus = gpu.count
    cpu = None
    if options.cpus:
        parse_cpus(options.cpus)
        value = float(options.cpus)
        cpu = str(int(value)) if value == int(value) else f"{round(value * 1000)}m"
    memory = _quantity_bytes(parse_size(options.memory, what="--memory")) if options.memory else None
    if options.shm_size:
        shm = _quantity_bytes(parse_size(options.shm_size, what="--shm-size", default_unit="m"))
    elif spec.shm_size is not None:
        shm = f"{spec.shm_size.size_mb}Mi"
    else:
        shm = f"{DEFAULT_SHM_MB}Mi"
    return PodResources(gpus, cpu, memory, shm, note)


def _build_and_push(
    project: Path,
    build_file: str,
    function: str | None,
    *,
    registry: str,
    local_tag: str,
    ca_cert: str | None,
    fmt: str,
    locked: bool,
) -> BuildResult:
    from envbuild import build as build_api
    from envbuild.kube.manifests import image_for_registry, kube_build_options
    from envbuild.progress import make_progress

    ref = image_for_registry(registry, local_tag)
    options = build_api.BuildOptions(
        path=str(project / build_file),
        function=function,
        ca_cert=ca_cert,
        locked=locked,
        tag=ref,
        outputs=kube_build_options(registry, local_tag),
    )
    with make_progress("auto" if fmt == "text" else "plain", sys.stderr) as progress:
        return build_api.build(options, on_event=progress, on_note=lambda note: print(f"note: {note}", file=sys.stderr))


def _environment(
    name: str,
    *,
    image: str,
    digest: str,
    project: Path,
    workdir: str,
    gpus: int,
    token: str | None,
    ports: tuple[tuple[str, int], ...],
    host: str,
    local: Mapping[int, int],
    pod: str,
) -> Environment:
    from envbuild.runtime.engine import Endpoint, Environment

    endpoints = tuple(Endpoint(n, p, host, local[p]) for n, p in ports if p in local)
    return Environment(
        name=name,
        container_id=pod,
        status="running",
        image=image,
        image_id=digest,
        project_path=str(project),
        workdir=workdir,
        gpu=gpus > 0,
        jupyter_token=token,
        endpoints=endpoints,
    )


def up(
    *,
    project: Path,
    build_file: str,
    function: str | None,
    name: str,
    options: RunOptions,
    force: bool,
    fmt: str,
    ca_cert: str | None,
    timeout: float,
    locked: bool,
) -> Environment:
    """`envbuild up` on Kubernetes; returns the environment (endpoints on the local forwarder)."""
    import json
    import secrets

    from envbuild import images, ssh
    from envbuild.kube import forward
    from envbuild.kube.manifests import (
        PodRequest,
        image_for_registry,
        ports_from_labels,
    )
    from envbuild.kube.runner import kube_up
    from envbuild.runtime import output
    from envbuild.runtime.options import connect_host, project_name

    ctx, settings = _context()
    if not settings.registry:
        raise UsageError(
            f"context {ctx.name!r} names no registry for the kubernetes runner (the cluster pulls the image "
            f"from there); create one: {CREATE_HINT}"
        )
    if options.volumes:
        raise UsageError(
            "--volume is not supported by the kubernetes runner (the pod runs on a cluster node); "
            "the project directory is copied into the pod's workspace"
        )
    if options.gpus is not None and not options.no_gpu:
        from envbuild.runtime.options import parse_gpus

        asked = parse_gpus(options.gpus)
        if asked.count == -1 or asked.device_ids:
            raise UsageError(
                "Kubernetes cannot request 'all' GPUs or named devices: give a count (--gpus 1); "
                "the scheduler picks a node and its devices"
            )
    runner = connect(settings)
    label = project_name((project / build_file).parent)
    local_tag = f"{label.lower()}:dev"
    ref = image_for_registry(settings.registry, local_tag)
    if fmt == "text":
        print(
            f"Building {ref} and pushing it for the cluster (context {ctx.name}, namespace {settings.namespace})...",
            file=sys.stderr,
        )
    result = _build_and_push(
        project,
        build_file,
        function,
        registry=settings.registry,
        local_tag=local_tag,
        ca_cert=ca_cert,
        fmt=fmt,
        locked=locked,
    )
    digest = pushed_digest(result, ref)
    image = f"{ref}@{digest}"
    spec = result.spec
    labels = images.image_labels(ref) or {}
    ports = ports_from_labels(labels) if labels.get("ai.envbuild.ports") else spec_ports(spec)
    image_gpu = labels.get("ai.envbuild.gpu") == "true" if labels else bool(spec.gpu_enabled)
    res = pod_resources(options, image_gpu=image_gpu, spec=spec)
    if res.note and fmt == "text":
        print(f"note: {res.note}", file=sys.stderr)
    req = PodRequest(
        name=name,
        image=image,
        project=labels.get("ai.envbuild.project") or label,
        namespace=settings.namespace,
        ports=ports,
        gpus=res.gpus,
        cpu=res.cpu,
        memory=res.memory,
        shm_size=res.shm_size,
    )
    wanted = (spec.jupyter.token or None) if spec.jupyter is not None else None
    current = runner.current_token(req)
    token = wanted or current or secrets.token_urlsafe(24)
    recreate = force or (current is not None and token != current)
    if fmt == "text":
        print(
            f"Starting {name} as pod {settings.namespace}/{req.object_name} from {image}; waiting for it...",
            file=sys.stderr,
        )
    kube = kube_up(
        runner,
        req,
        authorized_keys=ssh.ensure_keypair().public_key(),
        jupyter_token=token,
        project_dir=project,
        timeout=timeout,
        recreate=recreate,
        forward=False,
    )
    if kube.synced_files is not None and fmt == "text":
        print(f"Copied {kube.synced_files} project file(s) into {req.workdir}.", file=sys.stderr)
    host = connect_host(options.host)
    addresses, pid = forward.start(
        forward.ForwardSpec(
            name=name,
            namespace=settings.namespace,
            ports=req.ports,
            kube_context=settings.kube_context,
            kubeconfig=settings.kubeconfig,
            host=options.host,
        )
    )
    if kube.action != "unchanged":
        ssh.forget_host_key(name)
    ssh.write_host(ssh.HostEntry(name, addresses[2222], host))
    has_jupyter = any(n == "jupyter" for n, _ in req.ports)
    env = _environment(
        name,
        image=image,
        digest=digest,
        project=project,
        workdir=req.workdir,
        gpus=res.gpus,
        token=token if has_jupyter else None,
        ports=req.ports,
        host=options.host,
        local=addresses,
        pod=f"{settings.namespace}/{req.object_name}",
    )
    action = {"unchanged": "attached"}.get(kube.action, kube.action)
    if fmt == "json":
        data = json.loads(output.up_json(env, action=action, built=not result.up_to_date, image=image))
        data["runner"] = "kubernetes"
        data["kubernetes"] = {
            "context": ctx.name,
            "namespace": settings.namespace,
            "pod": req.object_name,
            "node": kube.state.node,
            "forwarder_pid": pid,
        }
        print(json.dumps(data, indent=2))
    else:
        verb = {"created": "Started", "recreated": "Recreated", "attached": "Re-attached to"}
        print(f"{verb.get(action, action)} {name} on {kube.state.node or 'the cluster'}.", file=sys.stderr)
        print(output.endpoints_text(env))
        print(
            f"Port forwarding runs in the background (pid {pid}) until `envbuild destroy --name {name}`; "
            f"if it stops, run `envbuild up` again.",
            file=sys.stderr,
        )
    return env


def destroy(name: str, *, volumes: bool) -> bool:
    """Delete the Pod and Secret (the workspace claim only with ``volumes``), stop the forwarder,
    remove the SSH entry; returns whether a pod existed."""
    from envbuild import ssh
    from envbuild.kube import forward
    from envbuild.kube.runner import PodRef

    ctx, settings = _context()
    runner = connect(settings)
    ref = PodRef(name, settings.namespace)
    existed = runner.status(ref) is not None
    runner.delete(ref, delete_workspace=volumes)
    forward.stop(name)
    ssh.remove_host(name)
    where = f"{settings.namespace}/{ref.object_name}"
    if existed:
        kept = "" if volumes else f"; kept its workspace claim {ref.object_name}-workspace (--volumes deletes it)"
        print(f"Removed environment {name} (pod {where}, context {ctx.name}){kept}.")
    else:
        print(
            f"No pod {where} in context {ctx.name}; removed its secret, forwarder and SSH entry if there were any.",
            file=sys.stderr,
        )
    return existed


def ls(fmt: str) -> None:
    """The context's envbuild pods (by label), with the local forward when one runs."""
    import json

    from envbuild import ssh
    from envbuild.kube import forward
    from envbuild.runtime import output

    ctx, settings = _context()
    runner = connect(settings)
    rows: list[dict[str, Any]] = []
    for pod in runner.list_environments(settings.namespace):
        state = pod.state
        status = "running" if state.phase == "Running" and state.ready else state.phase.lower()
        fwd = forward.read_state(pod.name) if forward.running_pid(pod.name) else None
        local = forward.addresses(fwd)
        rows.append(
            {
                "name": pod.name,
                "status": status,
                "namespace": settings.namespace,
                "pod": state.name,
                "node": state.node,
                "image": state.image,
                "gpus": pod.gpus,
                "project": pod.labels.get("ai.envbuild.project"),
                "ssh": {"target": ssh.host_alias(pod.name), "port": local[2222]} if 2222 in local else None,
                "jupyter_port": local.get(8888),
            }
        )
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    table = [
        [
            r["name"],
            r["status"],
            r["ssh"]["target"] if r["ssh"] else "- (no forwarder: envbuild up)",
            f"127.0.0.1:{r['jupyter_port']}" if r["jupyter_port"] else "-",
            r["image"],
            str(r["gpus"]) if r["gpus"] else "no",
            r["node"] or "-",
        ]
        for r in rows
    ]
    print(output.table(table, ["NAME", "STATUS", "SSH TARGET", "JUPYTER", "IMAGE", "GPU", "NODE"]))
    if not rows:
        print(f"(no envbuild pods in namespace {settings.namespace}, context {ctx.name})", file=sys.stderr)
