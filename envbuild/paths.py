"""Where envbuild keeps per-user files: one place, so every part honours the XDG variables alike."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def _home(variable: str, default: str, environ: Mapping[str, str] | None) -> str:
    value = (os.environ if environ is None else environ).get(variable, "")
    return os.path.join(
        value if value and os.path.isabs(value) else os.path.join(os.path.expanduser("~"), default), "envbuild"
    )


def _base(variable: str, default: str, environ: Mapping[str, str] | None) -> Path:
    from pathlib import Path

    return Path(_home(variable, default, environ))


def config_home(environ: Mapping[str, str] | None = None) -> str:
    """`config_dir` as a str (without importing pathlib)."""
    return _home("XDG_CONFIG_HOME", ".config", environ)


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/envbuild`` (an absolute value only, as the spec says) or ``~/.config/envbuild``."""
    return _base("XDG_CONFIG_HOME", ".config", environ)


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/envbuild`` or ``~/.cache/envbuild``."""
    return _base("XDG_CACHE_HOME", ".cache", environ)
