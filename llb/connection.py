"""Transports to a BuildKit daemon.

grpcio can neither adopt an existing socket nor speak through a hijacked HTTP
connection, so every non-direct transport (the Docker engine's `/grpc`
endpoint, `buildctl dial-stdio` in a container or pod) is bridged to a private
unix socket: each connection grpcio opens there gets its own upstream and two
byte pumps.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .dockerhost import DockerContextError, DockerHost
from .dockerhost import resolve as resolve_docker_host
from .errors import BuilderUnreachable

if TYPE_CHECKING:
    import grpc

__all__ = [
    "TLSConfig",
    "Transport",
    "DockerEngineTransport",
    "DirectTransport",
    "DialStdioTransport",
    "open_transport",
    "resolve_address",
    "hijack",
]

_CHUNK = 256 * 1024
_START_HINT_BUILDKITD = (
    "start one with `buildkitd --addr {addr}`, or run it in a container "
    "(`docker run -d --name buildkitd --privileged moby/buildkit`) and connect to "
    "docker-container://buildkitd"
)


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Client TLS for `tcp://` buildkitd: CA bundle, optional client cert/key, server name override."""

    ca_cert: str | Path | None = None
    cert: str | Path | None = None
    key: str | Path | None = None
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        import grpc

        def read(p: str | Path | None) -> bytes | None:
            return Path(p).read_bytes() if p is not None else None

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.ca_cert),
            private_key=read(self.key),
            certificate_chain=read(self.cert),
        )


class ByteStream(Protocol):
    """A bidirectional byte stream that can be pumped to a socket."""

    def recv(self, n: int) -> bytes: ...
    def sendall(self, data: bytes) -> None: ...
    def shutdown_write(self) -> None: ...
    def close(self) -> None: ...


class SocketStream:
    """A socket whose first reads return bytes already read past an HTTP upgrade header."""

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
        self.sock = sock
        self._leftover = leftover

    def recv(self, n: int) -> bytes:
        if self._leftover:
            data, self._leftover = self._leftover[:n], self._leftover[n:]
            return data
        return self.sock.recv(n)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class ProcessStream:
    """stdin/stdout of a `buildctl dial-stdio` style subprocess."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._in = proc.stdin
        self._out = proc.stdout.fileno()

    def recv(self, n: int) -> bytes:
        return os.read(self._out, n)

    def sendall(self, data: bytes) -> None:
        self._in.write(data)
        self._in.flush()

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self._in.close()

    def close(self) -> None:
        self.shutdown_write()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stderr_text(self) -> str:
        if self.proc.stderr is None or self.proc.poll() is None:
            return ""
        try:
            return self.proc.stderr.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            return ""


def pump(src: ByteStream, dst: ByteStream, done: Callable[[], None] | None = None) -> None:
    """Copy src to dst until EOF, then half-close dst."""
    try:
        while True:
            data = src.recv(_CHUNK)
            if not data:
                break
            dst.sendall(data)
    except (OSError, ValueError):
        pass
    finally:
        dst.shutdown_write()
        if done is not None:
            done()


def splice(a: ByteStream, b: ByteStream, name: str = "llb-pump") -> None:
    """Pump a<->b on two daemon threads; both are closed once both directions ended."""
    remaining = [2]
    lock = threading.Lock()

    def finished() -> None:
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last:
            a.close()
            b.close()

    threading.Thread(target=pump, args=(a, b, finished), name=name, daemon=True).start()
    threading.Thread(target=pump, args=(b, a, finished), name=name, daemon=True).start()


class HijackError(Exception):
    """The HTTP upgrade was refused; `status` is the HTTP status code."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def hijack(sock: socket.socket, path: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """Upgrade an HTTP/1.1 connection to h2c; return bytes already read past the 101 header.

    The server starts HTTP/2 immediately and its SETTINGS frame often arrives in
    the same read as the header, so the leftover must be forwarded, not dropped.
    """
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: docker",
        "Upgrade: h2c",
        "Connection: Upgrade",
        "Content-Length: 0",
    ]
    lines += [f"{k}: {v}" for k, v in headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise HijackError(0, f"connection closed during the upgrade of {path}")
        buf += chunk
        if len(buf) > 65536:
            raise HijackError(0, f"oversized HTTP response while upgrading {path}")
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if status != 101:
        body = rest
        sock.settimeout(0.5)
        try:
            while len(body) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                body += chunk
        except OSError:
            pass
        text = body.decode(errors="replace").strip()
        raise HijackError(status, f"{status_line}: {text}" if text else status_line)
    return rest


# ---------------------------------------------------------------- addresses


def resolve_address(address: str | None) -> str:
    """Apply the defaults: explicit address, else $BUILDKIT_HOST, else the Docker engine."""
    if address:
        return address
    env = os.environ.get("BUILDKIT_HOST", "").strip()
    return env or "docker://"


def _docker_host(address: str) -> DockerHost:
    """The engine a ``docker://[ENGINE]`` or ``ssh://`` address means; ``docker://`` alone is the
    docker CLI's engine ($DOCKER_HOST, else its current context, else the local socket)."""
    if address.startswith("ssh://"):
        return DockerHost(address, "address")
    rest = address[len("docker://") :]
    if rest:
        return DockerHost("unix://" + rest if rest.startswith("/") else rest, "address")
    try:
        return resolve_docker_host()
    except DockerContextError as exc:
        raise BuilderUnreachable(address, str(exc), "fix the context, or pick one with `docker context use`") from None


# ---------------------------------------------------------------- bridge


class UnixBridge:
    """A private listening unix socket; every accepted connection is spliced to `dial()`."""

    def __init__(self, dial: Callable[[], ByteStream], first: ByteStream | None = None) -> None:
        self._dial = dial
        self._first = first
        self._dir = tempfile.mkdtemp(prefix="llb-")
        self.path = os.path.join(self._dir, "bk.sock")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._closed = False
        self._lock = threading.Lock()
        self._streams: list[ByteStream] = []
        self.last_error: BaseException | None = None
        threading.Thread(target=self._accept_loop, name="llb-bridge", daemon=True).start()

    @property
    def target(self) -> str:
        return "unix://" + self.path

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            if self._closed:
                conn.close()
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            upstream, self._first = self._first, None
        if upstream is None:
            try:
                upstream = self._dial()
            except BaseException as exc:  # surfaced through last_error
                self.last_error = exc
                conn.close()
                return
        with self._lock:
            if self._closed:
                upstream.close()
                conn.close()
                return
            self._streams.append(upstream)
        splice(SocketStream(conn), upstream)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            streams, self._streams = self._streams, []
            first, self._first = self._first, None
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for s in streams + ([first] if first else []):
            with contextlib.suppress(OSError):
                s.close()
        shutil.rmtree(self._dir, ignore_errors=True)


# ---------------------------------------------------------------- transports


class Transport:
    """Where gRPC goes (`target`) and how sessions attach to the daemon."""

    address: str
    target: str
    is_docker_engine: bool = False
    hint: str = ""
    """How to start the builder, for when it does not answer."""

    def channel_options(self) -> list[tuple[str, object]]:
        """Large messages both ways; large trailers too: BuildKit v0.13+ puts a failed step's whole
        command into the status it returns, which gRPC's default 16 KiB metadata limit would replace
        with "Stream removed"."""
        return [
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_metadata_size", 1 << 20),
            ("grpc.absolute_max_metadata_size", 1 << 20),
            ("grpc.enable_http_proxy", 0),
        ]

    def credentials(self) -> grpc.ChannelCredentials | None:
        return None

    def open_session_stream(self, headers: Sequence[tuple[str, str]]) -> ByteStream | None:
        """A raw stream where the daemon acts as HTTP/2 client (Docker `/session`), or None
        when sessions go through `Control.Session` instead."""
        return None

    def describe_failure(self) -> str:
        return ""

    def close(self) -> None:
        pass


def _docker_socket_factory(host: DockerHost, timeout: float) -> tuple[Callable[[], socket.socket], str]:
    """A connector for the Docker API endpoint and a readable description of it."""
    parsed = urllib.parse.urlparse(host.url)
    if parsed.scheme == "unix":
        path = parsed.path or "/var/run/docker.sock"
        return functools.partial(_connect_unix, path, timeout), path
    if parsed.scheme in ("tcp", "http", "https"):
        name = parsed.hostname or "localhost"
        tls = _docker_tls_context(parsed.scheme, host)
        port = parsed.port or (2376 if tls is not None else 2375)
        return functools.partial(_connect_tcp, name, port, timeout, tls), f"{name}:{port}"
    if parsed.scheme == "ssh":
        from .sshdial import dialer

        remote = dialer(host.url, timeout=max(timeout, 10.0))
        return remote.dial, f"{remote.dest.netloc} (over ssh)"
    raise BuilderUnreachable(
        host.url,
        f"unsupported DOCKER_HOST scheme {parsed.scheme!r}",
        "use unix:///path/to/docker.sock, tcp://host:port or ssh://[user@]host[:port]",
    )


def _connect_unix(path: str, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


def _connect_tcp(host: str, port: int, timeout: float, tls: ssl.SSLContext | None) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return tls.wrap_socket(s, server_hostname=host) if tls is not None else s


def _docker_tls_context(scheme: str, host: DockerHost) -> ssl.SSLContext | None:
    """TLS to a tcp:// engine as the docker CLI sets it up: a docker context's TLS files and
    SkipTLSVerify, else DOCKER_TLS_VERIFY and DOCKER_CERT_PATH; None for plain TCP."""
    context = host.context
    if context is not None:
        if context.tls_dir is None and not context.skip_tls_verify and scheme != "https":
            return None
        verify = not context.skip_tls_verify
        cert_dir = Path(context.tls_dir) if context.tls_dir else None
    else:
        verify = os.environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0")
        if not verify and scheme != "https":
            return None
        cert_dir = Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")
    ca = cert_dir / "ca.pem" if cert_dir is not None else None
    ctx = ssl.create_default_context(cafile=str(ca) if ca is not None and ca.exists() else None)
    if cert_dir is not None and (cert_dir / "cert.pem").exists():
        ctx.load_cert_chain(str(cert_dir / "cert.pem"), str(cert_dir / "key.pem"))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class DockerEngineTransport(Transport):
    """The Docker engine's embedded BuildKit through its `/grpc` and `/session` endpoints."""

    is_docker_engine = True

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        host = _docker_host(address)
        self.docker_host = host.url
        self._connect, self._where = _docker_socket_factory(host, timeout)
        first = self._dial_checked(timeout)
        self._bridge = UnixBridge(self._dial_grpc, first=first)
        self.target = self._bridge.target

    def _raw(self) -> socket.socket:
        s = self._connect()
        s.settimeout(None)
        return s

    def _dial_grpc(self) -> ByteStream:
        s = self._raw()
        try:
            leftover = hijack(s, "/grpc")
        except BaseException:
            s.close()
            raise
        return SocketStream(s, leftover)

    def _dial_checked(self, timeout: float) -> ByteStream:
        hint_start = (
            "is dockerd running? start it with `sudo systemctl start docker` "
            "(in the envbuild repository: `sudo scripts/setup-engine.sh`)"
        )
        if self.docker_host.startswith("ssh://"):
            hint_start = "is dockerd running on that machine? check with `docker -H " + self.docker_host + " version`"
        try:
            s = self._connect()
        except BuilderUnreachable:
            raise
        except FileNotFoundError:
            raise BuilderUnreachable(
                self.address, f"the Docker socket {self._where} does not exist", hint_start
            ) from None
        except PermissionError:
            raise BuilderUnreachable(
                self.address,
                f"permission denied on the Docker socket {self._where}",
                "add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again) or run as root",
            ) from None
        except (ConnectionRefusedError, TimeoutError) as exc:
            raise BuilderUnreachable(self.address, f"nothing answers at {self._where} ({exc})", hint_start) from None
        except OSError as exc:
            raise BuilderUnreachable(self.address, f"{self._where}: {exc}", hint_start) from None
        try:
            s.settimeout(timeout)
            leftover = hijack(s, "/grpc")
        except HijackError as exc:
            s.close()
            raise BuilderUnreachable(
                self.address,
                f"the Docker engine does not offer BuildKit on /grpc ({exc})",
                "BuildKit needs Docker engine >= 18.09; alternatively run a standalone buildkitd and set BUILDKIT_HOST",
            ) from None
        except TimeoutError:
            s.close()
            raise BuilderUnreachable(
                self.address,
                f"the Docker engine at {self._where} did not answer within {timeout}s",
                hint_start,
            ) from None
        except OSError as exc:
            s.close()
            raise BuilderUnreachable(self.address, f"{self._where}: {exc}", hint_start) from None
        s.settimeout(None)
        return SocketStream(s, leftover)

    def open_session_stream(self, headers: Sequence[tuple[str, str]]) -> ByteStream:
        s = self._raw()
        try:
            leftover = hijack(s, "/session", headers)
        except BaseException:
            s.close()
            raise
        return SocketStream(s, leftover)

    def describe_failure(self) -> str:
        err = self._bridge.last_error
        if err:
            return str(err)
        if self.docker_host.startswith("ssh://"):
            from .sshdial import dialer

            return dialer(self.docker_host).last_failure()
        return ""

    def close(self) -> None:
        self._bridge.close()


class DirectTransport(Transport):
    """A buildkitd listening on a unix socket or TCP (optionally TLS)."""

    def __init__(self, address: str, tls: TLSConfig | None) -> None:
        self.address = address
        self._tls = tls
        parsed = urllib.parse.urlparse(address)
        if parsed.scheme == "unix":
            path = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
            if not os.path.exists(path):
                raise BuilderUnreachable(
                    address,
                    f"the socket {path} does not exist",
                    _START_HINT_BUILDKITD.format(addr=address),
                )
            if not os.access(path, os.R_OK | os.W_OK):
                raise BuilderUnreachable(
                    address,
                    f"permission denied on {path}",
                    "run as a user that may open the socket (or as root)",
                )
            self.target = "unix://" + path
        elif parsed.scheme == "tcp":
            if not parsed.hostname or not parsed.port:
                raise BuilderUnreachable(address, "expected tcp://HOST:PORT", "")
            self.target = f"{parsed.hostname}:{parsed.port}"
            self._server_name = parsed.hostname
        else:
            raise BuilderUnreachable(address, f"unsupported scheme {parsed.scheme!r}", "")

    def channel_options(self) -> list[tuple[str, object]]:
        opts = super().channel_options()
        if self._tls is not None and self._tls.server_name:
            opts.append(("grpc.ssl_target_name_override", self._tls.server_name))
        return opts

    def credentials(self) -> grpc.ChannelCredentials | None:
        return self._tls.credentials() if self._tls is not None else None


class DialStdioTransport(Transport):
    """`buildctl dial-stdio` inside a container or pod, one subprocess per gRPC connection."""

    def __init__(self, address: str, argv: Sequence[str], hint: str) -> None:
        self.address = address
        self.argv = list(argv)
        self.hint = hint
        exe = self.argv[0]
        if shutil.which(exe) is None:
            raise BuilderUnreachable(address, f"`{exe}` is not on PATH", hint)
        self._last: ProcessStream | None = None
        self._bridge = UnixBridge(self._dial)
        self.target = self._bridge.target

    def _dial(self) -> ByteStream:
        proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,
        )
        stream = ProcessStream(proc)
        self._last = stream
        return stream

    def describe_failure(self) -> str:
        last = self._last
        if last is None:
            return ""
        if last.proc.poll() is not None:
            return f"`{' '.join(self.argv)}` exited with {last.proc.returncode}: {last.stderr_text()}"
        return ""

    def close(self) -> None:
        self._bridge.close()


def _kube_argv(address: str) -> list[str]:
    parsed = urllib.parse.urlparse(address)
    pod = parsed.netloc or parsed.path.lstrip("/")
    q = urllib.parse.parse_qs(parsed.query)
    argv = ["kubectl"]
    if q.get("context"):
        argv += ["--context", q["context"][0]]
    if q.get("namespace"):
        argv += ["--namespace", q["namespace"][0]]
    argv += ["exec", "-i", pod]
    if q.get("container"):
        argv += ["-c", q["container"][0]]
    return [*argv, "--", "buildctl", "dial-stdio"]


def open_transport(address: str, tls: TLSConfig | None, timeout: float) -> Transport:
    """Build the transport for an already-resolved address (see `resolve_address`)."""
    scheme = address.split("://", 1)[0] if "://" in address else ""
    if scheme in ("docker", "ssh"):
        return DockerEngineTransport(address, timeout)
    if scheme in ("unix", "tcp"):
        return DirectTransport(address, tls)
    if scheme == "docker-container":
        name = urllib.parse.urlparse(address).netloc
        return DialStdioTransport(
            address,
            ["docker", "exec", "-i", name, "buildctl", "dial-stdio"],
            f"start it with `docker run -d --name {name} --privileged moby/buildkit`",
        )
    if scheme == "kube-pod":
        return DialStdioTransport(
            address,
            _kube_argv(address),
            "deploy buildkitd as a pod (see moby/buildkit examples/kubernetes) and check `kubectl get pods`",
        )
    raise BuilderUnreachable(
        address,
        "unknown address scheme",
        "use docker://, ssh://[USER@]HOST[:PORT], unix://, tcp://, docker-container://NAME or kube-pod://NAME",
    )
