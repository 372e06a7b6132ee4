"""`envbuild.capabilities`: what a builder can do follows from what it and its engine reported, as
measured on Docker 20.10 (overlay2), Docker 26.1.5 (overlay2, and the containerd image store) and a
standalone buildkitd; every refusal says why, in the builder's words where it gave them."""

from __future__ import annotations

import pytest

import llb
from envbuild.capabilities import CONTAINERD_STORE_HINT, STANDALONE_HINT, BuilderCaps, derive
from envbuild.engine_api import EngineInfo
from envbuild.errors import UsageError

AMD64 = llb.Platform("linux", "amd64")
_CONTAINERD_ONLY = "only enabled with containerd image store backend"


def reported(
    *,
    merge: bool | str | None,
    version: str = "",
    importcaches: bool = True,
    platforms: tuple[llb.Platform, ...] = (AMD64,),
) -> llb.Capabilities:
    """A builder's report: ``merge`` True (mergeop/diffop enabled), a str (disabled, with that reason)
    or None (caps unknown to it: BuildKit before 0.10)."""
    llb_caps = {"exec.mount.cache": llb.Cap("exec.mount.cache", True)}
    if merge is not None:
        for cap in ("mergeop", "diffop"):
            llb_caps[cap] = llb.Cap(cap, merge is True, disabled_reason="" if merge is True else str(merge))
    frontend = {"importcaches": llb.Cap("importcaches", importcaches)}
    return llb.Capabilities(llb_caps, frontend, (llb.WorkerInfo("w", platforms, {}),), version)


def engine(version: str, *, containerd: bool) -> EngineInfo:
    driver = "overlayfs" if containerd else "overlay2"
    return EngineInfo(version, "1.45", "linux/amd64", driver, containerd, ("runc",), "runc")


def docker20() -> BuilderCaps:
    return derive("docker", reported(merge=None), engine("20.10.24+dfsg1", containerd=False))


def docker26(*, containerd: bool) -> BuilderCaps:
    merge = True if containerd else _CONTAINERD_ONLY
    return derive(
        "docker", reported(merge=merge, version="v0.0.0+unknown"), engine("26.1.5+dfsg1", containerd=containerd)
    )


def standalone(kind: str = "tcp") -> BuilderCaps:
    return derive(kind, reported(merge=True, version="v0.13.2"), None)


def test_a_graph_driver_engine_writes_only_into_its_store() -> None:
    for caps in (docker20(), docker26(containerd=False)):
        assert caps.is_docker_engine and caps.engine_store and not caps.push
        assert caps.exporters == {"moby", "local", "tar"} and caps.cache_exports == {"inline"}
        assert caps.cache_imports == {"registry"} and not caps.merge_diff
        assert "overlay2 graph driver" in caps.why_not("exporter:oci") and caps.why_not("push")
    assert "does not know the LLB capability 'mergeop'" in docker20().why_not("merge")
    assert docker26(containerd=False).why_not("merge").endswith(f"disabled: {_CONTAINERD_ONLY}")


def test_the_containerd_store_gives_the_engine_buildkits_exporters() -> None:
    caps = docker26(containerd=True)
    assert caps.exporters == {"moby", "image", "oci", "docker", "local", "tar"} and caps.push
    assert caps.cache_exports == {"inline", "registry"} and caps.merge_diff and caps.missing == {}
    assert caps.label == "the builder of Docker 26.1.5+dfsg1 (containerd image store (overlayfs))"


def test_an_unknown_version_decides_nothing() -> None:
    """Debian's BuildKit says v0.0.0+unknown: the caps it reports decide, both ways."""
    assert derive("tcp", reported(merge=True, version="v0.0.0+unknown"), None).merge_diff
    assert not derive("tcp", reported(merge="no snapshotter support", version="v0.99.0"), None).merge_diff


def test_a_builder_without_the_gateways_cache_imports_refuses_them() -> None:
    caps = derive("tcp", reported(merge=True, importcaches=False), None)
    assert caps.cache_imports == frozenset()
    assert "'importcaches' disabled" in str(caps.refusal("import cache (type=registry)", "cache-import:registry"))


def test_refusals_say_why_and_who_can() -> None:
    err = docker20().refusal("export cache (type=registry)", "cache-export:registry", alternative="Use inline.")
    text = str(err)
    assert isinstance(err, UsageError) and text.startswith(
        "the builder of Docker 20.10.24+dfsg1 (overlay2 graph driver)"
    )
    assert "exports only inline cache" in text and CONTAINERD_STORE_HINT in text and STANDALONE_HINT in text
    assert text.endswith(". Use inline.")
    assert CONTAINERD_STORE_HINT not in str(standalone().refusal("x", "merge"))


def test_standalone_builders_and_unread_reports() -> None:
    caps = standalone("docker-container")
    assert caps.label == "a buildkitd in a Docker container" and caps.push and not caps.engine_store
    assert caps.exporters == {"image", "oci", "docker", "local", "tar"} and caps.merge_diff
    assert caps.workers[0].platforms == (AMD64,)
    unread = derive("docker", None, None)
    assert unread.exporters == {"moby", "local", "tar"} and not unread.merge_diff
    assert "could not be read" in unread.why_not("merge") and "image store is unknown" in unread.why_not("push")
    with pytest.raises(UsageError, match="unknown builder kind"):
        derive("podman", None, None)
