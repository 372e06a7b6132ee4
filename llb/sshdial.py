"""A Docker engine on another machine, reached over SSH as the docker CLI and buildx reach one:
every byte stream is ``ssh [-l USER] [-p PORT] -- HOST docker system dial-stdio``.

The system OpenSSH client does the work, so the user's ``~/.ssh/config``, agent, known hosts and
jump hosts apply exactly as they do for ``docker -H ssh://...``. The streams to one destination
share one SSH connection: the first stream's ``ssh`` becomes an OpenSSH master (``ControlMaster``,
its socket in a private 0700 directory) and every later one opens a channel on it, so a command
pays for one handshake and one authentication, however many streams it opens. The master is told
to exit when the dialer closes; should this process die first, it exits by itself `PERSIST`
seconds after its last stream ended.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from .errors import BuilderUnreachable

if TYPE_CHECKING:
    from .connection import UnixBridge

__all__ = ["PERSIST", "SSHDestination", "SSHDialer", "dialer", "close_all", "explain_failure"]

PERSIST = 10
"""Seconds an idle master outlives its last stream (only matters when this process died)."""
PROMPT_TIMEOUT = 120.0
"""Seconds the first connection may take on a terminal, where ssh may ask for a passphrase."""
ALIVE_INTERVAL = 10
"""ServerAliveInterval: a connection that stops answering is dropped after three of these."""

_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,252}[A-Za-z0-9])?")
_SOCKET_PATH = re.compile(r"(/[A-Za-z0-9_.@+-]+)+")
_SAFE_DIR = re.compile(r"/[A-Za-z0-9_./-]*")
_PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
_API_VERSION = re.compile(r"1\.\d{1,3}")


@dataclass(frozen=True, slots=True)
class SSHDestination:
    """Where ``ssh://[USER@]HOST[:PORT][/SOCKET]`` points; HOST may be an alias of ``~/.ssh/config``.

    Only names and addresses are accepted (no option-like or blank values), so no part of an
    address can become an ssh option or a second ``ProxyJump`` hop."""

    host: str
    user: str | None = None
    port: int | None = None
    socket_path: str | None = None
    """The engine's socket on the remote machine (default: what its ``docker`` uses)."""

    @classmethod
    def parse(cls, url: str) -> SSHDestination:
        """The destination of an ``ssh://`` URL; ValueError says what is wrong with it."""
        text = url.strip()
        if not text.startswith("ssh://"):
            raise ValueError(f"{url!r} is not an ssh:// address")
        try:
            parts = urllib.parse.urlsplit(text)
        except ValueError as exc:
            raise ValueError(f"{url!r}: not a host name or address ({exc})") from None
        if parts.query or parts.fragment:
            raise ValueError(f"{url!r}: query parameters and fragments are not allowed in an ssh:// address")
        if parts.password is not None:
            raise ValueError(f"{url!r}: a password in the address is not supported; use a key or the SSH agent")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{url!r}: the port must be a number from 1 to 65535") from None
        host = parts.hostname or ""
        if not host:
            raise ValueError(f"{url!r}: no host name")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{url!r}: {host!r} is not a host name or address") from None
        elif not _HOST.fullmatch(host):
            raise ValueError(f"{url!r}: {host!r} is not a host name or address (letters, digits, '.', '-', '_')")
        user = urllib.parse.unquote(parts.username) if parts.username is not None else None
        if user is not None and not _USER.fullmatch(user):
            raise ValueError(f"{url!r}: {user!r} is not a user name this tool passes to ssh")
        if port == 0:
            raise ValueError(f"{url!r}: the port must be a number from 1 to 65535")
        path = parts.path.rstrip("/") or None
        if path is not None and not _SOCKET_PATH.fullmatch(path):
            raise ValueError(f"{url!r}: {path!r} is not a socket path")
        return cls(host=host, user=user or None, port=port, socket_path=path)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"

    @property
    def url(self) -> str:
        return f"ssh://{self.netloc}{self.socket_path or ''}"

    def __str__(self) -> str:
        return self.url

    def args(self) -> list[str]:
        """The destination as ssh arguments, ending the options (``--``) before the host."""
        out: list[str] = []
        if self.user:
            out += ["-l", self.user]
        if self.port:
            out += ["-p", str(self.port)]
        return [*out, "--", self.host]

    def remote_command(self) -> str:
        """What runs on the remote machine for one stream to its engine."""
        if self.socket_path:
            return f"docker --host={shlex.quote('unix://' + self.socket_path)} system dial-stdio"
        return "docker system dial-stdio"


def explain_failure(dest: SSHDestination, returncode: int | None, stderr: str) -> tuple[str, str]:
    """(reason, hint) for a stream that ended before the remote engine answered."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("Warning: Permanently")]
    last = lines[-1] if lines else ""
    text = "\n".join(lines)
    target = dest.netloc
    config = f"check `ssh {' '.join(shlex.quote(a) for a in dest.args() if a != '--')} docker version` works"
    if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return (
            f"the host key of {dest.host} is unknown or has changed ({last})",
            f"connect once with ssh to check and accept it; {config}",
        )
    if "Permission denied" in text and ("publickey" in text or "password" in text or "keyboard" in text):
        return (
            f"{target} refused the login ({last})",
            "load the key into your agent (`ssh-add`) or name it with IdentityFile for this host in "
            f"~/.ssh/config; {config}",
        )
    if any(s in text for s in ("Could not resolve hostname", "Connection refused", "timed out", "No route to host")):
        return f"ssh could not connect to {target} ({last})", config
    if returncode == 255:
        return f"the ssh connection to {target} failed or was lost ({last or 'ssh exit status 255'})", config
    if returncode == 127 or "command not found" in text or "docker: not found" in text:
        return (
            f"{dest.host} has no `docker` command on the PATH of a non-interactive SSH session ({last})",
            "install the Docker CLI there (Docker 18.09 or later), or make the login PATH include it",
        )
    if "dial-stdio" in text and ("unknown command" in text or "is not a docker command" in text):
        return (
            f"the docker CLI on {dest.host} has no `docker system dial-stdio` ({last})",
            "it came with Docker 18.09; upgrade Docker on that machine",
        )
    if "permission denied" in text.lower() and "docker" in text.lower():
        return (
            f"the user on {dest.host} may not use its Docker engine ({last})",
            "add that user to the docker group there (`sudo usermod -aG docker USER`, then log in again)",
        )
    if "Cannot connect to the Docker daemon" in text or "Is the docker daemon running" in text:
        return (
            f"the Docker engine on {dest.host} is not running ({last})",
            "start it there (`sudo systemctl start docker`)",
        )
    status = f"exit status {returncode}" if returncode is not None else "no answer"
    return f"`ssh {target} {dest.remote_command()}` ended ({status}){': ' + last if last else ''}", config


def _headers(head: list[str]) -> dict[str, str]:
    """An HTTP head's header lines by lower-case name."""
    pairs = (line.split(":", 1) for line in head[1:] if ":" in line)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def _complete(answer: bytes) -> bool:
    """Whether an HTTP response with a Content-Length body has been read whole."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = _headers(head.decode("latin-1").split("\r\n")).get("content-length", "0")
    return length.isdigit() and len(body) >= int(length)


def _socket_dir() -> str | None:
    """A directory for the control socket whose path ssh takes literally and whose name fits a
    socket address (``%``, ``~``, ``$`` and blanks have meanings in ssh's options)."""
    for candidate in (os.environ.get("XDG_RUNTIME_DIR", ""), tempfile.gettempdir(), "/tmp"):
        if candidate and _SAFE_DIR.fullmatch(candidate) and len(candidate) < 64 and os.path.isdir(candidate):
            return candidate
    return None


class _Stream:
    """One ssh process and the file its diagnostics go to."""

    def __init__(self, proc: subprocess.Popen[bytes], err: IO[bytes]) -> None:
        self.proc = proc
        self.err = err

    def stderr(self) -> str:
        try:
            self.err.seek(0)
            return self.err.read(64 * 1024).decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError):
            self.err.close()


class SSHDialer:
    """Byte streams to one remote Docker engine, all on one SSH connection (see the module doc)."""

    def __init__(self, dest: SSHDestination, *, timeout: float = 30.0) -> None:
        exe = shutil.which("ssh")
        if exe is None:
            raise BuilderUnreachable(
                dest.url, "the OpenSSH client `ssh` is not on PATH", "install it (e.g. `apt install openssh-client`)"
            )
        self.dest = dest
        self.timeout = timeout
        self._exe = exe
        self._dir = tempfile.mkdtemp(prefix="llb-ssh-", dir=_socket_dir())
        self._control = os.path.join(self._dir, "c")
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._streams: list[_Stream] = []
        self._spare: socket.socket | None = None
        self._ready = False
        self._closed = False
        self._api: UnixBridge | None = None
        self.streams_opened = 0
        self.api_version: str | None = None
        """The engine's API version, from the ``Api-Version`` header of its ``/_ping`` answer (as the
        docker CLI negotiates it): an API client need not ask again."""

    # ------------------------------------------------------------ processes

    def _argv(self, *options: str, command: str | None = None) -> list[str]:
        return [
            self._exe,
            "-T",
            "-o",
            f"ControlPath={self._control}",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPersist={PERSIST}",
            "-o",
            f"ConnectTimeout={max(1, int(self.timeout))}",
            "-o",
            f"ServerAliveInterval={ALIVE_INTERVAL}",
            *options,
            *self.dest.args(),
            *([command] if command else []),
        ]

    def _spawn(self, argv: list[str]) -> tuple[socket.socket, _Stream]:
        """Start ``argv`` with one end of a socket pair as its stdin and stdout; ours is returned."""
        if self._closed:
            raise BuilderUnreachable(self.dest.url, "the SSH connection was closed")
        ours, theirs = socket.socketpair()
        err = tempfile.TemporaryFile(dir=self._dir)  # noqa: SIM115 - kept open for the process, closed when reaped
        try:
            proc = subprocess.Popen(
                argv, stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=err, start_new_session=True, close_fds=True
            )
        except OSError as exc:
            ours.close()
            err.close()
            raise BuilderUnreachable(self.dest.url, f"cannot run {self._exe}: {exc}") from None
        finally:
            theirs.close()
        stream = _Stream(proc, err)
        with self._lock:
            self._streams = [s for s in self._streams if not self._reaped(s)]
            self._streams.append(stream)
            self.streams_opened += 1
        return ours, stream

    @staticmethod
    def _reaped(stream: _Stream) -> bool:
        if stream.proc.poll() is None:
            return False
        with contextlib.suppress(OSError):
            stream.err.close()
        return True

    # ------------------------------------------------------------ the first connection

    def check(self) -> None:
        """Open the shared connection with one stream that asks the engine for ``/_ping``; raise
        BuilderUnreachable saying exactly what is missing when it does not answer. The stream stays
        open (HTTP keep-alive) for the first `dial`."""
        with self._check_lock:
            if self._ready:
                return
            self._probe()

    def _probe(self) -> None:
        sock, stream = self._spawn(self._argv(command=self.dest.remote_command()))
        limit = PROMPT_TIMEOUT if sys.stdin is not None and sys.stdin.isatty() else self.timeout
        deadline = time.monotonic() + limit
        answer = b""
        timed_out = False
        try:
            sock.settimeout(limit)
            sock.sendall(_PING)
            while not _complete(answer) and (chunk := sock.recv(4096)):
                answer += chunk
                sock.settimeout(max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            timed_out = True
        except OSError:
            pass
        head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        status = head[0].split(" ")
        if _complete(answer) and len(status) > 1 and status[0].startswith("HTTP/") and status[1] == "200":
            version = _headers(head).get("api-version")
            sock.settimeout(None)
            with self._lock:
                self._ready = True
                self._spare = sock
                self.api_version = version if version and _API_VERSION.fullmatch(version) else None
            return
        sock.close()
        try:
            stream.proc.wait(2 if timed_out else 5)
        except subprocess.TimeoutExpired:
            detail = stream.stderr().strip().splitlines()
            stream.stop()
            raise BuilderUnreachable(
                self.dest.url,
                f"no answer from the Docker engine through ssh within {limit:.0f}s"
                + (f" ({detail[-1]})" if detail else ""),
                "check that the machine is up and that `docker version` answers there",
            ) from None
        if answer and stream.proc.returncode == 0:
            raise BuilderUnreachable(
                self.dest.url, f"the remote engine answered {head[0]!r} to /_ping", "is it a Docker engine?"
            )
        reason, hint = explain_failure(self.dest, stream.proc.returncode, stream.stderr())
        raise BuilderUnreachable(self.dest.url, reason, hint)

    def last_failure(self) -> str:
        """Why the most recent stream that failed ended, or "" (for errors after the first one)."""
        with self._lock:
            streams = list(self._streams)
        for stream in reversed(streams):
            code = stream.proc.poll()
            if code not in (None, 0):
                reason, _ = explain_failure(self.dest, code, stream.stderr())
                return reason
        return ""

    # ------------------------------------------------------------ streams

    def dial(self) -> socket.socket:
        """A new stream to the remote engine's API (HTTP, as on its socket)."""
        self.check()
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            return spare
        return self._spawn(self._argv(command=self.dest.remote_command()))[0]

    def dial_tcp(self, host: str, port: int) -> socket.socket:
        """A TCP connection made by the remote machine (``ssh -W``): its 127.0.0.1 is reachable."""
        if not (0 < port < 65536) or not (_HOST.fullmatch(host) or _is_ip(host)):
            raise ValueError(f"invalid forward target {host}:{port}")
        self.check()
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return self._spawn(self._argv("-W", target))[0]

    def api_socket(self) -> str:
        """A private local unix socket that serves the remote engine's API, one stream per
        connection (for HTTP clients that cannot run a command to connect)."""
        from .connection import SocketStream, UnixBridge

        self.check()
        with self._lock:
            if self._api is None:
                self._api = UnixBridge(lambda: SocketStream(self.dial()))
            return self._api.path

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            api, self._api = self._api, None
            streams, self._streams = self._streams, []
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
        if api is not None:
            api.close()
        if os.path.exists(self._control):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    [self._exe, "-o", f"ControlPath={self._control}", "-O", "exit", *self.dest.args()],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=5,
                )
        for stream in streams:
            stream.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


_dialers: dict[SSHDestination, SSHDialer] = {}
_dialers_lock = threading.Lock()
_registered = False


def dialer(destination: SSHDestination | str, *, timeout: float = 30.0) -> SSHDialer:
    """This process's dialer for a destination: one SSH connection per destination, shared by
    every client (BuildKit's gRPC, sessions, the engine API), closed when the process exits."""
    dest = destination if isinstance(destination, SSHDestination) else _parse(destination)
    with _dialers_lock:
        found = _dialers.get(dest)
        if found is None or found.closed:
            global _registered
            if not _registered:
                atexit.register(close_all)
                _registered = True
            found = _dialers[dest] = SSHDialer(dest, timeout=timeout)
        return found


def _parse(url: str) -> SSHDestination:
    try:
        return SSHDestination.parse(url)
    except ValueError as exc:
        raise BuilderUnreachable(url, str(exc), "use ssh://[USER@]HOST[:PORT]") from None


def close_all() -> None:
    """Close every dialer of this process (their masters exit, their directories go)."""
    with _dialers_lock:
        found = list(_dialers.values())
        _dialers.clear()
    for d in found:
        d.close()
