"""``build.envd.lock``: what a lock holds, its text, and the checks its text must pass to be read.

The text is JSON with sorted keys, one package per line (a changed version is a one-line diff) and a
schema version (`LOCK_VERSION`). A lock file is untrusted input: everything read from it is checked
against the form it must have (package names, versions, URLs, hashes) before it can reach a shell,
a requirements file or apt's command line, and a bad value is a one-line error naming file:line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from envbuild.errors import UsageError

LOCK_VERSION = 2
"""Version 2: one Python resolution (JupyterLab, seed packages and every call together), every apt
transaction envbuild makes, the conda environment's packages by URL and sha256."""


class LockError(UsageError):
    """A lock is missing, stale or unreadable where the user asked for a locked build (exit 2)."""


@dataclass(frozen=True, slots=True)
class AptPackage:
    name: str
    version: str
    arch: str = ""


@dataclass(frozen=True, slots=True)
class AptStep:
    """One apt transaction of the build (``key`` as the compiler names it): the names it asks for
    and every package apt installed for them, the whole closure."""

    key: str
    names: tuple[str, ...]
    packages: tuple[AptPackage, ...] = ()


@dataclass(frozen=True, slots=True)
class PythonPackage:
    """A package of the Python resolution; ``path`` (context-relative) for a local wheel."""

    name: str
    version: str
    hashes: tuple[str, ...] = ()
    path: str = ""


@dataclass(frozen=True, slots=True)
class CondaPackage:
    name: str
    version: str
    build: str
    subdir: str
    url: str
    sha256: str
    md5: str = ""


@dataclass(frozen=True, slots=True)
class BaseImage:
    ref: str
    id: str = ""
    repo_digests: tuple[str, ...] = ()

    def pinned_ref(self) -> str:
        """``repo@sha256:...`` when the engine knows a registry digest for ``ref``'s repository;
        otherwise ``ref`` itself, whose engine image id ``use_lock`` verifies before building."""
        repo = repository(self.ref)
        for d in self.repo_digests:
            if repository(d.split("@", 1)[0]) == repo:
                return d
        return self.ref


@dataclass(frozen=True, slots=True)
class Download:
    url: str
    sha256: str


@dataclass(frozen=True, slots=True)
class LockedExtension:
    """A VS Code extension: ``id`` as written in build.envd, the version it resolved to, the .vsix sha256."""

    id: str
    version: str
    sha256: str

    def pinned_id(self) -> str:
        if self.id.lower().endswith(".vsix"):
            return self.id
        base = re.sub(r"-\d+\.\d+\.\d+[\w.+-]*$", "", self.id)
        return f"{base}-{self.version}"


@dataclass(frozen=True, slots=True)
class Lock:
    """``python`` is the interpreter the Python packages were resolved for (empty: no Python
    resolution); ``python_packages`` and ``conda`` are None when the build installs none."""

    inputs: Mapping[str, Any]
    base: BaseImage
    platform: str = ""
    python: str = ""
    apt: tuple[AptStep, ...] = ()
    python_packages: tuple[PythonPackage, ...] | None = None
    conda: tuple[CondaPackage, ...] | None = None
    http: tuple[Download, ...] = ()
    toolchains: tuple[Download, ...] = ()
    vscode: tuple[tuple[LockedExtension, ...], ...] = ()
    unlocked: tuple[str, ...] = ()
    version: int = LOCK_VERSION

    @property
    def inputs_sha256(self) -> str:
        import hashlib

        return hashlib.sha256(canonical(self.inputs).encode()).hexdigest()

    @property
    def python_version(self) -> str:
        return self.python.split(" ", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "envbuild_lock": self.version,
            "inputs_sha256": self.inputs_sha256,
            "inputs": plain(self.inputs),
            "base": {"ref": self.base.ref, "id": self.base.id, "repo_digests": list(self.base.repo_digests)},
            "platform": self.platform,
            "python": self.python,
            "apt": [
                {"step": s.key, "names": list(s.names), "packages": [_fields(p) for p in s.packages]} for s in self.apt
            ],
            "python_packages": None if self.python_packages is None else [_fields(p) for p in self.python_packages],
            "conda_packages": None if self.conda is None else [_fields(p) for p in self.conda],
            "http": [_fields(d) for d in self.http],
            "toolchains": [_fields(d) for d in self.toolchains],
            "vscode_extensions": [[_fields(e) for e in call] for call in self.vscode],
            "unlocked": list(self.unlocked),
        }

    def dumps(self) -> str:
        """Sorted keys, two-space indent, each package (any object of plain values) on one line."""
        return _render(self.to_dict(), 0) + "\n"

    @classmethod
    def loads(cls, text: str, *, where: str = "build.envd.lock") -> Lock:
        """The lock in ``text``, every value checked (`LockError` naming ``where``:line otherwise)."""
        return _Reader(text, where).lock()


# ---- text ---------------------------------------------------------------------------------------


def _fields(item: Any) -> dict[str, Any]:
    """A record's fields for the file: lists for tuples, empty optional strings left out."""
    out: dict[str, Any] = {}
    for name in item.__slots__:
        value = getattr(item, name)
        if name in ("arch", "path", "md5") and value == "":
            continue
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _render(value: Any, depth: int) -> str:
    if _is_leaf(value):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    pad, inner = "  " * depth, "  " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_render(value[k], depth + 1)}" for k in sorted(value)]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if not value:
        return "[]"
    return "[\n" + ",\n".join(inner + _render(v, depth + 1) for v in value) + "\n" + pad + "]"


def _is_leaf(value: Any) -> bool:
    """Scalars, lists of scalars, and objects whose values are those: one line each."""

    def flat(v: Any) -> bool:
        return not isinstance(v, (dict, list)) or (
            isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v)
        )

    if isinstance(value, dict):
        return all(flat(v) for v in value.values())
    return flat(value)


def canonical(value: Any) -> str:
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"))


def plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def repository(ref: str) -> str:
    """The repository of an image reference, normalised (``debian`` -> ``docker.io/library/debian``)."""
    from llb import normalize_image_ref

    def strip(name: str) -> str:
        name = name.split("@", 1)[0]
        last = name.rsplit("/", 1)[-1]
        return name[: len(name) - len(last)] + last.split(":", 1)[0]

    try:
        return strip(normalize_image_ref(strip(ref)))
    except Exception:
        return strip(ref)


# ---- reading: every value checked ----------------------------------------------------------------

_DEB_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?")
_DEB_VERSION = re.compile(r"([0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
_DEB_REQUEST = re.compile(r"[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?")
_ARCH = re.compile(r"[a-z0-9-]*")
_STEP = re.compile(r"[a-z0-9][a-z0-9-]*")
_PY_NAME = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*")
_PY_VERSION = re.compile(r"([0-9]+!)?[0-9][A-Za-z0-9.]*(\+[A-Za-z0-9.]+)?")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_REL_PATH = re.compile(r"(?!/)(?!.*(^|/)\.\.(/|$))[A-Za-z0-9._+@=-][A-Za-z0-9._+@=/-]*")
_CONDA_NAME = re.compile(r"[a-z0-9_][a-z0-9_.-]*")
_CONDA_VERSION = re.compile(r"[A-Za-z0-9_.+!-]+")
_SUBDIR = re.compile(r"[a-z0-9]+(-[a-z0-9]+)?")
_URL = re.compile(r"(https?|file)://[A-Za-z0-9._~:/?=@%+&,;!$*()\[\]-]+")
_IMAGE_ID = re.compile(r"(sha256:[0-9a-f]{64})?")
_DIGEST_REF = re.compile(r"[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}")
_IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")
_PLATFORM = re.compile(r"([a-z0-9]+/[a-z0-9]+(/[a-z0-9]+)?)?")
_PYTHON = re.compile(r"([0-9]+\.[0-9]+\.[0-9]+[A-Za-z0-9+]* [A-Za-z0-9_.-]+)?")
_VSCODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Reader:
    """Reads one lock text; ``fail`` names the line of the value at fault (the file has one value
    per line, so its JSON spelling finds it)."""

    def __init__(self, text: str, where: str) -> None:
        self.text, self.where = text, where

    def fail(self, message: str, value: Any = None, key: str = "") -> LockError:
        line = 0
        if value is not None:
            needle = json.dumps(value, ensure_ascii=False)
            at = self.text.find(f"{json.dumps(key)}: {needle}") if key else -1
            at = at if at >= 0 else self.text.find(needle)
            line = self.text.count("\n", 0, at) + 1 if at >= 0 else 0
        where = f"{self.where}:{line}" if line else self.where
        return LockError(f"{where}: {message}; run `envbuild lock` to write a valid lock")

    def lock(self) -> Lock:
        try:
            d = json.loads(self.text)
        except json.JSONDecodeError as exc:
            raise LockError(
                f"{self.where}:{exc.lineno}:{exc.colno}: not a valid lock file ({exc.msg}); run `envbuild lock` again"
            ) from None
        if not isinstance(d, dict):
            raise self.fail("not a lock file (expected a JSON object)")
        version = d.get("envbuild_lock")
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.fail("not an envbuild lock file (no envbuild_lock version)")
        if version > LOCK_VERSION:
            raise LockError(
                f"{self.where}: lock format {version} was written by a newer envbuild (this one reads format "
                f"{LOCK_VERSION}); upgrade envbuild or run `envbuild lock` again"
            )
        if version < LOCK_VERSION:
            raise LockError(
                f"{self.where}: lock format {version} is from an older envbuild (this one reads format "
                f"{LOCK_VERSION}); run `envbuild lock` again"
            )
        inputs = self.obj(d, "inputs")
        self.no_control(inputs)
        lock = Lock(
            inputs=MappingProxyType(dict(inputs)),
            base=self.base(self.obj(d, "base")),
            platform=self.string(d, "platform", _PLATFORM),
            python=self.string(d, "python", _PYTHON),
            apt=tuple(self.apt_step(s) for s in self.array(d, "apt")),
            python_packages=self.optional(d, "python_packages", self.python_package),
            conda=self.optional(d, "conda_packages", self.conda_package),
            http=tuple(self.download(x, _URL) for x in self.array(d, "http")),
            toolchains=tuple(self.download(x, _FILE) for x in self.array(d, "toolchains")),
            vscode=tuple(
                tuple(self.extension(e) for e in self.items(call, "vscode_extensions"))
                for call in self.array(d, "vscode_extensions")
            ),
            unlocked=tuple(self.text_value(u) for u in self.array(d, "unlocked")),
            version=version,
        )
        if d.get("inputs_sha256") != lock.inputs_sha256:
            raise self.fail("inputs_sha256 does not match the inputs (the file was edited)", d.get("inputs_sha256"))
        return lock

    # -- shapes --

    def obj(self, d: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = d.get(key)
        if not isinstance(value, dict):
            raise self.fail(f"{key!r} must be an object", key)
        return value

    def array(self, d: Mapping[str, Any], key: str) -> list[Any]:
        value = d.get(key, [])
        return self.items(value, key)

    def items(self, value: Any, key: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(f"{key!r} must be a list", key)
        return value

    def optional(self, d: Mapping[str, Any], key: str, item: Callable[[Any], Any]) -> tuple[Any, ...] | None:
        if d.get(key) is None:
            return None
        return tuple(item(x) for x in self.array(d, key))

    def string(self, d: Mapping[str, Any], key: str, form: re.Pattern[str], what: str = "") -> str:
        value = d.get(key, "")
        if not isinstance(value, str) or not form.fullmatch(value):
            raise self.fail(f"{what or key} {value!r} is not valid", value if isinstance(value, str) else key, key)
        return value

    def strings(self, d: Mapping[str, Any], key: str, form: re.Pattern[str], what: str) -> tuple[str, ...]:
        return tuple(self.string({key: v}, key, form, what) for v in self.items(d.get(key, []), key))

    def text_value(self, value: Any) -> str:
        if not isinstance(value, str) or _CONTROL.search(value):
            raise self.fail("a note must be a line of text", value if isinstance(value, str) else None)
        return value

    def no_control(self, value: Any) -> None:
        """``inputs`` is only compared and shown: no control characters to reach a terminal."""
        if isinstance(value, str) and _CONTROL.search(value):
            raise self.fail("control characters in the inputs", value)
        if isinstance(value, dict):
            for k, v in value.items():
                self.no_control(k)
                self.no_control(v)
        elif isinstance(value, list):
            for v in value:
                self.no_control(v)

    def record(self, value: Any, what: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"each {what} must be an object")
        return value

    # -- records --

    def base(self, b: Mapping[str, Any]) -> BaseImage:
        return BaseImage(
            self.string(b, "ref", _IMAGE_REF, "base image reference"),
            self.string(b, "id", _IMAGE_ID, "base image id"),
            self.strings(b, "repo_digests", _DIGEST_REF, "base image digest"),
        )

    def apt_step(self, value: Any) -> AptStep:
        s = self.record(value, "apt step")
        return AptStep(
            self.string(s, "step", _STEP, "apt step"),
            self.strings(s, "names", _DEB_REQUEST, "apt package name"),
            tuple(
                AptPackage(
                    self.string(p, "name", _DEB_NAME, "apt package name"),
                    self.string(p, "version", _DEB_VERSION, "apt package version"),
                    self.string(p, "arch", _ARCH, "apt architecture"),
                )
                for p in (self.record(x, "apt package") for x in self.items(s.get("packages", []), "packages"))
            ),
        )

    def python_package(self, value: Any) -> PythonPackage:
        p = self.record(value, "Python package")
        hashes = self.strings(p, "hashes", _SHA256, "Python package hash")
        if not hashes:
            raise self.fail("a Python package without hashes cannot be installed from a lock", p.get("name"))
        return PythonPackage(
            self.string(p, "name", _PY_NAME, "Python package name"),
            self.string(p, "version", _PY_VERSION, "Python package version"),
            hashes,
            self.string(p, "path", re.compile(f"({_REL_PATH.pattern})?"), "local wheel path"),
        )

    def conda_package(self, value: Any) -> CondaPackage:
        p = self.record(value, "conda package")
        pkg = CondaPackage(
            self.string(p, "name", _CONDA_NAME, "conda package name"),
            self.string(p, "version", _CONDA_VERSION, "conda package version"),
            self.string(p, "build", _CONDA_VERSION, "conda build string"),
            self.string(p, "subdir", _SUBDIR, "conda subdir"),
            self.string(p, "url", _URL, "conda package URL"),
            self.string(p, "sha256", _HEX64, "conda package sha256"),
            self.string(p, "md5", re.compile(f"({_HEX32.pattern})?"), "conda package md5"),
        )
        stem = f"/{pkg.subdir}/{pkg.name}-{pkg.version}-{pkg.build}"
        if not (pkg.url.endswith(stem + ".conda") or pkg.url.endswith(stem + ".tar.bz2")):
            raise self.fail(f"conda package URL does not name {stem[1:]}.conda or .tar.bz2", pkg.url)
        return pkg

    def download(self, value: Any, form: re.Pattern[str]) -> Download:
        x = self.record(value, "download")
        return Download(self.string(x, "url", form, "download"), self.string(x, "sha256", _SHA256, "sha256"))

    def extension(self, value: Any) -> LockedExtension:
        e = self.record(value, "VS Code extension")
        return LockedExtension(
            self.string(e, "id", _VSCODE_ID, "VS Code extension id"),
            self.string(e, "version", re.compile(r"[0-9][A-Za-z0-9.+-]*"), "VS Code extension version"),
            self.string(e, "sha256", _SHA256, "VS Code extension sha256"),
        )


# ---- what a lock installs, as the tools read it ---------------------------------------------------


def python_requirements(packages: tuple[PythonPackage, ...], context_mount: str) -> str:
    """The hashed requirements `uv pip sync` installs: ``name==version`` with every hash; a local
    wheel by its path in the build's context mount."""
    lines = ["# generated from build.envd.lock by envbuild; do not edit"]
    for p in packages:
        head = f"{context_mount}/{p.path}" if p.path else f"{p.name}=={p.version}"
        lines.append(" \\\n    ".join([head, *(f"--hash={h}" for h in p.hashes)]))
    return "\n".join(lines) + "\n"


def conda_explicit(packages: tuple[CondaPackage, ...]) -> str:
    """A conda explicit file: every package by URL, with its sha256."""
    return "@EXPLICIT\n" + "".join(f"{p.url}#sha256:{p.sha256}\n" for p in packages)


__all__ = [
    "LOCK_VERSION",
    "AptPackage",
    "AptStep",
    "BaseImage",
    "CondaPackage",
    "Download",
    "Lock",
    "LockError",
    "LockedExtension",
    "PythonPackage",
    "conda_explicit",
    "python_requirements",
]
