"""Where envbuild keeps per-user files: one place, so every part honours the XDG variables alike."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def _base(variable: str, default: str, environ: Mapping[str, str] | None) -> Path:
    value = (os.environ if environ is None else environ).get(variable, "")
    return (Path(value) if value and os.path.isabs(value) else Path.home() / default) / "envbuild"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/envbuild`` (an absolute value only, as the spec says) or ``~/.config/envbuild``."""
    return _base("XDG_CONFIG_HOME", ".config", environ)


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME/envbuild`` or ``~/.cache/envbuild``."""
    return _base("XDG_CACHE_HOME", ".cache", environ)
