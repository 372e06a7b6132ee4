"""`envbuild doctor`: what the current builder and engine can do, gathered without building.

Everything comes from what the builder and the engine report (`envbuild.capabilities`): the gateway's
LLB and frontend caps (MergeOp/DiffOp are on or off there, with the builder's reason), the workers and
their platforms, the version the builder gives (Debian's builds say ``v0.0.0+unknown``: a version is
shown, never used to decide), and the engine's storage, which decides its builder's exporters.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from envbuild.capabilities import BuilderCaps, derive
from envbuild.contexts import ResolvedBuilder
from envbuild.outputs import LOCAL_CACHE_NOTE

if TYPE_CHECKING:
    from envbuild.engine_api import EngineInfo

__all__ = ["Report", "diagnose", "render_text"]


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
    llb_caps: list[str] = field(default_factory=list)
    """The LLB caps the builder reports enabled."""
    disabled_caps: dict[str, str] = field(default_factory=dict)
    """LLB and frontend caps the builder reports disabled, with its reason."""
    frontend_caps: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    """What this builder cannot do, and why (the reasons every refusal gives)."""
    engine: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _engine(docker_host: str | None) -> tuple[EngineInfo | None, dict[str, Any]]:
    """The engine's report, and how doctor shows it (``reachable: False`` with the error otherwise)."""
    from envbuild import engine_api
    from envbuild.errors import EngineUnreachable

    try:
        info = engine_api.engine_info(docker_host)
    except EngineUnreachable as exc:
        return None, {"reachable": False, "error": str(exc)}
    return info, {
        "reachable": True,
        "version": info.version,
        "api_version": info.api_version,
        "os_arch": info.os_arch,
        "runtimes": list(info.runtimes),
        "default_runtime": info.default_runtime,
        "nvidia_runtime": "nvidia" in info.runtimes,
        "driver": info.driver,
        "containerd_image_store": info.containerd_store,
        "image_store": info.store,
    }


def _fill(report: Report, caps: BuilderCaps) -> None:
    report.exporters = sorted(caps.exporters)
    report.push_from_builder = caps.push
    report.push_via_engine = caps.is_docker_engine and not caps.push
    report.cache_export = sorted(caps.cache_exports)
    report.cache_import = sorted(caps.cache_imports)
    report.missing = dict(caps.missing)
    builder = caps.builder
    if builder is None:
        return
    report.merge_diff = caps.merge_diff
    report.merge_diff_reason = caps.why_not("merge") or "the builder reports mergeop and diffop enabled"
    report.buildkit_version = builder.version or None
    report.llb_caps = sorted(c.id for c in builder.llb_caps.values() if c.enabled)
    report.frontend_caps = sorted(c.id for c in builder.frontend_caps.values() if c.enabled)
    report.disabled_caps = {
        c.id: c.disabled_reason or "disabled"
        for c in (*builder.llb_caps.values(), *builder.frontend_caps.values())
        if not c.enabled
    }
    report.workers = [
        {
            "id": w.id,
            "platforms": [str(p) for p in w.platforms],
            "labels": dict(w.labels),
            "buildkit_version": w.buildkit_version,
        }
        for w in builder.workers
    ]
    report.native_platform = str(builder.platforms[0]) if builder.platforms else None


def diagnose(builder: ResolvedBuilder, *, timeout: float = 4.0) -> Report:
    """Connect to `builder`, read what it and the engine report, and fill in what it can do, never
    raising for an unreachable builder or engine (the report says so)."""
    import llb
    from envbuild.errors import EngineUnreachable

    report = Report(
        context=builder.context.name, address=builder.address, source=builder.source, builder_kind=builder.kind
    )
    engine, report.engine = _engine(builder.docker_host)
    read: llb.Capabilities | None = None
    t0 = time.monotonic()
    try:
        client = builder.connect(timeout=timeout)
    except EngineUnreachable as exc:
        report.error = str(exc)
    else:
        try:
            read = client.capabilities(timeout=timeout)
            report.reachable = True
            report.connect_seconds = round(time.monotonic() - t0, 3)
        except llb.LLBError as exc:  # an answering socket that is not BuildKit, or a builder that went away
            report.error = f"{builder.address} answered but did not say what it can do: {exc}"
        finally:
            client.close()
    caps = derive(builder.kind, read, engine if builder.is_docker_engine else None)
    _fill(report, caps)
    if caps.is_docker_engine and not caps.push:
        report.notes.append(
            "push: the image is exported into the engine and pushed through the engine API "
            "(credentials from ~/.docker/config.json)"
        )
        report.notes.append("oci and docker tarballs: the image is exported into the engine, then saved from there")
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
        lines.append(f"buildkit:      {r.buildkit_version or 'does not say'}")
        for w in r.workers:
            platforms = ", ".join(dict.fromkeys(w["platforms"])) or "(no platforms)"
            lines.append(f"worker:        {w['id']}: {platforms}")
        lines.append(f"native:        {r.native_platform or 'unknown'}")
        lines.append(f"llb caps:      {len(r.llb_caps)} enabled")
        lines.extend(f"  disabled:    {cap}: {why}" for cap, why in sorted(r.disabled_caps.items()))
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
        lines.append(
            f"engine:        Docker {e['version']} (API {e['api_version']}, {e['os_arch']}, {e['image_store']})"
        )
        lines.append(
            f"gpu runtime:   {'nvidia' if e['nvidia_runtime'] else 'none'} (runtimes: {', '.join(e['runtimes'])})"
        )
    else:
        lines.append("engine:        unreachable")
        lines.extend(f"  {line}" for line in str(e.get("error", "")).splitlines())
    lines.extend(f"note: {n}" for n in r.notes)
    return "\n".join(lines)
