"""Where envbuild downloads from, and how a user points every such place at a mirror.

Every download URL the runtime and IDE stages use has a setting here. Values come from (first wins):
``ENVBUILD_MIRROR_<NAME>`` environment variables, the ``[mirrors]`` table of
``~/.config/envbuild/config.toml`` (``$ENVBUILD_CONFIG`` overrides the path), then the upstream
default. Spec settings (``config.cran_mirror``, ``config.pip_index``, ``config.conda_channel``) win
over these, because they are part of the environment itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from envbuild import paths
from envbuild.compiler import credentials
from envbuild.compiler.scripts import APT_MIRROR
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

ENV_PREFIX = "ENVBUILD_MIRROR_"
CONFIG_ENV = "ENVBUILD_CONFIG"


class MirrorConfigError(UsageError):
    """The config file or a mirror variable cannot be used."""


NO_CREDENTIALS = frozenset({"apt", "conda_channel_alias", "rustup_dist_server", "pytorch"})
"""Settings a tool reads from its environment or a file of the image (apt's sources, conda, rustup,
uv): a login in them would be stored with the build or in the image, so they must be URLs that need none. The
download settings (curl in a fetch stage) may carry one: it reaches curl as a netrc secret."""


@dataclass(frozen=True, slots=True)
class Mirrors:
    """Base URLs (no trailing slash) for each upstream; field names are the setting names."""

    conda_channel_alias: str = "https://conda.anaconda.org"
    openvsx: str = "https://open-vsx.org"
    cran: str = ""
    julia: str = "https://julialang-s3.julialang.org/bin"
    rustup_dist_server: str = "https://static.rust-lang.org"
    rustup_update_root: str = "https://static.rust-lang.org/rustup"
    go: str = "https://dl.google.com/go"
    nodejs: str = "https://nodejs.org/dist"
    pixi: str = "https://github.com/prefix-dev/pixi/releases/download"
    pytorch: str = "https://download.pytorch.org/whl"
    codex: str = "https://github.com/openai/codex/releases/download"
    """``install.codex``: ``<codex>/<tag>/codex-<arch>-unknown-linux-musl.tar.gz``, the layout of a GitHub release."""
    git: str = ""
    """Where ``include()``/``load()`` fetch git repositories: ``<git>/<host>/<path>`` (e.g.
    ``file:///srv/git-mirror`` holding ``github.com/tensorchord/envdlib``); empty: the URL itself."""
    apt: str = ""
    """Where apt steps download from instead of the image's own sources (the image keeps them):
    every source URI becomes this URL, ``{archive}`` standing for the URI's last path component, e.g.
    ``http://snapshot.debian.org/archive/{archive}/20250101T000000Z`` to build a lock whose versions
    the live mirror no longer has; empty: the sources as they are. ``config.apt_source`` wins."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, config_path: str | Path | None = None) -> Mirrors:
        environ = os.environ if environ is None else environ
        values: dict[str, str] = {}
        path = os.fspath(
            config_path or environ.get(CONFIG_ENV) or os.path.join(paths.config_home(environ), "config.toml")
        )
        values.update(_from_toml(path))
        for name in cls.names():
            v = environ.get(ENV_PREFIX + name.upper())
            if v:
                values[name] = v
        return cls.from_mapping(values, where=f"{path} or {ENV_PREFIX}*")

    @classmethod
    def from_mapping(cls, values: Mapping[str, str], *, where: str = "mirrors") -> Mirrors:
        unknown = set(values) - set(cls.names())
        if unknown:
            raise MirrorConfigError(
                f"{where}: unknown mirror setting(s) {', '.join(sorted(unknown))}; known: {', '.join(cls.names())}"
            )
        clean: dict[str, str] = {}
        for k, v in values.items():
            if not isinstance(v, str) or (v and "://" not in v):
                raise MirrorConfigError(f"{where}: mirror {k!r} must be a URL like https://host/path, got {v!r}")
            if k in NO_CREDENTIALS and credentials.has_credentials(v):
                raise MirrorConfigError(
                    f"{where}: mirror {k!r} carries a login, which would be stored with the build; "
                    "use a mirror that needs none (or one reached through a proxy that adds it)"
                )
            if k == "apt" and v and not APT_MIRROR.fullmatch(v):
                raise MirrorConfigError(
                    f"{where}: mirror 'apt' must be a URL like http://snapshot.debian.org/archive/{{archive}}/DATE "
                    f"(letters, digits and ._~:/?=@%+- only), got {v!r}"
                )
            clean[k] = v.rstrip("/")
        return cls(**clean)


def _from_toml(path: str) -> dict[str, str]:
    if not os.path.isfile(path):
        return {}
    try:
        import tomllib  # type: ignore[import-not-found]  # (mypy checks as Python 3.10)
    except ModuleNotFoundError:  # Python 3.10
        raise MirrorConfigError(f"{path}: reading the config file needs Python >= 3.11") from None
    try:
        with open(path, encoding="utf-8") as f:
            data = tomllib.loads(f.read())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise MirrorConfigError(f"{path}: {e}") from None
    table = data.get("mirrors", {})
    if not isinstance(table, dict):
        raise MirrorConfigError(f"{path}: [mirrors] must be a table")
    return {str(k): v for k, v in table.items()}
