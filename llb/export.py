"""What to do with a solve's result (exporters), the image config applied to
exported images, and cache import/export options."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import UnsupportedByBuilder
from .source import normalize_image_ref

__all__ = [
    "DockerImage",
    "ImageExport",
    "LocalExport",
    "TarExport",
    "OCIExport",
    "DockerTarExport",
    "Export",
    "ImageConfig",
    "CacheOption",
    "ExporterPlan",
    "plan_export",
]

_STANDALONE_HINT = (
    "a standalone buildkitd has it: run `docker run -d --name buildkitd --privileged moby/buildkit` "
    "and connect with llb.connect('docker-container://buildkitd') (or set BUILDKIT_HOST)"
)


def _names(name: str | Sequence[str]) -> tuple[str, ...]:
    names = (name,) if isinstance(name, str) else tuple(name)
    if not names or any(not n or "," in n for n in names):
        raise ValueError(f"image names must be non-empty and contain no comma: {names!r}")
    return names


@dataclass(frozen=True, slots=True, init=False)
class DockerImage:
    """Store the result as an image in the Docker engine (the `moby` exporter there;
    elsewhere a `docker` tarball loaded into the local engine)."""

    name: tuple[str, ...]

    def __init__(self, name: str | Sequence[str]) -> None:
        object.__setattr__(self, "name", _names(name))


@dataclass(frozen=True, slots=True, init=False)
class ImageExport:
    """BuildKit's `image` exporter (optionally pushed to a registry by the builder): a standalone
    buildkitd's, or the Docker engine's with the containerd image store."""

    name: tuple[str, ...]
    push: bool
    insecure: bool

    def __init__(self, name: str | Sequence[str], push: bool = False, insecure: bool = False) -> None:
        object.__setattr__(self, "name", _names(name))
        object.__setattr__(self, "push", push)
        object.__setattr__(self, "insecure", insecure)


@dataclass(frozen=True, slots=True)
class LocalExport:
    """Write the result's filesystem into a local directory (merged into existing content)."""

    dest: str | Path


@dataclass(frozen=True, slots=True)
class TarExport:
    """Write the result's filesystem as a tar archive."""

    dest: str | Path


@dataclass(frozen=True, slots=True)
class OCIExport:
    """Write an OCI image layout tarball (a builder with the `oci` exporter)."""

    dest: str | Path
    name: str = ""


@dataclass(frozen=True, slots=True)
class DockerTarExport:
    """Write a `docker load`-able tarball (a builder with the `docker` exporter)."""

    dest: str | Path
    name: str = ""


Export = DockerImage | ImageExport | LocalExport | TarExport | OCIExport | DockerTarExport


def _freeze(m: Mapping[str, str] | None) -> Mapping[str, str] | None:
    return None if m is None else MappingProxyType(dict(m))


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """OCI image config fields applied to an exported image.

    `None` keeps the base image's value (the image at the bottom of the result's
    root filesystem; not its ``created`` date, which the exporter sets from the newest
    layer, as for a Dockerfile build); a given value replaces it entirely — pass the full list of
    Env, the full set of Labels, and so on. `env` may be a mapping or `K=V` strings.
    """

    env: Sequence[str] | Mapping[str, str] | None = None
    entrypoint: Sequence[str] | None = None
    cmd: Sequence[str] | None = None
    user: str | None = None
    working_dir: str | None = None
    labels: Mapping[str, str] | None = None
    exposed_ports: Sequence[str] | None = None
    volumes: Sequence[str] | None = None
    stop_signal: str | None = None

    def __post_init__(self) -> None:
        env = self.env
        if isinstance(env, Mapping):
            env = tuple(f"{k}={v}" for k, v in env.items())
        elif env is not None:
            env = tuple(env)
            bad = [e for e in env if "=" not in e]
            if bad:
                raise ValueError(f"env entries must be KEY=VALUE: {bad!r}")
        object.__setattr__(self, "env", env)
        for name in ("entrypoint", "cmd", "exposed_ports", "volumes"):
            v = getattr(self, name)
            if isinstance(v, str):
                raise ValueError(f"ImageConfig.{name} must be a list of strings, not a string")
            if v is not None:
                object.__setattr__(self, name, tuple(v))
        object.__setattr__(self, "labels", _freeze(self.labels))

    def merged_into(self, base: Mapping[str, object] | None, platform: Mapping[str, str]) -> dict[str, Any]:
        """The full OCI image config JSON object: `base` (a whole image config, may be None)
        with our fields applied on top of its `config` section."""
        img: dict[str, Any] = json.loads(json.dumps(dict(base))) if base else {}
        img.setdefault("architecture", platform.get("architecture", "amd64"))
        img.setdefault("os", platform.get("os", "linux"))
        if platform.get("variant") and "variant" not in img:
            img["variant"] = platform["variant"]
        cfg = dict(img.get("config") or {})
        if self.env is not None:
            cfg["Env"] = list(self.env)
        if self.entrypoint is not None:
            cfg["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            cfg["Cmd"] = list(self.cmd)
        if self.user is not None:
            cfg["User"] = self.user
        if self.working_dir is not None:
            cfg["WorkingDir"] = self.working_dir
        if self.labels is not None:
            cfg["Labels"] = dict(self.labels)
        if self.exposed_ports is not None:
            cfg["ExposedPorts"] = {(p if "/" in p else f"{p}/tcp"): {} for p in self.exposed_ports}
        if self.volumes is not None:
            cfg["Volumes"] = {v: {} for v in self.volumes}
        if self.stop_signal is not None:
            cfg["StopSignal"] = self.stop_signal
        img["config"] = cfg
        img.pop("rootfs", None)
        img.pop("created", None)  # the base's date: the exporter dates the image by its newest layer
        return img


@dataclass(frozen=True, slots=True)
class CacheOption:
    """A cache import/export entry, e.g. `CacheOption("registry", {"ref": "host/repo:cache"})`
    or `CacheOption("local", {"dest": "/tmp/cache"})`."""

    type: str
    attrs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attrs", MappingProxyType(dict(self.attrs)))


@dataclass(frozen=True, slots=True)
class ExporterPlan:
    """How an Export maps onto one builder: exporter name, attrs and what the session must receive."""

    exporter: str
    attrs: Mapping[str, str]
    receive_dir: Path | None = None
    receive_file: Path | None = None
    load_into_engine: bool = False
    is_image: bool = False


def plan_export(export: Export | None, *, docker_engine: bool) -> ExporterPlan:
    """Translate an Export for the Docker engine's embedded BuildKit or a standalone buildkitd.

    The ``image``, ``oci`` and ``docker`` exporters go to the builder as asked: whether it has them is
    the builder's to say (the Docker engine's builder has them with the containerd image store, not
    with a graph driver), and a refusal becomes UnsupportedByBuilder (see `exporter_missing`)."""
    if export is None:
        return ExporterPlan("", {})
    if isinstance(export, DockerImage):
        if docker_engine:
            return ExporterPlan("moby", {"name": ",".join(export.name)}, is_image=True)
        return ExporterPlan("docker", {"name": ",".join(export.name)}, load_into_engine=True, is_image=True)
    if isinstance(export, LocalExport):
        return ExporterPlan("local", {}, receive_dir=Path(export.dest))
    if isinstance(export, TarExport):
        return ExporterPlan("tar", {}, receive_file=Path(export.dest))
    if isinstance(export, ImageExport):
        # The engine's store holds images under full names (docker.io/library/x:latest); its `moby`
        # exporter qualifies names itself, BuildKit's `image` exporter does not.
        names = [normalize_image_ref(n) for n in export.name] if docker_engine else export.name
        attrs = {"name": ",".join(names)}
        if export.push:
            attrs["push"] = "true"
        if export.insecure:
            attrs["registry.insecure"] = "true"
        if docker_engine:  # the image lands in the engine's store: unpacked, so `docker run` can use it
            attrs["unpack"] = "true"
        return ExporterPlan("image", attrs, is_image=True)
    if isinstance(export, (OCIExport, DockerTarExport)):
        kind = "oci" if isinstance(export, OCIExport) else "docker"
        attrs = {"name": export.name} if export.name else {}
        return ExporterPlan(kind, attrs, receive_file=Path(export.dest), is_image=True)
    raise TypeError(f"unknown export {export!r}")


def exporter_missing(message: str, exporter: str, *, docker_engine: bool) -> UnsupportedByBuilder:
    """The error for a builder that answered "exporter X could not be found"."""
    where = (
        "the Docker engine's builder has it only when the engine keeps images in the containerd image store; "
        if docker_engine
        else ""
    )
    return UnsupportedByBuilder(f"{message}: this builder has no {exporter!r} exporter; {where}{_STANDALONE_HINT}")
