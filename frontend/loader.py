"""Finding build files: the project file, ``load()`` labels and ``include()`` git repositories.

This is the only part of ``frontend`` that touches the disk or the network; Starlark code itself
cannot. Labels:

* ``//lib/common.envd`` -- relative to the root (the build context, or the repository a git file
  came from); ``//lib:common.envd`` (Bazel spelling) is accepted too.
* ``common.envd``, ``./lib/x.envd``, ``:x.envd`` -- relative to the directory of the loading file.
* ``https://github.com/org/repo@ref//path/file.envd`` (also ``http``, ``ssh``, ``git``, ``file``,
  ``git+...``) -- cloned with the host's ``git`` into ``~/.cache/envbuild/git`` and refreshed at most
  every ``update_after`` seconds; a cached copy is used (with a warning) when the network fails.

Paths may not leave their root: absolute labels, ``..`` escapes and symlinks pointing out are refused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LoadError, SyntaxError_

GIT_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")
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


def read_source(path: str | os.PathLike[str], label: str, root: str | os.PathLike[str], prefix: str) -> Source:
    path, root = os.fspath(path), os.fspath(root)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise LoadError(f"{label} is a directory, not a build file") from None
    except OSError as e:
        raise LoadError(f"cannot read {label}: {e.strerror or e}") from None
    return Source(label, path, root, prefix, decode(data, label), hashlib.sha256(data).hexdigest())


def is_git_label(label: str) -> bool:
    return label.startswith("git+") or label.startswith(GIT_SCHEMES)


def _split_ref(repo: str) -> tuple[str, str]:
    head, _, last = repo.rpartition("/")
    if "@" in last:
        name, _, ref = last.partition("@")
        return f"{head}/{name}" if head else name, ref
    return repo, ""


def split_git(url: str) -> str:
    """Normalised ``URL[@ref]`` key for ``include(git=...)``."""
    if not is_git_label(url):
        raise LoadError(f"include(): {url!r} is not a git URL (https://, ssh://, git://, file://)")
    u = url.removeprefix("git+").rstrip("/")
    repo, ref = _split_ref(u)
    return f"{repo}@{ref}" if ref else repo


def parse_git_label(label: str) -> tuple[str, str, str]:
    """``URL[@ref]//path`` -> (url, ref, path)."""
    u = label.removeprefix("git+")
    scheme, sep, rest = u.partition("://")
    repo_part, sep2, path = rest.partition("//")
    if not sep or not sep2 or not path:
        raise LoadError(
            f"git load label {label!r} must name a file: URL[@ref]//path/file.envd, "
            'e.g. "https://github.com/org/repo@v1.0//lib.envd"'
        )
    repo, ref = _split_ref(repo_part)
    return f"{scheme}://{repo}", ref, path


def _no_warning(msg: str) -> None:
    pass


def _default_git_cache() -> Path:
    return Path(cache_home(), "envbuild", "git")


@dataclass(slots=True)
class GitCache:
    """Clones repositories with the host ``git`` into a cache directory."""

    root: Path = field(default_factory=_default_git_cache)
    offline: bool = False
    update_after: float = DEFAULT_UPDATE_AFTER
    warn: Callable[[str], None] = _no_warning
    _done: dict[tuple[str, str], Path] = field(default_factory=dict)

    def checkout(self, url: str, ref: str) -> Path:
        key = (url, ref)
        if key in self._done:
            return self._done[key]
        root = self.root
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")[-60:]
        digest = hashlib.sha256(f"{url}@{ref}".encode()).hexdigest()[:12]
        dest = root / f"{slug}{'@' + re.sub(r'[^A-Za-z0-9._-]', '_', ref) if ref else ''}-{digest}"
        stamp = dest / ".git" / "envbuild-fetched"
        where = f"{url}@{ref}" if ref else url
        if (dest / ".git").is_dir():
            pinned = bool(re.fullmatch(r"[0-9a-f]{40}", ref))
            age = time.time() - stamp.stat().st_mtime if stamp.exists() else float("inf")
            if not (pinned or self.offline or age < self.update_after):
                ok, err = self._git(dest, "fetch", "--quiet", "--tags", "--force", "origin")
                if ok:
                    self._switch(dest, ref, where)
                    stamp.touch()
                else:
                    self.warn(f"could not update {where} ({err}); using the copy cached in {dest}")
        else:
            if self.offline:
                raise LoadError(f"{where} is not in the git cache {root} and offline mode is on")
            root.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")
            _rmtree(tmp)
            ok, err = self._git(None, "clone", "--quiet", "--no-checkout", url, str(tmp))
            if not ok:
                _rmtree(tmp)
                raise LoadError(
                    f"cannot clone {url}: {err}",
                    hint="check the URL and your network (git must reach it); a copy cached earlier "
                    f"would be used from {root}",
                )
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
        self._done[key] = dest
        return dest

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
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", GCM_INTERACTIVE="never")
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
            lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
            return False, lines[-1] if lines else f"git {args[0]} failed ({p.returncode})"
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
        """Every ``*.envd`` file at the top of the repository, in name order (envd's include)."""
        key = split_git(url)
        repo, ref = _split_ref(key)
        root = self.git.checkout(repo, ref)
        prefix = f"{repo}@{ref}//" if ref else f"{repo}//"
        files = sorted(p for p in root.glob("*.envd") if p.is_file())
        if not files:
            raise LoadError(f"include(): {url} has no *.envd files at its top level")
        return [read_source(p, prefix + p.name, root, prefix) for p in files if self._inside(p, root, p.name, repo)]
