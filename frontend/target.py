"""Which build file and function a command line names, and where the user config lives.

`envbuild build`'s skip check resolves the same target as the evaluator without loading the
interpreter, so this module stays apart from it.
"""

from __future__ import annotations

import os
import re

DEFAULT_FILE = "build.envd"
_FUNCTION_NAME = re.compile(r"[A-Za-z_]\w*")


def is_function_name(text: str) -> bool:
    """What ``file.envd:func`` may name."""
    return _FUNCTION_NAME.fullmatch(text) is not None


def split_target_text(text: str) -> tuple[str, str | None]:
    """``dir``, ``dir/build.envd``, ``file.envd:func`` or ``:func`` -> (build file, function or None)."""
    func: str | None = None
    head, sep, tail = text.rpartition(":")
    if sep and is_function_name(tail) and "/" not in tail and not os.path.exists(text):
        text, func = head, tail
    text = text or "."
    if os.path.isdir(text):
        text = os.path.join(text, DEFAULT_FILE)
    return text, func


def user_config_path() -> str:
    """``$XDG_CONFIG_HOME/envbuild/config.envd`` (``~/.config/envbuild/config.envd``)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return os.path.join(xdg or os.path.join(os.path.expanduser("~"), ".config"), "envbuild", "config.envd")
