"""Kubernetes objects for an envbuild environment, as plain dicts.

Plain dicts (not the client's model classes) keep this module free of the optional `kubernetes`
package: the official client accepts them as request bodies, `kubectl apply -f` accepts them as
YAML/JSON, and tests compare them directly. One environment is a Secret (SSH keys, Jupyter token),
a Pod (the image pushed to the team's registry, GPUs as ``nvidia.com/gpu`` limits, readiness on the
SSH port) and, for a persistent workspace, a PersistentVolumeClaim for the project directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from envbuild.errors import UsageError

__all__ = [
    "WORKSPACE_MODES",
    "PodRequest",
    "k8s_name",
    "label_value",
    "object_names",
    "secret_manifest",
    "pvc_manifest",
    "pod_manifest",
    "manifests",
    "image_for_registry",
    "ports_from_labels",
    "kubectl_port_forward_argv",
    "kube_build_options",
]

HOME = "/home/envd"
SSH_PORT = 2222
JUPYTER_PORT = 8888
ENV_AUTHORIZED_KEYS = "ENVBUILD_AUTHORIZED_KEYS"
ENV_JUPYTER_TOKEN = "ENVBUILD_JUPYTER_TOKEN"
MANAGED_BY = "envbuild"
LABEL_NAME = "ai.envbuild.name"
LABEL_PROJECT = "ai.envbuild.project"
WORKSPACE_MODES: tuple[str, ...] = ("pvc", "sync", "none")

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_RESOURCE_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _has_registry(image: str) -> bool:
    first, sep, _ = image.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def k8s_name(text: str, *, max_len: int = 63) -> str:
    """A DNS-1123 label from an environment name (lowercase, ``_``/``.`` become ``-``)."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    out = re.sub(r"-{2,}", "-", out)[:max_len].rstrip("-")
    if not out:
        raise UsageError(f"cannot make a Kubernetes name from {text!r}: use letters and digits")
    return out


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars of ``[A-Za-z0-9._-]``, alphanumeric at both ends)."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", out)


def _quantity(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    v = str(value).strip()
    if not _QUANTITY.match(v):
        raise UsageError(f"{what} {value!r} is not a Kubernetes quantity (e.g. 4, 500m, 16Gi)")
    return v


@dataclass(frozen=True, slots=True)
class PodRequest:
    """Everything that decides the objects of one environment on a cluster."""

    name: str
    image: str
    project: str
    namespace: str = "default"
    ports: tuple[tuple[str, int], ...] = (("ssh", SSH_PORT),)
    gpus: int = 0
    gpu_resource: str = "nvidia.com/gpu"
    cpu: str | None = None
    memory: str | None = None
    shm_size: str | None = "2Gi"
    workspace: str = "pvc"
    workspace_size: str = "20Gi"
    storage_class: str | None = None
    image_pull_secret: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "node_selector", MappingProxyType(dict(self.node_selector)))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "ports", tuple((str(n), int(p)) for n, p in self.ports))
        if not self.image or any(c.isspace() for c in self.image):
            raise UsageError(f"invalid image {self.image!r} for the pod")
        if not _has_registry(self.image):
            raise UsageError(
                f"image {self.image!r} has no registry host: the cluster cannot pull an image that "
                "exists only in your local engine; set the context's --registry (e.g. registry.example.com/team)"
            )
        if not _PROJECT.match(self.project):
            raise UsageError(f"invalid project name {self.project!r}")
        if self.gpus < 0:
            raise UsageError(
                "Kubernetes cannot request 'all' GPUs: give a count (--gpus 1); "
                "the scheduler picks a node that has them"
            )
        if not _RESOURCE_NAME.match(self.gpu_resource):
            raise UsageError(f"invalid GPU resource name {self.gpu_resource!r} (e.g. nvidia.com/gpu)")
        if self.workspace not in WORKSPACE_MODES:
            raise UsageError(f"workspace {self.workspace!r}: choose one of {', '.join(WORKSPACE_MODES)}")
        _quantity(self.cpu, "--cpus")
        _quantity(self.memory, "--memory")
        _quantity(self.shm_size, "--shm-size")
        _quantity(self.workspace_size, "workspace size")
        for pname, port in self.ports:
            if not 0 < port < 65536:
                raise UsageError(f"port {pname}={port} is out of range")
        if SSH_PORT not in [p for _, p in self.ports]:
            raise UsageError("the image exposes no SSH port 2222; is it an envbuild dev image?")

    @property
    def object_name(self) -> str:
        return k8s_name(self.name)

    @property
    def workdir(self) -> str:
        return f"{HOME}/{self.project}"


class _Named(Protocol):
    @property
    def object_name(self) -> str: ...


def object_names(req: _Named) -> dict[str, str]:
    """The Pod's, Secret's and workspace claim's names of an environment (a request or a reference)."""
    base = req.object_name
    return {"pod": base, "secret": f"{base}-envbuild"[:253], "pvc": f"{base}-workspace"[:253]}


def _labels(req: PodRequest) -> dict[str, str]:
    labels = {k: label_value(v) for k, v in req.labels.items()}
    labels.update(
        {
            "app.kubernetes.io/name": "envbuild-environment",
            "app.kubernetes.io/instance": req.object_name,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            LABEL_NAME: label_value(req.name),
            LABEL_PROJECT: label_value(req.project),
        }
    )
    return labels


def _meta(req: PodRequest, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": req.namespace, "labels": _labels(req)}


def secret_manifest(req: PodRequest, *, authorized_keys: str, jupyter_token: str) -> dict[str, Any]:
    """Credentials the entrypoint reads from the environment; a Secret keeps them out of the Pod spec."""
    if not authorized_keys.strip():
        raise UsageError("no SSH public key to authorise: sshd in the environment would accept nobody")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(req, object_names(req)["secret"]),
        "type": "Opaque",
        "stringData": {"authorized_keys": authorized_keys, "jupyter_token": jupyter_token},
    }


def pvc_manifest(req: PodRequest) -> dict[str, Any]:
    """The persistent project directory (survives `down`/`up`; deleted only on request)."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": req.workspace_size}},
    }
    if req.storage_class:
        spec["storageClassName"] = req.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(req, object_names(req)["pvc"]),
        "spec": spec,
    }


def _port_name(name: str, port: int, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:15].strip("-") or f"p{port}"
    if not re.search(r"[a-z]", base):
        base = ("p" + base)[:15]
    out = base
    i = 2
    while out in used:
        out = f"{base[:12]}-{i}"
        i += 1
    used.add(out)
    return out


def pod_manifest(req: PodRequest) -> dict[str, Any]:
    names = object_names(req)
    secret_env = [
        {
            "name": ENV_AUTHORIZED_KEYS,
            "valueFrom": {"secretKeyRef": {"name": names["secret"], "key": "authorized_keys"}},
        },
        {"name": ENV_JUPYTER_TOKEN, "valueFrom": {"secretKeyRef": {"name": names["secret"], "key": "jupyter_token"}}},
    ]
    used: set[str] = set()
    ports = [
        {"name": _port_name(n, p, used), "containerPort": p, "protocol": "TCP"} for n, p in dict.fromkeys(req.ports)
    ]
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if req.gpus:
        limits[req.gpu_resource] = str(req.gpus)
    if req.cpu:
        limits["cpu"] = requests["cpu"] = req.cpu
    if req.memory:
        limits["memory"] = requests["memory"] = req.memory
    resources: dict[str, Any] = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if req.workspace == "pvc":
        volumes.append({"name": "workspace", "persistentVolumeClaim": {"claimName": names["pvc"]}})
        mounts.append({"name": "workspace", "mountPath": req.workdir})
    elif req.workspace == "sync":
        volumes.append({"name": "workspace", "emptyDir": {}})
        mounts.append({"name": "workspace", "mountPath": req.workdir})
    if req.shm_size:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": req.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    container: dict[str, Any] = {
        "name": "environment",
        "image": req.image,
        "imagePullPolicy": "Always",
        "env": [*secret_env, {"name": "ENVD_WORKDIR", "value": req.workdir}],
        "ports": ports,
        "workingDir": req.workdir,
        "securityContext": {"runAsUser": 0, "runAsGroup": 0},
        "readinessProbe": {
            "tcpSocket": {"port": SSH_PORT},
            "periodSeconds": 2,
            "failureThreshold": 3,
        },
        "volumeMounts": mounts,
    }
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Always",
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "volumes": volumes,
    }
    if req.gpus:
        spec["tolerations"] = [{"key": req.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}]
    if req.node_selector:
        spec["nodeSelector"] = dict(req.node_selector)
    if req.image_pull_secret:
        spec["imagePullSecrets"] = [{"name": req.image_pull_secret}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": _meta(req, names["pod"]), "spec": spec}


def manifests(req: PodRequest, *, authorized_keys: str, jupyter_token: str) -> list[dict[str, Any]]:
    """All objects in creation order (the Pod references the Secret and the claim)."""
    out = [secret_manifest(req, authorized_keys=authorized_keys, jupyter_token=jupyter_token)]
    if req.workspace == "pvc":
        out.append(pvc_manifest(req))
    out.append(pod_manifest(req))
    return out


def image_for_registry(registry: str, local_tag: str) -> str:
    """``reg.example.com/team`` + ``proj:dev`` -> ``reg.example.com/team/proj:dev``."""
    repo = local_tag.rsplit("/", 1)[-1]
    if ":" not in repo:
        repo += ":latest"
    return f"{registry.rstrip('/')}/{repo}"


def ports_from_labels(labels: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    """Ports from the image's ``ai.envbuild.ports`` label (the container contract)."""
    import json

    raw = labels.get("ai.envbuild.ports")
    if not raw:
        return (("ssh", SSH_PORT),)
    try:
        return tuple((str(i["name"]), int(i["port"])) for i in json.loads(raw))
    except (ValueError, TypeError, KeyError) as exc:
        raise UsageError(f"image label ai.envbuild.ports is malformed ({exc}); rebuild the image") from None


def kubectl_port_forward_argv(
    req: PodRequest,
    local_ports: Sequence[tuple[int, int]],
    *,
    kube_context: str | None = None,
    kubeconfig: str | None = None,
) -> list[str]:
    """The equivalent `kubectl port-forward` command (what the docs show, and a fallback)."""
    argv = ["kubectl"]
    if kubeconfig:
        argv += ["--kubeconfig", kubeconfig]
    if kube_context:
        argv += ["--context", kube_context]
    argv += ["--namespace", req.namespace, "port-forward", "--address", "127.0.0.1", f"pod/{req.object_name}"]
    argv += [f"{local}:{remote}" for local, remote in local_ports]
    return argv


def kube_build_options(registry: str, local_tag: str, *, platforms: Sequence[str] = ()) -> Any:
    """The build options that put the environment image where the cluster pulls it from:
    ``--output type=image,name=<registry>/<repo:tag>,push=true`` (on the engine: moby export + push)."""
    from envbuild.outputs import parse_build_options

    ref = image_for_registry(registry, local_tag)
    return parse_build_options(outputs=[f"type=image,name={ref},push=true"], platforms=platforms)
