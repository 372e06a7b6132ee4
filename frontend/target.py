"""Which build file and function a command line names, and where the user config lives.

Plain strings and ``os.path`` only: `envbuild build`'s skip check resolves the same target as the
evaluator before anything heavier (the interpreter, the spec, pathlib) is loaded.
"""

from __future__ import annotations

import os

DEFAULT_FILE = "build.envd"


def is_function_name(text: str) -> bool:
    """``[A-Za-z_]\\w*``: what ``file.envd:func`` may name."""
    return bool(text) and text[0].isascii() and (text[0].isalpha() or text[0] == "_") and all(
        c.isalnum() or c == "_" for c in text
    )


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
