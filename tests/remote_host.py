"""The GPU box of the remote tests: a second OpenSSH server on 127.0.0.1, on a port of its own, in
front of this machine's Docker engine (``DOCKER_HOST=ssh://USER@127.0.0.1:PORT``).

Everything it uses lives in one temporary directory: its host key, the client key the test made
(the only one it accepts), its configuration and log. The engine behind it is the one the tests
were pointed at (``$DOCKER_HOST`` is passed on to its sessions), so the remote tests run against
both engines.

OpenSSH reads ``~/.ssh`` from the password database, not from ``$HOME``. So that a test session
with ``HOME`` in a temporary directory is a user whose home that is, `client_home` writes the
session's ``~/.ssh/config`` (how to reach the box: its key and known host key) and puts an ``ssh``
first on the session's PATH that reads that file (``ssh -F $HOME/.ssh/config``). The tester's own
``~/.ssh`` is never read or written.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def sshd_reason() -> str | None:
    """Why the remote tests cannot run here, or None."""
    if not os.path.exists(SSHD):
        return "OpenSSH server not installed: run scripts/setup-engine.sh --sshd (Debian's openssh-server)"
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "OpenSSH client not installed (apt install openssh-client)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "envbuild-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)


@dataclass
class RemoteHost:
    root: Path
    port: int
    user: str
    proc: subprocess.Popen[bytes]
    client_key: Path
    known_hosts: Path

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def drop_connections(self) -> int:
        """Kill the server side of every open SSH connection (not the listener): what a network
        that went away looks like to the client. Returns how many were killed."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        for pid in out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        return len(out)

    def log(self) -> str:
        try:
            return (self.root / "sshd.log").read_text(errors="replace")
        except OSError:
            return ""


def start(root: Path, *, session_env: dict[str, str] | None = None, client_key: Path | None = None) -> RemoteHost:
    """Start the server in ``root``; ``session_env`` goes to every session it starts (``SetEnv``)."""
    root.mkdir(parents=True, exist_ok=True)
    host_key = root / "host_key"
    _keygen(host_key)
    if client_key is None:
        client_key = root / "client_key"
        _keygen(client_key)
    (root / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = _free_port()
    env = dict(session_env or {})
    if "DOCKER_HOST" not in env and os.environ.get("DOCKER_HOST", "").startswith("unix://"):
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    lines = [
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}",
        f"PidFile {root / 'sshd.pid'}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding yes",
        "LogLevel VERBOSE",
    ]
    if env:
        lines.append("SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()))
    config = root / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # the privilege separation directory
    with open(root / "sshd.log", "ab") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    known_hosts = root / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(Path(f'{host_key}.pub').read_text().split()[:2])}\n")
    host = RemoteHost(root, port, getpass.getuser(), proc, client_key, known_hosts)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {host.log()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return host
        except OSError:
            time.sleep(0.05)
    host.stop()
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port}: {host.log()[-2000:]}")


def client_home(home: Path, host: RemoteHost, *, key: Path | None = None) -> Path:
    """Make ``home`` the home of a user who reaches ``host`` with ``key`` (default: the accepted
    one) and knows its host key; returns the directory to put first on PATH."""
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = ssh_dir / "config"
    block = (
        "Host 127.0.0.1\n"
        f"  IdentityFile {key or host.client_key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {host.known_hosts}\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
    )
    config.write_text(block)
    config.chmod(0o600)
    bin_dir = home / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "ssh"
    system_ssh = shutil.which("ssh", path=os.defpath) or "/usr/bin/ssh"  # not a wrapper made before
    wrapper.write_text(f'#!/bin/sh\nexec {system_ssh} -F "$HOME/.ssh/config" "$@"\n')
    wrapper.chmod(0o755)
    return bin_dir
