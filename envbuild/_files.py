"""Writing a file all at once, so a crash or Ctrl-C never leaves half of it behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, overload


@overload
def atomic_write(path: Path, *, mode: int | None = ..., text: Literal[True]) -> contextlib.AbstractContextManager[IO[str]]: ...
@overload
def atomic_write(path: Path, *, mode: int | None = ..., text: Literal[False] = ...) -> contextlib.AbstractContextManager[IO[bytes]]: ...


def atomic_write(path: Path, *, mode: int | None = None, text: bool = False):  # type: ignore[no-untyped-def]
    """Open a temporary file beside ``path``; on success it is synced and renamed onto ``path``.

    ``mode`` sets the permission bits (default: what a plain ``open`` gives, 0666 less the umask).
    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    return _atomic_write(Path(path), mode, text)


@contextlib.contextmanager
def _atomic_write(path: Path, mode: int | None, text: bool) -> Iterator[IO]:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w" if text else "wb", **({"encoding": "utf-8"} if text else {})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
