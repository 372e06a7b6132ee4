"""BuildKit client: connect, list workers, solve with a session, resolve image configs.

Image config on exported images needs the gateway-forwarder path on the Docker
engine (its `moby` exporter ignores `containerimage.config` in ExporterAttrs):
Control.Solve starts a build with no Definition, we solve the Definition through
LLBBridge.Solve on the same connection, and Return the result together with the
image config as frontend metadata.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets as _secrets
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .connection import TLSConfig, Transport, open_transport, resolve_address
from .errors import (
    BuilderUnreachable,
    Cancelled,
    ExecError,
    InvalidGraph,
    LLBError,
    SolveError,
    UnsupportedByBuilder,
)
from .export import CacheOption, Export, ImageConfig, plan_export
from .platform import Platform
from .progress import ProgressEvent, ProgressTracker, VertexInfo
from .session import Session, SessionConfig, SessionServer

if TYPE_CHECKING:
    import grpc

    from ._proto import ops_pb2

__all__ = ["connect", "Client", "WorkerInfo", "SolveResult"]

_CONTROL = "/moby.buildkit.v1.Control/"
_GATEWAY = "/moby.buildkit.v1.frontend.LLBBridge/"
_BUILD_ID_KEY = "buildkit-controlapi-buildid"
_ENGINE_MAX_REQUEST = 4 * 1024 * 1024 - 64 * 1024
_STATUS_DRAIN_S = 5.0
_EXIT_PATTERNS = (
    re.compile(r'process "(?P<cmd>.*)" did not complete successfully: exit code: (?P<code>\d+)', re.S),
    re.compile(r"executor failed running \[(?P<cmd>.*?)\]: exit code: (?P<code>\d+)", re.S),
)


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    platforms: tuple[Platform, ...]
    labels: Mapping[str, str]


@dataclass(frozen=True)
class SolveResult:
    """`vertices` in the order the builder first reported them; `image_id` is the exported
    image's digest when the exporter produced one."""

    vertices: list[VertexInfo]
    exporter_response: dict[str, str]
    image_id: str | None
    ref: str
    session_id: str
    duration: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)


def connect(address: str | None = None, *, tls: TLSConfig | None = None, timeout: float = 5.0) -> Client:
    """Connect to BuildKit: `address`, else $BUILDKIT_HOST, else the Docker engine ($DOCKER_HOST).

    Raises BuilderUnreachable within `timeout` seconds when nothing answers.
    """
    import grpc

    addr = resolve_address(address)
    deadline = time.monotonic() + timeout
    transport = open_transport(addr, tls, timeout)
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
        hint = getattr(transport, "hint", "") or (
            "start one with `buildkitd --addr ADDRESS` or run moby/buildkit in a container"
        )
        raise BuilderUnreachable(
            addr, f"no gRPC connection within {timeout}s" + (f" ({detail})" if detail else ""), hint
        ) from None
    return Client(transport, channel)


def _rpc_details(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = details() if callable(details) else None
    return text or str(exc)


def _definition_pb(target: Any) -> ops_pb2.Definition:
    from ._proto import ops_pb2

    if isinstance(target, ops_pb2.Definition):
        return target
    if hasattr(target, "to_pb"):
        return target.to_pb()
    if hasattr(target, "marshal"):
        return target.marshal().to_pb()
    raise TypeError(f"solve() wants a State or a Definition, got {type(target).__name__}")


def _local_names(definition: ops_pb2.Definition) -> set[str]:
    """Names of `local://` sources served by the solve's own session."""
    from ._proto import ops_pb2

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
    import hashlib

    from ._proto import ops_pb2

    ops: dict[str, ops_pb2.Op] = {}
    last = None
    for raw in getattr(definition, "def"):
        d = "sha256:" + hashlib.sha256(raw).hexdigest()
        ops[d] = last = ops_pb2.Op.FromString(raw)
    if last is None or not last.inputs:
        return None
    digest, index = last.inputs[0].digest, last.inputs[0].index
    for _ in range(10000):
        op = ops.get(digest)
        if op is None:
            return None
        kind = op.WhichOneof("op")
        if kind == "source":
            ident = op.source.identifier
            if not ident.startswith("docker-image://"):
                return None
            mode = op.source.attrs.get("image.resolvemode", "default")
            return ident[len("docker-image://") :], mode, op.platform if op.HasField("platform") else None
        if kind == "exec":
            mount = next((m for m in op.exec.mounts if m.output == index), None)
            if mount is None or mount.input < 0 or mount.input >= len(op.inputs):
                return None
            digest, index = op.inputs[mount.input].digest, op.inputs[mount.input].index
            continue
        if kind == "file":
            actions = list(op.file.actions)
            act = next((a for a in actions if a.output == index), None)
            n = len(op.inputs)
            while act is not None and act.input >= n:
                act = actions[act.input - n]
            if act is None or act.input < 0:
                return None
            digest, index = op.inputs[act.input].digest, op.inputs[act.input].index
            continue
        return None
    return None


class _Calls:
    """Futures of one solve, cancelled together."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.lock = threading.Lock()
        self.cancelled = False

    def add(self, call: Any) -> Any:
        with self.lock:
            self.items.append(call)
            if self.cancelled:
                call.cancel()
        return call

    def cancel_all(self) -> None:
        with self.lock:
            self.cancelled = True
            items = list(self.items)
        for c in items:
            c.cancel()


def _wait(fut: Any, cancel: threading.Event | None) -> Any:
    """fut.result(), but raising _CancelRequested as soon as `cancel` is set."""
    done = threading.Event()
    fut.add_done_callback(lambda _f: done.set())
    while not done.wait(0.05 if cancel is not None else 0.5):
        if cancel is not None and cancel.is_set():
            raise _CancelRequested()
    return fut.result()


class _CancelRequested(Exception):
    pass


class Client:
    """A connection to one BuildKit daemon. Thread-safe; solves may run concurrently."""

    def __init__(self, transport: Transport, channel: grpc.Channel) -> None:
        from ._proto import control_pb2, gateway_pb2

        self.transport = transport
        self.address = transport.address
        self.channel = channel
        self._sessions = SessionServer()
        self._closed = False
        ser = lambda m: m.SerializeToString()  # noqa: E731
        self._list_workers = channel.unary_unary(
            _CONTROL + "ListWorkers", ser, control_pb2.ListWorkersResponse.FromString
        )
        self._solve = channel.unary_unary(_CONTROL + "Solve", ser, control_pb2.SolveResponse.FromString)
        self._status = channel.unary_stream(_CONTROL + "Status", ser, control_pb2.StatusResponse.FromString)
        self._gw_solve = channel.unary_unary(_GATEWAY + "Solve", ser, gateway_pb2.SolveResponse.FromString)
        self._gw_return = channel.unary_unary(_GATEWAY + "Return", ser, gateway_pb2.ReturnResponse.FromString)
        self._gw_resolve = channel.unary_unary(
            _GATEWAY + "ResolveImageConfig", ser, gateway_pb2.ResolveImageConfigResponse.FromString
        )

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

    def _rpc_error(self, exc: BaseException) -> LLBError:
        import grpc

        code = exc.code() if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else None
        msg = _rpc_details(exc)
        if code == grpc.StatusCode.UNAVAILABLE:
            return BuilderUnreachable(self.address, msg, "check that the builder is still running")
        return SolveError(msg)

    def list_workers(self, timeout: float = 10.0) -> list[WorkerInfo]:
        import grpc

        from ._proto import control_pb2

        try:
            resp = self._list_workers(control_pb2.ListWorkersRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            raise self._rpc_error(exc) from None
        return [
            WorkerInfo(
                id=w.ID,
                platforms=tuple(Platform(p.OS, p.Architecture, p.Variant) for p in w.platforms),
                labels=dict(w.Labels),
            )
            for w in resp.record
        ]

    # ------------------------------------------------------------ gateway helpers

    def _resolve_in_build(
        self,
        build_id: str,
        ref: str,
        platform: ops_pb2.Platform | None,
        mode: str,
        calls: _Calls,
        cancel: threading.Event | None,
    ) -> tuple[str, dict]:
        from ._proto import gateway_pb2

        req = gateway_pb2.ResolveImageConfigRequest(Ref=ref, ResolveMode=mode, LogName=f"resolve {ref}")
        if platform is not None:
            req.Platform.CopyFrom(platform)
        fut = calls.add(self._gw_resolve.future(req, metadata=[(_BUILD_ID_KEY, build_id)]))
        resp = _wait(fut, cancel)
        return resp.Digest, json.loads(resp.Config) if resp.Config else {}

    def resolve_image_config(
        self,
        ref: str,
        *,
        platform: Platform | None = None,
        resolve_mode: str = "default",
        timeout: float = 60.0,
    ) -> tuple[str, dict]:
        """(digest, image config JSON) of `ref` as the builder sees it. On the Docker
        engine an image in its own store resolves with an empty digest."""
        import grpc

        from ._proto import control_pb2, ops_pb2

        build_id = _secrets.token_hex(13)
        calls = _Calls()
        solve = calls.add(self._solve.future(control_pb2.SolveRequest(Ref=build_id), timeout=timeout))
        try:
            pb_platform = None
            if platform is not None:
                pb_platform = ops_pb2.Platform(
                    OS=platform.os, Architecture=platform.architecture, Variant=platform.variant
                )
            try:
                result = self._resolve_in_build(build_id, ref, pb_platform, resolve_mode, calls, None)
            finally:
                with contextlib.suppress(grpc.RpcError):
                    self._gw_return(_empty_return(), metadata=[(_BUILD_ID_KEY, build_id)], timeout=10)
            solve.result()
            return result
        except grpc.RpcError as exc:
            calls.cancel_all()
            raise SolveError(f"cannot resolve image config of {ref}: {_rpc_details(exc)}") from None

    # ------------------------------------------------------------ solve

    def solve(
        self,
        target: Any,
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
        from ._proto import control_pb2

        t0 = time.monotonic()
        definition = _definition_pb(target)
        plan = plan_export(export, docker_engine=self.is_docker_engine)
        if image_config is not None and not plan.is_image:
            raise ValueError("image_config applies only to image exports (DockerImage, ImageExport, ...)")
        dirs = {name: Path(p).resolve() for name, p in (local_dirs or {}).items()}
        missing = sorted(_local_names(definition) - set(dirs))
        if missing:
            raise InvalidGraph(
                f"the graph reads local source(s) {', '.join(missing)} but solve(local_dirs=...) "
                "does not say which directories they are"
            )
        for name, p in dirs.items():
            if not p.is_dir():
                raise FileNotFoundError(f"local_dirs[{name!r}]: {p} is not a directory")
        ssh: dict[str, str] = {}
        if ssh_agent:
            sock = os.environ.get("SSH_AUTH_SOCK", "") if ssh_agent is True else str(ssh_agent)
            if not sock:
                raise ValueError("ssh_agent=True but SSH_AUTH_SOCK is not set; start ssh-agent or pass a path")
            ssh["default"] = sock
        tmp_load: Path | None = None
        receive_file = plan.receive_file
        if plan.load_into_engine:
            fd, name = tempfile.mkstemp(prefix="llb-image-", suffix=".tar")
            os.close(fd)
            tmp_load = receive_file = Path(name)
        if plan.receive_dir is not None:
            plan.receive_dir.mkdir(parents=True, exist_ok=True)
        if receive_file is not None:
            receive_file.parent.mkdir(parents=True, exist_ok=True)

        from .auth import DockerConfigAuth

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
        ref = _secrets.token_hex(13)
        req = control_pb2.SolveRequest(
            Ref=ref,
            Exporter=plan.exporter,
            ExporterAttrs=dict(plan.attrs),
            Session=session.id,
            FrontendAttrs=dict(frontend_attrs or {}),
            Entitlements=list(entitlements),
        )
        for opt in (*cache_exports, *cache_imports):
            if opt.type == "local":
                raise UnsupportedByBuilder(
                    "cache type 'local' is served from the client's session content store, which llb "
                    "does not implement; use 'registry' (or 'inline' exports) instead"
                )
        for opt in cache_exports:
            req.Cache.Exports.add(Type=opt.type, Attrs=dict(opt.attrs))
        for opt in cache_imports:
            req.Cache.Imports.add(Type=opt.type, Attrs=dict(opt.attrs))
        if image_config is None:
            req.Definition.CopyFrom(definition)
        size = req.ByteSize() + (definition.ByteSize() if image_config is not None else 0)
        if self.is_docker_engine and size > _ENGINE_MAX_REQUEST:
            raise InvalidGraph(
                f"the build definition is {size / 2**20:.1f} MiB; the Docker engine accepts at most 4 MiB "
                "per request: move large file contents into a local source instead of mkfile"
            )

        tracker = ProgressTracker(on_event)
        calls = _Calls()
        status_done = threading.Event()
        try:
            session.attach(self.transport, self.channel)
        except OSError as exc:
            session.close()
            raise BuilderUnreachable(self.address, f"cannot open a session: {exc}") from None

        def status_loop() -> None:
            try:
                stream = calls.add(self._status(control_pb2.StatusRequest(Ref=ref)))
                for resp in stream:
                    tracker.feed(resp)
            except Exception:
                pass
            finally:
                status_done.set()

        try:
            solve_fut = calls.add(self._solve.future(req))
            threading.Thread(target=status_loop, name="llb-status", daemon=True).start()
            if image_config is not None:
                self._gateway_build(ref, definition, image_config, calls, cancel)
            resp = _wait(solve_fut, cancel)
        except (_CancelRequested, KeyboardInterrupt) as exc:
            calls.cancel_all()
            session.close()
            if tmp_load is not None:
                tmp_load.unlink(missing_ok=True)
            raise Cancelled("solve cancelled; the builder was told to stop it") from (
                exc if isinstance(exc, KeyboardInterrupt) else None
            )
        except Exception as exc:
            import grpc

            if not isinstance(exc, grpc.RpcError):
                calls.cancel_all()
                session.close()
                raise
            self._drain(status_done, tracker, calls)
            session.close()
            if tmp_load is not None:
                tmp_load.unlink(missing_ok=True)
            if exc.code() == grpc.StatusCode.CANCELLED and cancel is not None and cancel.is_set():
                raise Cancelled("solve cancelled; the builder was told to stop it") from None
            raise self._solve_error(exc, tracker) from None
        self._drain(status_done, tracker, calls)
        session.close()
        if session.errors:
            raise SolveError("; ".join(session.errors))
        if tmp_load is not None:
            self._load_into_engine(tmp_load)
        exporter_response = dict(resp.ExporterResponse)
        warnings: tuple[str, ...] = ()
        if tracker.callback_error is not None:
            warnings = (f"on_event raised {tracker.callback_error!r}; later events were dropped",)
        return SolveResult(
            vertices=tracker.vertices,
            exporter_response=exporter_response,
            image_id=exporter_response.get("containerimage.digest"),
            ref=ref,
            session_id=session.id,
            duration=time.monotonic() - t0,
            warnings=warnings,
        )

    @staticmethod
    def _drain(status_done: threading.Event, tracker: ProgressTracker, calls: _Calls) -> None:
        """Status events can outlive the Solve RPC; wait for the stream's end (bounded)."""
        if not status_done.wait(_STATUS_DRAIN_S if tracker.responses else 0.5):
            calls.cancel_all()

    def _gateway_build(
        self,
        build_id: str,
        definition: ops_pb2.Definition,
        image_config: ImageConfig,
        calls: _Calls,
        cancel: threading.Event | None,
    ) -> None:
        """Act as the frontend of build `build_id`: solve, then return the ref with the config."""
        import grpc

        from ._proto import gateway_pb2, status_pb2

        md = [(_BUILD_ID_KEY, build_id)]
        try:
            base = _base_image(definition)
            base_cfg: dict | None = None
            platform: dict[str, str] = {}
            if base is not None:
                ref, mode, pb_platform = base
                _digest, base_cfg = self._resolve_in_build(build_id, ref, pb_platform, mode, calls, cancel)
                if pb_platform is not None:
                    platform = {
                        "os": pb_platform.OS,
                        "architecture": pb_platform.Architecture,
                        "variant": pb_platform.Variant,
                    }
            req = gateway_pb2.SolveRequest(allowResultReturn=True, allowResultArrayRef=True)
            req.Definition.CopyFrom(definition)
            resp = _wait(calls.add(self._gw_solve.future(req, metadata=md)), cancel)
            result = resp.result
            kind = result.WhichOneof("result")
            if kind == "ref":
                ref_id = result.ref.id
            elif kind == "refDeprecated":
                ref_id = result.refDeprecated
            else:
                ref_id = resp.ref
            config = image_config.merged_into(base_cfg, platform or _host_platform())
            ret = gateway_pb2.ReturnRequest()
            ret.result.ref.id = ref_id
            ret.result.metadata["containerimage.config"] = json.dumps(config).encode()
            _wait(calls.add(self._gw_return.future(ret, metadata=md)), cancel)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                raise
            err = gateway_pb2.ReturnRequest(
                error=status_pb2.Status(code=exc.code().value[0], message=_rpc_details(exc))
            )
            try:
                self._gw_return(err, metadata=md, timeout=10)
            except grpc.RpcError:
                raise exc from None

    def _solve_error(self, exc: Any, tracker: ProgressTracker) -> LLBError:
        import grpc

        msg = _rpc_details(exc)
        code = exc.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            return BuilderUnreachable(self.address, msg, "the builder went away during the solve")
        if "unknown cache exporter" in msg or "unknown cache importer" in msg:
            return UnsupportedByBuilder(
                f"{msg}: the Docker engine's embedded BuildKit only exports 'inline' cache; "
                "a standalone buildkitd also has 'registry'"
            )
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return SolveError(f"{msg} (the Docker engine accepts at most 4 MiB per request)")
        for pat in _EXIT_PATTERNS:
            m = pat.search(msg)
            if m is None:
                continue
            failed = [v for v in tracker.vertices if v.error and pat.search(v.error)]
            failed = failed or [v for v in tracker.vertices if v.error and "cancel" not in v.error]
            vertex = failed[0] if failed else None
            return ExecError(
                msg,
                vertex_name=vertex.name if vertex else m.group("cmd"),
                exit_code=int(m.group("code")),
                log_tail=tracker.log_tail(vertex.digest) if vertex else (),
            )
        return SolveError(msg)

    def _load_into_engine(self, tarball: Path) -> None:
        """A standalone builder's `docker` exporter output, loaded into the local engine."""
        try:
            import docker  # type: ignore[import-untyped]

            client = docker.from_env()
            with tarball.open("rb") as f:
                client.images.load(f)
        except Exception as exc:
            raise SolveError(f"the image was built but loading it into the Docker engine failed: {exc}") from None
        finally:
            tarball.unlink(missing_ok=True)


def _empty_return() -> Any:
    """A ReturnRequest with an empty (but present) result.

    BuildKit v0.8's forwarder dereferences `result` unless `error` is set: a bare
    ReturnRequest crashes dockerd 20.10 with a nil-pointer panic."""
    from ._proto import gateway_pb2

    req = gateway_pb2.ReturnRequest()
    req.result.SetInParent()
    return req


def _host_platform() -> dict[str, str]:
    p = Platform.host()
    return {"os": p.os, "architecture": p.architecture, "variant": p.variant}
