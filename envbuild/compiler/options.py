"""What the compiler needs besides the spec: facts about the host and the base image, and settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from envbuild.compiler.mirrors import Mirrors
from envbuild.naming import project_name  # noqa: F401 (re-export: the compiler's public API)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from envbuild.compiler.vscode import Extension

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "FTP_PROXY")


@dataclass(frozen=True, slots=True)
class BaseConfig:
    """The base image's config (Env, User, WorkingDir, Entrypoint, Cmd, Labels), inherited by the image.

    ``resolved`` is False when the config could not be read (offline ``debug llb``): the compiler then
    assumes Debian's defaults and says so.
    """

    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    digest: str = ""
    resolved: bool = True

    @classmethod
    def from_docker(cls, config: Mapping[str, object] | None, *, digest: str = "") -> BaseConfig:
        """From an image config's ``config`` section (Docker API or OCI config JSON)."""
        c: dict[str, Any] = dict(config or {})
        return cls(
            env=tuple(c.get("Env") or ()),
            user=str(c.get("User") or ""),
            working_dir=str(c.get("WorkingDir") or ""),
            entrypoint=tuple(c["Entrypoint"]) if c.get("Entrypoint") else None,
            cmd=tuple(c["Cmd"]) if c.get("Cmd") else None,
            labels=MappingProxyType(dict(c.get("Labels") or {})),
            digest=digest,
        )

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            k, _, v = item.partition("=")
            out[k] = v
        return out


UNRESOLVED = BaseConfig(resolved=False)


@dataclass(frozen=True, slots=True)
class AptPin:
    """A locked apt transaction: the names the build asks for and every package (``name=version``)
    apt installed for them when the lock was made."""

    names: tuple[str, ...]
    packages: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Pins:
    """What a locked build installs, from ``build.envd.lock`` (`envbuild.lock.Lock.pins`).

    ``apt``: per apt transaction (keyed like `CompiledBuild.installs`), its pinned packages.
    ``python``: the hashed requirements of the one Python resolution (`uv pip sync`), local wheels
    as context paths; ``python_version`` the exact interpreter release. ``conda``: the solved
    environment as a conda explicit file (URLs with sha256). ``strict`` (``--locked``): a
    transaction the lock does not cover is an error instead of a note. ``wheelhouse`` (``--offline``):
    the context folder the Python packages are installed from instead of an index. ``vsix``: VS Code
    extension downloads (pinned id -> sha256), checked once they are in envbuild's cache. ``digest``
    identifies the lock (part of the image's content digest)."""

    apt: Mapping[str, AptPin] = field(default_factory=lambda: MappingProxyType({}))
    python: str | None = None
    python_version: str = ""
    conda: str | None = None
    platform: str = ""
    strict: bool = False
    wheelhouse: str = ""
    vsix: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    digest: str = ""


@dataclass(frozen=True, slots=True)
class CompileOptions:
    """Everything outside the spec that shapes the LLB or the image config.

    ``proxy`` holds the user's HTTP(S)_PROXY/NO_PROXY: passed to steps as ExecOp proxy env (BuildKit
    keeps it out of cache keys). ``python_mirror`` becomes ``UV_PYTHON_INSTALL_MIRROR`` for the
    managed-CPython path. ``input_digest`` is the content digest stored in ``ai.envbuild.digest``,
    ``inputs_label`` the value of ``ai.envbuild.inputs`` (`envbuild.quickcheck`; empty: no label).
    ``cache_bust`` (``--no-cache``) is set on every step's env: all steps re-run, while the cache
    mounts survive (BuildKit's ignore-cache flag would also empty them).
    ``mirrors`` are the download mirrors of the runtime and IDE stages (`Mirrors.load`). ``vscode_extensions``
    are the extensions `vscode.prepare` unpacked under ``vscode_cache`` on the host before compiling
    (compiling stays pure: without them the extensions are left out, with a note).
    ``context_dir`` is the build context's host path, reported in ``CompiledBuild.local_dirs``;
    ``context_excludes`` are the patterns of its ignore file (`envbuild.ignorefile`): those files
    are never sent to the builder.
    ``pins`` (a locked build) are the versions every package transaction installs.
    ``merge_layers`` builds the Python runtime and packages beside the system packages and stacks
    them with MergeOp/DiffOp (only for a builder that has both; the default is one chain of steps).
    """

    project: str = "project"
    owner: tuple[int, int] = (1000, 1000)
    base_config: BaseConfig = UNRESOLVED
    proxy: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    network: str = "sandbox"
    python_mirror: str | None = None
    platform: str | None = None
    input_digest: str = ""
    inputs_label: str = ""
    context_name: str = "context"
    cache_bust: str = ""
    mirrors: Mirrors = field(default_factory=Mirrors)
    vscode_extensions: tuple[Extension, ...] = ()
    vscode_cache: str = ""
    context_dir: str = "."
    context_excludes: tuple[str, ...] = ()
    pins: Pins | None = None
    merge_layers: bool = False


def proxy_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Upper- or lower-case proxy variables, upper-case winning, as curl and pip read them."""
    out: dict[str, str] = {}
    for name in PROXY_VARS:
        value = environ.get(name) or environ.get(name.lower())
        if value:
            out[name] = value
    return out
