"""The background port forwarder of a Kubernetes environment (`envbuild kube-forward NAME`).

`envbuild up --runner kubernetes` must return (or exec the shell) while SSH and Jupyter stay
reachable, like a container's published ports. So it starts this forwarder as its own session
(``setsid``), which listens on 127.0.0.1 and opens a Kubernetes port-forward stream per connection
until `envbuild destroy` stops it. Its files live under ``~/.cache/envbuild/forward/``:
``NAME.json`` (what to forward, then the bound addresses), ``NAME.pid`` and ``NAME.log``.
The forwarder also exits when its ``NAME.json`` disappears or names another forwarder, so a missed
signal cannot leak it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from envbuild import paths
from envbuild._files import atomic_write
from envbuild.errors import RuntimeFailure

__all__ = ["ForwardSpec", "forward_dir", "start", "stop", "serve", "read_state", "running_pid"]


@dataclass(frozen=True, slots=True)
class ForwardSpec:
    """What one environment's forwarder forwards; ``local_ports`` are preferred local ports
    (the previous ones, so the SSH entry and VS Code keep working across `up`)."""

    name: str
    namespace: str
    ports: tuple[tuple[str, int], ...]
    kube_context: str | None = None
    kubeconfig: str | None = None
    host: str = "127.0.0.1"
    local_ports: Mapping[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ports"] = [list(p) for p in self.ports]
        data["local_ports"] = {str(k): v for k, v in self.local_ports.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ForwardSpec:
        return cls(
            name=str(data["name"]),
            namespace=str(data["namespace"]),
            ports=tuple((str(n), int(p)) for n, p in data["ports"]),
            kube_context=data.get("kube_context") or None,
            kubeconfig=data.get("kubeconfig") or None,
            host=str(data.get("host") or "127.0.0.1"),
            local_ports={int(k): int(v) for k, v in (data.get("local_ports") or {}).items()},
        )

    def same_target(self, other: ForwardSpec) -> bool:
        return (self.name, self.namespace, tuple(self.ports), self.kube_context, self.kubeconfig, self.host) == (
            other.name,
            other.namespace,
            tuple(other.ports),
            other.kube_context,
            other.kubeconfig,
            other.host,
        )


def forward_dir() -> Path:
    """``$XDG_CACHE_HOME/envbuild/forward`` or ``~/.cache/envbuild/forward``."""
    return paths.cache_dir() / "forward"


def _paths(name: str) -> tuple[Path, Path, Path]:
    d = forward_dir()
    return d / f"{name}.json", d / f"{name}.pid", d / f"{name}.log"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with atomic_write(path, text=True) as fh:
        fh.write(json.dumps(data, indent=2))


def read_state(name: str) -> dict[str, Any] | None:
    """The forwarder's file: its spec plus, once listening, ``pid`` and ``addresses`` (remote -> local)."""
    try:
        return json.loads(_paths(name)[0].read_text())
    except (OSError, ValueError):
        return None


def _is_forwarder(pid: int, name: str) -> bool:
    """Only a live `envbuild kube-forward NAME` process counts (a stale pid may be reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kube-forward" in argv and name.encode() in argv


def running_pid(name: str) -> int | None:
    try:
        pid = int(_paths(name)[1].read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_forwarder(pid, name) else None


def addresses(state: Mapping[str, Any] | None) -> dict[int, int]:
    return {int(k): int(v) for k, v in ((state or {}).get("addresses") or {}).items()}


def _spawn(name: str, log: Path) -> int:
    """Start `envbuild kube-forward NAME` in its own session, detached from this terminal."""
    code = "import sys; from envbuild.cli.app import main; main(sys.argv[1:])"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "kube-forward", name],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid


def start(spec: ForwardSpec, *, timeout: float = 20.0) -> tuple[dict[int, int], int | None]:
    """Make sure a forwarder for ``spec`` runs; returns its addresses (remote -> local port) and pid.

    A running forwarder for the same pod and ports is kept (its streams are opened per connection,
    so a recreated pod needs no new one)."""
    state_path, _, log_path = _paths(spec.name)
    old = read_state(spec.name)
    pid = running_pid(spec.name)
    if pid is not None and old is not None:
        try:
            same = ForwardSpec.from_json(old).same_target(spec)
        except (KeyError, TypeError, ValueError):
            same = False
        if same and addresses(old):
            return addresses(old), pid
    preferred = addresses(old) or dict(spec.local_ports)
    stop(spec.name)
    spec = replace(spec, local_ports=preferred)
    _write_json(state_path, spec.to_json())
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path.write_text("")
    child = _spawn(spec.name, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(spec.name)
        if state is not None and state.get("error"):
            stop(spec.name)
            raise RuntimeFailure(f"the port forwarder for {spec.name} failed: {state['error']}")
        if state is not None and addresses(state):
            return addresses(state), state.get("pid") or child
        if child is not None and not _alive(child):
            break
        time.sleep(0.05)
    tail = _log_tail(log_path)
    stop(spec.name)
    raise RuntimeFailure(
        f"the port forwarder for {spec.name} did not start{': ' + tail if tail else ''} (log: {log_path})"
    )


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return done == 0


def _log_tail(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-3:])[-600:]


def stop(name: str, *, timeout: float = 5.0) -> bool:
    """Stop the environment's forwarder (if one runs) and remove its files; True if one ran."""
    state_path, pid_path, _ = _paths(name)
    pid = running_pid(name)
    state_path.unlink(missing_ok=True)
    pid_path.unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _is_forwarder(pid, name):
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        if _is_forwarder(pid, name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return True


def serve(
    name: str,
    *,
    make_runner: Callable[[ForwardSpec], Any] | None = None,
    stop_event: threading.Event | None = None,
    poll: float = 1.0,
) -> None:
    """The forwarder process's body: listen, record the addresses, forward until told to stop."""
    from envbuild.kube.runner import PodRef

    state_path, pid_path, _ = _paths(name)
    data = read_state(name)
    if data is None:
        raise RuntimeFailure(f"no forwarder settings for {name!r} in {state_path}; run `envbuild up` first")
    spec = ForwardSpec.from_json(data)
    stop_event = stop_event or threading.Event()
    try:
        runner = (make_runner or _default_runner)(spec)
        ref = PodRef(spec.name, spec.namespace)
        remote = [p for _, p in spec.ports]
        fwd = None
        for _ in range(20 if spec.local_ports else 0):
            try:
                fwd = runner.port_forward(ref, remote, host=spec.host, local_ports=spec.local_ports)
                break
            except RuntimeFailure:
                time.sleep(0.1)  # the previous forwarder may still be closing its listeners
        if fwd is None:
            fwd = runner.port_forward(ref, remote, host=spec.host)
    except Exception as exc:
        _write_json(state_path, {**data, "error": str(exc) or type(exc).__name__})
        raise
    pid = os.getpid()
    instance = os.urandom(8).hex()
    pid_path.write_text(f"{pid}\n")
    _write_json(
        state_path,
        {**data, "pid": pid, "instance": instance, "addresses": {str(k): v[1] for k, v in fwd.addresses.items()}},
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop_event.set())
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        while not stop_event.wait(poll):
            current = read_state(name)
            if current is None or current.get("instance") != instance:
                break  # stopped, or replaced by a newer forwarder
            for err in fwd.errors[:]:
                print(f"envbuild kube-forward {name}: {err}", file=sys.stderr, flush=True)
                fwd.errors.remove(err)
    finally:
        fwd.close()


def _default_runner(spec: ForwardSpec) -> Any:
    from envbuild.contexts import KubernetesSettings
    from envbuild.kube import runner

    settings = KubernetesSettings(namespace=spec.namespace, kube_context=spec.kube_context, kubeconfig=spec.kubeconfig)
    return runner.KubernetesRunner(runner.load_core_api(settings))
