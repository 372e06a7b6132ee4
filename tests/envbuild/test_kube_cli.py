"""`envbuild up|ls|destroy` with the Kubernetes runner, against a fake CoreV1 API and a fake build.

The cluster is replaced at `envbuild.kube.runner.load_core_api` (and the exec/port-forward streams
through `envbuild.kube.commands.new_runner`); the build at `envbuild.build.build`. The CLI runs
in-process through `envbuild.cli.app.main`, so exit codes and messages are the user's.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from envbuild.cli.app import main
from envbuild.contexts import ContextStore, KubernetesSettings, make_context
from envbuild.kube import commands as kube_commands
from envbuild.kube import forward
from envbuild.kube.runner import KubernetesRunner

REGISTRY = "reg.example.com:5000/team"
DIGEST = "sha256:" + "c" * 64
BUILD_FILE = (
    "def build():\n"
    '    base(image="local/debian:bookworm", dev=True)\n'
    "    install.python()\n"
    '    config.jupyter(token="tok-from-build-file")\n'
    "    config.gpu(2)\n"
)
PORTS_LABEL = '[{"name":"ssh","port":2222},{"name":"jupyter","port":8888}]'


class ApiException(Exception):
    """Named like kubernetes.client.ApiException (the runner matches the name)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


_MAPS = frozenset({"labels", "annotations", "limits", "requests", "data", "string_data", "node_selector"})


def _ns(obj: Any) -> Any:
    """Like the client's models: attributes for fields, plain dicts for string maps."""
    if isinstance(obj, dict):
        return SimpleNamespace(**{k: (dict(v) if k in _MAPS else _ns(v)) for k, v in obj.items()})
    if isinstance(obj, list):
        return [_ns(v) for v in obj]
    return obj


class FakeCore:
    """A namespace's pods, secrets and claims; every call recorded; pods are Running and ready."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.api_client = SimpleNamespace(configuration=SimpleNamespace(host="https://k8s.example.com:6443"))

    def _create(self, kind: str, method: str, namespace: str, body: dict[str, Any]) -> Any:
        self.calls.append((method, {"namespace": namespace, "body": body}))
        key = (kind, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise ApiException(409)
        self.objects[key] = body
        return _ns(body)

    def _delete(self, kind: str, method: str, name: str, namespace: str, **kw: Any) -> None:
        self.calls.append((method, {"name": name, "namespace": namespace, **kw}))
        if self.objects.pop((kind, namespace, name), None) is None:
            raise ApiException(404)

    def _pod(self, body: dict[str, Any]) -> Any:
        pod = _ns(body)
        pod.status = _ns({"phase": "Running", "container_statuses": [{"ready": True}]})
        pod.spec.node_name = "gpu-node-1"
        return pod

    def list_namespaced_pod(self, namespace: str, **kw: Any) -> Any:
        self.calls.append(("list_namespaced_pod", {"namespace": namespace, **kw}))
        want = dict(kv.split("=", 1) for kv in kw.get("label_selector", "").split(",") if kv)
        items = [
            self._pod(b)
            for (k, ns, _), b in self.objects.items()
            if k == "Pod" and ns == namespace and all(b["metadata"]["labels"].get(a) == v for a, v in want.items())
        ]
        return SimpleNamespace(items=items)

    def read_namespaced_pod(self, name: str, namespace: str) -> Any:
        self.calls.append(("read_namespaced_pod", {"name": name, "namespace": namespace}))
        body = self.objects.get(("Pod", namespace, name))
        if body is None:
            raise ApiException(404)
        return self._pod(body)

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.calls.append(("read_namespaced_secret", {"name": name, "namespace": namespace}))
        body = self.objects.get(("Secret", namespace, name))
        if body is None:
            raise ApiException(404)
        data = {k: base64.b64encode(v.encode()).decode() for k, v in body["stringData"].items()}
        return SimpleNamespace(data=data)

    def create_namespaced_secret(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("Secret", "create_namespaced_secret", namespace, body)

    def replace_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any]) -> Any:
        self.calls.append(("replace_namespaced_secret", {"name": name, "namespace": namespace, "body": body}))
        self.objects[("Secret", namespace, name)] = body

    def create_namespaced_persistent_volume_claim(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("PersistentVolumeClaim", "create_namespaced_persistent_volume_claim", namespace, body)

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any]) -> Any:
        return self._create("Pod", "create_namespaced_pod", namespace, body)

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

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


class FakeExec:
    """kubernetes.stream's WSClient for the project sync: takes stdin, exits 0."""

    def __init__(self) -> None:
        self.stdin: list[str] = []
        self.open = True
        self.returncode: int | None = None

    def write_stdin(self, data: str) -> None:
        self.stdin.append(data)

    def peek_stdout(self) -> bool:
        return False

    peek_stderr = peek_stdout

    def is_open(self) -> bool:
        return self.open

    def update(self, timeout: float) -> None:
        self.open, self.returncode = False, 0

    def close(self) -> None:
        pass


class FakePortForward:
    """One stream to a pod port: the 'pod' echoes with the port number in front."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._ours, pod = socket.socketpair()
        threading.Thread(target=self._serve, args=(pod,), daemon=True).start()

    def _serve(self, pod: socket.socket) -> None:
        with pod:
            while data := pod.recv(65536):
                pod.sendall(f"{self.port}:".encode() + data)

    def socket(self, port: int) -> socket.socket:
        assert port == self.port
        return self._ours


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(h / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(h / ".cache"))
    monkeypatch.delenv("BUILDKIT_HOST", raising=False)
    return h


def _context(registry: str | None = REGISTRY, kubeconfig: str | None = None) -> None:
    ctx = make_context(
        "gpu",
        runner="kubernetes",
        check_files=False,
        kubernetes=KubernetesSettings(namespace="ml", registry=registry, kubeconfig=kubeconfig),
    )
    ContextStore().create(ctx, use=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "proj"
    (p / "src").mkdir(parents=True)
    (p / "build.envd").write_text(BUILD_FILE)
    (p / "src" / "train.py").write_text("print(1)\n")
    return p


@pytest.fixture
def cluster(home: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The fake cluster, a fake build (recording its options) and an in-process forwarder."""
    from envbuild import build as build_api
    from envbuild import images
    from envbuild.kube import runner as runner_mod
    from envbuild.publish import PushResult

    core = FakeCore()
    state = SimpleNamespace(core=core, builds=[], exec=FakeExec(), opened=[], stops=[], labels=None)

    def fake_build(options: Any, **_: Any) -> Any:
        state.builds.append(options)
        spec, _ = build_api.evaluate(options)
        (out,) = options.outputs.outputs
        outcome = SimpleNamespace(
            pushed=(PushResult(out.names[0], DIGEST),), result=SimpleNamespace(exporter_response={})
        )
        return SimpleNamespace(tag=options.tag, up_to_date=False, spec=spec, outcomes=(outcome,))

    def portforward(*args: Any, **kw: Any) -> FakePortForward:
        state.opened.append((args, kw))
        return FakePortForward(int(kw["ports"]))

    def make_runner(api: Any) -> KubernetesRunner:
        return KubernetesRunner(
            api, exec_stream=lambda *a, **k: state.exec, portforward=portforward, sleep=lambda s: None
        )

    def spawn(name: str, log: Path) -> None:
        ev = threading.Event()
        state.stops.append(ev)
        threading.Thread(
            target=forward.serve,
            args=(name,),
            daemon=True,
            kwargs={"make_runner": lambda spec: make_runner(core), "stop_event": ev, "poll": 0.02},
        ).start()

    monkeypatch.setattr(build_api, "build", fake_build)
    monkeypatch.setattr(images, "image_labels", lambda ref: state.labels)
    monkeypatch.setattr(runner_mod, "load_core_api", lambda settings: core)
    monkeypatch.setattr(kube_commands, "new_runner", make_runner)
    monkeypatch.setattr(forward, "_spawn", spawn)
    yield state
    for ev in state.stops:
        ev.set()


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_up_builds_pushes_and_creates_the_pod(
    cluster: SimpleNamespace, project: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _context()
    cluster.labels = {"ai.envbuild.ports": PORTS_LABEL, "ai.envbuild.gpu": "true", "ai.envbuild.project": "proj"}
    code, out, err = run(
        ["up", "-p", str(project), "--detach", "--format", "json", "--memory", "16g", "--cpus", "0.5"], capsys
    )
    assert code == 0, err
    (opts,) = cluster.builds
    (output,) = opts.outputs.outputs
    ref = f"{REGISTRY}/proj:dev"
    assert output.type == "image" and output.push and output.names == (ref,) and opts.tag == ref
    core = cluster.core
    assert core.methods()[0] == "list_namespaced_pod"
    pod = core.objects[("Pod", "ml", "proj")]
    secret = core.objects[("Secret", "ml", "proj-envbuild")]
    assert ("PersistentVolumeClaim", "ml", "proj-workspace") in core.objects
    (c,) = pod["spec"]["containers"]
    assert c["image"] == f"{ref}@{DIGEST}"
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2", "cpu": "500m", "memory": "16Gi"}
    assert [(p["name"], p["containerPort"]) for p in c["ports"]] == [("ssh", 2222), ("jupyter", 8888)]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2048Mi"}} in pod["spec"]["volumes"]
    pub = (home / ".config" / "envbuild" / "id_ed25519.pub").read_text().strip()
    assert secret["stringData"] == {"authorized_keys": pub, "jupyter_token": "tok-from-build-file"}
    assert "".join(cluster.exec.stdin)  # the project was copied in

    data = json.loads(out)
    local_ssh = data["ssh"]["port"]
    assert data["runner"] == "kubernetes" and data["action"] == "created" and data["built"] is True
    assert data["image"] == f"{ref}@{DIGEST}"
    assert data["ssh"] == {"target": "proj.envbuild", "host": "127.0.0.1", "port": local_ssh, "user": "envd"}
    jport = next(p["host_port"] for p in data["ports"] if p["name"] == "jupyter")
    assert data["jupyter"] == {
        "url": f"http://127.0.0.1:{jport}/lab?token=tok-from-build-file",
        "token": "tok-from-build-file",
    }
    assert data["kubernetes"]["namespace"] == "ml" and data["kubernetes"]["pod"] == "proj"
    assert data["workdir"] == "/home/envd/proj" and data["gpu"] is True

    entry = (home / ".config" / "envbuild" / "ssh_config").read_text()
    assert "Host proj.envbuild\n  HostName 127.0.0.1\n" in entry and f"  Port {local_ssh}\n" in entry
    for port, local in ((2222, local_ssh), (8888, jport)):
        with socket.create_connection(("127.0.0.1", local), timeout=5) as conn:
            conn.sendall(b"hello")
            conn.settimeout(5)
            assert conn.recv(100) == f"{port}:hello".encode()
    assert cluster.opened[0][0][1:] == ("proj", "ml")

    core.calls.clear()
    code, out, err = run(["up", "-p", str(project), "-d"], capsys)
    assert code == 0, err
    assert "create_namespaced_pod" not in core.methods() and "Re-attached to proj" in err
    assert "ssh proj.envbuild" in out and f"http://127.0.0.1:{jport}/lab?token=tok-from-build-file" in out

    code, out, err = run(["ls", "--format", "json"], capsys)
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["name"] == "proj" and row["status"] == "running" and row["gpus"] == 2 and row["node"] == "gpu-node-1"

    core.calls.clear()
    code, out, err = run(["destroy", "-p", str(project)], capsys)
    assert code == 0, err
    assert [m for m in core.methods() if m.startswith("delete")] == [
        "delete_namespaced_pod",
        "delete_namespaced_secret",
    ]
    assert set(core.objects) == {("PersistentVolumeClaim", "ml", "proj-workspace")}
    assert "kept its workspace claim" in out
    assert "proj.envbuild" not in (home / ".config" / "envbuild" / "ssh_config").read_text()
    assert forward.read_state("proj") is None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", local_ssh), timeout=1).close()
        except OSError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the forwarder still listens after destroy")

    code, out, err = run(["destroy", "--name", "proj", "--volumes", "--runner", "kubernetes"], capsys)
    assert code == 0, err
    assert core.objects == {}


def test_up_without_labels_uses_the_spec_and_a_token_survives(
    cluster: SimpleNamespace, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _context()
    (project / "build.envd").write_text(
        'def build():\n    base(image="local/debian:bookworm", dev=True)\n    install.python()\n    config.jupyter()\n'
    )
    code, out, err = run(["up", "-p", str(project), "-d", "--format", "json", "--name", "exp1"], capsys)
    assert code == 0, err
    first = json.loads(out)
    token = first["jupyter"]["token"]
    assert token and first["gpu"] is False
    pod = cluster.core.objects[("Pod", "ml", "exp1")]
    assert "resources" not in pod["spec"]["containers"][0]
    code, out, err = run(["up", "-p", str(project), "-d", "--format", "json", "--name", "exp1"], capsys)
    assert code == 0, err
    again = json.loads(out)
    assert again["action"] == "attached" and again["jupyter"]["token"] == token
    assert again["ssh"]["port"] == first["ssh"]["port"]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--gpus", "device=0"], "give a count (--gpus 1)"),
        (["--gpus", "all"], "cannot request 'all' GPUs"),
    ],
)
def test_gpu_options_kubernetes_cannot_honour(
    cluster: SimpleNamespace, project: Path, args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _context()
    code, _, err = run(["up", "-p", str(project), "-d", *args], capsys)
    assert code == 2 and fragment in err and "Traceback" not in err
    assert cluster.builds == [] and cluster.core.calls == []  # refused before the build


def test_volume_refused_before_building(
    cluster: SimpleNamespace, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _context()
    code, _, err = run(["up", "-p", str(project), "-d", "-v", f"{project}:/data"], capsys)
    assert code == 2 and "--volume is not supported by the kubernetes runner" in err
    assert cluster.builds == []


def test_no_registry_in_the_context(
    cluster: SimpleNamespace, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _context(registry=None)
    code, _, err = run(["up", "-p", str(project), "-d"], capsys)
    assert code == 2
    assert "context 'gpu' names no registry" in err
    assert "envbuild context create NAME --runner kubernetes --registry" in err
    assert cluster.builds == [] and cluster.core.calls == []


def test_runner_option_overrides_the_context(
    cluster: SimpleNamespace, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["up", "-p", str(project), "-d", "--runner", "kubernetes"], capsys)
    assert code == 2 and "context 'default' names no registry" in err
    code, _, err = run(["ls", "--runner", "podman"], capsys)
    assert code == 2 and "invalid --runner 'podman'" in err


def test_kubernetes_package_missing(
    home: Path, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    _context()
    real_import = builtins.__import__

    def no_kubernetes(name: str, *a: Any, **kw: Any) -> Any:
        if name == "kubernetes" or name.startswith("kubernetes."):
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_kubernetes)
    for args in (["ls"], ["up", "-p", str(project), "-d"], ["destroy", "--name", "proj"]):
        code, _, err = run(args, capsys)
        assert code == 2, (args, err)
        assert "pip install 'envbuild[kubernetes]'" in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kubeconfig(path: Path, port: int) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c1\n"
        f"clusters:\n- name: k\n  cluster: {{server: 'https://127.0.0.1:{port}'}}\n"
        "users:\n- name: u\n  user: {token: abc}\n"
        "contexts:\n- name: c1\n  context: {cluster: k, user: u}\n"
    )
    return path


def test_cluster_unreachable_is_exit_3_naming_the_api_server(
    home: Path, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("kubernetes")
    from envbuild import build as build_api

    port = _closed_port()
    _context(kubeconfig=str(_kubeconfig(tmp_path / "kubeconfig", port)))
    builds: list[Any] = []
    monkeypatch.setattr(build_api, "build", lambda *a, **k: builds.append(a))
    t0 = time.monotonic()
    for args in (["up", "-p", str(project), "-d"], ["ls"], ["destroy", "--name", "proj"]):
        code, _, err = run(args, capsys)
        assert code == 3, (args, err)
        assert f"cannot reach the Kubernetes API server https://127.0.0.1:{port}" in err and "Traceback" not in err
    assert builds == []  # checked before a long build and push
    assert time.monotonic() - t0 < 30


def test_forwarder_process_starts_and_stops(home: Path, tmp_path: Path) -> None:
    """The real `envbuild kube-forward` child: setsid, pid file, bound ports, stopped by `stop`."""
    pytest.importorskip("kubernetes")
    cfg = _kubeconfig(tmp_path / "kubeconfig", _closed_port())
    spec = forward.ForwardSpec(
        name="exp", namespace="ml", ports=(("ssh", 2222), ("jupyter", 8888)), kubeconfig=str(cfg)
    )
    addresses, pid = forward.start(spec, timeout=60)
    try:
        assert set(addresses) == {2222, 8888} and pid == forward.running_pid("exp")
        assert os.getsid(pid) == pid  # its own session: survives the terminal
        assert forward.start(spec) == (addresses, pid)  # kept, not restarted
        with socket.create_connection(("127.0.0.1", addresses[2222]), timeout=5) as conn:
            conn.settimeout(30)
            assert conn.recv(10) == b""  # the API server is down: the connection is closed
    finally:
        assert forward.stop("exp")
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and Path(f"/proc/{pid}/cmdline").exists()
        and Path(f"/proc/{pid}/cmdline").read_bytes()
    ):
        time.sleep(0.05)
    assert forward.running_pid("exp") is None and forward.read_state("exp") is None
    assert not forward.stop("exp")
