"""`envbuild._files.atomic_write`: all or nothing, and never over something that is not a file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from envbuild._files import atomic_write


def test_replaces_a_regular_file_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("old")
    with atomic_write(path, text=True) as fh:
        fh.write("new")
    assert path.read_text() == "new"
    with pytest.raises(KeyboardInterrupt), atomic_write(path, text=True) as fh:
        fh.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["f"]


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory", "device"])
def test_never_replaces_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    target.write_text("keep")
    path = tmp_path / "dest"
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:  # a private device node: the machine's /dev/null is not something to test on
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    before = os.lstat(path)
    with pytest.raises(FileExistsError, match="not a regular file"), atomic_write(path) as fh:
        fh.write(b"x")
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode) and target.read_text() == "keep"
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]
