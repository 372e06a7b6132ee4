"""`envbuild doctor`: what the current builder and engine can do, gathered without building.

MergeOp/DiffOp cannot be probed cheaply (a failed solve on dockerd 20.10 is the only signal), so
they are inferred: never on the Docker engine's builder (absent in 20.10, disabled since 23.0.2),
and on a standalone buildkitd from its version (``Control.Info``, BuildKit >= 0.11; MergeOp needs
>= 0.10, so a daemon without ``Info`` is reported as unknown).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from envbuild.contexts import ResolvedBuilder
from envbuild.outputs import LOCAL_CACHE_NOTE, builder_caps

__all__ = ["Report", "diagnose", "buildkit_version", "render_text"]


@dataclass(slots=True)
class Report:
    context: str
    address: str
    source: str
    builder_kind: str
    reachable: bool = False
    error: str = ""
    connect_seconds: float | None = None
    buildkit_version: str | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)
    native_platform: str | None = None
    exporters: list[str] = field(default_factory=list)
    push_from_builder: bool = False
    push_via_engine: bool = False
    cache_export: list[str] = field(default_factory=list)
    cache_import: list[str] = field(default_factory=list)
    merge_diff: bool | None = None
    merge_diff_reason: str = ""
    engine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(data: bytes) -> dict[int, bytes]:
    """Length-delimited fields of a protobuf message (enough for InfoResponse/BuildkitVersion)."""
    out: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 2:
            n, i = _varint(data, i)
            out[num] = data[i : i + n]
            i += n
        elif wire == 0:
            _, i = _varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            break
    return out


def buildkit_version(client: Any, timeout: float = 3.0) -> str | None:
    """BuildKit's version from ``Control.Info`` (v0.11+); None when the daemon has no Info RPC."""
    import grpc

    call = client.channel.unary_unary(
        "/moby.buildkit.v1.Control/Info", request_serializer=lambda _: b"", response_deserializer=lambda b: b
    )
    try:
        raw = call(None, timeout=timeout)
    except grpc.RpcError:
        return None
    try:
        version = _fields(_fields(raw).get(1, b""))
    except IndexError:
        return None
    text = version.get(2, b"").decode(errors="replace")
    return text or None


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in text.lstrip("v").split("-")[0].split(".")[:3]:
        if not p.isdigit():
            break
        parts.append(int(p))
    return tuple(parts)


def engine_facts(docker_host: str | None) -> dict[str, Any]:
    """Version, API version and registered runtimes of the Docker engine (GPU: an ``nvidia`` runtime)."""
    from envbuild import engine_api
    from envbuild.errors import EngineUnreachable

    try:
        client = engine_api.connect(docker_host, timeout=5)
    except EngineUnreachable as exc:
        return {"reachable": False, "error": str(exc)}
    try:
        version = client.version()
        info = client.info()
    finally:
        client.close()
    runtimes = sorted((info.get("Runtimes") or {}).keys())
    return {
        "reachable": True,
        "version": version.get("Version", ""),
        "api_version": version.get("ApiVersion", ""),
        "os_arch": f"{version.get('Os', '')}/{version.get('Arch', '')}",
        "runtimes": runtimes,
        "default_runtime": info.get("DefaultRuntime", ""),
        "nvidia_runtime": "nvidia" in runtimes,
        "driver": info.get("Driver", ""),
        "containerd_image_store": any(
            "io.containerd.snapshotter" in str(v) for pair in (info.get("DriverStatus") or []) for v in pair
        ),
    }


def diagnose(builder: ResolvedBuilder, *, timeout: float = 4.0) -> Report:
    """Connect to `builder`, list its workers and fill in what it can do, never raising for an
    unreachable builder or engine (the report says so)."""
    from envbuild.errors import EngineUnreachable

    caps = builder_caps(builder.kind)
    report = Report(
        context=builder.context.name,
        address=builder.address,
        source=builder.source,
        builder_kind=builder.kind,
        exporters=sorted(caps.exporters),
        push_from_builder=caps.push,
        push_via_engine=caps.is_docker_engine,
        cache_export=sorted(caps.cache_exports),
        cache_import=sorted(caps.cache_imports),
    )
    t0 = time.monotonic()
    try:
        client = builder.connect(timeout=timeout)
    except EngineUnreachable as exc:
        report.error = str(exc)
    else:
        try:
            workers = client.list_workers(timeout=timeout)
            report.reachable = True
            report.connect_seconds = round(time.monotonic() - t0, 3)
            report.workers = [
                {"id": w.id, "platforms": [str(p) for p in w.platforms], "labels": dict(w.labels)} for w in workers
            ]
            for w in workers:
                if w.platforms:
                    report.native_platform = str(w.platforms[0])
                    break
            report.buildkit_version = buildkit_version(client)
        except Exception as exc:  # an answering socket that is not BuildKit
            report.error = f"{builder.address} answered but ListWorkers failed: {exc}"
        finally:
            client.close()
    if caps.is_docker_engine:
        report.merge_diff = False
        report.merge_diff_reason = (
            "the Docker engine's builder has no MergeOp/DiffOp (absent in 20.10, disabled since 23.0.2)"
        )
    elif report.buildkit_version:
        v = _version_tuple(report.buildkit_version)
        report.merge_diff = v >= (0, 10) if v else None
        report.merge_diff_reason = f"BuildKit {report.buildkit_version}" + (
            "" if report.merge_diff else " (needs >= 0.10)"
        )
    elif report.reachable:
        report.merge_diff = None
        report.merge_diff_reason = "unknown: the daemon has no Info RPC (BuildKit < 0.11); MergeOp needs >= 0.10"
    report.engine = engine_facts(builder.docker_host)
    if caps.is_docker_engine:
        report.notes.append(
            "push: the image is exported into the engine and pushed through the engine API "
            "(credentials from ~/.docker/config.json)"
        )
        report.notes.append("oci tarballs, registry cache export: need a standalone buildkitd (see docs/builders.md)")
    report.notes.append(LOCAL_CACHE_NOTE)
    if report.engine.get("reachable") and not report.engine.get("nvidia_runtime"):
        report.notes.append(
            "no 'nvidia' runtime in the engine: GPU environments need the NVIDIA Container Toolkit "
            "(`nvidia-ctk runtime configure --runtime=docker`, then restart dockerd)"
        )
    return report


def _yes(v: bool | None) -> str:
    return "unknown" if v is None else ("yes" if v else "no")


def render_text(r: Report) -> str:
    lines = [
        f"context:       {r.context} ({r.source})",
        f"builder:       {r.builder_kind} at {r.address}",
    ]
    if r.reachable:
        lines.append(f"reachable:     yes ({r.connect_seconds}s)")
        if r.buildkit_version:
            lines.append(f"buildkit:      {r.buildkit_version}")
        for w in r.workers:
            lines.append(f"worker:        {w['id']}: {', '.join(w['platforms']) or '(no platforms)'}")
        lines.append(f"native:        {r.native_platform or 'unknown'}")
    else:
        lines.append("reachable:     NO")
        lines.extend(f"  {line}" for line in r.error.splitlines())
    push = "from the builder" if r.push_from_builder else "through the engine API" if r.push_via_engine else "no"
    lines += [
        f"exporters:     {', '.join(r.exporters)}",
        f"push:          {push}",
        f"cache export:  {', '.join(r.cache_export) or 'none'}",
        f"cache import:  {', '.join(r.cache_import) or 'none'}",
        f"merge/diff:    {_yes(r.merge_diff)}" + (f" ({r.merge_diff_reason})" if r.merge_diff_reason else ""),
    ]
    e = r.engine
    if e.get("reachable"):
        lines.append(f"engine:        Docker {e['version']} (API {e['api_version']}, {e['os_arch']}, {e['driver']})")
        lines.append(
            f"gpu runtime:   {'nvidia' if e['nvidia_runtime'] else 'none'} (runtimes: {', '.join(e['runtimes'])})"
        )
    else:
        lines.append("engine:        unreachable")
        lines.extend(f"  {line}" for line in str(e.get("error", "")).splitlines())
    lines.extend(f"note: {n}" for n in r.notes)
    return "\n".join(lines)
