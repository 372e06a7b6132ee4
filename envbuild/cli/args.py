"""Option checks shared by several commands: turning option text into library arguments."""

from __future__ import annotations

import os

from envbuild.errors import UsageError
from envbuild.progress import ProgressMode

PROGRESS_MODES = tuple(m.value for m in ProgressMode)
NETWORKS = ("sandbox", "host")

__all__ = ["NETWORKS", "PROGRESS_MODES", "build_target", "parse_owner"]


def parse_owner(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    uid, _, gid = text.partition(":")
    try:
        owner = (int(uid), int(gid or uid))
    except ValueError:
        raise UsageError(f"invalid --owner {text!r}: expected UID[:GID], e.g. 1000:1000") from None
    if not all(0 <= v <= 65535 for v in owner):
        raise UsageError(f"invalid --owner {text!r}: ids must be 0..65535")
    return owner


def build_target(path: str | os.PathLike[str], file: str | None) -> tuple[str, str | None]:
    """``-p DIR`` and ``-f FILE[:FUNC]`` -> (path for frontend.evaluate, function)."""
    if file is None:
        return str(path), None
    name, _, func = file.partition(":")
    if not name or (func and not func.isidentifier()):
        raise UsageError(f"invalid --file {file!r}: expected FILE[:FUNCTION], e.g. build.envd:build")
    base = os.fspath(path)
    target = name if os.path.isabs(name) or base in ("", ".") else os.path.join(base, name)
    return target, func or None
