"""What of a build context stays on this machine: ``.envdignore`` at the context's root, else
``.dockerignore``, in docker's format (``#`` comments, ``*``/``**`` globs, ``!`` re-includes).

Excluded files are never sent to the builder (the session's file sync skips them), never hashed by
the up-to-date check (a 10 GB dataset folder costs nothing per build), and never copied by
`envbuild sync`. A file the build file itself reads (``io.copy``, a requirements file, ...) must not
be excluded: that is refused with the position of the call, as the build could not see it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from frontend.spec import Spec
    from llb.patterns import PatternMatcher

NAMES = (".envdignore", ".dockerignore")


@dataclass(frozen=True, slots=True)
class Ignore:
    """The context's ignore rules; ``file`` is None when it has no ignore file."""

    file: str | None = None
    patterns: tuple[str, ...] = ()
    digest: str = ""
    """sha256 of the file's bytes: a changed ignore file changes what a build sees."""

    def matcher(self) -> PatternMatcher:
        from llb.patterns import PatternMatcher

        return PatternMatcher(self.patterns)

    def excludes(self, rel: str) -> bool:
        return bool(self.patterns) and self.matcher().matches(rel)


def load(context_dir: str | os.PathLike[str]) -> Ignore:
    """The ignore rules of a context (a UsageError names a file that cannot be read or used)."""
    from llb.patterns import PatternMatcher, parse_ignore

    for name in NAMES:
        path = Path(context_dir, name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror or exc}") from None
        try:
            patterns = tuple(parse_ignore(data.decode("utf-8")))
            PatternMatcher(patterns)
        except (UnicodeDecodeError, ValueError) as exc:
            raise UsageError(f"{path}: {exc}") from None
        return Ignore(name, patterns, hashlib.sha256(data).hexdigest())
    return Ignore()


def check_inputs(spec: Spec, ignore: Ignore) -> None:
    """Refuse a build whose build file reads a file the ignore file excludes."""
    if not ignore.patterns:
        return
    matcher = ignore.matcher()
    for rel in spec.inputs:
        if matcher.matches(rel):
            pos = _position(spec, rel)
            where = f"{pos}: " if pos is not None else ""
            raise UsageError(
                f"{where}the build reads {rel!r}, which {ignore.file} excludes from the build context; "
                f"remove it from {ignore.file} (or add a line !{rel})"
            )


def _position(value: Any, rel: str) -> Any:
    """The position of the first call in the spec that names ``rel``."""
    children: Iterable[Any]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        pos = fields.get("pos")
        if pos is not None and any(_names(v, rel) for k, v in fields.items() if k != "pos"):
            return pos
        children = fields.values()
    elif isinstance(value, (tuple, list)):
        children = value
    else:
        return None
    for child in children:
        found = _position(child, rel)
        if found is not None:
            return found
    return None


def _names(value: Any, rel: str) -> bool:
    if isinstance(value, str):
        return bool(value) and os.path.normpath(value) == rel
    if isinstance(value, (tuple, list)):
        return any(_names(v, rel) for v in value)
    return False
