"""What the builder one command uses can do, read once per command.

Two reports make it: the builder's own (llb ``Client.capabilities``: the gateway's LLB and frontend
caps, the workers and their platforms, the version it gives) and, for the Docker engine's builder, the
engine's ``/info``: where the engine keeps images decides what its builder can export. Kept in a
graph driver (Docker 20.10, and later engines by default), the builder writes only into the engine's
store and exports only inline cache; kept in containerd's image store, it has BuildKit's ``image``
(with push), ``oci`` and ``docker`` exporters and registry cache. The output planner, ``doctor`` and
every "cannot" message take their facts from here, so they name what *this* builder has and why not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from envbuild.errors import UsageError

if TYPE_CHECKING:
    import llb
    from envbuild.contexts import ResolvedBuilder
    from envbuild.engine_api import EngineInfo

__all__ = ["STANDALONE_HINT", "CONTAINERD_STORE_HINT", "BuilderCaps", "derive", "read"]

STANDALONE_HINT = (
    "a standalone buildkitd can: `docker run -d --name buildkitd --privileged moby/buildkit` and "
    "pass --builder docker-container://buildkitd (or `envbuild context create bk --builder "
    "docker-container --use`); tcp://, unix:// and kube-pod:// builders work the same"
)
CONTAINERD_STORE_HINT = (
    'switch the engine to the containerd image store (`"features": {"containerd-snapshotter": true}` in '
    "/etc/docker/daemon.json, then restart dockerd; images built before are not carried over)"
)
_STANDALONE_LABELS = {
    "unix": "a buildkitd on a unix socket",
    "tcp": "a buildkitd over TCP",
    "docker-container": "a buildkitd in a Docker container",
    "kube-pod": "a buildkitd in a Kubernetes pod",
}
_IMAGE_EXPORTERS = frozenset({"image", "oci", "docker"})


@dataclass(frozen=True, slots=True)
class BuilderCaps:
    """What one builder can do. ``exporters`` are BuildKit exporter names; ``push``: the builder
    pushes images itself; ``engine_store``: its ``moby`` exporter writes into the Docker engine's
    image store. ``missing`` says, per feature this builder lacks (``exporter:oci``, ``push``,
    ``cache-export:registry``, ``cache-import:registry``, ``merge``), why: in the builder's own words
    where it gave them."""

    kind: str
    label: str
    exporters: frozenset[str]
    push: bool
    cache_exports: frozenset[str]
    cache_imports: frozenset[str]
    merge_diff: bool
    engine_store: bool
    missing: Mapping[str, str] = field(default_factory=dict)
    builder: llb.Capabilities | None = None
    engine: EngineInfo | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "missing", MappingProxyType(dict(self.missing)))

    @property
    def is_docker_engine(self) -> bool:
        return self.kind == "docker"

    @property
    def workers(self) -> tuple[llb.WorkerInfo, ...]:
        return self.builder.workers if self.builder is not None else ()

    def why_not(self, feature: str) -> str:
        """Why this builder lacks `feature` ("" when it has it or nobody knows better)."""
        return self.missing.get(feature, "")

    def refusal(self, what: str, feature: str, *, alternative: str = "") -> UsageError:
        """The error for a request this builder cannot carry out: what, why, and who can."""
        why = self.why_not(feature)
        hint = STANDALONE_HINT
        if self.is_docker_engine and self.engine is not None and not self.engine.containerd_store:
            hint = f"{CONTAINERD_STORE_HINT}, or: {STANDALONE_HINT}"
        msg = f"{self.label} cannot {what}" + (f": {why}" if why else "") + f"; {hint}"
        if alternative:
            msg += f". {alternative}"
        return UsageError(msg)


def _engine_label(engine: EngineInfo | None) -> str:
    if engine is None:
        return "the Docker engine's builder"
    return f"the builder of Docker {engine.version} ({engine.store})"


def derive(kind: str, builder: llb.Capabilities | None, engine: EngineInfo | None) -> BuilderCaps:
    """The capabilities that follow from what the builder (``builder``) and, for ``kind == "docker"``,
    the engine (``engine``) reported; None for a report that could not be read (then only what every
    builder of the kind has is assumed, and the reason says the report is missing)."""
    missing: dict[str, str] = {}
    if kind == "docker":
        label = _engine_label(engine)
        if engine is not None and engine.containerd_store:
            exporters = frozenset({"moby", "local", "tar", *_IMAGE_EXPORTERS})
            push, cache_exports = True, frozenset({"inline", "registry"})
        else:
            exporters, push, cache_exports = frozenset({"moby", "local", "tar"}), False, frozenset({"inline"})
            why = (
                f"the engine keeps images in the {engine.driver} graph driver, where its builder writes "
                "only into the engine's store and exports only inline cache"
                if engine is not None
                else "the engine's /info could not be read, so its image store is unknown"
            )
            missing.update({f"exporter:{e}": why for e in sorted(_IMAGE_EXPORTERS)})
            missing.update({"push": why, "cache-export:registry": why})
        engine_store = True
    elif kind in _STANDALONE_LABELS:
        label = _STANDALONE_LABELS[kind]
        exporters = frozenset({"local", "tar", *_IMAGE_EXPORTERS})
        push, cache_exports, engine_store = True, frozenset({"inline", "registry"}), False
    else:
        raise UsageError(f"unknown builder kind {kind!r}")
    cache_imports = frozenset({"registry"})
    merge_diff = False
    if builder is None:
        missing["merge"] = "the builder's capabilities could not be read"
    else:
        if not builder.frontend_supports("importcaches"):
            cache_imports = frozenset()
            missing["cache-import:registry"] = builder.why_not("importcaches", frontend=True)
        merge_diff = builder.supports("mergeop") and builder.supports("diffop")
        if not merge_diff:
            missing["merge"] = builder.why_not("mergeop") or builder.why_not("diffop")
    return BuilderCaps(
        kind=kind,
        label=label,
        exporters=exporters,
        push=push,
        cache_exports=cache_exports,
        cache_imports=cache_imports,
        merge_diff=merge_diff,
        engine_store=engine_store,
        missing=missing,
        builder=builder,
        engine=engine,
    )


def read(rb: ResolvedBuilder, client: llb.Client) -> BuilderCaps:
    """Ask the builder (and, for the Docker engine's builder, the engine) what it can do. Raises what
    `llb.Client.capabilities` raises for a builder that stops answering, and EngineUnreachable for an
    engine that does not answer."""
    from envbuild import engine_api

    engine = engine_api.engine_info(rb.docker_host) if rb.is_docker_engine else None
    return derive(rb.kind, client.capabilities(), engine)
