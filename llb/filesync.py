"""The fsutil DiffCopy protocol, both directions, and the walk of a local source.

Sender (FileSync, local sources): one STAT per entry in Go `filepath.Walk`
order, an empty STAT to end the listing, then DATA for each file the daemon
REQuests by its index in the STAT sequence. Receiver (FileSend, `local`
exporter): the mirror image. Modes on the wire are Go `os.FileMode` values,
not `st_mode`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat as stat_mod
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import grpc

from ._proto import fsutil_pb2
from .patterns import PatternMatcher, clean_path, match_include_prefix

__all__ = [
    "WalkOptions",
    "walk",
    "go_mode",
    "posix_mode",
    "DiffCopySender",
    "DiffCopyReceiver",
]

MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_TYPE = MODE_DIR | MODE_SYMLINK | MODE_DEVICE | MODE_NAMED_PIPE | MODE_SOCKET | MODE_CHAR_DEVICE
DATA_CHUNK = 256 * 1024
Packet = fsutil_pb2.Packet
PACKET_STAT, PACKET_REQ, PACKET_DATA, PACKET_FIN, PACKET_ERR = (
    fsutil_pb2.PACKET_STAT,
    fsutil_pb2.PACKET_REQ,
    fsutil_pb2.PACKET_DATA,
    fsutil_pb2.PACKET_FIN,
    fsutil_pb2.PACKET_ERR,
)


def go_mode(st_mode: int) -> int:
    """Translate a POSIX `st_mode` into Go's `os.FileMode` bits."""
    mode = st_mode & 0o777
    fmt = stat_mod.S_IFMT(st_mode)
    if fmt == stat_mod.S_IFDIR:
        mode |= MODE_DIR
    elif fmt == stat_mod.S_IFLNK:
        mode |= MODE_SYMLINK
    elif fmt == stat_mod.S_IFBLK:
        mode |= MODE_DEVICE
    elif fmt == stat_mod.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif fmt == stat_mod.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif fmt == stat_mod.S_IFSOCK:
        mode |= MODE_SOCKET
    if st_mode & stat_mod.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & stat_mod.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & stat_mod.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def posix_mode(mode: int) -> int:
    """Permission and special bits of a Go FileMode as `chmod` wants them."""
    out = mode & 0o777
    if mode & MODE_SETUID:
        out |= stat_mod.S_ISUID
    if mode & MODE_SETGID:
        out |= stat_mod.S_ISGID
    if mode & MODE_STICKY:
        out |= stat_mod.S_ISVTX
    return out


# ---------------------------------------------------------------- walking


@dataclass(frozen=True, slots=True)
class WalkOptions:
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    follow_paths: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    abspath: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    regular: bool = False


def _follow_targets(root: str, paths: Sequence[str]) -> list[str]:
    """Relative targets of symlinks named in `paths`, followed transitively inside root."""
    out: list[str] = []
    seen: set[str] = set()
    todo = [clean_path(p.lstrip("/")) for p in paths]
    while todo:
        rel = todo.pop()
        if rel in seen or rel == ".":
            continue
        seen.add(rel)
        full = os.path.join(root, rel)
        if os.path.islink(full):
            target = os.readlink(full)
            if os.path.isabs(target):
                new = clean_path(target.lstrip("/"))
            else:
                new = clean_path(os.path.join(os.path.dirname(rel), target))
            if not new.startswith(".."):
                out.append(new)
                todo.append(new)
    return out


def walk(root: str | Path, opts: WalkOptions = WalkOptions()) -> Iterator[Entry]:
    """Entries below root in `filepath.Walk` order (pre-order, names sorted bytewise),
    filtered like fsutil: includes keep matching paths and the directories above them,
    excludes drop paths unless an exclusion pattern may re-include below."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise NotADirectoryError(f"local directory {root} does not exist or is not a directory")
    yield from _Walker(root, opts).below("", root)


def _include_patterns(root: str, opts: WalkOptions) -> list[str] | None:
    """The include patterns, plus the targets of the symlinks to follow; None: include everything."""
    includes = [clean_path(p.lstrip("/")) for p in opts.include] if opts.include else None
    if opts.follow_paths:
        targets = _follow_targets(root, opts.follow_paths)
        if targets:
            includes = sorted({*(includes or []), *targets, *(clean_path(p) for p in opts.follow_paths)})
    return includes


class _Walker:
    """The state of one walk: what is filtered out and which hard links were seen."""

    def __init__(self, root: str, opts: WalkOptions) -> None:
        self._excludes = PatternMatcher(opts.exclude)
        self._includes = _include_patterns(root, opts)
        self._included_dir = ""  # the last directory an include pattern matched whole
        self._inodes: dict[tuple[int, int], str] = {}

    def below(self, rel_dir: str, full_dir: str) -> Iterator[Entry]:
        try:
            names = sorted(os.listdir(os.fsencode(full_dir)))
        except OSError as exc:
            raise OSError(f"cannot read {full_dir}: {exc.strerror}") from exc
        for bname in names:
            name = os.fsdecode(bname)
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(full_dir, name)
            st = os.lstat(full)
            emit, descend = self._visit(rel, st)
            if emit and not stat_mod.S_ISSOCK(st.st_mode):
                yield self._entry(rel, full, st)
            if descend and stat_mod.S_ISDIR(st.st_mode):
                yield from self.below(rel, full)

    def _visit(self, rel: str, st: os.stat_result) -> tuple[bool, bool]:
        """(emit, descend)."""
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        if self._includes is not None and not self._included(rel, is_dir):
            return False, False
        if self._excludes and self._excludes.matches(rel):
            reinclude = is_dir and self._excludes.has_exclusions and self._excludes.may_reinclude_below(rel)
            return reinclude, reinclude
        return True, is_dir

    def _included(self, rel: str, is_dir: bool) -> bool:
        """Whether an include pattern keeps `rel`: it matches, or `rel` is a directory above a match."""
        assert self._includes is not None
        if self._included_dir and rel.startswith(self._included_dir + "/"):
            return True
        matched, partial = False, True
        for pattern in self._includes:
            ok, part = match_include_prefix(pattern, rel)
            if ok:
                matched = True
                if not part:
                    partial = False
                    break
        if not matched or (partial and not is_dir):
            return False
        if not partial and is_dir:
            self._included_dir = rel
        return True

    def _entry(self, rel: str, full: str, st: os.stat_result) -> Entry:
        fmt = stat_mod.S_IFMT(st.st_mode)
        device = fmt in (stat_mod.S_IFBLK, stat_mod.S_IFCHR)
        linkname = os.readlink(full) if fmt == stat_mod.S_IFLNK else ""
        regular = fmt == stat_mod.S_IFREG
        if regular and st.st_nlink > 1:
            first = self._inodes.setdefault((st.st_dev, st.st_ino), rel)
            if first != rel:  # a hard link to a file sent before: sent as a link to it
                linkname, regular = first, False
        return Entry(
            path=rel,
            abspath=full,
            mode=go_mode(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            size=0 if fmt == stat_mod.S_IFDIR else st.st_size,
            mtime_ns=st.st_mtime_ns,
            linkname=linkname,
            devmajor=os.major(st.st_rdev) if device else 0,
            devminor=os.minor(st.st_rdev) if device else 0,
            regular=regular,
        )


# ---------------------------------------------------------------- sender


class DiffCopySender:
    """Serves one DiffCopy stream for a local directory (we are the fsutil sender).

    `run(requests)` yields the packets to send; the incoming packets are read on
    a separate thread because REQs arrive while STATs are still being sent.
    """

    def __init__(self, root: str | Path, opts: WalkOptions = WalkOptions()) -> None:
        self.root = os.fspath(root)
        self.opts = opts
        self._files: dict[int, str] = {}
        self._files_lock = threading.Lock()
        self._out: queue.Queue[Packet | None] = queue.Queue(maxsize=64)
        self._reqs: queue.Queue[int | None] = queue.Queue()
        self._stop = threading.Event()
        self._walker_thread: threading.Thread | None = None
        self.sent_stats = 0
        self.sent_files = 0
        self.sent_bytes = 0

    def _put(self, item: Packet | None) -> None:
        while not self._stop.is_set():
            try:
                self._out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _error(self, message: str) -> None:
        self._put(Packet(type=PACKET_ERR, data=message.encode()))
        self._put(None)

    def _walker(self) -> None:
        try:
            for i, e in enumerate(walk(self.root, self.opts)):
                if e.regular:
                    with self._files_lock:
                        self._files[i] = e.abspath
                st = fsutil_pb2.Stat(
                    path=e.path,
                    mode=e.mode,
                    uid=e.uid,
                    gid=e.gid,
                    size=e.size,
                    modTime=e.mtime_ns,
                    linkname=e.linkname,
                    devmajor=e.devmajor,
                    devminor=e.devminor,
                )
                self._put(Packet(type=PACKET_STAT, stat=st))
                self.sent_stats += 1
                if self._stop.is_set():
                    return
            self._put(Packet(type=PACKET_STAT))
        except OSError as exc:
            self._error(f"failed to walk {self.root}: {exc}")

    def _file_worker(self) -> None:
        while True:
            fid = self._reqs.get()
            if fid is None or self._stop.is_set():
                return
            with self._files_lock:
                path = self._files.get(fid)
            if path is None:
                self._error(f"invalid file request {fid}")
                return
            try:
                with open(path, "rb") as f:
                    while chunk := f.read(DATA_CHUNK):
                        self.sent_bytes += len(chunk)
                        self._put(Packet(type=PACKET_DATA, ID=fid, data=chunk))
            except OSError as exc:
                self._error(f"failed to read {path}: {exc}")
                return
            self._put(Packet(type=PACKET_DATA, ID=fid))
            self.sent_files += 1

    def _reader(self, requests: Iterator[Packet]) -> None:
        """Passes the receiver's file requests on until its FIN or ERR, or until it hangs up."""
        answered = False
        try:
            for p in requests:
                if p.type == PACKET_REQ:
                    self._reqs.put(p.ID)
                elif p.type in (PACKET_FIN, PACKET_ERR):
                    if p.type == PACKET_FIN:
                        self._put(Packet(type=PACKET_FIN))
                    answered = True
                    return
        except grpc.RpcError:
            pass  # the builder hung up
        finally:
            self._reqs.put(None)
            walker = self._walker_thread
            if not answered and walker is not None:
                walker.join()  # a receiver that hung up early must still see a walk error
            self._put(None)

    def run(self, requests: Iterator[Packet]) -> Iterator[Packet]:
        self._walker_thread = threading.Thread(target=self._walker, name="llb-fs-walk", daemon=True)
        self._walker_thread.start()
        threading.Thread(target=self._file_worker, name="llb-fs-data", daemon=True).start()
        threading.Thread(target=self._reader, args=(requests,), name="llb-fs-recv", daemon=True).start()
        try:
            while (item := self._out.get()) is not None:
                yield item
        finally:
            self._stop.set()
            self._reqs.put(None)


# ---------------------------------------------------------------- receiver


@dataclass(frozen=True, slots=True)
class _Incoming:
    """A file being received: written to `tmp`, renamed to `full` when complete."""

    file: BinaryIO
    tmp: str
    full: str
    mode: int


class DiffCopyReceiver:
    """Writes a DiffCopy stream into `dest` (we are the fsutil receiver; merge mode,
    files owned by the current user like `buildctl --output type=local`)."""

    def __init__(self, dest: str | Path) -> None:
        self.dest = os.path.realpath(os.fspath(dest))
        self._out: queue.Queue[Packet | None] = queue.Queue()
        self._open: dict[int, _Incoming] = {}
        self._pending: set[int] = set()
        self._dir_times: list[tuple[str, int, int]] = []
        self._listing_done = False
        self._mtimes: dict[int, int] = {}
        self._hardlinks: list[tuple[str, str]] = []
        self.files_written = 0
        self.error: str | None = None

    def _safe_path(self, rel: str) -> str:
        rel = rel.lstrip("/")
        parts = rel.split("/")
        if not rel or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"refusing unsafe path {rel!r} from the builder")
        full = os.path.join(self.dest, *parts)
        parent = os.path.realpath(os.path.dirname(full))
        if parent != self.dest and not parent.startswith(self.dest + os.sep):
            raise ValueError(f"refusing path {rel!r} that escapes {self.dest}")
        return full

    @staticmethod
    def _remove(full: str) -> None:
        if os.path.lexists(full) and not (os.path.isdir(full) and not os.path.islink(full)):
            os.unlink(full)

    def _handle_stat(self, index: int, st: fsutil_pb2.Stat) -> None:
        full = self._safe_path(st.path)
        mode = st.mode
        if mode & MODE_DIR:
            if os.path.lexists(full) and not os.path.isdir(full):
                os.unlink(full)
            os.makedirs(full, exist_ok=True)
            os.chmod(full, 0o700)
            self._dir_times.append((full, st.modTime, posix_mode(mode)))
        elif mode & MODE_SYMLINK:
            self._remove(full)
            os.symlink(st.linkname, full)
            os.utime(full, ns=(st.modTime, st.modTime), follow_symlinks=False)
        elif mode & MODE_NAMED_PIPE:
            self._remove(full)
            os.mkfifo(full, posix_mode(mode))
        elif mode & MODE_TYPE:
            return  # devices/sockets are not materialised in a user's directory
        elif st.linkname:
            self._hardlinks.append((self._safe_path(st.linkname), full))
        else:
            tmp = os.path.join(os.path.dirname(full), f".llb-tmp-{index}")
            fh = open(tmp, "wb")  # noqa: SIM115 - written packet by packet, closed in _finish_file or on error
            self._open[index] = _Incoming(fh, tmp, full, mode)
            self._pending.add(index)
            self._out.put(Packet(type=PACKET_REQ, ID=index))

    def _finish_file(self, index: int) -> None:
        incoming = self._open.pop(index)
        incoming.file.close()
        os.chmod(incoming.tmp, posix_mode(incoming.mode))
        self._remove(incoming.full)
        os.replace(incoming.tmp, incoming.full)
        mtime = self._mtimes.get(index)
        if mtime is not None:
            os.utime(incoming.full, ns=(mtime, mtime))
        self._pending.discard(index)
        self.files_written += 1

    def _maybe_done(self) -> bool:
        if self._listing_done and not self._pending:
            for target, full in self._hardlinks:
                self._remove(full)
                os.link(target, full)
            for full, mtime, perm in reversed(self._dir_times):
                with contextlib.suppress(OSError):
                    os.chmod(full, perm)
                    os.utime(full, ns=(mtime, mtime))
            self._out.put(Packet(type=PACKET_FIN))
            return True
        return False

    def _reader(self, requests: Iterator[Packet]) -> None:
        index = 0
        finished = False
        try:
            for p in requests:
                if p.type == PACKET_STAT:
                    if not p.HasField("stat"):
                        self._listing_done = True
                        finished = self._maybe_done() or finished
                        continue
                    self._mtimes[index] = p.stat.modTime
                    self._handle_stat(index, p.stat)
                    index += 1
                elif p.type == PACKET_DATA:
                    incoming = self._open.get(p.ID)
                    if incoming is None:
                        raise ValueError(f"invalid file request {p.ID}")
                    if p.data:
                        incoming.file.write(p.data)
                    else:
                        self._finish_file(p.ID)
                        finished = self._maybe_done() or finished
                elif p.type == PACKET_FIN:
                    break
                elif p.type == PACKET_ERR:
                    self.error = f"error from sender: {p.data.decode(errors='replace')}"
                    break
        except Exception as exc:  # reported to the builder and to the caller
            self.error = str(exc)
            self._out.put(Packet(type=PACKET_ERR, data=str(exc).encode()))
        finally:
            for incoming in self._open.values():
                incoming.file.close()
                with contextlib.suppress(OSError):
                    os.unlink(incoming.tmp)
            self._open.clear()
            if not finished and self.error is None:
                self.error = "the builder closed the export stream early"
            self._out.put(None)

    def run(self, requests: Iterator[Packet]) -> Iterator[Packet]:
        os.makedirs(self.dest, exist_ok=True)
        threading.Thread(target=self._reader, args=(requests,), name="llb-fs-recv", daemon=True).start()
        while (item := self._out.get()) is not None:
            yield item


def write_stream_to_file(requests: Iterator[bytes], path: str | Path, parse: Callable[[bytes], bytes]) -> int:
    """Write a raw BytesMessage stream (the `tar` exporter) to `path`; returns bytes written."""
    total = 0
    tmp = f"{os.fspath(path)}.llb-partial"
    with open(tmp, "wb") as f:
        for raw in requests:
            data = parse(raw)
            f.write(data)
            total += len(data)
    os.replace(tmp, path)
    return total
