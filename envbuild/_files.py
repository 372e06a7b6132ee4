"""Writing a file all at once, so a crash or Ctrl-C never leaves half of it behind."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload


@overload
def atomic_write(
    path: Path, *, mode: int | None = ..., text: Literal[True]
) -> contextlib.AbstractContextManager[IO[str]]: ...
@overload
def atomic_write(
    path: Path, *, mode: int | None = ..., text: Literal[False] = ...
) -> contextlib.AbstractContextManager[IO[bytes]]: ...


def atomic_write(
    path: Path, *, mode: int | None = None, text: bool = False
) -> contextlib.AbstractContextManager[IO[str]] | contextlib.AbstractContextManager[IO[bytes]]:
    """Open a temporary file beside ``path``; on success it is synced and renamed onto ``path``.

    ``path`` must be a regular file or absent (`FileExistsError` otherwise), before and after.

    ``mode`` sets the permission bits (default: what a plain ``open`` gives, 0666 less the umask).
    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    return _atomic_write(Path(path), mode, text)


def _check_replaceable(path: Path) -> None:
    """Only a regular file (or nothing) may be replaced: never a symlink, device, FIFO or directory."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise FileExistsError(errno.EEXIST, "not a regular file; refusing to replace it", str(path))


@contextlib.contextmanager
def _atomic_write(path: Path, mode: int | None, text: bool) -> Iterator[IO[Any]]:
    _check_replaceable(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _check_replaceable(path)  # again: it may have changed while the content was written
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
