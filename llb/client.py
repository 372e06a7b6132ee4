"""BuildKit client: connect, list workers, solve with a session, resolve image configs.

Image config on exported images needs the gateway-forwarder path on the Docker
engine (its `moby` exporter ignores `containerimage.config` in ExporterAttrs):
Control.Solve starts a build with no Definition, we solve the Definition through
LLBBridge.Solve on the same connection, and Return the result together with the
image config as frontend metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets as _secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from ._proto import control_pb2, gateway_pb2, ops_pb2
from .auth import DockerConfigAuth
from .capabilities import Capabilities, WorkerInfo
from .connection import TLSConfig, Transport, open_transport, resolve_address
from .definition import Definition, bind_local_sources
from .errdetails import error_details, status_of
from .errors import (
    BuilderUnreachable,
    Cancelled,
    DefinitionTooLarge,
    ExecError,
    InvalidGraph,
    LLBError,
    SolveError,
    UnsupportedByBuilder,
)
from .export import CacheOption, Export, ExporterPlan, ImageConfig, exporter_missing, plan_export
from .platform import Platform
from .progress import ProgressEvent, ProgressTracker, VertexInfo
from .session import Session, SessionConfig, SessionServer
from .state import State

__all__ = ["connect", "Client", "WorkerInfo", "Capabilities", "SolveResult"]

_CONTROL = "/moby.buildkit.v1.Control/"
_GATEWAY = "/moby.buildkit.v1.frontend.LLBBridge/"
_BUILD_ID_KEY = "buildkit-controlapi-buildid"
_ENGINE_MAX_REQUEST = 4 * 1024 * 1024 - 64 * 1024
_STATUS_DRAIN_S = 5.0
_EXIT_PATTERNS = (
    re.compile(r'process "(?P<cmd>.*)" did not complete successfully: exit code: (?P<code>\d+)', re.S),
    re.compile(r"executor failed running \[(?P<cmd>.*?)\]: exit code: (?P<code>\d+)", re.S),
)
_CANCELLED = "solve cancelled; the builder was told to stop it"
_MISSING_EXPORTER = re.compile(r'exporter "(?P<name>[^"]+)" could not be found')
_TOO_LARGE = re.compile(r"message larger than max", re.I)  # grpc's words for a request over the 4 MiB limit
_RECORDING_HISTORY = re.compile(r"\.recordBuildHistory(\.|$)")  # BuildKit's llbsolver.(*Solver).recordBuildHistory

_Unary = grpc.UnaryUnaryMultiCallable
_Stream = grpc.UnaryStreamMultiCallable


@dataclass(frozen=True, slots=True)
class SolveResult:
    """`vertices` in the order the builder first reported them; `image_id` is the exported
    image's digest when the exporter produced one; `warnings` name what went wrong beside a
    successful build (a progress stream that broke, an `on_event` callback that raised)."""

    vertices: list[VertexInfo]
    exporter_response: dict[str, str]
    image_id: str | None
    ref: str
    session_id: str
    duration: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    sent_files: int = 0
    """Files of `local_dirs` the builder asked for (it keeps earlier transfers: unchanged files stay)."""
    sent_bytes: int = 0
    """Their contents, in bytes (what crossed the connection for them, before framing)."""


def connect(address: str | None = None, *, tls: TLSConfig | None = None, timeout: float = 5.0) -> Client:
    """Connect to BuildKit: `address`, else $BUILDKIT_HOST, else the Docker engine ($DOCKER_HOST, else
    the docker CLI's current context). ``ssh://[USER@]HOST[:PORT]`` is the Docker engine of another
    machine, reached with the system ssh client as the docker CLI does (`llb.sshdial`).

    Raises BuilderUnreachable within `timeout` seconds when nothing answers (an ssh connection's
    handshake gets its own, longer, limit).
    """
    addr = resolve_address(address)
    transport = open_transport(addr, tls, timeout)
    deadline = time.monotonic() + timeout  # an ssh transport's own handshake had its own limit
    creds = transport.credentials()
    if creds is not None:
        channel = grpc.secure_channel(transport.target, creds, options=transport.channel_options())
    else:
        channel = grpc.insecure_channel(transport.target, options=transport.channel_options())
    try:
        grpc.channel_ready_future(channel).result(timeout=max(0.05, deadline - time.monotonic()))
    except grpc.FutureTimeoutError:
        detail = transport.describe_failure()
        channel.close()
        transport.close()
        hint = transport.hint or "start one with `buildkitd --addr ADDRESS` or run moby/buildkit in a container"
        raise BuilderUnreachable(
            addr, f"no gRPC connection within {timeout}s" + (f" ({detail})" if detail else ""), hint
        ) from None
    return Client(transport, channel)


def _rpc_details(exc: BaseException) -> str:
    text = exc.details() if isinstance(exc, grpc.RpcError) else None
    return text or str(exc)


def _rpc_failure(exc: grpc.RpcError, address: str, what: str) -> LLBError:
    """The llb error for a failed request that is not a solve."""
    detail = _rpc_details(exc)
    if exc.code() == grpc.StatusCode.UNAVAILABLE:
        return BuilderUnreachable(address, detail, "check that the builder is still running")
    return SolveError(f"{what} failed: {detail}" if what else detail)


def _definition_pb(target: State | Definition | ops_pb2.Definition) -> ops_pb2.Definition:
    if isinstance(target, ops_pb2.Definition):
        return target
    if isinstance(target, Definition):
        return target.to_pb()
    if isinstance(target, State):
        return target.marshal().to_pb()
    raise TypeError(f"solve() wants a State or a Definition, got {type(target).__name__}")


def _largest_op_name(definition: ops_pb2.Definition) -> str:
    """The custom name of the definition's largest op ("" when it has none)."""
    raw = max(getattr(definition, "def"), key=len, default=b"")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    meta = definition.metadata.get(digest)
    return meta.description.get("llb.customname", "") if meta is not None else ""


def _local_names(definition: ops_pb2.Definition) -> set[str]:
    """Names of `local://` sources served by the solve's own session."""
    names = set()
    for raw in getattr(definition, "def"):
        if b"local://" not in raw:
            continue
        op = ops_pb2.Op.FromString(raw)
        source = op.source if op.WhichOneof("op") == "source" else None
        if source is not None and source.identifier.startswith("local://") and "local.session" not in source.attrs:
            names.add(source.identifier[len("local://") :])
    return names


def _base_image(definition: ops_pb2.Definition) -> tuple[str, str, ops_pb2.Platform | None] | None:
    """(ref, resolve mode, platform) of the image at the bottom of the result's root filesystem."""
    ops: dict[str, ops_pb2.Op] = {}
    for raw in getattr(definition, "def"):
        ops["sha256:" + hashlib.sha256(raw).hexdigest()] = ops_pb2.Op.FromString(raw)
    if not ops:
        return None
    terminal = next(reversed(ops.values()))
    current = terminal.inputs[0] if terminal.inputs else None
    for _ in range(len(ops)):
        if current is None or current.digest not in ops:
            return None
        op = ops[current.digest]
        if op.WhichOneof("op") == "source":
            ident = op.source.identifier
            if not ident.startswith("docker-image://"):
                return None
            mode = op.source.attrs.get("image.resolvemode", "default")
            return ident[len("docker-image://") :], mode, op.platform if op.HasField("platform") else None
        current = _root_input(op, current.index)
    return None


def _root_input(op: ops_pb2.Op, output: int) -> ops_pb2.Input | None:
    """The input that output `output` of an exec or file op was made from (None: none, or scratch)."""
    index = -1
    if op.WhichOneof("op") == "exec":
        mount = next((m for m in op.exec.mounts if m.output == output), None)
        index = -1 if mount is None else mount.input
    elif op.WhichOneof("op") == "file":
        actions = list(op.file.actions)
        position = next((i for i, a in enumerate(actions) if a.output == output), None)
        # An action's input past the op's inputs is the result of an earlier action of the op.
        while position is not None and actions[position].input >= len(op.inputs):
            earlier = actions[position].input - len(op.inputs)
            position = earlier if earlier < position else None
        index = -1 if position is None else actions[position].input
    return op.inputs[index] if 0 <= index < len(op.inputs) else None


class _Cancellable(Protocol):
    def cancel(self) -> bool: ...


_C = TypeVar("_C", bound=_Cancellable)
_T = TypeVar("_T")
_Req = TypeVar("_Req", bound=Message)
_Resp = TypeVar("_Resp", bound=Message)


class _Calls:
    """The RPCs of one solve, cancelled together."""

    def __init__(self) -> None:
        self._items: list[_Cancellable] = []
        self._lock = threading.Lock()
        self._cancelled = False

    def add(self, call: _C) -> _C:
        with self._lock:
            self._items.append(call)
            if self._cancelled:
                call.cancel()
        return call

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled = True
            items = list(self._items)
        for c in items:
            c.cancel()


class _CancelRequested(Exception):
    """The caller's `cancel` event was set while waiting for the builder."""


def _wait(fut: grpc.Future[_T], cancel: threading.Event | None) -> _T:
    """fut.result(), but raising _CancelRequested as soon as `cancel` is set."""
    done = threading.Event()
    fut.add_done_callback(lambda _f: done.set())
    while not done.wait(0.05 if cancel is not None else 0.5):
        if cancel is not None and cancel.is_set():
            raise _CancelRequested()
    return fut.result()


class _StatusStream:
    """Control.Status of one solve, read on its own thread into a ProgressTracker.

    The stream can outlive the Solve call: `finish` waits for its end (bounded), then stops it.
    A failure of the stream, other than the cancellation that stops it, is kept in `error`."""

    def __init__(
        self,
        status: _Stream[control_pb2.StatusRequest, control_pb2.StatusResponse],
        ref: str,
        tracker: ProgressTracker,
        calls: _Calls,
    ) -> None:
        self._status = status
        self._ref = ref
        self._tracker = tracker
        self._calls = calls
        self._done = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        threading.Thread(target=self._read, name="llb-status", daemon=True).start()

    def _read(self) -> None:
        try:
            for response in self._calls.add(self._status(control_pb2.StatusRequest(Ref=self._ref))):
                self._tracker.feed(response)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = exc
        except Exception as exc:  # handed to the caller: it must not end silently with this thread
            self.error = exc
        finally:
            self._done.set()

    def finish(self) -> None:
        if not self._done.wait(_STATUS_DRAIN_S if self._tracker.responses else 0.5):
            self._calls.cancel_all()


def _check_cache_options(options: Sequence[CacheOption]) -> None:
    for opt in options:
        if opt.type == "local":
            raise UnsupportedByBuilder(
                "cache type 'local' is served from the client's session content store, which llb "
                "does not implement; use 'registry' (or 'inline' exports) instead"
            )


def _local_dirs(definition: ops_pb2.Definition, local_dirs: Mapping[str, str | Path]) -> dict[str, Path]:
    """`local_dirs` resolved, after checking that every local source of the graph has one."""
    dirs = {name: Path(p).resolve() for name, p in local_dirs.items()}
    missing = sorted(_local_names(definition) - set(dirs))
    if missing:
        raise InvalidGraph(
            f"the graph reads local source(s) {', '.join(missing)} but solve(local_dirs=...) "
            "does not say which directories they are"
        )
    for name, p in dirs.items():
        if not p.is_dir():
            raise FileNotFoundError(f"local_dirs[{name!r}]: {p} is not a directory")
    return dirs


def _ssh_sockets(ssh_agent: bool | str) -> dict[str, str]:
    if not ssh_agent:
        return {}
    sock = os.environ.get("SSH_AUTH_SOCK", "") if ssh_agent is True else str(ssh_agent)
    if not sock:
        raise ValueError("ssh_agent=True but SSH_AUTH_SOCK is not set; start ssh-agent or pass a path")
    return {"default": sock}


@contextlib.contextmanager
def _temporary_tarball() -> Iterator[Path]:
    fd, name = tempfile.mkstemp(prefix="llb-image-", suffix=".tar")
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class Client:
    """A connection to one BuildKit daemon. Thread-safe; solves may run concurrently."""

    def __init__(self, transport: Transport, channel: grpc.Channel) -> None:
        self.transport = transport
        self.address = transport.address
        self.channel = channel
        self._sessions = SessionServer()
        self._closed = False
        unary, stream = channel.unary_unary, channel.unary_stream
        self._list_workers: _Unary[control_pb2.ListWorkersRequest, control_pb2.ListWorkersResponse] = unary(
            _CONTROL + "ListWorkers", _serialize, control_pb2.ListWorkersResponse.FromString
        )
        self._solve: _Unary[control_pb2.SolveRequest, control_pb2.SolveResponse] = unary(
            _CONTROL + "Solve", _serialize, control_pb2.SolveResponse.FromString
        )
        self._status: _Stream[control_pb2.StatusRequest, control_pb2.StatusResponse] = stream(
            _CONTROL + "Status", _serialize, control_pb2.StatusResponse.FromString
        )
        self._gw_solve: _Unary[gateway_pb2.SolveRequest, gateway_pb2.SolveResponse] = unary(
            _GATEWAY + "Solve", _serialize, gateway_pb2.SolveResponse.FromString
        )
        self._gw_return: _Unary[gateway_pb2.ReturnRequest, gateway_pb2.ReturnResponse] = unary(
            _GATEWAY + "Return", _serialize, gateway_pb2.ReturnResponse.FromString
        )
        self._gw_resolve: _Unary[gateway_pb2.ResolveImageConfigRequest, gateway_pb2.ResolveImageConfigResponse] = unary(
            _GATEWAY + "ResolveImageConfig", _serialize, gateway_pb2.ResolveImageConfigResponse.FromString
        )
        self._gw_ping: _Unary[gateway_pb2.PingRequest, gateway_pb2.PongResponse] = unary(
            _GATEWAY + "Ping", _serialize, gateway_pb2.PongResponse.FromString
        )
        self._info: _Unary[control_pb2.InfoRequest, control_pb2.InfoResponse] = unary(
            _CONTROL + "Info", _serialize, control_pb2.InfoResponse.FromString
        )
        self._caps: Capabilities | None = None
        self._caps_lock = threading.Lock()

    @property
    def is_docker_engine(self) -> bool:
        return self.transport.is_docker_engine

    # ------------------------------------------------------------ basics

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sessions.close()
        self.channel.close()
        self.transport.close()

    def list_workers(self, timeout: float = 10.0) -> list[WorkerInfo]:
        resp = self._control_call(self._list_workers, control_pb2.ListWorkersRequest(), timeout)
        return [WorkerInfo.from_pb(w) for w in resp.record]

    def capabilities(self, timeout: float = 10.0) -> Capabilities:
        """What the builder says it can do (ListWorkers, the gateway Ping's LLB and frontend caps, and
        Control.Info where it has one), asked once per Client: the builder does not change under a
        connection."""
        with self._caps_lock:
            if self._caps is None:
                workers = self._control_call(self._list_workers, control_pb2.ListWorkersRequest(), timeout)
                try:
                    with self._bare_build(timeout) as (build_id, _calls):
                        pong = self._gw_ping(
                            gateway_pb2.PingRequest(), metadata=((_BUILD_ID_KEY, build_id),), timeout=timeout
                        )
                except grpc.RpcError as exc:
                    raise _rpc_failure(exc, self.address, "the gateway Ping") from None
                try:
                    info: control_pb2.InfoResponse | None = self._info(control_pb2.InfoRequest(), timeout=timeout)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNIMPLEMENTED:  # BuildKit < 0.11 has no Info
                        raise _rpc_failure(exc, self.address, "Control.Info") from None
                    info = None
                self._caps = Capabilities.from_pb(workers, pong, info)
            return self._caps

    def _control_call(self, call: _Unary[_Req, _Resp], request: _Req, timeout: float) -> _Resp:
        try:
            return call(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _rpc_failure(exc, self.address, "") from None

    @contextlib.contextmanager
    def _bare_build(self, timeout: float) -> Iterator[tuple[str, _Calls]]:
        """A build with no definition and no exporter, of which we are the frontend: gateway calls
        (Ping, ResolveImageConfig) made inside it carry its id. It ends with an empty result."""
        build_id = _secrets.token_hex(13)
        calls = _Calls()
        solve = calls.add(self._solve.future(control_pb2.SolveRequest(Ref=build_id), timeout=timeout))
        try:
            try:
                yield build_id, calls
            finally:
                with contextlib.suppress(grpc.RpcError):
                    self._gw_return(_empty_return(), metadata=((_BUILD_ID_KEY, build_id),), timeout=10)
            solve.result()
        except BaseException:
            calls.cancel_all()
            raise

    # ------------------------------------------------------------ gateway helpers

    def _resolve_in_build(
        self,
        build_id: str,
        ref: str,
        platform: ops_pb2.Platform | None,
        mode: str,
        calls: _Calls,
        cancel: threading.Event | None,
    ) -> tuple[str, dict[str, Any]]:
        req = gateway_pb2.ResolveImageConfigRequest(Ref=ref, ResolveMode=mode, LogName=f"resolve {ref}")
        if platform is not None:
            req.Platform.CopyFrom(platform)
        fut = calls.add(self._gw_resolve.future(req, metadata=((_BUILD_ID_KEY, build_id),)))
        resp = _wait(fut, cancel)
        config: dict[str, Any] = json.loads(resp.Config) if resp.Config else {}
        return resp.Digest, config

    def resolve_image_config(
        self,
        ref: str,
        *,
        platform: Platform | None = None,
        resolve_mode: str = "default",
        timeout: float = 60.0,
    ) -> tuple[str, dict[str, Any]]:
        """(digest, image config JSON) of `ref` as the builder sees it. On the Docker
        engine an image in its own store resolves with an empty digest."""
        pb_platform = None
        if platform is not None:
            pb_platform = ops_pb2.Platform(OS=platform.os, Architecture=platform.architecture, Variant=platform.variant)
        try:
            with self._bare_build(timeout) as (build_id, calls):
                return self._resolve_in_build(build_id, ref, pb_platform, resolve_mode, calls, None)
        except grpc.RpcError as exc:
            raise SolveError(f"cannot resolve image config of {ref}: {_rpc_details(exc)}") from None

    # ------------------------------------------------------------ solve

    def solve(
        self,
        target: State | Definition | ops_pb2.Definition,
        *,
        export: Export | None = None,
        local_dirs: Mapping[str, str | Path] | None = None,
        secrets: Mapping[str, bytes | str] | None = None,
        ssh_agent: bool | str = False,
        image_config: ImageConfig | None = None,
        cache_imports: Sequence[CacheOption] = (),
        cache_exports: Sequence[CacheOption] = (),
        entitlements: Sequence[str] = (),
        frontend_attrs: Mapping[str, str] | None = None,
        on_event: Callable[[ProgressEvent], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> SolveResult:
        """Build `target` (a State or Definition) and export it.

        A fresh session per call serves `local_dirs` (name -> directory, the names used
        by `llb.local`), `secrets` (id -> bytes), the ssh agent (`True` = $SSH_AUTH_SOCK,
        or a socket path), registry credentials from the Docker config, and receives
        local/tar exports. `image_config` applies to image exports (see ImageConfig).
        Setting `cancel` or Ctrl-C stops the build on the builder and raises Cancelled.
        `on_event` is called from a background thread, in the order events arrive.
        """
        started = time.monotonic()
        definition = _definition_pb(target)
        plan = plan_export(export, docker_engine=self.is_docker_engine)
        if image_config is not None and not plan.is_image:
            raise ValueError("image_config applies only to image exports (DockerImage, ImageExport, ...)")
        _check_cache_options((*cache_exports, *cache_imports))
        dirs = _local_dirs(definition, local_dirs or {})
        ssh = _ssh_sockets(ssh_agent)
        ref = _secrets.token_hex(13)
        tracker = ProgressTracker(on_event)
        with contextlib.ExitStack() as cleanup:
            receive_file = cleanup.enter_context(_temporary_tarball()) if plan.load_into_engine else plan.receive_file
            if plan.receive_dir is not None:
                plan.receive_dir.mkdir(parents=True, exist_ok=True)
            if receive_file is not None:
                receive_file.parent.mkdir(parents=True, exist_ok=True)
            session = Session(
                self._sessions,
                SessionConfig(
                    local_dirs=dirs,
                    secrets={k: v.encode() if isinstance(v, str) else bytes(v) for k, v in (secrets or {}).items()},
                    ssh=ssh,
                    auth=DockerConfigAuth(),
                    receive_dir=plan.receive_dir,
                    receive_file=receive_file,
                ),
            )
            cleanup.callback(session.close)
            definition = bind_local_sources(definition, session.id)
            # A gateway build (one with an image config) sends the definition and the cache imports
            # itself: imports on Control.Solve do not reach a solve made through the gateway.
            gateway = _GatewayBuild(definition, image_config, tuple(cache_imports)) if image_config else None
            imports = cache_imports if gateway is None else ()
            request = _solve_request(ref, session.id, plan, entitlements, frontend_attrs, imports, cache_exports)
            if gateway is None:
                request.Definition.CopyFrom(definition)
            elif cache_imports and not self.capabilities().frontend_supports("importcaches"):
                raise UnsupportedByBuilder(
                    "cache imports for an image build go through the builder's gateway, and "
                    + self.capabilities().why_not("importcaches", frontend=True)
                )
            self._check_request_size(request, definition if gateway is not None else None)
            retried: ProgressTracker | None = None
            history_note = ""
            try:
                response, status_error = self._run(request, session, gateway, tracker, cancel)
            except _HistoryNotRecorded as exc:
                # The build ran and its result was exported; then BuildKit before 0.23 failed it for the
                # history record it could not write (moby/buildkit#5999: a cache record removed by a
                # cleanup during the build). Solved again as an internal build, which it does not
                # record: every step is a cache hit, and the export is made again.
                again = control_pb2.SolveRequest()
                again.CopyFrom(request)
                again.Ref, again.Internal = _secrets.token_hex(13), True
                retried = ProgressTracker(on_event)
                response, status_error = self._run(again, session, gateway, retried, cancel)
                ref = again.Ref
                history_note = (
                    f"the builder could not record this build in its history ({exc.message}); "
                    "it was solved again (all cache hits) as an internal build, which it does not record"
                )
            session.close()
            if session.errors:
                raise SolveError("; ".join(session.errors))
            if plan.load_into_engine:
                _load_into_engine(receive_file)
        exporter_response = dict(response.ExporterResponse)
        vertices, warnings = tracker.vertices, _warnings(tracker, status_error)
        if retried is not None:  # what the build did is what the first solve reported
            seen = {v.digest for v in vertices}
            vertices += [v for v in retried.vertices if v.digest not in seen]
            warnings = (*_warnings(tracker, None), *_warnings(retried, status_error), history_note)
        return SolveResult(
            vertices=vertices,
            exporter_response=exporter_response,
            image_id=exporter_response.get("containerimage.digest"),
            ref=ref,
            session_id=session.id,
            duration=time.monotonic() - started,
            warnings=warnings,
            sent_files=session.sent_files,
            sent_bytes=session.sent_bytes,
        )

    def _check_request_size(self, request: control_pb2.SolveRequest, gateway: ops_pb2.Definition | None) -> None:
        """The Docker engine refuses requests over 4 MiB; say so before sending one."""
        size = request.ByteSize() + (gateway.ByteSize() if gateway is not None else 0)
        if self.is_docker_engine and size > _ENGINE_MAX_REQUEST:
            raise DefinitionTooLarge(
                f"the build definition is {size / 2**20:.1f} MiB; the Docker engine accepts at most 4 MiB "
                "per request: move large file contents into a local source instead of mkfile",
                size=size,
                limit=_ENGINE_MAX_REQUEST,
                largest_op=_largest_op_name(gateway if gateway is not None else request.Definition),
            )

    def _run(
        self,
        request: control_pb2.SolveRequest,
        session: Session,
        gateway: _GatewayBuild | None,
        tracker: ProgressTracker,
        cancel: threading.Event | None,
    ) -> tuple[control_pb2.SolveResponse, BaseException | None]:
        """Sends the solve (and acts as its frontend for a gateway build) while the status stream
        feeds `tracker`. Returns the response and what broke the status stream, if anything; raises
        Cancelled or the llb error for what the builder reported. A build that ends before its
        frontend is done (an exporter the builder lacks) cancels the frontend's calls, and its own
        error is the one reported."""
        try:
            session.attach(self.transport, self.channel)
        except OSError as exc:
            raise BuilderUnreachable(self.address, f"cannot open a session: {exc}") from None
        calls = _Calls()
        status = _StatusStream(self._status, request.Ref, tracker, calls)
        try:
            solve = calls.add(self._solve.future(request))
            status.start()
            if gateway is not None:
                frontend = _Calls()
                solve.add_done_callback(lambda _f: frontend.cancel_all())
                try:
                    self._gateway_build(request.Ref, gateway, frontend, cancel)
                except (grpc.RpcError, grpc.FutureCancelledError):
                    if not solve.done():
                        raise
            response = _wait(solve, cancel)
        except (_CancelRequested, KeyboardInterrupt) as exc:
            calls.cancel_all()
            raise Cancelled(_CANCELLED) from (exc if isinstance(exc, KeyboardInterrupt) else None)
        except grpc.RpcError as exc:
            status.finish()
            if exc.code() == grpc.StatusCode.CANCELLED and cancel is not None and cancel.is_set():
                raise Cancelled(_CANCELLED) from None
            raise _solve_error(exc, tracker, self.address, docker_engine=self.is_docker_engine) from None
        except BaseException:
            calls.cancel_all()
            raise
        status.finish()
        return response, status.error

    def _gateway_build(
        self, build_id: str, gateway: _GatewayBuild, calls: _Calls, cancel: threading.Event | None
    ) -> None:
        """Act as the frontend of build `build_id`: solve, then return the ref with the config.
        An error is returned to the build too, so that the Solve call ends with it."""
        md = ((_BUILD_ID_KEY, build_id),)
        try:
            config = self._image_config(build_id, gateway.definition, gateway.image_config, calls, cancel)
            req = gateway_pb2.SolveRequest(allowResultReturn=True, allowResultArrayRef=True)
            req.Definition.CopyFrom(gateway.definition)
            for opt in gateway.cache_imports:
                req.CacheImports.add(Type=opt.type, Attrs=dict(opt.attrs))
            resp = _wait(calls.add(self._gw_solve.future(req, metadata=md)), cancel)
            ret = gateway_pb2.ReturnRequest()
            ret.result.ref.id = _result_ref(resp)
            ret.result.metadata["containerimage.config"] = json.dumps(config).encode()
            _wait(calls.add(self._gw_return.future(ret, metadata=md)), cancel)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                raise
            err = gateway_pb2.ReturnRequest(error=status_of(exc))  # with the builder's details
            try:
                self._gw_return(err, metadata=md, timeout=10)
            except grpc.RpcError:
                raise exc from None

    def _image_config(
        self,
        build_id: str,
        definition: ops_pb2.Definition,
        image_config: ImageConfig,
        calls: _Calls,
        cancel: threading.Event | None,
    ) -> dict[str, Any]:
        """The exported image's config: `image_config` over the config of the graph's base image."""
        base = _base_image(definition)
        if base is None:
            return image_config.merged_into(None, _platform_dict(Platform.host()))
        ref, mode, pb_platform = base
        _digest, base_config = self._resolve_in_build(build_id, ref, pb_platform, mode, calls, cancel)
        if pb_platform is None:
            return image_config.merged_into(base_config, _platform_dict(Platform.host()))
        platform = {"os": pb_platform.OS, "architecture": pb_platform.Architecture, "variant": pb_platform.Variant}
        return image_config.merged_into(base_config, platform)


@dataclass(frozen=True, slots=True)
class _GatewayBuild:
    """What a build whose frontend is the client solves through the gateway: the definition, the
    image config to return with its result, and the cache to import for that solve."""

    definition: ops_pb2.Definition
    image_config: ImageConfig
    cache_imports: tuple[CacheOption, ...]


class _HistoryNotRecorded(SolveError):
    """The builder built and exported the result, then failed the solve for its build history record."""


def _solve_request(
    ref: str,
    session_id: str,
    plan: ExporterPlan,
    entitlements: Sequence[str],
    frontend_attrs: Mapping[str, str] | None,
    cache_imports: Sequence[CacheOption],
    cache_exports: Sequence[CacheOption],
) -> control_pb2.SolveRequest:
    request = control_pb2.SolveRequest(
        Ref=ref,
        Exporter=plan.exporter,
        ExporterAttrs=dict(plan.attrs),
        Session=session_id,
        FrontendAttrs=dict(frontend_attrs or {}),
        Entitlements=list(entitlements),
    )
    for opt in cache_exports:
        request.Cache.Exports.add(Type=opt.type, Attrs=dict(opt.attrs))
    for opt in cache_imports:
        request.Cache.Imports.add(Type=opt.type, Attrs=dict(opt.attrs))
    return request


def _result_ref(resp: gateway_pb2.SolveResponse) -> str:
    """The id of the result's reference, wherever this BuildKit version put it."""
    kind = resp.result.WhichOneof("result")
    if kind == "ref":
        return resp.result.ref.id
    if kind == "refDeprecated":
        return resp.result.refDeprecated
    return resp.ref


def _solve_error(
    exc: grpc.RpcError, tracker: ProgressTracker, address: str, *, docker_engine: bool = False
) -> LLBError:
    """The llb error for a failed solve: the failing step (from the builder's error details, else
    from the message) with its exit code, log tail and source position when there are some."""
    details = error_details(exc)
    msg = details.message or _rpc_details(exc)
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return BuilderUnreachable(address, msg, "the builder went away during the solve")
    if any(_RECORDING_HISTORY.search(f) for f in details.functions):
        return _HistoryNotRecorded(msg)
    missing = _MISSING_EXPORTER.search(msg)
    if missing is not None:
        return exporter_missing(msg, missing.group("name"), docker_engine=docker_engine)
    if "unknown cache exporter" in msg or "unknown cache importer" in msg:
        return UnsupportedByBuilder(
            f"{msg}: the Docker engine's builder exports only 'inline' cache unless the engine keeps images in "
            "the containerd image store; a standalone buildkitd also has 'registry'"
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _TOO_LARGE.search(msg):
        return SolveError(f"{msg} (the Docker engine accepts at most 4 MiB per request)")
    vertex = next((v for v in tracker.vertices if details.vertex and v.digest == details.vertex), None)
    exit_code, command = details.exit_code, ""
    for pat in _EXIT_PATTERNS:
        m = pat.search(msg)
        if m is not None:
            exit_code, command = (exit_code if exit_code is not None else int(m.group("code"))), m.group("cmd")
            if vertex is None:
                failed = [v for v in tracker.vertices if v.error and pat.search(v.error)]
                failed = failed or [v for v in tracker.vertices if v.error and "cancel" not in v.error]
                vertex = failed[0] if failed else None
            break
    if vertex is None and not details.vertex:  # a builder that names none (Docker 20.10): the one that failed
        failed = [v for v in tracker.vertices if v.error and "cancel" not in v.error]
        vertex = failed[0] if len(failed) == 1 else None
    digest = vertex.digest if vertex else details.vertex
    if exit_code is not None:
        return ExecError(
            msg,
            vertex_name=vertex.name if vertex else command,
            exit_code=exit_code,
            log_tail=tracker.log_tail(vertex.digest) if vertex else (),
            vertex=digest,
            sources=details.sources,
        )
    return SolveError(msg, vertex=digest, vertex_name=vertex.name if vertex else "", sources=details.sources)


def _warnings(tracker: ProgressTracker, status_error: BaseException | None) -> tuple[str, ...]:
    warnings = []
    if status_error is not None:
        warnings.append(f"the progress stream failed ({_rpc_details(status_error)}); progress may be incomplete")
    if tracker.callback_error is not None:
        warnings.append(f"on_event raised {tracker.callback_error!r}; later events were dropped")
    return tuple(warnings)


def _load_into_engine(tarball: Path | None) -> None:
    """A standalone builder's `docker` exporter output, loaded into the local engine."""
    import docker  # only a standalone builder's image export needs the engine's API

    from .dockerhost import resolve

    assert tarball is not None
    try:
        host = resolve()
        if host.is_ssh:
            from .sshdial import dialer

            engine = docker.DockerClient(base_url="unix://" + dialer(host.url).api_socket(), timeout=600)
        elif host.context is not None:
            engine = docker.DockerClient(base_url=host.url, timeout=600)
        else:
            engine = docker.from_env(timeout=600)
        with tarball.open("rb") as f:
            engine.images.load(f)
    except Exception as exc:
        raise SolveError(f"the image was built but loading it into the Docker engine failed: {exc}") from None


def _empty_return() -> gateway_pb2.ReturnRequest:
    """A ReturnRequest with an empty (but present) result.

    BuildKit v0.8's forwarder dereferences `result` unless `error` is set: a bare
    ReturnRequest crashes dockerd 20.10 with a nil-pointer panic."""
    req = gateway_pb2.ReturnRequest()
    req.result.SetInParent()
    return req


def _platform_dict(p: Platform) -> dict[str, str]:
    return {"os": p.os, "architecture": p.architecture, "variant": p.variant}
