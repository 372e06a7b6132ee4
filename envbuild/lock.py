"""Lock files: ``build.envd.lock`` pins everything a build installs, so every machine builds the same thing.

A lock records the base image (engine image id, registry digests), every apt transaction the build
makes (envbuild's own and the user's, each with its whole closure), one resolution of every Python
package the environment gets (JupyterLab, the venv's seed packages and every
``install.python_packages`` call, with sha256 hashes, resolved *inside* the image against its own
interpreter), the conda environment's packages by URL and sha256, ``io.http`` checksums, VS Code
extension versions and the pinned toolchain checksums (`envbuild.lockfile` has the format).

The lock is made from a *projection* of the spec (``lock_inputs``): only what shapes resolution
(base, apt source, package lists, requirements/wheel **contents**, Python version, index, ...), no
positions and no ``run()``/runtime settings, so reformatting build.envd or editing a ``run()`` does not
stale the lock. ``check_lock`` compares projections and says what changed; ``apply_lock`` pins the
spec's own values (base by digest, http checksums, extension versions) and ``pins`` gives the
compiler every package version (`envbuild.compiler.options.Pins`); ``use_lock`` is the one call
``envbuild.build.prepare`` makes.
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

from envbuild.compiler import credentials
from envbuild.errors import UsageError
from envbuild.lockfile import (
    LOCK_VERSION,
    AptPackage,
    AptStep,
    BaseImage,
    CondaPackage,
    Download,
    Lock,
    LockedExtension,
    LockError,
    PythonPackage,
    canonical,
    conda_explicit,
    plain,
    python_requirements,
)

if TYPE_CHECKING:
    from envbuild.compiler.options import Pins
    from frontend.spec import Spec

LOCK_SUFFIX = ".lock"
WHEELS_DIR = ".envbuild/wheels"
"""Context-relative wheelhouse ``envbuild lock --download-wheels`` fills; ``--offline`` installs from it."""


class OfflineError(UsageError):
    """An input of an ``--offline`` build is not available from the engine, the caches or a mirror."""


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


@dataclass(frozen=True, slots=True)
class LockedBuild:
    """What `use_lock` hands the build: the spec to compile and the versions to install (None: no lock)."""

    spec: Spec
    pins: Pins | None = None
    lock: Lock | None = None


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
        "apt_source": credentials.redact_text(spec.apt_source.text) if spec.apt_source else None,
        "apt": [list(c.names) for c in spec.apt_packages],
        "python": spec.python.version if spec.python else None,
        "jupyter": spec.jupyter is not None,
        "pip_index": (
            {
                "url": credentials.redact_url(spec.pip_index.url),
                "extra_url": credentials.redact_url(spec.pip_index.extra_url),
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
                "options": _pip_options(c.options),
            }
            for c in spec.python_packages
        ],
        "http": [
            {"url": credentials.redact_url(h.url), "checksum": h.checksum, "filename": h.filename} for h in spec.http
        ],
        "languages": languages,
        "conda_packages": [
            {
                "names": list(c.names),
                "channels": [credentials.redact_conda(ch) for ch in c.channels],
                "env_file": c.env_file,
                "env_file_sha256": _file_sha(context_dir / c.env_file) if c.env_file else None,
            }
            for c in spec.conda_packages
        ],
        "conda_channel": _sha(credentials.redact_conda(spec.conda_channel.text)) if spec.conda_channel else None,
        "cuda": [spec.cuda.version, spec.cuda.cudnn] if spec.cuda else None,
        "vscode_extensions": [list(c.names) for c in spec.vscode_extensions],
    }


def check_lock(spec: Spec, lock: Lock, context_dir: Path, *, base_id: str | None = None) -> tuple[str, ...]:
    """Precise reasons the lock no longer matches (empty: fresh). ``base_id`` is the engine's current
    image id for the base (None: not checked; "": the engine does not have it)."""
    now = lock_inputs(spec, context_dir)
    was = plain(lock.inputs)
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
        ("conda_channel", "config.conda_channel"),
        ("cuda", "install.cuda"),
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
    if not reasons and canonical(now) != canonical(was):
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
    if was.get("options") != now["options"]:
        out.append(f"pip options changed: {_show(was.get('options'))} -> {_show(now['options'])}")
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
    elif was.get("env_file_sha256") != now["env_file_sha256"]:
        out.append(f"content of {now['env_file']} changed")
    return out


def _pip_options(o: Any) -> dict[str, Any]:
    """A call's pip options as they shape resolution (index credentials left out)."""
    return {
        "index_url": credentials.redact_url(o.index_url),
        "extra_index_urls": [credentials.redact_url(u) for u in o.extra_index_urls],
        "find_links": [credentials.redact_url(u) for u in o.find_links],
        "pre": o.pre,
        "no_deps": o.no_deps,
    }


# ---- applying a lock ----------------------------------------------------------------------------


def apply_lock(spec: Spec, lock: Lock) -> Spec:
    """The spec a locked build compiles (pure): the base pinned by registry digest when one is
    known, ``io.http`` downloads with the locked sha256, VS Code extensions at their locked versions.
    Package versions reach the compiler as `pins`."""
    from frontend.spec import Base, VSCodeExtensions

    sums = {d.url: d.sha256 for d in lock.http}  # URLs as the lock shows them: logins redacted
    http = tuple(
        dataclasses.replace(h, checksum=sums[url])
        if not h.checksum and (url := credentials.redact_url(h.url)) in sums
        else h
        for h in spec.http
    )
    changes: dict[str, Any] = {"http": http}
    if len(lock.vscode) == len(spec.vscode_extensions):
        changes["vscode_extensions"] = tuple(
            VSCodeExtensions(names=tuple(e.pinned_id() for e in locked), pos=call.pos)
            for call, locked in zip(spec.vscode_extensions, lock.vscode, strict=True)
        )
    pinned = lock.base.pinned_ref()
    if pinned != spec.image:
        if spec.cuda is not None:
            changes["cuda"] = dataclasses.replace(spec.cuda, image=pinned)
        else:
            changes["base"] = Base(image=pinned, dev=spec.base.dev, pos=spec.base.pos)
    return dataclasses.replace(spec, **changes)


def pins(spec: Spec, lock: Lock, *, strict: bool = False, wheelhouse: str = "") -> Pins:
    """The versions a build of ``spec`` installs from ``lock`` (`envbuild.compiler.options.Pins`).
    A local wheel the lock names must be one of the spec's (the lock cannot point elsewhere);
    ``wheelhouse`` (``--offline``): the context folder the Python packages come from."""
    from envbuild.compiler.options import AptPin, Pins
    from envbuild.compiler.scripts import CONTEXT_MOUNT

    python = None
    if lock.python_packages is not None:
        wheels = {w for call in spec.python_packages for w in call.local_wheels}
        for p in lock.python_packages:
            if p.path and p.path not in wheels:
                raise LockError(f"the lock installs the local wheel {p.path}, which build.envd does not name")
        python = python_requirements(lock.python_packages, CONTEXT_MOUNT)
    return Pins(
        apt=MappingProxyType(
            {s.key: AptPin(s.names, tuple(f"{p.name}={p.version}" for p in s.packages)) for s in lock.apt}
        ),
        python=python,
        python_version=lock.python_version,
        conda=conda_explicit(lock.conda) if lock.conda is not None else None,
        platform=lock.platform,
        strict=strict,
        wheelhouse=wheelhouse,
        vsix=MappingProxyType(vsix_pins(lock)),
        digest=hashlib.sha256(lock.dumps().encode()).hexdigest(),
    )


def check_vsix(vsix: Mapping[str, str], cache_root: Path, *, downloaded: bool = False) -> list[str]:
    """The .vsix files of envbuild's VS Code cache whose bytes differ from the lock (``vsix``: pinned
    id -> sha256); ``downloaded`` (after `vscode.prepare`): a missing file is a difference too."""
    bad: list[str] = []
    for pinned, sha256 in sorted(vsix.items()):
        cached = cache_root / "vsix" / f"{pinned}.vsix".lower()
        if not cached.is_file():
            if downloaded:
                bad.append(f"{cached} ({pinned}) is missing")
        elif "sha256:" + _file_sha(cached) != sha256:
            bad.append(f"{cached} ({pinned}) does not match the lock's {sha256[:19]}")
    return bad


def vsix_pins(lock: Lock) -> dict[str, str]:
    """Extension downloads the lock pins: pinned id -> sha256 (context .vsix files are inputs)."""
    return {e.pinned_id(): e.sha256 for call in lock.vscode for e in call if not e.id.lower().endswith(".vsix")}


def read_lock(path: Path) -> Lock | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
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
) -> LockedBuild:
    """The hook ``envbuild.build.prepare`` calls: the locked spec and pins when a fresh lock exists,
    the spec unchanged (with a note) when it is missing or stale; ``locked``/``offline`` turn that
    into an error that says what changed or what is missing. ``locked`` also refuses a lock that
    leaves something the build installs unpinned."""
    note = on_note or (lambda text: print(f"note: {text}", file=sys.stderr))
    path = lock_path(build_file)
    if not path.exists() and not locked and not offline:
        return LockedBuild(spec)
    base_id = engine_base_id(spec.image)
    st = status(spec, context_dir, build_file, base_id=base_id)
    if offline:
        check_offline(spec, st, base_id, context_dir)
    if not st.fresh:
        if locked:
            raise LockError(f"--locked: {st.describe()}\nrun `envbuild lock` to update it")
        note(st.describe() + "\nbuilding without the lock; run `envbuild lock` to update it")
        return LockedBuild(spec)
    lock = st.lock
    assert lock is not None
    if locked and lock.unlocked:
        raise LockError(
            f"--locked: {path.name} does not cover everything this build installs:\n"
            + "\n".join(f"  - {u}" for u in lock.unlocked)
            + "\nbuild without --locked to install these unpinned"
        )
    if lock.vscode:
        from envbuild.compiler.vscode import cache_root

        bad = check_vsix(vsix_pins(lock), cache_root())
        if bad:
            raise LockError("VS Code extension downloads differ from the lock:\n" + "\n".join(f"  - {b}" for b in bad))
    wheelhouse = WHEELS_DIR if offline and lock.python_packages else ""
    return LockedBuild(apply_lock(spec, lock), pins(spec, lock, strict=locked, wheelhouse=wheelhouse), lock)


def missing_wheels(lock: Lock, context_dir: Path) -> list[str]:
    """The ``name==version`` pins without a wheel in ``WHEELS_DIR`` whose sha256 the lock allows
    (local wheels come from the context itself)."""
    have: set[str] = set()
    folder = context_dir / WHEELS_DIR
    if folder.is_dir():
        have = {"sha256:" + _file_sha(f) for f in sorted(folder.iterdir()) if f.is_file()}
    return [
        f"{p.name}=={p.version}"
        for p in lock.python_packages or ()
        if not p.path and not any(h in have for h in p.hashes)
    ]


def check_offline(spec: Spec, st: LockStatus, base_id: str, context_dir: Path | None = None) -> None:
    """What an offline build needs: the base image in the engine, every package pinned by a fresh lock
    (no resolution against an index), the locked Python packages as hash-matching wheels in
    ``WHEELS_DIR``, every download with a checksum (so the cache can serve it)."""
    missing: list[str] = []
    if not base_id:
        missing.append(
            f"base image {spec.image} is not in the engine's image store (load it with `docker load` or pull it "
            "while online)"
        )
    if (spec.python_packages or spec.apt_packages or spec.jupyter) and not st.fresh:
        missing.append(
            "pinned package versions: " + (st.describe() if st.exists else "no lock file; run `envbuild lock` online")
        )
    locked = {d.url for d in st.lock.http} if st.lock else set()  # URLs as the lock shows them
    shown = [credentials.redact_url(h.url) for h in spec.http if not h.checksum]
    unpinned = [url for url in shown if url not in locked]
    if unpinned:
        missing.append("checksums of io.http downloads (a lock or checksum=): " + ", ".join(unpinned))
    if st.fresh and st.lock is not None and st.lock.python_packages and context_dir is not None:
        absent = missing_wheels(st.lock, context_dir)
        if absent:
            missing.append(
                f"Python wheels matching the lock in {WHEELS_DIR}/: "
                + ", ".join(absent)
                + " (run `envbuild lock --download-wheels` online)"
            )
    if missing:
        raise OfflineError("--offline: cannot build without the network:\n" + "\n".join(f"  - {m}" for m in missing))


# ---- helpers ------------------------------------------------------------------------------------


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


def normalise(name: str) -> str:
    """A Python project name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_pip_compile(text: str, *, context_mount: str) -> tuple[PythonPackage, ...]:
    """``uv pip compile --generate-hashes --no-annotate --no-header`` output -> pinned packages,
    sorted by name; a local wheel (a path under ``context_mount``) keeps its context-relative path,
    its name and version read from the wheel's file name."""
    joined = re.sub(r"\\\s*\n", " ", text)
    out: dict[str, PythonPackage] = {}
    for line in joined.splitlines():
        words = line.split("#", 1)[0].split() if "--hash" not in line else line.split()
        if not words or words[0].startswith("-"):
            continue
        req = words[0].split(";", 1)[0]
        hashes = tuple(sorted(w.split("=", 1)[1] for w in words[1:] if w.startswith("--hash=")))
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^;\s]+)", req)
        if m:
            name = normalise(m.group(1))
            out[name] = PythonPackage(name, m.group(2), hashes)
        elif req.startswith(context_mount + "/") and req.endswith(".whl"):
            stem = req.rsplit("/", 1)[-1].split("-")
            name = normalise(stem[0])
            out[name] = PythonPackage(name, stem[1] if len(stem) > 1 else "", hashes, req[len(context_mount) + 1 :])
    return tuple(out[k] for k in sorted(out))


_OPTION_LINE = re.compile(r"^--?(index-url|extra-index-url|find-links|no-index|trusted-host|i|f)\b")


def unpinnable(text: str, *, context_mount: str) -> list[str]:
    """Requirements in ``uv pip compile`` output that are neither index pins nor local wheels of the
    context: other paths, URLs, VCS, editables."""
    joined = re.sub(r"\\\s*\n", " ", text)
    out: list[str] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or _OPTION_LINE.match(line):
            continue
        req = line.split(" --hash=", 1)[0].strip()
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[^;\s]+(\s*;.*)?", req):
            continue
        if req.startswith(context_mount + "/") and req.endswith(".whl"):
            continue
        out.append(req)
    return out


__all__ = [
    "LOCK_VERSION",
    "AptPackage",
    "AptStep",
    "BaseImage",
    "CondaPackage",
    "Download",
    "Lock",
    "LockError",
    "LockStatus",
    "LockedBuild",
    "LockedExtension",
    "OfflineError",
    "PythonPackage",
    "apply_lock",
    "check_lock",
    "check_offline",
    "lock_inputs",
    "lock_path",
    "missing_wheels",
    "parse_apt_simulation",
    "parse_pip_compile",
    "pins",
    "read_lock",
    "status",
    "use_lock",
]
