"""What a builder says it can do: its gateway's LLB and frontend API caps, its workers, its version.

Read from the builder, never inferred from a version number: Debian's builds report
``v0.0.0+unknown``, and Docker's embedded BuildKit switches caps such as ``mergeop`` off by storage
backend whatever its version, saying why in the cap's disabled reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._proto import apicaps_pb2, control_pb2, gateway_pb2, worker_pb2
from .platform import Platform

__all__ = ["Cap", "WorkerInfo", "Capabilities"]


@dataclass(frozen=True, slots=True)
class Cap:
    """One API capability as the gateway's Ping reports it."""

    id: str
    enabled: bool
    deprecated: bool = False
    disabled_reason: str = ""
    alternative: str = ""

    @classmethod
    def from_pb(cls, cap: apicaps_pb2.APICap) -> Cap:
        reason = "; ".join(r for r in (cap.DisabledReason, cap.DisabledReasonMsg) if r)
        return cls(cap.ID, cap.Enabled, cap.Deprecated, reason, cap.DisabledAlternative)


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One ListWorkers record. ``buildkit_version`` is the record's field 5 (BuildKit >= 0.12; empty
    when the builder leaves it out or sends it empty, as Docker's embedded BuildKit does)."""

    id: str
    platforms: tuple[Platform, ...]
    labels: Mapping[str, str]
    buildkit_version: str = ""

    @classmethod
    def from_pb(cls, record: worker_pb2.WorkerRecord) -> WorkerInfo:
        return cls(
            id=record.ID,
            platforms=tuple(Platform(p.OS, p.Architecture, p.Variant) for p in record.platforms),
            labels=MappingProxyType(dict(record.Labels)),
            buildkit_version=record.BuildkitVersion.version,
        )


def _caps(caps: Iterable[apicaps_pb2.APICap]) -> Mapping[str, Cap]:
    return MappingProxyType({c.id: c for c in map(Cap.from_pb, caps)})


@dataclass(frozen=True, slots=True)
class Capabilities:
    """A builder's answer to ListWorkers, the gateway Ping and (BuildKit >= 0.11) Control.Info.

    ``version`` is what the builder says of itself ("" when it does not: BuildKit before 0.11);
    it is for people to read. Decisions go by caps: `supports` and `why_not`.
    """

    llb_caps: Mapping[str, Cap]
    frontend_caps: Mapping[str, Cap]
    workers: tuple[WorkerInfo, ...]
    version: str = ""

    @classmethod
    def from_pb(
        cls,
        workers: control_pb2.ListWorkersResponse,
        pong: gateway_pb2.PongResponse,
        info: control_pb2.InfoResponse | None = None,
    ) -> Capabilities:
        records = tuple(WorkerInfo.from_pb(w) for w in workers.record)
        version = info.buildkitVersion.version if info is not None else ""
        version = version or next((w.buildkit_version for w in records if w.buildkit_version), "")
        return cls(
            llb_caps=_caps(pong.LLBCaps),
            frontend_caps=_caps(pong.FrontendAPICaps),
            workers=records,
            version=version,
        )

    @property
    def platforms(self) -> tuple[Platform, ...]:
        """Every platform the workers build for, first worker first, each once (the first is native)."""
        return tuple(dict.fromkeys(p for w in self.workers for p in w.platforms))

    def supports(self, cap: str) -> bool:
        """Whether the builder reports the LLB cap (``mergeop``, ``exec.mount.cache``, ...) enabled."""
        found = self.llb_caps.get(cap)
        return found is not None and found.enabled

    def frontend_supports(self, cap: str) -> bool:
        """Whether the builder reports the gateway (frontend API) cap (``importcaches``, ...) enabled."""
        found = self.frontend_caps.get(cap)
        return found is not None and found.enabled

    def why_not(self, cap: str, *, frontend: bool = False) -> str:
        """Why the builder lacks `cap`, in its own words ("" when it has it)."""
        found = (self.frontend_caps if frontend else self.llb_caps).get(cap)
        kind = "gateway" if frontend else "LLB"
        if found is None:
            return f"this builder does not know the {kind} capability {cap!r}" + (
                f" (BuildKit {self.version})" if self.version else ""
            )
        if found.enabled:
            return ""
        text = f"this builder has the {kind} capability {cap!r} disabled"
        if found.disabled_reason:
            text += f": {found.disabled_reason}"
        if found.alternative:
            text += f" (instead: {found.alternative})"
        return text
