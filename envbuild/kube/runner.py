"""Run an environment as a Pod: create its objects, wait for it, sync the project, forward ports.

Talks to the cluster only through a ``CoreV1Api``-shaped object (the official client's, or a fake
in tests) and two stream factories (exec and port-forward), so every call's shape is testable
without a cluster. The `kubernetes` package is an optional extra, imported only here and lazily.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import shlex
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuild.errors import EngineUnreachable, RuntimeFailure, UsageError
from envbuild.kube.manifests import (
    LABEL_NAME,
    MANAGED_BY,
    PodRequest,
    object_names,
    pod_manifest,
    pvc_manifest,
    secret_manifest,
)

__all__ = [
    "load_core_api",
    "kube_up",
    "KubeUpResult",
    "KubernetesRunner",
    "PortForwarder",
    "PodState",
    "PodRef",
    "EnvironmentPod",
    "DEFAULT_SYNC_EXCLUDES",
]

INSTALL_HINT = "install the Kubernetes extra: pip install 'envbuild[kubernetes]'"
DEFAULT_SYNC_EXCLUDES: tuple[str, ...] = (
    ".git",
    ".venv",
    "__pycache__",
    ".mypy_cache",
    ".pytest_cache",
    "node_modules",
)
_FATAL_WAITING = {
    "ErrImagePull": "the cluster cannot pull the image",
    "ImagePullBackOff": "the cluster cannot pull the image",
    "InvalidImageName": "the image name is invalid",
    "CreateContainerConfigError": "the container configuration is invalid",
    "CrashLoopBackOff": "the container keeps exiting",
}


def load_core_api(settings: Any) -> Any:
    """A ``CoreV1Api`` for a context's KubernetesSettings (kubeconfig/context, else in-cluster)."""
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise UsageError(f"the kubernetes runner needs the `kubernetes` Python package; {INSTALL_HINT}") from None
    kubeconfig = getattr(settings, "kubeconfig", None)
    kube_context = getattr(settings, "kube_context", None)
    try:
        config.load_kube_config(config_file=kubeconfig, context=kube_context)
    except (ConfigException, FileNotFoundError, OSError) as exc:
        if kubeconfig or kube_context:
            raise UsageError(f"cannot load the kubeconfig (context {kube_context or 'current'}): {exc}") from None
        try:
            config.load_incluster_config()
        except ConfigException:
            raise EngineUnreachable(
                f"no Kubernetes configuration found ({exc}); set KUBECONFIG or the context's --kubeconfig"
            ) from None
    return client.CoreV1Api()


_UNREACHABLE_TYPES = frozenset(
    {"MaxRetryError", "NewConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ProtocolError", "SSLError"}
)


def api_server(api: Any) -> str:
    """The API server address a ``CoreV1Api`` talks to (for error messages)."""
    host = _get(api, "api_client", "configuration", "host")
    return str(host) if host else "the Kubernetes API server"


def _unreachable(exc: BaseException) -> bool:
    return type(exc).__name__ in _UNREACHABLE_TYPES or isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror))


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _api_status(exc: BaseException) -> int | None:
    """The HTTP status of a kubernetes ApiException (matched by name: the package is optional)."""
    if type(exc).__name__ == "ApiException":
        status = getattr(exc, "status", None)
        return int(status) if isinstance(status, int) else None
    return None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)
    return obj


@dataclass(frozen=True, slots=True)
class PodRef:
    """An existing environment's objects by name (`destroy`, the forwarder): no image needed."""

    name: str
    namespace: str = "default"
    workspace: str = "pvc"

    @property
    def object_name(self) -> str:
        from envbuild.kube.manifests import k8s_name

        return k8s_name(self.name)


@dataclass(frozen=True, slots=True)
class EnvironmentPod:
    """One envbuild pod as `envbuild ls` shows it."""

    state: PodState
    labels: Mapping[str, str]
    gpus: int

    @property
    def name(self) -> str:
        return self.labels.get(LABEL_NAME) or self.state.name


@dataclass(frozen=True, slots=True)
class PodState:
    name: str
    phase: str
    ready: bool
    image: str
    node: str | None
    message: str = ""


def _state(pod: Any) -> PodState:
    statuses = _get(pod, "status", "container_statuses") or []
    containers = _get(pod, "spec", "containers") or []
    return PodState(
        name=_get(pod, "metadata", "name") or "",
        phase=_get(pod, "status", "phase") or "Unknown",
        ready=bool(statuses) and all(bool(_get(s, "ready")) for s in statuses),
        image=(_get(containers[0], "image") if containers else "") or "",
        node=_get(pod, "spec", "node_name"),
    )


class KubernetesRunner:
    """Creates, waits for, syncs, forwards to and deletes environment pods in one namespace."""

    def __init__(
        self,
        api: Any,
        *,
        exec_stream: Callable[..., Any] | None = None,
        portforward: Callable[..., Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self._exec_stream = exec_stream
        self._portforward = portforward
        self._sleep = sleep
        self._clock = clock

    # ------------------------------------------------------------ objects

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            status = _api_status(exc)
            if status is None:
                if _unreachable(exc):
                    raise EngineUnreachable(
                        f"cannot reach the Kubernetes API server {api_server(self.api)} to {what} ({_reason(exc)}); "
                        "check the context's --kube-context/--kubeconfig and `kubectl cluster-info`"
                    ) from None
                raise
            if status in (401, 403):
                raise RuntimeFailure(
                    f"Kubernetes refused to {what} (HTTP {status}): check the kubeconfig user's RBAC rights "
                    "for pods, pods/exec, pods/portforward, secrets and persistentvolumeclaims"
                ) from None
            raise

    def status(self, req: PodRequest | PodRef) -> PodState | None:
        try:
            pod = self._call(
                "read the pod", self.api.read_namespaced_pod, name=req.object_name, namespace=req.namespace
            )
        except Exception as exc:
            if _api_status(exc) == 404:
                return None
            raise
        return _state(pod)

    def preflight(self, namespace: str, *, timeout: float = 10.0) -> None:
        """One cheap authenticated call, so an unreachable cluster fails before a long build and push."""
        self._call(
            "list pods",
            self.api.list_namespaced_pod,
            namespace=namespace,
            limit=1,
            label_selector=f"app.kubernetes.io/managed-by={MANAGED_BY}",
            _request_timeout=timeout,
        )

    def list_environments(self, namespace: str) -> list[EnvironmentPod]:
        pods = self._call(
            "list pods",
            self.api.list_namespaced_pod,
            namespace=namespace,
            label_selector=f"app.kubernetes.io/managed-by={MANAGED_BY}",
        )
        out: list[EnvironmentPod] = []
        for pod in _get(pods, "items") or []:
            labels = dict(_get(pod, "metadata", "labels") or {})
            containers = _get(pod, "spec", "containers") or []
            limits = _get(containers[0], "resources", "limits") if containers else None
            gpus = 0
            for key, value in dict(limits or {}).items():
                if key.endswith("/gpu"):
                    with contextlib.suppress(TypeError, ValueError):
                        gpus += int(value)
            out.append(EnvironmentPod(_state(pod), labels, gpus))
        return sorted(out, key=lambda e: e.name)

    def current_token(self, req: PodRequest | PodRef) -> str | None:
        """The Jupyter token in the environment's Secret (what its running pod was started with)."""
        try:
            secret = self._call(
                "read the secret",
                self.api.read_namespaced_secret,
                name=object_names(req)["secret"],
                namespace=req.namespace,
            )
        except Exception as exc:
            if _api_status(exc) == 404:
                return None
            raise
        raw = (_get(secret, "data") or {}).get("jupyter_token")
        if not raw:
            return None
        try:
            return base64.b64decode(raw).decode()
        except (ValueError, UnicodeDecodeError):
            return None

    def apply(self, req: PodRequest, *, authorized_keys: str, jupyter_token: str, recreate: bool = False) -> str:
        """Create or update the Secret, claim and Pod; returns ``created``, ``unchanged`` or ``recreated``.

        A running Pod with the same image is kept (pin the image by digest so a new push is a new
        image); otherwise the old Pod is deleted first. The workspace claim is never replaced.
        """
        ns = req.namespace
        names = object_names(req)
        secret = secret_manifest(req, authorized_keys=authorized_keys, jupyter_token=jupyter_token)
        try:
            self._call("create the secret", self.api.create_namespaced_secret, namespace=ns, body=secret)
        except Exception as exc:
            if _api_status(exc) != 409:
                raise
            self._call(
                "update the secret", self.api.replace_namespaced_secret, name=names["secret"], namespace=ns, body=secret
            )
        if req.workspace == "pvc":
            try:
                self._call(
                    "create the workspace claim",
                    self.api.create_namespaced_persistent_volume_claim,
                    namespace=ns,
                    body=pvc_manifest(req),
                )
            except Exception as exc:
                if _api_status(exc) != 409:
                    raise
        existing = self.status(req)
        action = "created"
        if existing is not None:
            if existing.image == req.image and existing.phase in ("Pending", "Running") and not recreate:
                return "unchanged"
            self.delete_pod(req)
            action = "recreated"
        self._call("create the pod", self.api.create_namespaced_pod, namespace=ns, body=pod_manifest(req))
        return action

    def delete_pod(self, req: PodRequest | PodRef, *, timeout: float = 60.0) -> None:
        try:
            self._call(
                "delete the pod",
                self.api.delete_namespaced_pod,
                name=req.object_name,
                namespace=req.namespace,
                grace_period_seconds=5,
            )
        except Exception as exc:
            if _api_status(exc) == 404:
                return
            raise
        deadline = self._clock() + timeout
        while self.status(req) is not None:
            if self._clock() > deadline:
                raise RuntimeFailure(f"pod {req.namespace}/{req.object_name} was not deleted within {timeout:.0f}s")
            self._sleep(1.0)

    def delete(self, req: PodRequest | PodRef, *, delete_workspace: bool = False) -> None:
        """`envbuild down`: the Pod and Secret; the workspace claim only when asked (it holds work)."""
        self.delete_pod(req)
        names = object_names(req)
        targets = [("secret", self.api.delete_namespaced_secret, names["secret"])]
        if delete_workspace and req.workspace == "pvc":
            targets.append(("workspace claim", self.api.delete_namespaced_persistent_volume_claim, names["pvc"]))
        for what, fn, name in targets:
            try:
                self._call(f"delete the {what}", fn, name=name, namespace=req.namespace)
            except Exception as exc:
                if _api_status(exc) != 404:
                    raise

    def wait_ready(self, req: PodRequest, *, timeout: float = 300.0) -> PodState:
        """Until the SSH readiness probe passes; fails early on pull errors and crash loops."""
        deadline = self._clock() + timeout
        last = ""
        while True:
            pod = self._call(
                "read the pod", self.api.read_namespaced_pod, name=req.object_name, namespace=req.namespace
            )
            state = _state(pod)
            if state.phase == "Running" and state.ready:
                return state
            if state.phase in ("Failed", "Succeeded"):
                raise RuntimeFailure(
                    f"pod {req.namespace}/{req.object_name} ended ({state.phase}); "
                    f"see `kubectl -n {req.namespace} logs {req.object_name}`"
                )
            for cs in _get(pod, "status", "container_statuses") or []:
                waiting = _get(cs, "state", "waiting")
                reason = _get(waiting, "reason") or ""
                if reason in _FATAL_WAITING:
                    detail = _get(waiting, "message") or ""
                    hint = ""
                    if "pull" in _FATAL_WAITING[reason]:
                        hint = (
                            " (was it pushed? does the cluster reach the registry? a private registry "
                            "needs an imagePullSecret)"
                        )
                    raise RuntimeFailure(
                        f"pod {req.namespace}/{req.object_name}: {_FATAL_WAITING[reason]} ({reason}"
                        f"{': ' + detail if detail else ''}){hint}"
                    )
            for cond in _get(pod, "status", "conditions") or []:
                if _get(cond, "type") == "PodScheduled" and _get(cond, "status") == "False":
                    last = _get(cond, "message") or _get(cond, "reason") or last
            if self._clock() > deadline:
                why = f": {last}" if last else f" (phase {state.phase})"
                raise RuntimeFailure(f"pod {req.namespace}/{req.object_name} not ready after {timeout:.0f}s{why}")
            self._sleep(1.0)

    # ------------------------------------------------------------ project sync

    def _exec(
        self, req: PodRequest, command: list[str], *, stdin_chunks: Iterable[str] = (), timeout: float = 600
    ) -> str:
        if self._exec_stream is None:
            try:
                from kubernetes.stream import stream
            except ImportError:
                raise UsageError(f"syncing needs the `kubernetes` package; {INSTALL_HINT}") from None
            self._exec_stream = stream
        resp = self._call(
            "exec in the pod",
            self._exec_stream,
            self.api.connect_get_namespaced_pod_exec,
            req.object_name,
            req.namespace,
            command=command,
            container="environment",
            stdin=True,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
        out: list[str] = []
        err: list[str] = []
        try:
            for chunk in stdin_chunks:
                resp.write_stdin(chunk)
                if resp.peek_stdout():
                    out.append(resp.read_stdout())
                if resp.peek_stderr():
                    err.append(resp.read_stderr())
            deadline = self._clock() + timeout
            while resp.is_open():
                resp.update(timeout=1)
                if resp.peek_stdout():
                    out.append(resp.read_stdout())
                if resp.peek_stderr():
                    err.append(resp.read_stderr())
                if self._clock() > deadline:
                    raise RuntimeFailure(f"`{' '.join(command[:3])}…` in the pod took longer than {timeout:.0f}s")
            code = resp.returncode
        finally:
            resp.close()
        if code not in (0, None):
            raise RuntimeFailure(f"command in pod {req.object_name} failed ({code}): {''.join(err).strip()[-500:]}")
        return "".join(out)

    def sync_project(
        self,
        req: PodRequest,
        local_dir: str | os.PathLike[str],
        *,
        excludes: Sequence[str] = DEFAULT_SYNC_EXCLUDES,
        chunk_size: int = 256 * 1024,
    ) -> int:
        """Copy the project directory into the pod's workspace (tar over exec, like `kubectl cp`);
        returns the number of files sent. Files in the pod that are not local are kept."""
        data = project_tarball(Path(local_dir), excludes=excludes)
        payload = base64.b64encode(data.getvalue()).decode()
        workdir = shlex.quote(req.workdir)
        script = (
            f"set -e; mkdir -p {workdir}; head -c {len(payload)} | base64 -d | tar -x -m -C {workdir} "
            f"--no-same-owner; if id envd >/dev/null 2>&1; then chown -R envd: {workdir}; fi"
        )
        chunks = (payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size))
        self._exec(req, ["sh", "-c", script], stdin_chunks=chunks)
        return data.files

    # ------------------------------------------------------------ ports

    def port_forward(
        self,
        req: PodRequest | PodRef,
        remote_ports: Sequence[int],
        *,
        host: str = "127.0.0.1",
        local_ports: Mapping[int, int] | None = None,
    ) -> PortForwarder:
        """Forward 127.0.0.1:<free port> to each pod port (no Service, no open cluster port)."""
        if self._portforward is None:
            try:
                from kubernetes.stream import portforward
            except ImportError:
                raise UsageError(f"port forwarding needs the `kubernetes` package; {INSTALL_HINT}") from None
            self._portforward = portforward
        pf_fn = self._portforward

        def open_stream(port: int) -> Any:
            pf = self._call(
                "forward a port",
                pf_fn,
                self.api.connect_get_namespaced_pod_portforward,
                req.object_name,
                req.namespace,
                ports=str(port),
            )
            sock = pf.socket(port)
            sock.setblocking(True)
            return sock

        return PortForwarder(open_stream, remote_ports, host=host, local_ports=local_ports)


class _TarData(io.BytesIO):
    files: int = 0


def project_tarball(root: Path, *, excludes: Sequence[str] = DEFAULT_SYNC_EXCLUDES) -> _TarData:
    """A tar of `root`'s contents with relative paths; `excludes` are names skipped at any depth."""
    if not root.is_dir():
        raise UsageError(f"project directory {root} does not exist")
    skip = set(excludes)
    buf = _TarData()
    count = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d not in skip)
            rel_dir = Path(dirpath).relative_to(root)
            for d in dirnames:
                p = Path(dirpath, d)
                if p.is_symlink():
                    tf.add(p, arcname=str(rel_dir / d), recursive=False)
            for f in sorted(filenames):
                if f in skip:
                    continue
                tf.add(Path(dirpath, f), arcname=str(rel_dir / f), recursive=False)
                count += 1
    buf.files = count
    buf.seek(0)
    return buf


def _pump(src: Any, dst: Any, done: Callable[[], None]) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        done()


class PortForwarder:
    """Local listeners whose every connection gets its own stream to the pod port."""

    def __init__(
        self,
        open_stream: Callable[[int], Any],
        remote_ports: Sequence[int],
        *,
        host: str = "127.0.0.1",
        local_ports: Mapping[int, int] | None = None,
    ) -> None:
        self._open = open_stream
        self._closed = threading.Event()
        self._listeners: dict[int, socket.socket] = {}
        self.addresses: dict[int, tuple[str, int]] = {}
        self.errors: list[str] = []
        try:
            for port in dict.fromkeys(remote_ports):
                lst = socket.create_server((host, (local_ports or {}).get(port, 0)))
                self._listeners[port] = lst
                self.addresses[port] = lst.getsockname()[:2]
                threading.Thread(target=self._accept, args=(port, lst), daemon=True, name=f"envbuild-pf-{port}").start()
        except OSError as exc:
            self.close()
            raise RuntimeFailure(f"cannot listen on {host} for port forwarding: {exc}") from None

    def _accept(self, port: int, lst: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = lst.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(port, conn), daemon=True).start()

    def _serve(self, port: int, conn: socket.socket) -> None:
        try:
            upstream = self._open(port)
        except Exception as exc:
            self.errors.append(f"port {port}: {exc}")
            conn.close()
            return
        remaining = [2]
        lock = threading.Lock()

        def finished() -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                for s in (conn, upstream):
                    with contextlib.suppress(OSError):
                        s.close()

        threading.Thread(target=_pump, args=(conn, upstream, finished), daemon=True).start()
        threading.Thread(target=_pump, args=(upstream, conn, finished), daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        for lst in self._listeners.values():
            with contextlib.suppress(OSError):
                lst.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                lst.close()

    def __enter__(self) -> PortForwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class KubeUpResult:
    action: str
    state: PodState
    synced_files: int | None
    forwarder: PortForwarder | None

    def local_address(self, remote_port: int) -> tuple[str, int] | None:
        return self.forwarder.addresses.get(remote_port) if self.forwarder else None


def kube_up(
    runner: KubernetesRunner,
    req: PodRequest,
    *,
    authorized_keys: str,
    jupyter_token: str,
    project_dir: str | os.PathLike[str] | None = None,
    timeout: float = 300.0,
    recreate: bool = False,
    forward: bool = True,
) -> KubeUpResult:
    """`envbuild up --runner kubernetes` after the image is pushed: objects, readiness, project sync
    (when `project_dir` is given and the workspace is not ``none``), then port forwards for every
    image port (SSH 2222, Jupyter 8888, ...). The caller closes ``result.forwarder``."""
    action = runner.apply(req, authorized_keys=authorized_keys, jupyter_token=jupyter_token, recreate=recreate)
    state = runner.wait_ready(req, timeout=timeout)
    synced = None
    if project_dir is not None and req.workspace != "none":
        synced = runner.sync_project(req, project_dir)
    fwd = runner.port_forward(req, [p for _, p in req.ports]) if forward else None
    return KubeUpResult(action=action, state=state, synced_files=synced, forwarder=fwd)
