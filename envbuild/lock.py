"""Lock files: ``build.envd.lock`` pins what a build resolves, so every machine builds the same thing.

A lock records the base image (engine image id, registry digests), every ``install.apt_packages``
call's resolved package set (``apt-get --simulate`` on the image as built up to that call), every
``install.python_packages`` call's resolved closure with sha256 hashes (``uv pip compile
--generate-hashes`` run *inside* the image against its own interpreter, so markers and wheel tags are
the image's, not the host's), ``io.http`` checksums, and the pinned toolchain checksums.

The lock is made from a *projection* of the spec (``lock_inputs``): only what shapes resolution
(base, apt source, package lists, requirements/wheel **contents**, Python version, index, ...), no
positions and no ``run()``/runtime settings, so reformatting build.envd or editing a ``run()`` does not
stale the lock. ``check_lock`` compares projections and says what changed; ``apply_lock`` is a pure
spec -> spec rewrite (pip calls become ``-r`` hashed requirement files, apt names ``name=version``,
base by digest, http checksums filled in); ``use_lock`` is the one call ``envbuild.build.prepare``
makes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from envbuild.errors import UsageError

if TYPE_CHECKING:
    from frontend.spec import Spec

LOCK_VERSION = 1
LOCK_SUFFIX = ".lock"
MATERIALISED_DIR = ".envbuild/lock"
"""Context-relative folder where hashed requirement files are written for a locked build (generated;
the lock file is the source of truth, so this folder can be git-ignored)."""


WHEELS_DIR = ".envbuild/wheels"
"""Context-relative wheelhouse ``envbuild lock --download-wheels`` fills; ``--offline`` installs from it."""


class LockError(UsageError):
    """A lock is missing, stale or unreadable where the user asked for a locked build (exit 2)."""


class OfflineError(UsageError):
    """An input of an ``--offline`` build is not available from the engine, the caches or a mirror."""


# ---- data model ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PipPackage:
    name: str
    version: str
    hashes: tuple[str, ...] = ()

    def requirement(self) -> str:
        lines = [f"{self.name}=={self.version}"] + [f"--hash={h}" for h in self.hashes]
        return " \\\n    ".join(lines)


@dataclass(frozen=True, slots=True)
class PipGroup:
    """One ``install.python_packages`` call: its whole resolved closure (local wheels stay as given)."""

    packages: tuple[PipPackage, ...] = ()
    wheels: tuple[str, ...] = ()

    def requirements_text(self) -> str:
        head = "# generated from build.envd.lock by envbuild; do not edit\n"
        return head + "".join(p.requirement() + "\n" for p in self.packages)


@dataclass(frozen=True, slots=True)
class AptPackage:
    name: str
    version: str
    arch: str = ""


@dataclass(frozen=True, slots=True)
class AptGroup:
    """One ``install.apt_packages`` call: the requested names and what apt resolved them to."""

    names: tuple[str, ...] = ()
    packages: tuple[AptPackage, ...] = ()

    def pinned_names(self) -> tuple[str, ...]:
        """Every resolved package as ``name=version``; requested names apt found already installed
        stay plain (installing them is a no-op)."""
        pinned = [f"{p.name}={p.version}" for p in self.packages]
        resolved = {p.name.split(":", 1)[0] for p in self.packages}
        return tuple(pinned + [n for n in self.names if n not in resolved])


@dataclass(frozen=True, slots=True)
class BaseImage:
    ref: str
    id: str = ""
    repo_digests: tuple[str, ...] = ()

    def pinned_ref(self) -> str:
        """``repo@sha256:...`` when the engine knows a registry digest for ``ref``'s repository;
        otherwise ``ref`` itself, whose engine image id ``use_lock`` verifies before building."""
        repo = _repository(self.ref)
        for d in self.repo_digests:
            if _repository(d.split("@", 1)[0]) == repo:
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
    inputs: Mapping[str, Any]
    base: BaseImage
    platform: str = ""
    python: str = ""
    apt: tuple[AptGroup, ...] = ()
    pip: tuple[PipGroup, ...] = ()
    http: tuple[Download, ...] = ()
    toolchains: tuple[Download, ...] = ()
    vscode: tuple[tuple[LockedExtension, ...], ...] = ()
    unlocked: tuple[str, ...] = ()
    version: int = LOCK_VERSION

    @property
    def inputs_sha256(self) -> str:
        return _sha(_canonical(self.inputs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "envbuild_lock": self.version,
            "inputs_sha256": self.inputs_sha256,
            "inputs": _plain(self.inputs),
            "base": {"ref": self.base.ref, "id": self.base.id, "repo_digests": list(self.base.repo_digests)},
            "platform": self.platform,
            "python": self.python,
            "apt": [
                {"names": list(g.names), "packages": [dataclasses.asdict(p) for p in g.packages]} for g in self.apt
            ],
            "pip": [
                {
                    "packages": [{"name": p.name, "version": p.version, "hashes": list(p.hashes)} for p in g.packages],
                    "wheels": list(g.wheels),
                }
                for g in self.pip
            ],
            "http": [dataclasses.asdict(d) for d in self.http],
            "toolchains": [dataclasses.asdict(d) for d in self.toolchains],
            "vscode_extensions": [[dataclasses.asdict(e) for e in call] for call in self.vscode],
            "unlocked": list(self.unlocked),
        }

    def dumps(self) -> str:
        """Deterministic text: sorted keys, two-space indent, one list item per line."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def loads(cls, text: str, *, where: str = LOCK_SUFFIX) -> Lock:
        try:
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            version = d.get("envbuild_lock")
            if version != LOCK_VERSION:
                raise LockError(
                    f"{where}: lock format {version!r} is not supported by this envbuild (reads {LOCK_VERSION}); "
                    "run `envbuild lock` again"
                )
            b = d["base"]
            return cls(
                version=version,
                inputs=MappingProxyType(dict(d["inputs"])),
                base=BaseImage(str(b["ref"]), str(b.get("id", "")), tuple(b.get("repo_digests", ()))),
                platform=str(d.get("platform", "")),
                python=str(d.get("python", "")),
                apt=tuple(
                    AptGroup(tuple(g["names"]), tuple(AptPackage(**p) for p in g["packages"])) for g in d.get("apt", ())
                ),
                pip=tuple(
                    PipGroup(
                        tuple(PipPackage(p["name"], p["version"], tuple(p.get("hashes", ()))) for p in g["packages"]),
                        tuple(g.get("wheels", ())),
                    )
                    for g in d.get("pip", ())
                ),
                http=tuple(Download(**x) for x in d.get("http", ())),
                toolchains=tuple(Download(**x) for x in d.get("toolchains", ())),
                vscode=tuple(tuple(LockedExtension(**e) for e in call) for call in d.get("vscode_extensions", ())),
                unlocked=tuple(d.get("unlocked", ())),
            )
        except LockError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise LockError(f"{where}: not a valid envbuild lock file ({exc}); run `envbuild lock` again") from None


@dataclass(frozen=True, slots=True)
class LockStatus:
    """``reasons`` says what changed since the lock was made (empty when fresh)."""

    path: Path
    exists: bool
    reasons: tuple[str, ...] = ()
    lock: Lock | None = None

    @property
    def fresh(self) -> bool:
        return self.exists and not self.reasons and self.lock is not None

    def describe(self) -> str:
        if not self.exists:
            return f"no lock file {self.path.name} (create it with `envbuild lock`)"
        if self.fresh:
            return f"{self.path.name} is up to date"
        return f"{self.path.name} is stale:\n" + "\n".join(f"  - {r}" for r in self.reasons)


# ---- the projection the lock is made from ----------------------------------------------------------


def lock_path(build_file: Path) -> Path:
    return build_file.with_name(build_file.name + LOCK_SUFFIX)


def lock_inputs(spec: Spec, context_dir: Path) -> dict[str, Any]:
    """What shapes resolution, without positions: a reformatted build file yields the same value."""
    languages = {
        k: getattr(getattr(spec, k), "version", True)
        for k in ("go", "nodejs", "rust", "julia", "r_lang", "uv", "pixi", "codex", "conda")
        if getattr(spec, k) is not None
    }
    return {
        "target": spec.target,
        "image": spec.image,
        "dev": spec.dev,
        "shell": spec.shell.name if spec.dev else None,
        "apt_source": spec.apt_source.text if spec.apt_source else None,
        "apt": [list(c.names) for c in spec.apt_packages],
        "python": spec.python.version if spec.python else None,
        "jupyter": spec.jupyter is not None,
        "pip_index": (
            {
                "url": _redact(spec.pip_index.url),
                "extra_url": _redact(spec.pip_index.extra_url),
                "trust": spec.pip_index.trust,
            }
            if spec.pip_index
            else None
        ),
        "pip": [
            {
                "names": list(c.names),
                "requirements": (
                    {"path": c.requirements, "sha256": _file_sha(context_dir / c.requirements)}
                    if c.requirements
                    else None
                ),
                "wheels": {w: _file_sha(context_dir / w) for w in c.local_wheels},
            }
            for c in spec.python_packages
        ],
        "http": [{"url": h.url, "checksum": h.checksum, "filename": h.filename} for h in spec.http],
        "languages": languages,
        "conda_packages": [
            {"names": list(c.names), "channels": list(c.channels), "env_file": c.env_file} for c in spec.conda_packages
        ],
        "vscode_extensions": [list(c.names) for c in spec.vscode_extensions],
    }


def check_lock(spec: Spec, lock: Lock, context_dir: Path, *, base_id: str | None = None) -> tuple[str, ...]:
    """Precise reasons the lock no longer matches (empty: fresh). ``base_id`` is the engine's current
    image id for the base (None: not checked; "": the engine does not have it)."""
    now = lock_inputs(spec, context_dir)
    was = _plain(lock.inputs)
    reasons: list[str] = []
    pos = _positions(spec)
    if now.get("target") != was.get("target"):
        reasons.append(f"the lock was made for function {was.get('target')!r}, this build uses {now['target']!r}")
    if now["image"] != was.get("image"):
        reasons.append(f"base image changed: {was.get('image')} -> {now['image']}")
    elif base_id and lock.base.id and base_id != lock.base.id:
        reasons.append(
            f"base image {now['image']} changed in the engine store: locked {_short(lock.base.id)}, "
            f"now {_short(base_id)}"
        )
    for key, label in (
        ("dev", "base(dev=...)"),
        ("shell", "shell"),
        ("apt_source", "config.apt_source"),
        ("python", "install.python version"),
        ("jupyter", "config.jupyter"),
        ("pip_index", "config.pip_index"),
        ("languages", "language runtimes"),
    ):
        if now.get(key) != was.get(key):
            reasons.append(f"{label} changed: {_show(was.get(key))} -> {_show(now.get(key))}")
    reasons += _list_diff("install.apt_packages", was.get("apt", []), now["apt"], pos.get("apt", []), _names_diff)
    reasons += _list_diff("install.python_packages", was.get("pip", []), now["pip"], pos.get("pip", []), _pip_diff)
    reasons += _list_diff("io.http", was.get("http", []), now["http"], pos.get("http", []), _http_diff)
    reasons += _list_diff(
        "install.conda_packages",
        was.get("conda_packages", []),
        now["conda_packages"],
        pos.get("conda", []),
        _conda_diff,
    )
    reasons += _list_diff(
        "install.vscode_extensions",
        was.get("vscode_extensions", []),
        now["vscode_extensions"],
        pos.get("vsc", []),
        _names_diff,
    )
    if not reasons and _canonical(now) != _canonical(was):
        reasons.append("the build file's package inputs changed")
    return tuple(reasons)


def _positions(spec: Spec) -> dict[str, list[str]]:
    def where(items: Sequence[Any]) -> list[str]:
        return [str(i.pos) if getattr(i, "pos", None) else "" for i in items]

    return {
        "apt": where(spec.apt_packages),
        "pip": where(spec.python_packages),
        "http": where(spec.http),
        "conda": where(spec.conda_packages),
        "vsc": where(spec.vscode_extensions),
    }


def _list_diff(
    what: str, was: list[Any], now: list[Any], pos: list[str], item_diff: Callable[[Any, Any], list[str]]
) -> list[str]:
    out: list[str] = []
    for i in range(max(len(was), len(now))):
        at = f" at {pos[i]}" if i < len(pos) and pos[i] else ""
        if i >= len(was):
            out.append(f"{what} call {i + 1}{at} added")
        elif i >= len(now):
            out.append(f"{what} call {i + 1} removed")
        else:
            out += [f"{what} call {i + 1}{at}: {d}" for d in item_diff(was[i], now[i])]
    return out


def _names_diff(was: list[str], now: list[str]) -> list[str]:
    out: list[str] = []
    added = [n for n in now if n not in was]
    removed = [n for n in was if n not in now]
    if added:
        out.append("added " + ", ".join(added))
    if removed:
        out.append("removed " + ", ".join(removed))
    return out


def _pip_diff(was: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = _names_diff(was.get("names", []), now["names"])
    r0, r1 = was.get("requirements"), now["requirements"]
    if (r0 or {}).get("path") != (r1 or {}).get("path"):
        out.append(f"requirements file changed: {_show((r0 or {}).get('path'))} -> {_show((r1 or {}).get('path'))}")
    elif r0 and r1 and r0.get("sha256") != r1.get("sha256"):
        out.append(f"content of {r1['path']} changed" if r1.get("sha256") else f"{r1['path']} is missing")
    w0, w1 = was.get("wheels", {}), now["wheels"]
    for w in sorted(set(w0) | set(w1)):
        if w not in w0:
            out.append(f"local wheel {w} added")
        elif w not in w1:
            out.append(f"local wheel {w} removed")
        elif w0[w] != w1[w]:
            out.append(f"content of local wheel {w} changed")
    return out


def _http_diff(was: dict[str, Any], now: dict[str, Any]) -> list[str]:
    return [
        f"{k} changed: {_show(was.get(k))} -> {_show(now[k])}"
        for k in ("url", "checksum", "filename")
        if was.get(k) != now[k]
    ]


def _conda_diff(was: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = _names_diff(was.get("names", []), now["names"])
    if was.get("channels") != now["channels"] or was.get("env_file") != now["env_file"]:
        out.append("channels or environment file changed")
    return out


# ---- applying a lock ----------------------------------------------------------------------------


def materialised_path(index: int) -> str:
    return f"{MATERIALISED_DIR}/python-packages-{index + 1}.txt"


def apply_lock(spec: Spec, lock: Lock, wheels: Sequence[Mapping[str, str]] | None = None) -> Spec:
    """The spec a locked build compiles (pure): every ``python_packages`` call installs its hashed
    requirement file ``materialised_path(i)`` (plus its local wheels), apt calls name every resolved
    package ``name=version``, the base is pinned by registry digest when one is known, and ``io.http``
    downloads carry the locked sha256. Call ``materialise`` to write the requirement files.

    ``wheels`` (offline builds, from ``find_wheels``): per call, package name -> context-relative
    wheel file; the call then installs those files (no index is asked) instead of the requirements."""
    from frontend.spec import AptPackages, Base, PythonPackages, VSCodeExtensions

    if len(lock.pip) != len(spec.python_packages) or len(lock.apt) != len(spec.apt_packages):
        raise LockError("the lock does not match the build file's package calls; run `envbuild lock`")
    if wheels is not None:
        pip = tuple(
            PythonPackages(names=(), local_wheels=(*call.local_wheels, *(w[n] for n in sorted(w))), pos=call.pos)
            for call, w in zip(spec.python_packages, wheels, strict=False)
        )
    else:
        pip = tuple(
            PythonPackages(names=(), requirements=materialised_path(i), local_wheels=call.local_wheels, pos=call.pos)
            for i, call in enumerate(spec.python_packages)
        )
    apt = tuple(
        AptPackages(names=group.pinned_names(), pos=call.pos)
        for call, group in zip(spec.apt_packages, lock.apt, strict=False)
    )
    sums = {d.url: d.sha256 for d in lock.http}
    http = tuple(
        h if h.checksum or h.url not in sums else dataclasses.replace(h, checksum=sums[h.url]) for h in spec.http
    )
    changes: dict[str, Any] = {
        "vscode_extensions": tuple(
            VSCodeExtensions(names=tuple(e.pinned_id() for e in locked), pos=call.pos)
            for call, locked in zip(spec.vscode_extensions, lock.vscode, strict=False)
        )
        if len(lock.vscode) == len(spec.vscode_extensions)
        else spec.vscode_extensions,
        "python_packages": pip,
        "apt_packages": apt,
        "http": http,
        "inputs": tuple(
            sorted(
                {
                    *spec.inputs,
                    *(p.requirements for p in pip if p.requirements),
                    *(w for p in pip for w in p.local_wheels),
                }
            )
        ),
    }
    pinned = lock.base.pinned_ref()
    if pinned != spec.image:
        if spec.cuda is not None:
            changes["cuda"] = dataclasses.replace(spec.cuda, image=pinned)
        else:
            changes["base"] = Base(image=pinned, dev=spec.base.dev, pos=spec.base.pos)
    return dataclasses.replace(spec, **changes)


def materialise(lock: Lock, context_dir: Path) -> list[Path]:
    """Write the hashed requirement files a locked build installs (only when their text differs)."""
    written: list[Path] = []
    for i, group in enumerate(lock.pip):
        p = context_dir / materialised_path(i)
        text = group.requirements_text()
        if not p.is_file() or p.read_text(encoding="utf-8") != text:
            p.parent.mkdir(parents=True, exist_ok=True)
            ignore = p.parent.parent / ".gitignore"
            if not ignore.exists():
                ignore.write_text("# generated by envbuild from build.envd.lock\n*\n", encoding="utf-8")
            p.write_text(text, encoding="utf-8")
            written.append(p)
    return written


def check_vsix_cache(lock: Lock, cache_root: Path) -> list[str]:
    """Cached .vsix files (envbuild's VS Code cache) whose bytes differ from the lock."""
    bad: list[str] = []
    for call in lock.vscode:
        for e in call:
            if e.id.lower().endswith(".vsix"):
                continue
            cached = cache_root / "vsix" / f"{e.pinned_id()}.vsix".lower()
            if cached.is_file() and "sha256:" + _file_sha(cached) != e.sha256:
                bad.append(f"{cached} ({e.pinned_id()}) does not match the lock's {e.sha256[:19]}")
    return bad


def read_lock(path: Path) -> Lock | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LockError(f"{path}: {exc.strerror or exc}") from None
    return Lock.loads(text, where=str(path))


def status(spec: Spec, context_dir: Path, build_file: Path, *, base_id: str | None = None) -> LockStatus:
    path = lock_path(build_file)
    lock = read_lock(path)
    if lock is None:
        return LockStatus(path, False)
    return LockStatus(path, True, check_lock(spec, lock, context_dir, base_id=base_id), lock)


def engine_base_id(ref: str) -> str:
    """The engine's image id for ``ref`` ("" when the engine does not have it)."""
    from envbuild import images

    data = images.inspect_image(images.engine_name(ref))
    return str(data.get("Id") or "") if data else ""


def use_lock(
    spec: Spec,
    context_dir: Path,
    build_file: Path,
    *,
    locked: bool = False,
    offline: bool = False,
    on_note: Callable[[str], None] | None = None,
) -> Spec:
    """The hook ``envbuild.build.prepare`` calls: the locked spec when a fresh lock exists, the spec
    unchanged (with a note) when it is missing or stale; ``locked``/``offline`` turn that into an
    error that says what changed or what is missing."""
    note = on_note or (lambda text: print(f"note: {text}", file=sys.stderr))
    path = lock_path(build_file)
    if not path.exists() and not locked and not offline:
        return spec
    base_id = engine_base_id(spec.image)
    st = status(spec, context_dir, build_file, base_id=base_id)
    wheels = None
    if offline:
        wheels = check_offline(spec, st, base_id, context_dir)
    if not st.fresh:
        if locked:
            raise LockError(f"--locked: {st.describe()}\nrun `envbuild lock` to update it")
        note(st.describe() + "\nbuilding without the lock; run `envbuild lock` to update it")
        return spec
    assert st.lock is not None
    if st.lock.vscode:
        from envbuild.compiler.vscode import cache_root

        bad = check_vsix_cache(st.lock, cache_root())
        if bad:
            raise LockError("VS Code extension downloads differ from the lock:\n" + "\n".join(f"  - {b}" for b in bad))
    materialise(st.lock, context_dir)
    return apply_lock(spec, st.lock, wheels)


def find_wheels(lock: Lock, context_dir: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Per pip call, package -> wheel in ``WHEELS_DIR`` whose sha256 is one the lock allows; and the
    ``name==version`` pins that have none."""
    by_hash: dict[str, str] = {}
    folder = context_dir / WHEELS_DIR
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if f.is_file():
                by_hash["sha256:" + _file_sha(f)] = f"{WHEELS_DIR}/{f.name}"
    found: list[dict[str, str]] = []
    missing: list[str] = []
    for group in lock.pip:
        files: dict[str, str] = {}
        for p in group.packages:
            hit = next((by_hash[h] for h in p.hashes if h in by_hash), None)
            if hit is None:
                missing.append(f"{p.name}=={p.version}")
            else:
                files[p.name] = hit
        found.append(files)
    return found, missing


def check_offline(
    spec: Spec, st: LockStatus, base_id: str, context_dir: Path | None = None
) -> list[dict[str, str]] | None:
    """What an offline build needs: the base image in the engine, every package pinned by a fresh lock
    (no resolution against an index), the locked Python packages as hash-matching wheels in
    ``WHEELS_DIR``, every download with a checksum (so the cache can serve it). Returns the wheels."""
    missing: list[str] = []
    wheels: list[dict[str, str]] | None = None
    if not base_id:
        missing.append(
            f"base image {spec.image} is not in the engine's image store (load it with `docker load` or pull it "
            "while online)"
        )
    if (spec.python_packages or spec.apt_packages) and not st.fresh:
        missing.append(
            "pinned package versions: " + (st.describe() if st.exists else "no lock file; run `envbuild lock` online")
        )
    unpinned = [
        h.url for h in spec.http if not h.checksum and not (st.lock and any(d.url == h.url for d in st.lock.http))
    ]
    if unpinned:
        missing.append("checksums of io.http downloads (a lock or checksum=): " + ", ".join(unpinned))
    if st.fresh and st.lock is not None and spec.python_packages and context_dir is not None:
        wheels, absent = find_wheels(st.lock, context_dir)
        if absent:
            missing.append(
                f"Python wheels matching the lock in {WHEELS_DIR}/: "
                + ", ".join(absent)
                + " (run `envbuild lock --download-wheels` online)"
            )
    if missing:
        raise OfflineError("--offline: cannot build without the network:\n" + "\n".join(f"  - {m}" for m in missing))
    return wheels


# ---- helpers ------------------------------------------------------------------------------------


def _repository(ref: str) -> str:
    from llb import normalize_image_ref

    def strip(name: str) -> str:
        name = name.split("@", 1)[0]
        last = name.rsplit("/", 1)[-1]
        return name[: len(name) - len(last)] + last.split(":", 1)[0]

    try:
        return strip(normalize_image_ref(strip(ref)))
    except Exception:
        return strip(ref)


def _redact(url: str) -> str:
    """Index credentials never reach the lock file (it is committed); changing them does not change
    what resolves."""
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if sep and "@" in host:
        return f"{scheme}://***@{host.rsplit('@', 1)[1]}{slash}{path}"
    return url


def _file_sha(p: Path) -> str:
    try:
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(str(f.relative_to(p)).encode() + b"\0" + bytes.fromhex(_file_sha(f)) + b"\0")
            return h.hexdigest()
        h = hashlib.sha256()
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return ""


def _canonical(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _short(digest: str) -> str:
    return digest[:19]


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


_INST = re.compile(r"^Inst (\S+) (?:\[[^\]]*\] )?\((\S+) .*?(?:\[(\S+)\])?\)\s*$")


def parse_apt_simulation(text: str) -> tuple[AptPackage, ...]:
    """``apt-get --simulate install`` output -> the packages it would install, sorted by name."""
    out: dict[str, AptPackage] = {}
    for line in text.splitlines():
        m = _INST.match(line.strip())
        if m:
            out[m.group(1)] = AptPackage(m.group(1), m.group(2), m.group(3) or "")
    return tuple(out[k] for k in sorted(out))


def parse_pip_compile(text: str) -> tuple[PipPackage, ...]:
    """``uv pip compile --generate-hashes --no-annotate --no-header`` output -> pinned packages.

    Lines that are not ``name==version`` pins (local paths, URLs) are left out: local wheels stay
    in the build as given."""
    joined = re.sub(r"\\\s*\n", " ", text)
    out: dict[str, PipPackage] = {}
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("--hash") else line.strip()
        if not line or line.startswith("-"):
            continue
        words = line.split()
        req, hashes = words[0], tuple(sorted(w.split("=", 1)[1] for w in words[1:] if w.startswith("--hash=")))
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^;\s]+)", req.split(";", 1)[0])
        if m:
            name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
            out[name] = PipPackage(name, m.group(2), hashes)
    return tuple(out[k] for k in sorted(out))


_OPTION_LINE = re.compile(r"^--?(index-url|extra-index-url|find-links|no-index|trusted-host|i|f)\b")


def unpinnable(text: str) -> list[str]:
    """Requirements in ``uv pip compile`` output that are not index pins: paths, URLs, VCS, editables."""
    joined = re.sub(r"\\\s*\n", " ", text)
    out: list[str] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or _OPTION_LINE.match(line):
            continue
        req = line.split(" --hash=", 1)[0].strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^;\s]+(\s*;.*)?", req):
            out.append(req)
    return out


__all__ = [
    "LOCK_VERSION",
    "AptGroup",
    "AptPackage",
    "BaseImage",
    "Download",
    "Lock",
    "LockError",
    "LockStatus",
    "OfflineError",
    "PipGroup",
    "PipPackage",
    "apply_lock",
    "check_lock",
    "check_offline",
    "find_wheels",
    "lock_inputs",
    "lock_path",
    "materialise",
    "parse_apt_simulation",
    "parse_pip_compile",
    "read_lock",
    "status",
    "use_lock",
]
