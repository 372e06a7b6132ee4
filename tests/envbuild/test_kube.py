"""Kubernetes runner: generated objects, and the shape of every API call against a fake client."""

from __future__ import annotations

import base64
import io
import socket
import tarfile
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from envbuild.errors import RuntimeFailure, UsageError
from envbuild.kube.manifests import (
    PodRequest,
    image_for_registry,
    k8s_name,
    kube_build_options,
    kubectl_port_forward_argv,
    label_value,
    manifests,
    pod_manifest,
    ports_from_labels,
)
from envbuild.kube.runner import KubernetesRunner, kube_up, project_tarball

IMAGE = "registry.example.com:5000/team/proj:dev@sha256:" + "a" * 64
PORTS = (("ssh", 2222), ("jupyter", 8888), ("tensorboard-ui-x", 6006))


def _req(**kw: Any) -> PodRequest:
    base: dict[str, Any] = dict(name="My_Proj.dev", image=IMAGE, project="proj", namespace="ml", ports=PORTS)
    base.update(kw)
    return PodRequest(**base)


# ---------------------------------------------------------------- objects


def test_names() -> None:
    assert k8s_name("My_Proj.dev") == "my-proj-dev"
    assert k8s_name("a" * 80) == "a" * 63
    with pytest.raises(UsageError):
        k8s_name("__")
    assert label_value("/home/u/x y") == "home-u-x-y"
    assert image_for_registry("reg:5000/team/", "proj:dev") == "reg:5000/team/proj:dev"
    assert image_for_registry("reg", "local/proj") == "reg/proj:latest"


def test_pod_with_gpus_pvc_and_secrets() -> None:
    req = _req(
        gpus=2,
        cpu="8",
        memory="32Gi",
        node_selector={"gpu": "a100"},
        image_pull_secret="regcred",
        labels={"ai.envbuild.project.path": "/home/u/proj"},
    )
    secret, pvc, pod = manifests(req, authorized_keys="ssh-ed25519 AAAA u@h\n", jupyter_token="tok")
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "my-proj-dev-envbuild"
    assert secret["stringData"] == {"authorized_keys": "ssh-ed25519 AAAA u@h\n", "jupyter_token": "tok"}
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}
    assert pod["metadata"]["name"] == "my-proj-dev" and pod["metadata"]["namespace"] == "ml"
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "envbuild"
    assert labels["ai.envbuild.name"] == "My_Proj.dev" and labels["ai.envbuild.project"] == "proj"
    assert labels["ai.envbuild.project.path"] == "home-u-proj"
    spec = pod["spec"]
    (c,) = spec["containers"]
    assert c["image"] == IMAGE and c["workingDir"] == "/home/envd/proj"
    assert c["resources"] == {
        "limits": {"nvidia.com/gpu": "2", "cpu": "8", "memory": "32Gi"},
        "requests": {"cpu": "8", "memory": "32Gi"},
    }
    assert c["securityContext"]["runAsUser"] == 0
    env = {e["name"]: e for e in c["env"]}
    assert env["ENVBUILD_AUTHORIZED_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-proj-dev-envbuild",
        "key": "authorized_keys",
    }
    assert env["ENVBUILD_JUPYTER_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "jupyter_token"
    assert "value" not in env["ENVBUILD_AUTHORIZED_KEYS"]
    assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [
        ("ssh", 2222),
        ("jupyter", 8888),
        ("tensorboard-ui", 6006),
    ]
    assert c["readinessProbe"]["tcpSocket"] == {"port": 2222}
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/home/envd/proj", "/dev/shm"}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["workspace"]["persistentVolumeClaim"]["claimName"] == "my-proj-dev-workspace"
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["nodeSelector"] == {"gpu": "a100"} and spec["imagePullSecrets"] == [{"name": "regcred"}]


def test_cpu_only_sync_workspace() -> None:
    req = _req(workspace="sync", shm_size=None)
    objs = manifests(req, authorized_keys="k", jupyter_token="")
    assert [o["kind"] for o in objs] == ["Secret", "Pod"]
    pod = objs[-1]
    c = pod["spec"]["containers"][0]
    assert "resources" not in c and "tolerations" not in pod["spec"]
    assert pod["spec"]["volumes"] == [{"name": "workspace", "emptyDir": {}}]
    pod = pod_manifest(_req(workspace="none"))
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["dshm"]
    assert [m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]] == ["/dev/shm"]


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"image": "proj:dev"}, "no registry host"),
        ({"gpus": -1}, "cannot request 'all' GPUs"),
        ({"memory": "lots"}, "--memory 'lots' is not a Kubernetes quantity"),
        ({"workspace": "nfs"}, "choose one of pvc, sync, none"),
        ({"ports": (("jupyter", 8888),)}, "no SSH port 2222"),
        ({"project": "../x"}, "invalid project name"),
        ({"gpu_resource": "amd.com/gpu/x"}, "invalid GPU resource"),
    ],
)
def test_request_validation(kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        _req(**kw)
    assert fragment in str(info.value)


def test_empty_key_refused() -> None:
    with pytest.raises(UsageError, match="accept nobody"):
        manifests(_req(), authorized_keys=" ", jupyter_token="t")


def test_ports_from_labels_and_kubectl_argv() -> None:
    assert ports_from_labels({"ai.envbuild.ports": '[{"name":"ssh","port":2222},{"name":"jupyter","port":8888}]'}) == (
        ("ssh", 2222),
        ("jupyter", 8888),
    )
    assert ports_from_labels({}) == (("ssh", 2222),)
    with pytest.raises(UsageError):
        ports_from_labels({"ai.envbuild.ports": "[1]"})
    assert kubectl_port_forward_argv(_req(), [(0, 2222), (18888, 8888)], kube_context="prod") == [
        "kubectl",
        "--context",
        "prod",
        "--namespace",
        "ml",
        "port-forward",
        "--address",
        "127.0.0.1",
        "pod/my-proj-dev",
        "0:2222",
        "18888:8888",
    ]


def test_build_options_push_to_the_team_registry() -> None:
    opts = kube_build_options("reg.example.com/team", "proj:dev")
    (out,) = opts.outputs
    assert out.type == "image" and out.push and out.names == ("reg.example.com/team/proj:dev",)


def test_manifests_are_valid_kubernetes_models() -> None:
    kubernetes = pytest.importorskip("kubernetes")
    api = kubernetes.client.ApiClient()
    for obj in manifests(_req(gpus=1, cpu="2"), authorized_keys="k", jupyter_token="t"):
        model = api._ApiClient__deserialize(obj, f"V1{obj['kind']}")
        assert api.sanitize_for_serialization(model) == obj


# ---------------------------------------------------------------- fake cluster


class ApiException(Exception):
    """Named like kubernetes.client.ApiException: the runner matches the name, not the class."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _ns(obj: Any) -> Any:
    if isinstance(obj, dict):
        return SimpleNamespace(**{k: _ns(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return [_ns(v) for v in obj]
    return obj


class FakeCore:
    """Records calls; pods go through scripted statuses on each read."""

    def __init__(self, statuses: list[dict[str, Any]] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.statuses = list(statuses or [])
        self.status: dict[str, Any] = {"phase": "Running", "container_statuses": [{"ready": True}]}
        self.deny: set[str] = set()

    def _rec(self, method: str, **kw: Any) -> None:
        self.calls.append((method, kw))
        if method in self.deny:
            raise ApiException(403)

    def _create(self, kind: str, method: str, namespace: str, body: dict[str, Any]) -> Any:
        self._rec(method, namespace=namespace, body=body)
        key = (kind, body["metadata"]["name"])
        if key in self.objects:
            raise ApiException(409)
        self.objects[key] = body
        return _ns(body)

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("Secret", "create_namespaced_secret", namespace, body)

    def replace_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any]) -> Any:
        self._rec("replace_namespaced_secret", name=name, namespace=namespace, body=body)
        self.objects[("Secret", name)] = body

    def create_namespaced_persistent_volume_claim(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("PersistentVolumeClaim", "create_namespaced_persistent_volume_claim", namespace, body)

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("Pod", "create_namespaced_pod", namespace, body)

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        self._rec("read_namespaced_pod", name=name, namespace=namespace)
        body = self.objects.get(("Pod", name))
        if body is None:
            raise ApiException(404)
        status = self.statuses.pop(0) if self.statuses else self.status
        pod = _ns(body)
        pod.status = _ns(status)
        pod.spec.node_name = "gpu-node-1"
        return pod

    def _delete(self, kind: str, method: str, name: str, namespace: str, **kw: Any) -> None:
        self._rec(method, name=name, namespace=namespace, **kw)
        if self.objects.pop((kind, name), None) is None:
            raise ApiException(404)

    def delete_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> None:
        self._delete("Pod", "delete_namespaced_pod", name, namespace, **kw)

    def delete_namespaced_secret(self, name: str, namespace: str) -> None:
        self._delete("Secret", "delete_namespaced_secret", name, namespace)

    def delete_namespaced_persistent_volume_claim(self, name: str, namespace: str) -> None:
        self._delete("PersistentVolumeClaim", "delete_namespaced_persistent_volume_claim", name, namespace)

    def connect_get_namespaced_pod_exec(self, *a: Any, **kw: Any) -> None:
        raise AssertionError("called only through the stream factory")

    def connect_get_namespaced_pod_portforward(self, *a: Any, **kw: Any) -> None:
        raise AssertionError("called only through the portforward factory")


def _runner(core: FakeCore, **kw: Any) -> KubernetesRunner:
    clock = iter(range(0, 100000))
    return KubernetesRunner(core, sleep=lambda s: None, clock=lambda: float(next(clock)), **kw)


def _methods(core: FakeCore) -> list[str]:
    return [m for m, _ in core.calls]


def test_apply_creates_then_keeps_then_recreates() -> None:
    core = FakeCore()
    runner = _runner(core)
    req = _req(gpus=1)
    assert runner.apply(req, authorized_keys="k", jupyter_token="t") == "created"
    assert _methods(core) == [
        "create_namespaced_secret",
        "create_namespaced_persistent_volume_claim",
        "read_namespaced_pod",
        "create_namespaced_pod",
    ]
    assert all(kw["namespace"] == "ml" for _, kw in core.calls)
    assert core.calls[-1][1]["body"] == pod_manifest(req)
    core.calls.clear()
    assert runner.apply(req, authorized_keys="k2", jupyter_token="t") == "unchanged"
    assert _methods(core) == [
        "create_namespaced_secret",
        "replace_namespaced_secret",
        "create_namespaced_persistent_volume_claim",
        "read_namespaced_pod",
    ]
    assert core.objects[("Secret", "my-proj-dev-envbuild")]["stringData"]["authorized_keys"] == "k2"
    core.calls.clear()
    newer = _req(gpus=1, image=IMAGE.replace("a" * 64, "b" * 64))
    assert runner.apply(newer, authorized_keys="k", jupyter_token="t") == "recreated"
    assert _methods(core)[-4:] == [
        "read_namespaced_pod",
        "delete_namespaced_pod",
        "read_namespaced_pod",
        "create_namespaced_pod",
    ]
    assert [kw for m, kw in core.calls if m == "delete_namespaced_pod"] == [
        {"name": "my-proj-dev", "namespace": "ml", "grace_period_seconds": 5}
    ]
    assert core.objects[("Pod", "my-proj-dev")]["spec"]["containers"][0]["image"] == newer.image
    assert ("PersistentVolumeClaim", "my-proj-dev-workspace") in core.objects


def test_wait_ready_reports_scheduling_and_pull_errors() -> None:
    req = _req()
    pending = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            }
        ],
    }
    core = FakeCore(statuses=[pending, pending, {"phase": "Running", "container_statuses": [{"ready": False}]}])
    runner = _runner(core)
    runner.apply(req, authorized_keys="k", jupyter_token="t")
    state = runner.wait_ready(req, timeout=100)
    assert state.ready and state.node == "gpu-node-1" and state.image == IMAGE

    core = FakeCore(statuses=[pending] * 50)
    runner = _runner(core)
    runner.apply(req, authorized_keys="k", jupyter_token="t")
    core.statuses = [pending] * 50
    with pytest.raises(RuntimeFailure, match=r"Insufficient nvidia\.com/gpu"):
        runner.wait_ready(req, timeout=5)

    core = FakeCore()
    runner = _runner(core)
    runner.apply(req, authorized_keys="k", jupyter_token="t")
    core.statuses = [
        {
            "phase": "Pending",
            "container_statuses": [
                {"ready": False, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}
            ],
        }
    ]
    with pytest.raises(RuntimeFailure, match=r"cannot pull the image .*ImagePullBackOff: not found.*imagePullSecret"):
        runner.wait_ready(req)


def test_forbidden_is_explained() -> None:
    core = FakeCore()
    core.deny.add("create_namespaced_secret")
    with pytest.raises(RuntimeFailure, match=r"HTTP 403.*RBAC"):
        _runner(core).apply(_req(), authorized_keys="k", jupyter_token="t")


def test_delete_keeps_the_workspace_unless_asked() -> None:
    core = FakeCore()
    runner = _runner(core)
    req = _req()
    runner.apply(req, authorized_keys="k", jupyter_token="t")
    runner.delete(req)
    assert set(core.objects) == {("PersistentVolumeClaim", "my-proj-dev-workspace")}
    runner.delete(req, delete_workspace=True)
    assert core.objects == {}
    assert runner.status(req) is None


class FakeExec:
    """Mimics kubernetes.stream's WSClient: records stdin, 'runs' once stdin is complete."""

    def __init__(self, fail: bool = False) -> None:
        self.stdin: list[str] = []
        self.open = True
        self.fail = fail
        self.returncode: int | None = None
        self.closed = False

    def write_stdin(self, data: str) -> None:
        self.stdin.append(data)

    def peek_stdout(self) -> bool:
        return False

    def peek_stderr(self) -> bool:
        return self.fail and not self.open

    def read_stdout(self) -> str:
        return ""

    def read_stderr(self) -> str:
        return "tar: write error"

    def is_open(self) -> bool:
        return self.open

    def update(self, timeout: float) -> None:
        self.open = False
        self.returncode = 2 if self.fail else 0

    def close(self) -> None:
        self.closed = True


def test_sync_project_sends_a_tar_over_exec(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "src" / "train.py").write_text("print('hi')\n")
    (project / "README.md").write_text("x" * 300_000)
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref")
    (project / "link").symlink_to("src/train.py")
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    ws = FakeExec()

    def stream(*args: Any, **kw: Any) -> FakeExec:
        calls.append((args, kw))
        return ws

    core = FakeCore()
    runner = _runner(core, exec_stream=stream)
    req = _req()
    assert runner.sync_project(req, project, chunk_size=4096) == 3
    ((args, kw),) = calls
    assert args == (core.connect_get_namespaced_pod_exec, "my-proj-dev", "ml")
    assert kw["stdin"] and kw["stdout"] and kw["stderr"] and not kw["tty"] and kw["_preload_content"] is False
    assert kw["container"] == "environment"
    command = kw["command"]
    payload = "".join(ws.stdin)
    assert command[:2] == ["sh", "-c"] and f"head -c {len(payload)}" in command[2]
    assert "tar -x -m -C /home/envd/proj" in command[2] and "chown -R envd:" in command[2]
    assert len(ws.stdin) > 1 and ws.closed
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(payload))) as tf:
        names = sorted(tf.getnames())
        assert names == ["README.md", "link", "src/train.py"]
        assert tf.getmember("link").issym()
        assert tf.extractfile("src/train.py").read() == b"print('hi')\n"

    failing = FakeExec(fail=True)
    runner = _runner(FakeCore(), exec_stream=lambda *a, **k: failing)
    with pytest.raises(RuntimeFailure, match="failed \\(2\\): tar: write error"):
        runner.sync_project(req, project)


def test_project_tarball_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        project_tarball(tmp_path / "missing")


class FakePortForward:
    """Like kubernetes.stream.portforward's result: socket(port) is one end of a socket pair whose
    other end is the 'pod', here an echo server that tags replies with the port."""

    def __init__(self, port: int) -> None:
        self.port = port
        ours, pod = socket.socketpair()
        self._sock = ours
        threading.Thread(target=self._serve, args=(pod,), daemon=True).start()

    def _serve(self, pod: socket.socket) -> None:
        with pod:
            while True:
                data = pod.recv(65536)
                if not data:
                    return
                pod.sendall(f"{self.port}:".encode() + data)

    def socket(self, port: int) -> socket.socket:
        assert port == self.port
        return self._sock


def test_port_forward_each_connection_gets_its_own_stream() -> None:
    opened: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def portforward(*args: Any, **kw: Any) -> FakePortForward:
        opened.append((args, kw))
        return FakePortForward(int(kw["ports"]))

    core = FakeCore()
    runner = _runner(core, portforward=portforward)
    with runner.port_forward(_req(), [2222, 8888]) as fwd:
        assert set(fwd.addresses) == {2222, 8888}
        for port in (2222, 8888, 2222):
            host, local = fwd.addresses[port]
            assert host == "127.0.0.1" and local > 0
            with socket.create_connection((host, local), timeout=5) as c:
                c.sendall(b"SSH-2.0-test\r\n")
                c.settimeout(5)
                assert c.recv(100) == f"{port}:SSH-2.0-test\r\n".encode()
    assert [kw["ports"] for _, kw in opened] == ["2222", "8888", "2222"]
    assert opened[0][0] == (core.connect_get_namespaced_pod_portforward, "my-proj-dev", "ml")


def test_kube_up_end_to_end_on_the_fake(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    core = FakeCore(statuses=[{"phase": "Pending"}, {"phase": "Running", "container_statuses": [{"ready": True}]}])
    ws = FakeExec()
    runner = _runner(core, exec_stream=lambda *a, **k: ws, portforward=lambda *a, **k: FakePortForward(int(k["ports"])))
    result = kube_up(runner, _req(), authorized_keys="ssh-ed25519 K", jupyter_token="t", project_dir=tmp_path)
    try:
        assert result.action == "created" and result.state.ready and result.synced_files == 1
        assert set(result.forwarder.addresses) == {2222, 8888, 6006}
        assert result.local_address(2222)[0] == "127.0.0.1"
    finally:
        result.forwarder.close()


def test_load_core_api_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from envbuild.kube.runner import load_core_api

    real_import = builtins.__import__

    def no_kubernetes(name: str, *a: Any, **kw: Any) -> Any:
        if name == "kubernetes" or name.startswith("kubernetes."):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_kubernetes)
    with pytest.raises(UsageError, match=r"pip install 'envbuild\[kubernetes\]'"):
        load_core_api(SimpleNamespace(kubeconfig=None, kube_context=None))


def test_load_core_api_with_a_kubeconfig(tmp_path: Path) -> None:
    pytest.importorskip("kubernetes")
    from envbuild.contexts import KubernetesSettings
    from envbuild.kube.runner import load_core_api

    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c1\n"
        "clusters:\n- name: k\n  cluster: {server: 'https://127.0.0.1:6443'}\n"
        "users:\n- name: u\n  user: {token: abc}\n"
        "contexts:\n- name: c1\n  context: {cluster: k, user: u}\n"
        "- name: c2\n  context: {cluster: k, user: u, namespace: x}\n"
    )
    api = load_core_api(KubernetesSettings(kubeconfig=str(cfg), kube_context="c2"))
    assert api.api_client.configuration.host == "https://127.0.0.1:6443"
    with pytest.raises(UsageError, match="cannot load the kubeconfig"):
        load_core_api(KubernetesSettings(kubeconfig=str(cfg), kube_context="nope"))
