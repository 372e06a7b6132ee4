"""Finding build files: the project file, ``load()`` labels and ``include()`` git repositories.

This is the only part of ``frontend`` that touches the disk or the network; Starlark code itself
cannot. Labels:

* ``//lib/common.envd`` -- relative to the root (the build context, or the repository a git file
  came from); ``//lib:common.envd`` (Bazel spelling) is accepted too.
* ``common.envd``, ``./lib/x.envd``, ``:x.envd`` -- relative to the directory of the loading file.
* ``https://github.com/org/repo@ref//path/file.envd`` (also ``http``, ``ssh``, ``git``,
  ``git+...``) -- cloned with the host's ``git`` into ``~/.cache/envbuild/git`` and refreshed at most
  every ``update_after`` seconds; a cached copy is used (with a warning) when the network fails. A
  git mirror (``GitCache.mirror``, the user's setting) serves ``<mirror>/<host>/<path>`` instead.

Paths may not leave their root: absolute labels, ``..`` escapes, symlinks pointing out and
``file://`` repositories (another part of this machine) are refused; only regular files are read.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LoadError, NetworkError, SyntaxError_

GIT_SCHEMES = ("https://", "http://", "ssh://", "git://")
LOCAL_SCHEMES = ("file://",)
GIT_PROTOCOLS = "https:http:ssh:git"
"""What git may speak for a build file's URL (``GIT_ALLOW_PROTOCOL``: no ``file``, ``ext``, ``fd``)."""
DEFAULT_UPDATE_AFTER = 3600.0
GIT_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class Source:
    """A build file read into memory. ``prefix + relative path`` makes the labels of its siblings."""

    label: str
    path: str
    root: str
    prefix: str
    text: str
    sha256: str


def cache_home() -> str:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return xdg if xdg else os.path.join(os.path.expanduser("~"), ".cache")


def decode(data: bytes, label: str) -> str:
    """UTF-8 text of a build file (a leading BOM dropped), or a positioned error for the first bad byte."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = e.start - (before.rfind(b"\n") + 1) + 1
        text_line = before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")
        raise SyntaxError_(
            f"file is not valid UTF-8 (byte 0x{data[e.start]:02x})",
            label,
            line,
            col,
            text_line,
            hint="save the file as UTF-8",
        ) from None


MAX_SOURCE_BYTES = 4 << 20
"""Build files are a few kilobytes; a bigger one is a mistake (or an attack on the parser)."""


def read_source(path: str | os.PathLike[str], label: str, root: str | os.PathLike[str], prefix: str) -> Source:
    """A build file's text. Opened without blocking and checked to be a regular file, so a FIFO or a
    device in the context cannot stall or flood the evaluation."""
    path, root = os.fspath(path), os.fspath(root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise LoadError(f"cannot read {label}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise LoadError(f"{label} is a directory, not a build file")
        raise LoadError(f"{label} is not a regular file (a FIFO, device or socket cannot be a build file)")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_SOURCE_BYTES + 1)
        except OSError as e:
            raise LoadError(f"cannot read {label}: {e.strerror or e}") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise LoadError(f"{label} is larger than {MAX_SOURCE_BYTES >> 20} MiB; build files are small programs")
    return Source(label, path, root, prefix, decode(data, label), hashlib.sha256(data).hexdigest())


def is_git_label(label: str) -> bool:
    """A label that names a git repository (``file://`` included, to refuse it with a reason)."""
    return label.startswith(("git+", *GIT_SCHEMES, *LOCAL_SCHEMES))


def _check_git_url(url: str, original: str) -> None:
    if url.startswith(LOCAL_SCHEMES):
        raise LoadError(
            f"{original!r} is a repository on this machine, outside the build context; build files may only "
            "fetch from the network (https://, ssh://, git://): copy the library into the project and load it "
            "with //path, or serve it through the git mirror setting (ENVBUILD_MIRROR_GIT)"
        )
    if not url.startswith(GIT_SCHEMES):
        raise LoadError(f"{original!r} is not a git URL (https://, http://, ssh://, git://)")


def _split_ref(repo: str) -> tuple[str, str]:
    head, _, last = repo.rpartition("/")
    if "@" in last:
        name, _, ref = last.partition("@")
        return f"{head}/{name}" if head else name, ref
    return repo, ""


def split_git(url: str) -> str:
    """Normalised ``URL[@ref]`` key for ``include(git=...)``."""
    u = url.removeprefix("git+").rstrip("/")
    _check_git_url(u, url)
    repo, ref = _split_ref(u)
    return f"{repo}@{ref}" if ref else repo


def parse_git_label(label: str) -> tuple[str, str, str]:
    """``URL[@ref]//path`` -> (url, ref, path)."""
    u = label.removeprefix("git+")
    _check_git_url(u, label)
    scheme, sep, rest = u.partition("://")
    repo_part, sep2, path = rest.partition("//")
    if not sep or not sep2 or not path:
        raise LoadError(
            f"git load label {label!r} must name a file: URL[@ref]//path/file.envd, "
            'e.g. "https://github.com/org/repo@v1.0//lib.envd"'
        )
    repo, ref = _split_ref(repo_part)
    return f"{scheme}://{repo}", ref, path


def _host_path(url: str) -> str:
    """``https://user@github.com/org/lib`` -> ``github.com/org/lib``."""
    host, _, path = url.split("://", 1)[-1].partition("/")
    return f"{host.rpartition('@')[2]}/{path}"


def _no_warning(msg: str) -> None:
    pass


def _default_git_cache() -> Path:
    return Path(cache_home(), "envbuild", "git")


@dataclass(slots=True)
class GitCache:
    """Clones repositories with the host ``git`` into a cache directory.

    ``mirror`` (the user's setting, never a build file's) is a base URL or directory holding
    ``<host>/<path>`` copies of repositories: ``https://github.com/org/lib`` is then fetched from
    ``<mirror>/github.com/org/lib``. The cache is keyed by the URL the build file names, so a copy
    made through a mirror serves the same file later without it.
    """

    root: Path = field(default_factory=_default_git_cache)
    offline: bool = False
    update_after: float = DEFAULT_UPDATE_AFTER
    warn: Callable[[str], None] = _no_warning
    mirror: str | None = None
    _done: dict[tuple[str, str], Path] = field(default_factory=dict)

    def cache_dir(self, url: str, ref: str) -> Path:
        """Where the copy of ``url`` at ``ref`` lives (whether or not it is there yet)."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")[-60:]
        digest = hashlib.sha256(f"{url}@{ref}".encode()).hexdigest()[:12]
        return self.root / f"{slug}{'@' + re.sub(r'[^A-Za-z0-9._-]', '_', ref) if ref else ''}-{digest}"

    def fetch_url(self, url: str) -> str:
        """``url`` itself, or its copy under the mirror (``<mirror>/<host>/<path>``)."""
        return f"{self.mirror.rstrip('/')}/{_host_path(url)}" if self.mirror else url

    def checkout(self, url: str, ref: str) -> Path:
        key = (url, ref)
        if key not in self._done:
            dest = self.cache_dir(url, ref)
            if (dest / ".git").is_dir():
                self._update(dest, url, ref)
            else:
                self._clone(dest, url, ref)
            self._done[key] = dest
        return self._done[key]

    def _update(self, dest: Path, url: str, ref: str) -> None:
        """Refresh a cached copy at most every ``update_after`` seconds; keep it when that fails."""
        stamp = dest / ".git" / "envbuild-fetched"
        pinned = bool(re.fullmatch(r"[0-9a-f]{40}", ref))
        age = time.time() - stamp.stat().st_mtime if stamp.exists() else float("inf")
        if pinned or self.offline or age < self.update_after:
            return
        where = f"{url}@{ref}" if ref else url
        ok, err = self._git(dest, "remote", "set-url", "origin", self.fetch_url(url))
        if ok:
            ok, err = self._git(dest, "fetch", "--quiet", "--tags", "--force", "origin")
        if ok:
            self._switch(dest, ref, where)
            stamp.touch()
        else:
            self.warn(f"could not update {where} ({err}); using the copy cached in {dest}")

    def _clone(self, dest: Path, url: str, ref: str) -> None:
        where = f"{url}@{ref}" if ref else url
        source = self.fetch_url(url)
        if self.offline:
            raise NetworkError(
                f"{where} is not in the git cache and offline mode is on; {self._offline_help(dest, url)}"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
        _rmtree(tmp)
        ok, err = self._git(None, "clone", "--quiet", "--no-checkout", "--", source, str(tmp))
        if not ok:
            _rmtree(tmp)
            via = f" (through the mirror, {source})" if source != url else ""
            raise NetworkError(f"cannot fetch {url}{via}: {err}; {self._offline_help(dest, url)}")
        try:
            self._switch(tmp, ref, where)
        except LoadError:
            _rmtree(tmp)
            raise
        (tmp / ".git" / "envbuild-fetched").touch()
        try:
            tmp.rename(dest)
        except OSError:
            _rmtree(tmp)
            if not (dest / ".git").is_dir():
                raise

    def _offline_help(self, dest: Path, url: str) -> str:
        return (
            f"a copy cached at {dest} would be used (there is none); to build without the network, clone the "
            f"repository there, or set the git mirror (ENVBUILD_MIRROR_GIT, or git under [mirrors] in "
            f"~/.config/envbuild/config.toml) to a URL or directory that holds {_host_path(url)}"
        )

    def _switch(self, repo: Path, ref: str, where: str) -> None:
        candidates = [f"origin/{ref}", ref] if ref else ["origin/HEAD"]
        for cand in candidates:
            ok, out = self._git(repo, "rev-parse", "--verify", "--quiet", f"{cand}^{{commit}}")
            if ok and out:
                ok, err = self._git(repo, "checkout", "--quiet", "--force", "--detach", out)
                if not ok:
                    raise LoadError(f"cannot check out {where}: {err}")
                return
        raise LoadError(f"{where}: no branch, tag or commit named {ref or 'HEAD'!r} in the repository")

    def _git(self, cwd: Path | None, *args: str) -> tuple[bool, str]:
        mirror = self.mirror
        local_mirror = mirror is not None and (mirror.startswith(LOCAL_SCHEMES) or "://" not in mirror)
        protocols = GIT_PROTOCOLS + (":file" if local_mirror else "")
        env = dict(
            os.environ,
            GIT_TERMINAL_PROMPT="0",
            GIT_ASKPASS="true",
            GCM_INTERACTIVE="never",
            GIT_ALLOW_PROTOCOL=protocols,
        )
        try:
            p = subprocess.run(
                ["git", *args],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            return False, "git is not installed"
        except subprocess.TimeoutExpired:
            return False, f"git {args[0]} timed out after {GIT_TIMEOUT:.0f}s"
        if p.returncode != 0:
            lines = [ln.strip() for ln in p.stderr.splitlines() if ln.strip()]
            reasons = [ln for ln in lines if ln.startswith(("fatal:", "error:"))] or lines[-1:]
            return False, reasons[0] if reasons else f"git {args[0]} failed ({p.returncode})"
        return True, p.stdout.strip()


def _rmtree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)


@dataclass(slots=True)
class Loader:
    """Resolves labels to ``Source``s for one evaluation."""

    context_dir: str
    git: GitCache

    def _inside(self, path: str | os.PathLike[str], root: str | os.PathLike[str], label: str, what: str) -> str:
        real = os.path.realpath(path)
        root_real = os.path.realpath(root)
        if real != root_real and not real.startswith(root_real + os.sep):
            raise LoadError(f"cannot load {label!r}: it resolves outside {what}")
        return real

    def resolve(self, label: str, importer: Source | None) -> Source:
        if not label:
            raise LoadError("load() label is empty")
        if is_git_label(label):
            url, ref, rel = parse_git_label(label)
            root = str(self.git.checkout(url, ref))
            prefix = f"{url}@{ref}//" if ref else f"{url}//"
            what = f"the repository {url}"
        else:
            if (label.startswith("/") and not label.startswith("//")) or re.match(r"[A-Za-z]:[\\/]", label):
                raise LoadError(
                    f"cannot load {label!r}: absolute paths are not allowed; use //path relative to the build context"
                )
            root = importer.root if importer else self.context_dir
            prefix = importer.prefix if importer else ""
            what = "the build context" if not prefix else f"{prefix.rstrip('/')}"
            if label.startswith("//"):
                rel = label[2:].replace(":", "/")
            else:
                here = os.path.dirname(os.path.relpath(importer.path, importer.root)) if importer else ""
                rel = os.path.join(here, label.lstrip(":"))
        rel_norm = os.path.normpath(rel).replace(os.sep, "/")
        if rel_norm.startswith("../") or rel_norm == ".." or os.path.isabs(rel_norm):
            raise LoadError(f"cannot load {label!r}: it points outside {what}")
        path = root if rel_norm == "." else os.path.join(root, rel_norm)
        if not os.path.exists(path):
            raise LoadError(f"cannot load {label!r}: {prefix}{rel_norm} does not exist (looked in {root})")
        self._inside(path, root, label, what)
        return read_source(path, prefix + rel_norm, root, prefix)

    def include(self, url: str) -> list[Source]:
        """Every ``*.envd`` file anywhere below the repository's root, in the order of envd's walk
        (directory entries by name, depth first; ``.git`` skipped)."""
        key = split_git(url)
        repo, ref = _split_ref(key)
        root = self.git.checkout(repo, ref)
        prefix = f"{repo}@{ref}//" if ref else f"{repo}//"
        files = sorted(_envd_files(root), key=lambda rel: rel.split("/"))
        if not files:
            raise LoadError(f"include(): {url} has no *.envd files")
        sources = []
        for rel in files:
            self._inside(root / rel, root, rel, repo)
            sources.append(read_source(root / rel, prefix + rel, root, prefix))
        return sources


def _envd_files(root: Path) -> list[str]:
    """Root-relative paths of the ``*.envd`` files below ``root`` (symlinked directories not followed)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel_dir = Path(dirpath).relative_to(root)
        found += [(rel_dir / f).as_posix() for f in filenames if f.endswith(".envd")]
    return found
