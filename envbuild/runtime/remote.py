"""Environments on another machine's Docker engine: ``DOCKER_HOST=ssh://...``, a docker context with
such an endpoint, or an envbuild context made with ``--docker ssh://...``.

That machine's 127.0.0.1 and files are not this one's, so:

- readiness is probed through the command's SSH connection (``ssh -W``, `llb.sshdial`);
- ``<name>.envbuild`` jumps through the same SSH destination (``ProxyJump``; user, port and host
  alias as the address gives them, the key and the rest from ``~/.ssh/config`` and the agent), so
  ``ssh NAME.envbuild`` and VS Code Remote-SSH work from here unchanged;
- Jupyter is reached through a local port forward (`start_forward`): an ``ssh -N -L`` process of its
  own, started by `up` (or ``envbuild jupyter NAME``), shown by `ls` and stopped by `destroy`. Its
  record is ``~/.cache/envbuild/tunnel/NAME.json``; a record whose process is gone, or is not that
  forward, is ignored;
- the project directory is not mounted (`envbuild.runtime.sync` and ``--remote-path``).

Only the user's own choice of engine picks the destination: nothing in a build file or an image.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild import engine_api, paths
from envbuild._files import atomic_write
from envbuild.errors import EnvbuildError, RuntimeFailure
from llb.sshdial import SSHDestination

if TYPE_CHECKING:
    from envbuild.runtime.engine import Environment

FORWARD_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True)
class Remote:
    """The engine's machine: its ``ssh://`` address, parsed."""

    url: str
    dest: SSHDestination

    @classmethod
    def of(cls, url: str) -> Remote:
        return cls(url, SSHDestination.parse(url))

    @property
    def jump(self) -> str:
        """The destination as ssh_config's ``ProxyJump`` takes it: ``[user@]host[:port]``."""
        return self.dest.netloc

    @property
    def host(self) -> str:
        return self.dest.host


def current() -> Remote | None:
    """The engine's machine when it is not this one (the engine `engine_api.engine_host` picks)."""
    host = engine_api.engine_host()
    return Remote.of(host.url) if engine_api.is_remote(host.url) else None


# ---------------------------------------------------------------- readiness through the SSH connection


def probes(remote: Remote) -> tuple[Callable[[str, int], bool], Callable[[str, str | None], bool]]:
    """(sshd banner probe, Jupyter status probe) for `engine.wait_ready`, made by the remote machine."""
    from llb import sshdial

    dialer = sshdial.dialer(remote.url)

    def connect(host: str, port: int) -> socket.socket:
        sock = dialer.dial_tcp(host, port)
        sock.settimeout(5)
        return sock

    def ssh_ok(host: str, port: int) -> bool:
        try:
            with connect(host, port) as sock:
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def jupyter_ok(address: str, token: str | None) -> bool:
        host, _, port = address.rpartition(":")
        conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=5)
        try:
            conn.sock = connect(host.strip("[]"), int(port))
            conn.request("GET", "/api/status", headers={"Authorization": f"token {token}"} if token else {})
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    return ssh_ok, jupyter_ok


# ---------------------------------------------------------------- the Jupyter port forward


@dataclass(frozen=True, slots=True)
class Forward:
    """A running ``ssh -N -L 127.0.0.1:LOCAL:127.0.0.1:REMOTE DEST`` for environment ``name``."""

    name: str
    pid: int
    local_port: int
    remote_port: int
    engine: str

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.local_port}"

    @property
    def spec(self) -> str:
        return f"127.0.0.1:{self.local_port}:127.0.0.1:{self.remote_port}"


def _tunnel_file(name: str) -> Path:
    """Where the Jupyter forward of environment `name` is recorded (pid, ports)."""
    return paths.cache_dir() / "tunnel" / f"{name}.json"


def _is_forward(forward: Forward) -> bool:
    """Whether the recorded process is still that ssh forward (a pid can be reused)."""
    try:
        argv = Path(f"/proc/{forward.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return forward.spec.encode() in argv and b"-N" in argv


def forward_of(name: str) -> Forward | None:
    """The running forward of environment ``name``, or None."""
    try:
        data = json.loads(_tunnel_file(name).read_text())
        forward = Forward(str(data["name"]), int(data["pid"]), int(data["local_port"]), int(data["remote_port"]),
                          str(data["engine"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return forward if forward.name == name and _is_forward(forward) else None


def stop_forward(name: str) -> bool:
    """Stop environment ``name``'s forward (if one runs) and drop its record; True if one ran."""
    forward = forward_of(name)
    _tunnel_file(name).unlink(missing_ok=True)
    _tunnel_file(name).with_suffix(".log").unlink(missing_ok=True)
    if forward is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(forward.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _is_forward(forward) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _is_forward(forward):
        with contextlib.suppress(ProcessLookupError):
            os.kill(forward.pid, signal.SIGKILL)
    return True


def _free_port(preferred: int) -> int:
    """``preferred`` when nothing listens on it here, else a port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeFailure("no free local port for the Jupyter forward")


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def start_forward(remote: Remote, name: str, remote_port: int, *, timeout: float = FORWARD_TIMEOUT) -> Forward:
    """Make sure environment ``name``'s remote port ``remote_port`` is reachable on this machine's
    127.0.0.1; a forward already running for it is kept (the same local port, so a bookmarked URL
    keeps working)."""
    running = forward_of(name)
    if running is not None and running.remote_port == remote_port and running.engine == remote.url:
        return running
    preferred = running.local_port if running is not None else remote_port
    stop_forward(name)
    exe = shutil.which("ssh")
    if exe is None:
        raise EnvbuildError("ssh was not found on PATH; install the OpenSSH client (e.g. apt install openssh-client)")
    record = _tunnel_file(name)
    record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    log = record.with_suffix(".log")
    for attempt in range(3):
        port = _free_port(preferred if attempt == 0 else 0)
        forward_spec = f"127.0.0.1:{port}:127.0.0.1:{remote_port}"
        argv = [exe, "-N", "-T", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes",
                "-o", "ServerAliveInterval=15", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                "-L", forward_spec, *remote.dest.args()]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    start_new_session=True, close_fds=True)
        forward = Forward(name, proc.pid, port, remote_port, remote.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not _answers(port):
            time.sleep(0.05)
        if proc.poll() is None and _answers(port):
            with atomic_write(record, mode=0o600, text=True) as fh:
                json.dump(asdict(forward), fh)
            return forward
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        said = log.read_text(errors="replace").strip().splitlines()
        if not any("Address already in use" in line or "cannot listen" in line for line in said):
            break
    raise RuntimeFailure(
        f"the Jupyter port forward to {remote.jump} did not start"
        + (f" ({said[-1]})" if said else "")
        + f"; `envbuild jupyter {name}` tries again (log: {log})"
    )


def attach(env: Environment, remote: Remote, *, start: bool) -> Environment:
    """``env`` as this machine reaches it: its engine's address, the SSH jump, and the Jupyter
    forward (started when ``start``; otherwise only one already running for its port counts)."""
    jupyter = env.endpoint("jupyter")
    tunnel = None
    if jupyter is not None and env.running:
        forward = start_forward(remote, env.name, jupyter.host_port) if start else forward_of(env.name)
        if forward is not None and forward.remote_port == jupyter.host_port and forward.engine == remote.url:
            tunnel = forward.address
    return replace(env, engine=remote.url, jump=remote.jump, tunnel=tunnel)
