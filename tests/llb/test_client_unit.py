"""Client pieces without a real builder: addresses, transports (hijack, Control.Session,
dial-stdio, TLS) against local fake daemons, export plans, image config, auth, errors."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

import llb
from llb._proto import apicaps_pb2, auth_pb2, control_pb2, fsutil_pb2, gateway_pb2, ops_pb2, secrets_pb2, worker_pb2
from llb.auth import DockerConfigAuth
from llb.client import Client, _base_image, _definition_pb, _solve_error
from llb.connection import (
    DialStdioTransport,
    HijackError,
    SocketStream,
    hijack,
    resolve_address,
    splice,
)
from llb.export import DockerImage, ImageConfig, LocalExport, OCIExport, TarExport, plan_export
from llb.filesync import DiffCopyReceiver
from llb.progress import ProgressTracker

# ---------------------------------------------------------------- fake daemons


class FakeBuildkitd:
    """A grpcio server with ListWorkers, Control.Session, Solve and Status, and the gateway's Ping, Solve
    and Return. Over each session it acts as the daemon: an HTTP/2 client (a grpc channel) that calls
    back into the llb client. A solve reports `status` on the Status stream (then fails it with
    `status_error` if set) and answers with `solve_error` (an RPC error; with `internal_solves_succeed`
    only for solves not marked internal, as BuildKit fails those it cannot record) or
    `exporter_response`. Like
    BuildKit, it refuses an exporter in `missing_exporters` before anything else; a solve without a
    definition is a build whose frontend is the client: gateway calls name it by its id (waiting up to
    3 s for it to start, then "no such job") and it ends with the frontend's Return. `info` answers
    Control.Info (None: BuildKit before 0.11, which has no Info)."""

    def __init__(self, tmp: Path, *, tls: tuple[bytes, bytes] | None = None) -> None:
        self.status: list[control_pb2.StatusResponse] = []
        self.status_error: str | None = None
        self.solve_error: str | None = None
        self.solve_error_details: bytes | None = None
        self.internal_solves_succeed = False
        self.exporter_response = {"containerimage.digest": "sha256:fake"}
        self.solve_requests: list[control_pb2.SolveRequest] = []
        self.pong = gateway_pb2.PongResponse(
            LLBCaps=[
                apicaps_pb2.APICap(ID="exec.mount.cache", Enabled=True),
                apicaps_pb2.APICap(ID="mergeop", DisabledReason="only enabled with containerd image store backend"),
            ],
            FrontendAPICaps=[apicaps_pb2.APICap(ID="importcaches", Enabled=True)],
        )
        self.pings: list[dict[str, str]] = []
        self.gateway_solves: list[gateway_pb2.SolveRequest] = []
        self.missing_exporters: set[str] = set()
        self.info: control_pb2.InfoResponse | None = None
        self.worker_version = ""
        self._builds: dict[str, tuple[threading.Event, list[gateway_pb2.ReturnRequest]]] = {}
        self._status_done = threading.Event()
        self.session_metadata: list[dict[str, list[str]]] = []
        self.session_channels: list[_ReverseH2] = []
        self.session_ready = threading.Event()
        self._tmp = tmp
        self.server = grpc.server(futures.ThreadPoolExecutor(8))
        handlers = {
            "ListWorkers": grpc.unary_unary_rpc_method_handler(
                self._list_workers,
                request_deserializer=control_pb2.ListWorkersRequest.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            ),
            "Solve": grpc.unary_unary_rpc_method_handler(
                self._solve,
                request_deserializer=control_pb2.SolveRequest.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            ),
            "Status": grpc.unary_stream_rpc_method_handler(
                self._status,
                request_deserializer=control_pb2.StatusRequest.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            ),
            "Session": grpc.stream_stream_rpc_method_handler(
                self._session,
                request_deserializer=lambda b: control_pb2.BytesMessage.FromString(b).data,
                response_serializer=lambda d: control_pb2.BytesMessage(data=d).SerializeToString(),
            ),
        }
        handlers["Info"] = grpc.unary_unary_rpc_method_handler(
            self._info,
            request_deserializer=control_pb2.InfoRequest.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        )
        gateway = {
            "Ping": grpc.unary_unary_rpc_method_handler(
                self._ping,
                request_deserializer=gateway_pb2.PingRequest.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            ),
            "Solve": grpc.unary_unary_rpc_method_handler(
                self._gateway_solve,
                request_deserializer=gateway_pb2.SolveRequest.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            ),
            "Return": grpc.unary_unary_rpc_method_handler(
                self._return,
                request_deserializer=gateway_pb2.ReturnRequest.FromString,
                response_serializer=lambda m: m.SerializeToString(),
            ),
        }
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler("moby.buildkit.v1.Control", handlers),
                grpc.method_handlers_generic_handler("moby.buildkit.v1.frontend.LLBBridge", gateway),
            )
        )
        if tls is not None:
            key, cert = tls
            creds = grpc.ssl_server_credentials([(key, cert)])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
            self.address = f"tcp://127.0.0.1:{self.port}"
        else:
            self.path = str(tmp / "bk.sock")
            self.server.add_insecure_port("unix://" + self.path)
            self.address = "unix://" + self.path
        self.server.start()

    def _list_workers(
        self, req: control_pb2.ListWorkersRequest, ctx: grpc.ServicerContext
    ) -> control_pb2.ListWorkersResponse:
        rec = worker_pb2.WorkerRecord(ID="fake", Labels={"k": "v"})
        rec.platforms.add(OS="linux", Architecture="arm64", Variant="v8")
        rec.BuildkitVersion.version = self.worker_version
        return control_pb2.ListWorkersResponse(record=[rec])

    def _info(self, req: control_pb2.InfoRequest, ctx: grpc.ServicerContext) -> control_pb2.InfoResponse:
        if self.info is None:
            ctx.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method Info for service moby.buildkit.v1.Control")
        return self.info

    def _build(self, ctx: grpc.ServicerContext) -> tuple[threading.Event, list[gateway_pb2.ReturnRequest]]:
        build_id = dict(ctx.invocation_metadata()).get("buildkit-controlapi-buildid", "")
        deadline = time.monotonic() + 3
        while build_id not in self._builds:
            if time.monotonic() > deadline:
                ctx.abort(grpc.StatusCode.UNKNOWN, f"no such job {build_id}")
            time.sleep(0.01)
        return self._builds[build_id]

    def _ping(self, req: gateway_pb2.PingRequest, ctx: grpc.ServicerContext) -> gateway_pb2.PongResponse:
        self._build(ctx)
        self.pings.append(dict(ctx.invocation_metadata()))
        return self.pong

    def _gateway_solve(self, req: gateway_pb2.SolveRequest, ctx: grpc.ServicerContext) -> gateway_pb2.SolveResponse:
        self._build(ctx)
        self.gateway_solves.append(req)
        return gateway_pb2.SolveResponse(result=gateway_pb2.Result(ref=gateway_pb2.Ref(id="result-1")))

    def _return(self, req: gateway_pb2.ReturnRequest, ctx: grpc.ServicerContext) -> gateway_pb2.ReturnResponse:
        done, returned = self._build(ctx)
        returned.append(req)
        done.set()
        return gateway_pb2.ReturnResponse()

    def _solve(self, req: control_pb2.SolveRequest, ctx: grpc.ServicerContext) -> control_pb2.SolveResponse:
        self.solve_requests.append(req)
        if req.Exporter in self.missing_exporters:
            ctx.abort(grpc.StatusCode.UNKNOWN, f'exporter "{req.Exporter}" could not be found')
        if not req.HasField("Definition") and not req.Frontend:  # a build whose frontend is the client
            done, returned = self._builds.setdefault(req.Ref, (threading.Event(), []))
            if not done.wait(10):
                ctx.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no Return")
            if returned[0].HasField("error"):
                ctx.abort(grpc.StatusCode.UNKNOWN, returned[0].error.message)
            if not returned[0].result.HasField("ref"):
                return control_pb2.SolveResponse()
        self._status_done.wait(5)
        if self.solve_error is not None and not (req.Internal and self.internal_solves_succeed):
            if self.solve_error_details is not None:
                ctx.set_trailing_metadata((("grpc-status-details-bin", self.solve_error_details),))
            ctx.abort(grpc.StatusCode.UNKNOWN, self.solve_error)
        return control_pb2.SolveResponse(ExporterResponse=self.exporter_response)

    def _status(
        self, req: control_pb2.StatusRequest, ctx: grpc.ServicerContext
    ) -> Iterator[control_pb2.StatusResponse]:
        try:
            yield from self.status
            if self.status_error is not None:
                ctx.abort(grpc.StatusCode.INTERNAL, self.status_error)
        finally:
            self._status_done.set()

    def _session(self, request_iterator: Iterator[bytes], ctx: grpc.ServicerContext) -> Iterator[bytes]:
        md: dict[str, list[str]] = {}
        for k, v in ctx.invocation_metadata():
            md.setdefault(k, []).append(v)
        self.session_metadata.append(md)
        stream = _ReverseH2(self._tmp / f"rev{len(self.session_metadata)}.sock")
        self.session_channels.append(stream)
        self.session_ready.set()

        def upstream() -> None:
            try:
                for data in request_iterator:
                    stream.conn.sendall(data)
            except grpc.RpcError:
                pass  # the client closed its session
            stream.conn.shutdown(socket.SHUT_WR)

        threading.Thread(target=upstream, daemon=True).start()
        while True:
            data = stream.conn.recv(65536)
            if not data:
                return
            yield data

    def stop(self) -> None:
        for reverse in self.session_channels:
            reverse.close()
        self.server.stop(None)


class _ReverseH2:
    """A grpc channel whose single connection is handed to us as a socket (`conn`)."""

    def __init__(self, path: Path) -> None:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(path))
        listener.listen(1)
        self.channel = grpc.insecure_channel(f"unix://{path}")
        self._watch: Callable[[grpc.ChannelConnectivity], None] = lambda _s: None
        self.channel.subscribe(self._watch, try_to_connect=True)  # starts connecting
        self.conn, _ = listener.accept()
        listener.close()

    def close(self) -> None:
        """Stops watching first: grpc's watcher thread fails on a channel closed under it."""
        self.channel.unsubscribe(self._watch)
        self.channel.close()


class FakeDockerd:
    """Answers POST /grpc and /session upgrades on a unix socket like dockerd does."""

    def __init__(self, tmp: Path, backend: FakeBuildkitd, *, refuse: int | None = None) -> None:
        self.path = str(tmp / "docker.sock")
        self.backend = backend
        self.refuse = refuse
        self.requests: list[tuple[str, list[tuple[str, str]]]] = []
        self.session_channels: list[_ReverseH2] = []
        self.session_ready = threading.Event()
        self._tmp = tmp
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(1)
            if not chunk:
                return
            buf += chunk
        lines = buf.decode().split("\r\n")
        path = lines[0].split(" ")[1]
        headers = [tuple(x.split(": ", 1)) for x in lines[1:] if ": " in x]
        self.requests.append((path, headers))  # type: ignore[arg-type]
        if self.refuse:
            conn.sendall(f"HTTP/1.1 {self.refuse} Not Found\r\nContent-Length: 18\r\n\r\npage not found 404".encode())
            conn.close()
            return
        if path == "/grpc":
            up = socket.socket(socket.AF_UNIX)
            up.connect(self.backend.path)
            # The HTTP/2 SETTINGS frame of the server must reach the client even when it
            # arrives together with the 101 header: send both in one write.
            first = up.recv(65536)
            conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + first)
            splice(SocketStream(conn), SocketStream(up))
        elif path == "/session":
            conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
            rev = _ReverseH2(self._tmp / f"dsess{len(self.requests)}.sock")
            self.session_channels.append(rev)
            self.session_ready.set()
            splice(SocketStream(conn), SocketStream(rev.conn))

    def stop(self) -> None:
        for reverse in self.session_channels:
            reverse.close()
        self.listener.close()


@pytest.fixture
def buildkitd(tmp_path: Path) -> Iterator[FakeBuildkitd]:
    d = FakeBuildkitd(tmp_path)
    yield d
    d.stop()


# ---------------------------------------------------------------- addresses and errors


def test_address_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUILDKIT_HOST", raising=False)
    assert resolve_address(None) == "docker://"
    monkeypatch.setenv("BUILDKIT_HOST", "tcp://bk:1234")
    assert resolve_address(None) == "tcp://bk:1234"
    assert resolve_address("unix:///x") == "unix:///x"


def test_unreachable_docker_socket_is_quick_and_actionable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BUILDKIT_HOST", raising=False)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nope.sock")
    t0 = time.monotonic()
    with pytest.raises(llb.BuilderUnreachable) as info:
        llb.connect()
    assert time.monotonic() - t0 < 5
    msg = str(info.value)
    assert "nope.sock" in msg and "dockerd" in msg and "setup-engine.sh" in msg


def test_unreachable_tcp_fails_within_timeout() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t0 = time.monotonic()
    with pytest.raises(llb.BuilderUnreachable) as info:
        llb.connect(f"tcp://127.0.0.1:{port}", timeout=1.5)
    assert time.monotonic() - t0 < 5
    assert f"127.0.0.1:{port}" in str(info.value) and "buildkitd" in str(info.value)


def test_unreachable_unix_and_bad_schemes(tmp_path: Path) -> None:
    with pytest.raises(llb.BuilderUnreachable, match="does not exist"):
        llb.connect(f"unix://{tmp_path}/missing.sock")
    with pytest.raises(llb.BuilderUnreachable, match="unknown address scheme"):
        llb.connect("ftp://x")


def test_docker_container_needs_docker_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(llb.BuilderUnreachable, match=r"docker.*not on PATH"):
        llb.connect("docker-container://bk")
    with pytest.raises(llb.BuilderUnreachable, match="kubectl"):
        llb.connect("kube-pod://bk?namespace=ns")


def test_engine_without_grpc_endpoint(tmp_path: Path, buildkitd: FakeBuildkitd) -> None:
    fake = FakeDockerd(tmp_path, buildkitd, refuse=404)
    try:
        with pytest.raises(llb.BuilderUnreachable, match="404"):
            llb.connect(f"docker://unix://{fake.path}")
    finally:
        fake.stop()


# ---------------------------------------------------------------- hijack


def test_hijack_keeps_bytes_after_the_101_header() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"HTTP/1.1 101 UPGRADED\r\nUpgrade: h2c\r\n\r\nSETTINGS-FRAME")
        leftover = hijack(a, "/grpc", [("X-A", "1")])
        assert leftover == b"SETTINGS-FRAME"
        req = b.recv(4096)
        assert req.startswith(b"POST /grpc HTTP/1.1\r\n") and b"Upgrade: h2c" in req and b"X-A: 1" in req
        stream = SocketStream(a, leftover)
        b.sendall(b"MORE")
        assert stream.recv(8) == b"SETTINGS"
        assert stream.recv(100) == b"-FRAME"
        assert stream.recv(100) == b"MORE"


def test_hijack_refused() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b'HTTP/1.1 400 Bad Request\r\nContent-Length: 17\r\n\r\n{"message":"no"}\n')
        b.shutdown(socket.SHUT_WR)
        with pytest.raises(HijackError) as info:
            hijack(a, "/session")
        assert info.value.status == 400 and "no" in str(info.value)


def test_docker_transport_grpc_and_session_over_fake_dockerd(tmp_path: Path, buildkitd: FakeBuildkitd) -> None:
    fake = FakeDockerd(tmp_path, buildkitd)
    try:
        with llb.connect(f"docker://unix://{fake.path}") as client:
            assert client.is_docker_engine
            workers = client.list_workers()
            assert workers[0].id == "fake" and workers[0].platforms[0] == llb.Platform("linux", "arm64", "v8")
            from llb.session import Session, SessionConfig

            session = Session(client._sessions, SessionConfig(secrets={"tok": b"v"}))
            session.attach(client.transport, client.channel)
            assert fake.session_ready.wait(5)
            path, headers = fake.requests[-1]
            assert path == "/session"
            names = [k for k, _ in headers]
            assert ("X-Docker-Expose-Session-Uuid", session.id) in headers
            assert "X-Docker-Expose-Session-Sharedkey" in names
            methods = [v for k, v in headers if k == "X-Docker-Expose-Session-Grpc-Method"]
            assert "/moby.buildkit.secrets.v1.Secrets/GetSecret" in methods
            ch = fake.session_channels[-1].channel
            assert ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5) == b"\x08\x01"
            got = ch.unary_unary("/moby.buildkit.secrets.v1.Secrets/GetSecret")(
                secrets_pb2.GetSecretRequest(ID="tok").SerializeToString(), timeout=5
            )
            assert secrets_pb2.GetSecretResponse.FromString(got).data == b"v"
            session.close()
    finally:
        fake.stop()


# ---------------------------------------------------------------- Control.Session (standalone buildkitd)


def test_control_session_bridge_serves_session_services(tmp_path: Path, buildkitd: FakeBuildkitd) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "d" / "f.txt").write_text("data")
    (ctx / "x.log").write_text("log")
    cfg_dir = tmp_path / "dockercfg"
    cfg_dir.mkdir()
    (cfg_dir / "config.json").write_text(
        json.dumps({"auths": {"reg.example:5000": {"auth": base64.b64encode(b"me:pw").decode()}}})
    )
    from llb.session import Session, SessionConfig

    with llb.connect(buildkitd.address) as client:
        assert not client.is_docker_engine
        assert client.list_workers()[0].labels == {"k": "v"}
        session = Session(
            client._sessions,
            SessionConfig(
                local_dirs={"context": ctx},
                secrets={"s": b"top"},
                auth=DockerConfigAuth(cfg_dir / "config.json"),
            ),
        )
        session.attach(client.transport, client.channel)
        assert buildkitd.session_ready.wait(5)
        md = buildkitd.session_metadata[-1]
        assert md["x-docker-expose-session-uuid"] == [session.id]
        assert "/moby.filesync.v1.FileSync/DiffCopy" in md["x-docker-expose-session-grpc-method"]
        ch = buildkitd.session_channels[-1].channel
        assert ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5) == b"\x08\x01"
        with pytest.raises(grpc.RpcError) as info:
            ch.unary_unary("/moby.buildkit.secrets.v1.Secrets/GetSecret")(
                secrets_pb2.GetSecretRequest(ID="missing").SerializeToString(), timeout=5
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        creds = auth_pb2.CredentialsResponse.FromString(
            ch.unary_unary("/moby.filesync.v1.Auth/Credentials")(
                auth_pb2.CredentialsRequest(Host="reg.example:5000").SerializeToString(), timeout=5
            )
        )
        assert (creds.Username, creds.Secret) == ("me", "pw")

        # the daemon side of a local source transfer: receive through DiffCopy
        receiver = DiffCopyReceiver(tmp_path / "got")
        outgoing: list[fsutil_pb2.Packet] = []
        cond = threading.Condition()

        def requests() -> Iterator[bytes]:
            i = 0
            while True:
                with cond:
                    while len(outgoing) <= i:
                        cond.wait()
                    p = outgoing[i]
                i += 1
                if p is None:
                    return
                yield p.SerializeToString()

        call = ch.stream_stream("/moby.filesync.v1.FileSync/DiffCopy")(
            requests(), metadata=[("dir-name", "context"), ("exclude-patterns", "*.log")], timeout=10
        )
        for p in receiver.run(fsutil_pb2.Packet.FromString(raw) for raw in call):
            with cond:
                outgoing.append(p)
                cond.notify_all()
        with cond:
            outgoing.append(None)  # type: ignore[arg-type]
            cond.notify_all()
        assert receiver.error is None
        assert (tmp_path / "got" / "d" / "f.txt").read_text() == "data"
        assert not (tmp_path / "got" / "x.log").exists()
        with pytest.raises(grpc.RpcError) as info:
            list(
                ch.stream_stream("/moby.filesync.v1.FileSync/DiffCopy")(
                    iter(()), metadata=[("dir-name", "other")], timeout=5
                )
            )
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        session.close()


# ---------------------------------------------------------------- dial-stdio and TLS

_STDIO_PROXY = """
import os, socket, sys, threading
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
def up():
    while True:
        d = os.read(0, 65536)
        if not d: break
        s.sendall(d)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d: break
    os.write(1, d)
"""


def test_dial_stdio_transport(buildkitd: FakeBuildkitd) -> None:
    transport = DialStdioTransport(
        "docker-container://fake", [sys.executable, "-c", _STDIO_PROXY, buildkitd.path], "hint"
    )
    channel = grpc.insecure_channel(transport.target)
    with Client(transport, channel) as client:
        assert client.list_workers()[0].id == "fake"


def test_dial_stdio_failure_is_reported(tmp_path: Path) -> None:
    tool = tmp_path / "docker"
    tool.write_text("#!/bin/sh\necho 'Error: No such container: bk' >&2\nexit 1\n")
    tool.chmod(0o755)
    env_path = os.environ["PATH"]
    os.environ["PATH"] = f"{tmp_path}:{env_path}"
    try:
        with pytest.raises(llb.BuilderUnreachable) as info:
            llb.connect("docker-container://bk", timeout=1.5)
    finally:
        os.environ["PATH"] = env_path
    assert "No such container" in str(info.value) and "moby/buildkit" in str(info.value)


def test_tls_connection(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=buildkitd.test",
            "-addext",
            "subjectAltName=DNS:buildkitd.test",
        ],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate")
    d = FakeBuildkitd(tmp_path, tls=(key.read_bytes(), cert.read_bytes()))
    try:
        tls = llb.TLSConfig(ca_cert=cert, server_name="buildkitd.test")
        with llb.connect(d.address, tls=tls) as client:
            assert client.list_workers()[0].id == "fake"
        with pytest.raises(llb.BuilderUnreachable):
            llb.connect(d.address, timeout=1.0)  # plaintext against a TLS server
    finally:
        d.stop()


# ---------------------------------------------------------------- exports, image config, auth


def test_export_plans() -> None:
    p = plan_export(DockerImage(["a/b:1", "a/b:latest"]), docker_engine=True)
    assert (p.exporter, dict(p.attrs)) == ("moby", {"name": "a/b:1,a/b:latest"})
    p = plan_export(DockerImage("a/b:1"), docker_engine=False)
    assert p.exporter == "docker" and p.load_into_engine
    assert plan_export(LocalExport("/x"), docker_engine=True).receive_dir == Path("/x")
    assert plan_export(TarExport("/x.tar"), docker_engine=True).exporter == "tar"
    assert plan_export(OCIExport("/x.tar"), docker_engine=True).exporter == "oci"  # the builder says if it has it
    assert plan_export(OCIExport("/x.tar"), docker_engine=False).exporter == "oci"
    p = plan_export(llb.ImageExport("r/x:1", push=True, insecure=True), docker_engine=False)
    assert dict(p.attrs) == {"name": "r/x:1", "push": "true", "registry.insecure": "true"}
    with pytest.raises(ValueError):
        DockerImage("a,b")


def test_image_config_merges_over_base() -> None:
    base = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["bash"], "Labels": {"old": "1"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:x"]},
        "history": [{"created_by": "base"}],
        "created": "2020-01-01T00:00:00Z",
    }
    cfg = ImageConfig(env={"A": "1"}, labels={"new": "2"}, exposed_ports=["80"], user="u")
    merged = cfg.merged_into(base, {"os": "linux", "architecture": "amd64"})
    assert merged["config"]["Env"] == ["A=1"]
    assert merged["config"]["Cmd"] == ["bash"]
    assert merged["config"]["Labels"] == {"new": "2"}
    assert merged["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert "rootfs" not in merged and merged["history"] == [{"created_by": "base"}]
    assert "created" not in merged  # the exporter dates the image by its newest layer, not the base's date
    assert base["config"]["Env"] == ["PATH=/bin"]
    fresh = ImageConfig(cmd=["x"]).merged_into(None, {"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert (fresh["architecture"], fresh["variant"], fresh["config"]) == ("arm64", "v8", {"Cmd": ["x"]})
    with pytest.raises(ValueError):
        ImageConfig(cmd="echo hi")
    with pytest.raises(ValueError):
        ImageConfig(env=["NOEQUALS"])


def test_docker_config_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = tmp_path / "docker-credential-fake"
    helper.write_text('#!/bin/sh\nread host\necho "{\\"Username\\":\\"h-$host\\",\\"Secret\\":\\"s\\"}"\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    cfg = tmp_path / "config.json"
    cfg.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hub:pw").decode()},
                    "https://tok.example/v2/": {"identitytoken": "T"},
                },
                "credHelpers": {"helped.example": "fake"},
            }
        )
    )
    auth = DockerConfigAuth(cfg)
    assert auth.lookup("registry-1.docker.io") == auth.lookup("docker.io")
    assert (auth.lookup("docker.io").username, auth.lookup("docker.io").secret) == ("hub", "pw")
    assert (auth.lookup("tok.example").username, auth.lookup("tok.example").secret) == ("", "T")
    assert auth.lookup("helped.example").username == "h-helped.example"
    assert auth.lookup("unknown.example").secret == ""
    assert DockerConfigAuth(tmp_path / "missing.json").lookup("docker.io").secret == ""


# ---------------------------------------------------------------- graph inspection, errors, progress


def test_base_image_of_definition() -> None:
    base = llb.image("local/debian:bookworm")
    st = base.run(["true"]).root().file(llb.mkdir("/x")).run(["true"]).root()
    found = _base_image(_definition_pb(st))
    assert found is not None and found[0] == "docker.io/local/debian:bookworm"
    assert _base_image(_definition_pb(llb.scratch().file(llb.mkdir("/x")))) is None
    other = llb.image("busybox")
    onto_other = llb.scratch().file(llb.copy(base, "/etc", "/etc"))
    assert _base_image(_definition_pb(onto_other)) is None
    exec_on_other = other.run(["true"], mounts=[llb.bind("/src", base)]).root()
    assert _base_image(_definition_pb(exec_on_other))[0] == "docker.io/library/busybox:latest"  # type: ignore[index]


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _status(*vertices: control_pb2.Vertex, logs: tuple[control_pb2.VertexLog, ...] = ()) -> control_pb2.StatusResponse:
    return control_pb2.StatusResponse(vertexes=list(vertices), logs=list(logs))


@pytest.mark.parametrize(
    "message",
    [
        'process "/bin/sh -c make" did not complete successfully: exit code: 2',
        "failed to solve: rpc error: code = Unknown desc = executor failed running [/bin/sh -c make]: exit code: 2",
    ],
)
def test_exec_error_parsing(message: str) -> None:
    tracker = ProgressTracker()
    tracker.feed(
        _status(
            control_pb2.Vertex(digest="sha256:a", name="base"),
            control_pb2.Vertex(digest="sha256:b", name="build it", error=message),
            control_pb2.Vertex(digest="sha256:c", name="other", error="context canceled"),
            logs=(control_pb2.VertexLog(vertex="sha256:b", stream=1, msg=b"one\ntwo\nthr"),),
        )
    )
    tracker.feed(_status(logs=(control_pb2.VertexLog(vertex="sha256:b", stream=2, msg=b"ee\n"),)))
    err = _solve_error(_FakeRpcError(grpc.StatusCode.UNKNOWN, message), tracker, "docker://")
    assert isinstance(err, llb.ExecError)
    assert (err.vertex_name, err.exit_code, err.log_tail) == ("build it", 2, ("one", "two", "three"))
    other = _solve_error(_FakeRpcError(grpc.StatusCode.UNKNOWN, "failed to load LLB"), tracker, "docker://")
    assert type(other) is llb.SolveError
    gone = _solve_error(_FakeRpcError(grpc.StatusCode.UNAVAILABLE, "socket closed"), tracker, "docker://")
    assert isinstance(gone, llb.BuilderUnreachable)


def test_progress_tracker_events_and_tail() -> None:
    seen: list[object] = []
    tracker = ProgressTracker(seen.append)
    v = control_pb2.Vertex(digest="sha256:a", name="step", cached=True)
    v.started.FromNanoseconds(1_000_000_000)
    v.completed.FromNanoseconds(3_500_000_000)
    st = control_pb2.VertexStatus(ID="pull", vertex="sha256:a", current=5, total=10)
    tracker.feed(control_pb2.StatusResponse(vertexes=[v], statuses=[st]))
    lines = "".join(f"l{i}\n" for i in range(50)).encode()
    tracker.feed(_status(logs=(control_pb2.VertexLog(vertex="sha256:a", stream=1, msg=lines),)))
    (info,) = tracker.vertices
    assert info.cached and info.duration == pytest.approx(2.5)
    assert tracker.log_tail("sha256:a") == [f"l{i}" for i in range(30, 50)]
    kinds = [type(e).__name__ for e in seen]
    assert kinds == ["VertexEvent", "StatusEvent", "LogEvent"]
    assert seen[1].current == 5 and seen[1].total == 10  # type: ignore[attr-defined]


def test_broken_event_callback_does_not_break_tracking() -> None:
    def boom(_e: object) -> None:
        raise RuntimeError("ui bug")

    tracker = ProgressTracker(boom)
    tracker.feed(_status(control_pb2.Vertex(digest="sha256:a", name="x")))
    tracker.feed(_status(control_pb2.Vertex(digest="sha256:b", name="y")))
    assert isinstance(tracker.callback_error, RuntimeError) and len(tracker.vertices) == 2


def test_definition_inputs_accepted() -> None:
    st = llb.image("local/debian:bookworm").run(["true"]).root()
    d = st.marshal()
    assert _definition_pb(st) == _definition_pb(d) == _definition_pb(d.to_pb())
    with pytest.raises(TypeError):
        _definition_pb(42)
    assert isinstance(_definition_pb(d), ops_pb2.Definition)


def test_local_names_of_definition() -> None:
    from llb.client import _local_names

    st = llb.scratch().file(llb.copy(llb.local("ctx"), "/", "/")).file(llb.copy(llb.local("other"), "/", "/o"))
    pinned = llb.local("pinned", session_id="abc")
    assert _local_names(_definition_pb(st)) == {"ctx", "other"}
    assert _local_names(_definition_pb(llb.scratch().file(llb.copy(pinned, "/", "/")))) == set()


# ---------------------------------------------------------------- solve against the fake daemon


def _vertex_status(name: str, error: str = "", log: bytes = b"") -> control_pb2.StatusResponse:
    logs = [control_pb2.VertexLog(vertex="sha256:v", stream=1, msg=log)] if log else []
    return control_pb2.StatusResponse(
        vertexes=[control_pb2.Vertex(digest="sha256:v", name=name, error=error)], logs=logs
    )


def test_capabilities_are_read_once_from_the_builder(buildkitd: FakeBuildkitd) -> None:
    """Caps come from the gateway Ping inside a build of no definition; the version from Control.Info,
    else from a worker record's field 5; an unknown version changes no decision."""
    buildkitd.worker_version = "v0.12.5"
    with llb.connect(buildkitd.address) as client:
        caps = client.capabilities()
        assert client.capabilities() is caps and len(buildkitd.pings) == 1
    assert caps.supports("exec.mount.cache") and not caps.supports("mergeop") and not caps.supports("diffop")
    assert caps.why_not("mergeop") == (
        "this builder has the LLB capability 'mergeop' disabled: only enabled with containerd image store backend"
    )
    assert "does not know the LLB capability 'diffop' (BuildKit v0.12.5)" in caps.why_not("diffop")
    assert caps.frontend_supports("importcaches") and caps.why_not("importcaches", frontend=True) == ""
    assert caps.version == "v0.12.5" and caps.platforms == (llb.Platform("linux", "arm64", "v8"),)
    assert caps.workers[0].labels == {"k": "v"}
    (bare,) = buildkitd.solve_requests
    assert not bare.HasField("Definition") and not bare.Exporter

    buildkitd.info = control_pb2.InfoResponse()
    buildkitd.info.buildkitVersion.version = "v0.0.0+unknown"
    with llb.connect(buildkitd.address) as client:
        caps = client.capabilities()
    assert caps.version == "v0.0.0+unknown" and not caps.supports("mergeop")


def test_worker_records_keep_fields_llb_does_not_read() -> None:
    """A record from a newer BuildKit (an extra field 6) parses; the field survives a round trip."""
    record = worker_pb2.WorkerRecord(ID="w")
    record.BuildkitVersion.version = "v0.13.0"
    raw = record.SerializeToString() + bytes([6 << 3 | 2, 3]) + b"cdi"
    parsed = worker_pb2.WorkerRecord.FromString(raw)
    assert llb.WorkerInfo.from_pb(parsed).buildkit_version == "v0.13.0"
    assert parsed.SerializeToString() == raw


def test_cache_imports_of_an_image_build_go_with_its_gateway_solve(buildkitd: FakeBuildkitd) -> None:
    """Imports on Control.Solve do not reach a solve made through the gateway: they go on that solve."""
    cache = llb.CacheOption("registry", {"ref": "127.0.0.1:5000/env:cache"})
    with llb.connect(buildkitd.address) as client:
        client.solve(
            llb.scratch().file(llb.mkdir("/x")),
            export=llb.ImageExport("r/x:1"),
            image_config=ImageConfig(cmd=["sh"]),
            cache_imports=[cache],
        )
        build = buildkitd.solve_requests[-1]
        (solve,) = buildkitd.gateway_solves
        assert [(e.Type, dict(e.Attrs)) for e in solve.CacheImports] == [("registry", dict(cache.attrs))]
        assert not build.Cache.Imports and not build.HasField("Definition") and build.Exporter == "image"
        client.solve(llb.scratch().file(llb.mkdir("/x")), cache_imports=[cache])  # no gateway: on the build
        assert [e.Type for e in buildkitd.solve_requests[-1].Cache.Imports] == ["registry"]


def test_an_exporter_the_builder_lacks_is_its_refusal_at_once(buildkitd: FakeBuildkitd, tmp_path: Path) -> None:
    """The builder names the exporter it lacks before building; the frontend's calls stop with it."""
    buildkitd.missing_exporters = {"oci", "image"}
    with llb.connect(buildkitd.address) as client:
        with pytest.raises(llb.UnsupportedByBuilder, match="no 'oci' exporter"):
            client.solve(llb.scratch(), export=OCIExport(tmp_path / "x.tar"))
        t0 = time.monotonic()
        with pytest.raises(llb.UnsupportedByBuilder, match=r"no 'image' exporter.*standalone buildkitd"):
            client.solve(llb.scratch(), export=llb.ImageExport("r/x:1"), image_config=ImageConfig(cmd=["sh"]))
        assert time.monotonic() - t0 < 2  # not the 3 s a gateway call waits for a build that never started
    err = _solve_error(
        _FakeRpcError(grpc.StatusCode.UNKNOWN, 'exporter "oci" could not be found'),
        ProgressTracker(),
        "docker://",
        docker_engine=True,
    )
    assert isinstance(err, llb.UnsupportedByBuilder) and "containerd image store" in str(err)


def test_solve_reports_vertices_and_exporter_response(buildkitd: FakeBuildkitd) -> None:
    buildkitd.status = [_vertex_status("mkdir /x")]
    with llb.connect(buildkitd.address) as client:
        result = client.solve(llb.scratch().file(llb.mkdir("/x")))
    assert [v.name for v in result.vertices] == ["mkdir /x"]
    assert result.image_id == "sha256:fake" and result.warnings == ()
    (request,) = buildkitd.solve_requests
    assert request.Ref == result.ref and request.Session == result.session_id
    assert len(getattr(request.Definition, "def")) == 2


def test_a_broken_progress_stream_is_reported_not_swallowed(buildkitd: FakeBuildkitd) -> None:
    buildkitd.status = [_vertex_status("mkdir /x")]
    buildkitd.status_error = "status store is gone"
    with llb.connect(buildkitd.address) as client:
        result = client.solve(llb.scratch().file(llb.mkdir("/x")))
    assert [v.name for v in result.vertices] == ["mkdir /x"]
    assert len(result.warnings) == 1 and "status store is gone" in result.warnings[0]


def test_a_failed_step_becomes_an_exec_error_with_its_log(buildkitd: FakeBuildkitd) -> None:
    message = 'process "/bin/sh -c false" did not complete successfully: exit code: 1'
    buildkitd.status = [_vertex_status("check", error=message, log=b"checking\nnope\n")]
    buildkitd.solve_error = message
    with llb.connect(buildkitd.address) as client, pytest.raises(llb.ExecError) as info:
        client.solve(llb.image("local/debian:bookworm").run("false", name="check").root())
    assert (info.value.vertex_name, info.value.exit_code, info.value.log_tail) == ("check", 1, ("checking", "nope"))
