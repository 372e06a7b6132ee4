"""fsutil DiffCopy sender/receiver and docker-style patterns, without a daemon."""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llb._proto import fsutil_pb2
from llb.filesync import (
    MODE_DIR,
    MODE_SETUID,
    MODE_SYMLINK,
    PACKET_DATA,
    PACKET_FIN,
    PACKET_REQ,
    PACKET_STAT,
    DiffCopyReceiver,
    DiffCopySender,
    WalkOptions,
    go_mode,
    walk,
)
from llb.patterns import PatternMatcher


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "sub/a.log", False),
        (["**/*.log"], "sub/deep/a.log", True),
        (["**/*.log"], "a.log", True),
        (["sub"], "sub/deep/a.txt", True),
        (["sub/**"], "sub/x", True),
        (["**"], "anything/at/all", True),
        (["a?c"], "abc", True),
        (["a?c"], "a/c", False),
        (["[ab].txt"], "b.txt", True),
        (["[!ab].txt"], "b.txt", False),
        (["[!ab].txt"], "c.txt", True),
        (["*.log", "!keep.log"], "keep.log", False),
        (["*.log", "!keep.log"], "other.log", True),
        (["!keep.log", "*.log"], "keep.log", True),
        (["./build/"], "build/out", True),
        (["/abs"], "abs", True),
        (["a.b"], "axb", False),
        (["a+b"], "a+b", True),
        ([r"\*"], "*", True),
        ([r"\*"], "x", False),
        (["", "  "], "x", False),
    ],
)
def test_pattern_matcher(patterns: list[str], path: str, expected: bool) -> None:
    assert PatternMatcher(patterns).matches(path) is expected


def test_illegal_exclusion_pattern() -> None:
    with pytest.raises(ValueError):
        PatternMatcher(["!"])


def test_go_mode_bits() -> None:
    assert go_mode(stat.S_IFDIR | 0o755) == MODE_DIR | 0o755
    assert go_mode(stat.S_IFLNK | 0o777) == MODE_SYMLINK | 0o777
    assert go_mode(stat.S_IFREG | 0o4755) == MODE_SETUID | 0o755
    assert go_mode(stat.S_IFREG | 0o644) == 0o644


def _tree(root: Path) -> None:
    for d in ("b", "a/z", "a/y", "B"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for f in ("a/z/1", "a/y/2", "b/3.log", "b/keep.log", "top", "B/x"):
        (root / f).write_text(f)
    (root / "link").symlink_to("top")
    os.link(root / "top", root / "hard")


def test_walk_order_is_go_filepath_walk(tmp_path: Path) -> None:
    _tree(tmp_path)
    paths = [e.path for e in walk(tmp_path)]
    assert paths == [
        "B",
        "B/x",
        "a",
        "a/y",
        "a/y/2",
        "a/z",
        "a/z/1",
        "b",
        "b/3.log",
        "b/keep.log",
        "hard",
        "link",
        "top",
    ]


def test_walk_hardlink_and_symlink(tmp_path: Path) -> None:
    _tree(tmp_path)
    entries = {e.path: e for e in walk(tmp_path)}
    assert entries["link"].linkname == "top" and entries["link"].mode & MODE_SYMLINK
    assert entries["hard"].regular
    assert entries["top"].linkname == "hard" and not entries["top"].regular
    assert entries["a"].mode & MODE_DIR and entries["a"].size == 0


def test_walk_excludes_with_reinclusion(tmp_path: Path) -> None:
    _tree(tmp_path)
    paths = [e.path for e in walk(tmp_path, WalkOptions(exclude=("b", "!b/keep.log", "a/z")))]
    assert "b" in paths and "b/keep.log" in paths and "b/3.log" not in paths
    assert "a/z" not in paths and "a/z/1" not in paths


def test_walk_includes_keep_parent_dirs(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert [e.path for e in walk(tmp_path, WalkOptions(include=("a/z",)))] == ["a", "a/z", "a/z/1"]
    assert [e.path for e in walk(tmp_path, WalkOptions(include=("*/*.log",)))] == [
        "B",
        "a",
        "b",
        "b/3.log",
        "b/keep.log",
    ]


def test_walk_follow_paths(tmp_path: Path) -> None:
    _tree(tmp_path)
    paths = [e.path for e in walk(tmp_path, WalkOptions(include=("B",), follow_paths=("link",)))]
    assert paths == ["B", "B/x", "link", "top"]


def _connect(sender: DiffCopySender, receiver: DiffCopyReceiver) -> tuple[list[int], list[int]]:
    """Wire a sender to a receiver through queues, as the gRPC stream would; returns the packet types seen."""
    to_recv: queue.Queue[fsutil_pb2.Packet | None] = queue.Queue()
    to_send: queue.Queue[fsutil_pb2.Packet | None] = queue.Queue()
    sent_types: list[int] = []
    recv_types: list[int] = []

    def drain(q: queue.Queue[fsutil_pb2.Packet | None]) -> Iterator[fsutil_pb2.Packet]:
        while True:
            item = q.get()
            if item is None:
                return
            yield fsutil_pb2.Packet.FromString(item.SerializeToString())

    def run_sender() -> None:
        for p in sender.run(drain(to_send)):
            sent_types.append(p.type)
            to_recv.put(p)
        to_recv.put(None)

    t = threading.Thread(target=run_sender)
    t.start()
    for p in receiver.run(drain(to_recv)):
        recv_types.append(p.type)
        to_send.put(p)
    to_send.put(None)
    t.join(10)
    assert not t.is_alive()
    return sent_types, recv_types


def test_sender_to_receiver_roundtrip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _tree(src)
    big = os.urandom(3 * 1024 * 1024 + 17)
    (src / "big.bin").write_bytes(big)
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    (src / "empty").write_bytes(b"")
    (src / "ro").mkdir()
    (src / "ro" / "f").write_text("f")
    (src / "ro").chmod(0o555)
    dest = tmp_path / "dest"
    sender = DiffCopySender(src, WalkOptions(exclude=("*.log", "**/*.log", "!b/keep.log")))
    receiver = DiffCopyReceiver(dest)
    sent, received = _connect(sender, receiver)
    assert receiver.error is None
    assert sent[-1] == PACKET_FIN and received[-1] == PACKET_FIN
    assert PACKET_STAT in sent and PACKET_DATA in sent and PACKET_REQ in received
    assert (dest / "big.bin").read_bytes() == big
    assert (dest / "empty").read_bytes() == b""
    assert os.readlink(dest / "link") == "top"
    assert os.stat(dest / "top").st_ino == os.stat(dest / "hard").st_ino
    assert (dest / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (dest / "ro").stat().st_mode & 0o777 == 0o555
    assert (dest / "ro" / "f").read_text() == "f"
    assert (dest / "b" / "keep.log").exists() and not (dest / "b" / "3.log").exists()
    assert int((dest / "big.bin").stat().st_mtime) == int((src / "big.bin").stat().st_mtime)
    (src / "ro").chmod(0o755)
    (dest / "ro").chmod(0o755)


def test_sender_reports_missing_directory(tmp_path: Path) -> None:
    sender = DiffCopySender(tmp_path / "missing")
    packets = list(sender.run(iter(())))
    assert packets and packets[0].type == 4 and b"does not exist" in packets[0].data


def test_receiver_rejects_escaping_paths(tmp_path: Path) -> None:
    receiver = DiffCopyReceiver(tmp_path / "d")
    bad = [
        fsutil_pb2.Packet(type=PACKET_STAT, stat=fsutil_pb2.Stat(path="../evil", mode=0o644)),
    ]
    out = list(receiver.run(iter(bad)))
    assert out[-1].type == 4 and receiver.error and "unsafe" in receiver.error
    assert not (tmp_path / "evil").exists()
