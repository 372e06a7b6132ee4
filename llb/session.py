"""The client side of a BuildKit session: the gRPC services the builder calls back
(health, local directories, secrets, ssh agent, registry auth, export receivers).

Roles are reversed on a session connection: the daemon is the HTTP/2 client,
we are the server. One grpcio server per Client serves every session; each
session's connection reaches it from a socket bound to a unique abstract unix
address, so a handler finds its session from `context.peer()`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import secrets as _secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from ._proto import auth_pb2, control_pb2, fsutil_pb2, secrets_pb2, sshforward_pb2
from .auth import DockerConfigAuth
from .connection import ByteStream, SocketStream, Transport, splice
from .filesync import DiffCopyReceiver, DiffCopySender, WalkOptions, write_stream_to_file

__all__ = ["SessionConfig", "Session", "SessionServer", "GrpcSessionStream"]

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
FILESYNC_DIFFCOPY = "/moby.filesync.v1.FileSync/DiffCopy"
FILESEND_DIFFCOPY = "/moby.filesync.v1.FileSend/DiffCopy"
SECRETS_GET = "/moby.buildkit.secrets.v1.Secrets/GetSecret"
SSH_CHECK = "/moby.sshforward.v1.SSH/CheckAgent"
SSH_FORWARD = "/moby.sshforward.v1.SSH/ForwardAgent"
AUTH_CREDENTIALS = "/moby.filesync.v1.Auth/Credentials"
CONTROL_SESSION = "/moby.buildkit.v1.Control/Session"

_HEALTH_SERVING = b"\x08\x01"
_PEER_PREFIX = "unix-abstract:llb-s-"


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What one solve exposes to the builder."""

    local_dirs: Mapping[str, Path] = field(default_factory=dict)
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    ssh: Mapping[str, str] = field(default_factory=dict)
    auth: DockerConfigAuth | None = None
    receive_dir: Path | None = None
    receive_file: Path | None = None


def _md(context: grpc.ServicerContext) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in context.invocation_metadata() or ():
        out.setdefault(key.lower(), []).append(value if isinstance(value, str) else value.decode())
    return out


class Session:
    """One builder session: a fresh id per solve (BuildKit v0.8 keys local sources by it)."""

    def __init__(self, server: SessionServer, config: SessionConfig, name: str = "llb") -> None:
        self.server = server
        self.config = config
        self.id = _secrets.token_hex(13)
        self.token = _secrets.token_hex(12)
        self.name = name
        dirs = sorted(str(Path(p).resolve()) for p in config.local_dirs.values())
        self.shared_key = hashlib.sha256("\0".join(dirs).encode()).hexdigest()[:32] if dirs else "llb"
        self.errors: list[str] = []
        self.received_bytes = 0
        self.sent_bytes = 0
        """File contents sent from `local_dirs` (the builder asks only for files it does not have)."""
        self.sent_files = 0
        self._count = threading.Lock()
        self._streams: list[ByteStream] = []
        self._closed = False

    def count_sent(self, files: int, data: int) -> None:
        with self._count:
            self.sent_files += files
            self.sent_bytes += data

    def methods(self) -> list[str]:
        m = [HEALTH_CHECK, AUTH_CREDENTIALS]
        if self.config.local_dirs:
            m.append(FILESYNC_DIFFCOPY)
        if self.config.secrets:
            m.append(SECRETS_GET)
        if self.config.ssh:
            m += [SSH_CHECK, SSH_FORWARD]
        if self.config.receive_dir is not None or self.config.receive_file is not None:
            m.append(FILESEND_DIFFCOPY)
        return m

    def headers(self) -> list[tuple[str, str]]:
        h = [
            ("X-Docker-Expose-Session-Uuid", self.id),
            ("X-Docker-Expose-Session-Name", self.name),
            ("X-Docker-Expose-Session-Sharedkey", self.shared_key),
        ]
        h += [("X-Docker-Expose-Session-Grpc-Method", m) for m in self.methods()]
        return h

    def attach(self, transport: Transport, channel: grpc.Channel) -> None:
        """Open the session connection: Docker's `/session` hijack, else `Control.Session` (once: a
        second solve in the session uses the same connection)."""
        if self._streams:
            return
        upstream = transport.open_session_stream(self.headers())
        if upstream is None:
            upstream = GrpcSessionStream(channel, self.headers())
        local = self.server.connect(self)
        self._streams += [upstream, local]
        splice(upstream, local, name="llb-session")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in self._streams:
            with contextlib.suppress(OSError):
                s.close()
        self.server.unregister(self)


class GrpcSessionStream:
    """`Control.Session` as a byte stream: each BytesMessage carries raw HTTP/2 bytes,
    session headers travel as lower-case gRPC metadata (standalone buildkitd)."""

    def __init__(self, channel: grpc.Channel, headers: Sequence[tuple[str, str]]) -> None:
        self._q: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        call: grpc.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
            CONTROL_SESSION,
            request_serializer=lambda data: control_pb2.BytesMessage(data=data).SerializeToString(),
            response_deserializer=lambda raw: control_pb2.BytesMessage.FromString(raw).data,
        )
        self._call = call(self._requests(), metadata=tuple((k.lower(), v) for k, v in headers))
        self._buf = b""
        self._eof = False

    def _requests(self) -> Iterator[bytes]:
        while True:
            item = self._q.get()
            if item is None:
                return
            yield item

    def recv(self, n: int) -> bytes:
        while not self._buf:
            if self._eof:
                return b""
            try:
                self._buf = next(self._call)
            except (StopIteration, grpc.RpcError):  # the stream is over
                self._eof = True
                return b""
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def sendall(self, data: bytes) -> None:
        self._q.put(bytes(data))

    def shutdown_write(self) -> None:
        self._q.put(None)

    def close(self) -> None:
        self._q.put(None)
        self._call.cancel()


class SessionServer:
    """A grpcio server on a private unix socket that serves every session of a Client."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._dir: str | None = None
        self.path = ""

    def _start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="llb-s-")
        self.path = os.path.join(self._dir, "session.sock")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="llb-session"),
            handlers=[_Services(self)],
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ],
        )
        server.add_insecure_port("unix://" + self.path)
        server.start()
        self._server = server

    def connect(self, session: Session) -> SocketStream:
        with self._lock:
            if self._server is None:
                self._start()
            self._sessions[session.token] = session
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(b"\0llb-s-" + session.token.encode())
        s.connect(self.path)
        return SocketStream(s)

    def unregister(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.token, None)

    def lookup(self, context: grpc.ServicerContext) -> Session:
        peer = context.peer()
        token = peer[len(_PEER_PREFIX) :] if peer.startswith(_PEER_PREFIX) else ""
        with self._lock:
            session = self._sessions.get(token)
        if session is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"no llb session for peer {peer!r}")
        return session

    def close(self) -> None:
        if self._server is not None:
            self._server.stop(None)
            self._server = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


# ---------------------------------------------------------------- handlers


class _Services(grpc.GenericRpcHandler):
    """The session services, on raw bytes: each method parses its own messages and finds its
    session from the peer address of the connection it came on."""

    def __init__(self, server: SessionServer) -> None:
        self._server = server
        unary, stream = grpc.unary_unary_rpc_method_handler, grpc.stream_stream_rpc_method_handler
        self._table: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
            HEALTH_CHECK: unary(self.health),
            FILESYNC_DIFFCOPY: stream(self.send_files),
            FILESEND_DIFFCOPY: stream(self.receive_export),
            SECRETS_GET: unary(self.secret),
            SSH_CHECK: unary(self.ssh_check),
            SSH_FORWARD: stream(self.ssh_forward),
            AUTH_CREDENTIALS: unary(self.credentials),
        }

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        return self._table.get(handler_call_details.method)

    def health(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        return _HEALTH_SERVING

    def send_files(self, request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        """FileSync.DiffCopy: a local directory to the builder, filtered as its metadata asks."""
        session = self._server.lookup(context)
        md = _md(context)
        name = (md.get("dir-name") or [""])[0]
        root = session.config.local_dirs.get(name)
        if root is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no access allowed to dir {name!r}")
        opts = WalkOptions(
            include=tuple(md.get("include-patterns", ())),
            exclude=tuple(md.get("exclude-patterns", ())),
            follow_paths=tuple(md.get("followpaths", ())),
        )
        packets = (fsutil_pb2.Packet.FromString(raw) for raw in request_iterator)
        sender = DiffCopySender(root, opts)
        try:
            for p in sender.run(packets):
                yield p.SerializeToString()
        finally:
            session.count_sent(sender.sent_files, sender.sent_bytes)

    def receive_export(self, request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        """FileSend.DiffCopy: the `tar` exporter's stream into a file, or `local`'s into a directory."""
        session = self._server.lookup(context)
        cfg = session.config
        if cfg.receive_file is not None:
            try:
                session.received_bytes += write_stream_to_file(
                    request_iterator,
                    cfg.receive_file,
                    lambda raw: control_pb2.BytesMessage.FromString(raw).data,
                )
            except OSError as exc:
                session.errors.append(f"writing {cfg.receive_file}: {exc}")
                context.abort(grpc.StatusCode.INTERNAL, str(exc))
            return
        if cfg.receive_dir is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "this session receives no export")
        receiver = DiffCopyReceiver(cfg.receive_dir)
        packets = (fsutil_pb2.Packet.FromString(raw) for raw in request_iterator)
        for p in receiver.run(packets):
            yield p.SerializeToString()
        if receiver.error:
            session.errors.append(f"local export to {cfg.receive_dir}: {receiver.error}")

    def secret(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        session = self._server.lookup(context)
        req = secrets_pb2.GetSecretRequest.FromString(request)
        data = session.config.secrets.get(req.ID)
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"secret {req.ID} not found")
        return secrets_pb2.GetSecretResponse(data=data).SerializeToString()

    def ssh_check(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        session = self._server.lookup(context)
        sid = sshforward_pb2.CheckAgentRequest.FromString(request).ID or "default"
        if sid not in session.config.ssh:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unset ssh forward key {sid}")
        return b""

    def ssh_forward(self, request_iterator: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        """SSH.ForwardAgent: one connection to the agent's socket, bytes pumped both ways."""
        session = self._server.lookup(context)
        sid = (_md(context).get("buildkit.ssh.id") or ["default"])[0] or "default"
        path = session.config.ssh.get(sid)
        if path is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unset ssh forward key {sid}")
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            agent.connect(path)
        except OSError as exc:
            agent.close()
            context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot connect to ssh agent {path}: {exc}")

        def upstream() -> None:
            try:
                with contextlib.suppress(grpc.RpcError, OSError):  # the builder or the agent hung up
                    for raw in request_iterator:
                        agent.sendall(sshforward_pb2.BytesMessage.FromString(raw).data)
            finally:
                with contextlib.suppress(OSError):
                    agent.shutdown(socket.SHUT_WR)

        threading.Thread(target=upstream, name="llb-ssh", daemon=True).start()
        try:
            while data := agent.recv(65536):
                yield sshforward_pb2.BytesMessage(data=data).SerializeToString()
        finally:
            agent.close()

    def credentials(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        session = self._server.lookup(context)
        if session.config.auth is None:
            return b""
        creds = session.config.auth.lookup(auth_pb2.CredentialsRequest.FromString(request).Host)
        return auth_pb2.CredentialsResponse(Username=creds.username, Secret=creds.secret).SerializeToString()
