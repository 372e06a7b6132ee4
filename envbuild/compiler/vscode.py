"""``install.vscode_extensions``: extensions ready where VS Code Server looks on first connect.

Host side (`prepare`, not pure): each id is fetched from Open VSX (`Mirrors.openvsx`, so a mirror
works) or taken from a ``.vsix`` in the build context, kept in ``~/.cache/envbuild/vscode/`` and
unpacked there, so a rebuild downloads nothing. Compile side (`stage`, pure): the unpacked
directories travel as one local source and are copied to
``/home/envd/.vscode-server/extensions/<publisher>.<name>-<version>/``, owned by ``envd``, next to
the ``extensions.json`` manifest the server reads.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import llb
from envbuild import paths
from envbuild.compiler.mirrors import Mirrors
from envbuild.compiler.stagekit import Additions
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.compiler.stagekit import Ctx

LOCAL_NAME = "vscode-extensions"
EXTENSIONS_DIR = "/home/envd/.vscode-server/extensions"
TARGET_PLATFORM = {"amd64": "linux-x64", "arm64": "linux-arm64"}


class ExtensionError(UsageError):
    """An extension cannot be found, downloaded or unpacked."""


@dataclass(frozen=True, slots=True)
class Extension:
    """An unpacked extension: ``dir_name`` is ``<publisher>.<name>-<version>`` under the cache."""

    id: str
    version: str
    dir_name: str
    source: str


def cache_root() -> Path:
    return paths.cache_dir() / "vscode"


Fetch = Callable[[str], bytes]


def _urlopen(url: str) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "envbuild", "Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def _split(ext_id: str) -> tuple[str, str, str | None]:
    m = re.fullmatch(r"([A-Za-z0-9][\w-]*)\.([A-Za-z0-9][\w.-]*?)(?:-(\d+\.\d+\.\d+[\w.+-]*))?", ext_id)
    if not m:
        raise ExtensionError(f"{ext_id!r} is not an extension id like ms-python.python or ms-python.python-2024.1.0")
    return m[1], m[2], m[3]


def unpack(vsix: Path, into: Path, source: str) -> Extension:
    """The ``extension/`` directory of a .vsix, named from its package.json."""
    import shutil
    import zipfile

    try:
        with zipfile.ZipFile(vsix) as z:
            manifest = json.loads(z.read("extension/package.json"))
            publisher, name, version = manifest["publisher"], manifest["name"], manifest["version"]
            dir_name = f"{publisher}.{name}-{version}".lower()
            dest = into / dir_name
            if not (dest / "package.json").is_file():
                tmp = into / f".{dir_name}.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                for member in z.infolist():
                    if not member.filename.startswith("extension/") or member.is_dir():
                        continue
                    rel = Path(member.filename[len("extension/") :])
                    if rel.is_absolute() or ".." in rel.parts:
                        raise ExtensionError(f"{vsix}: unsafe path {member.filename!r} in the archive")
                    out = tmp / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(member))
                shutil.rmtree(dest, ignore_errors=True)
                tmp.rename(dest)
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise ExtensionError(f"{vsix}: not a VS Code extension package ({e})") from None
    return Extension(f"{publisher}.{name}".lower(), version, dir_name, source)


def _from_open_vsx(ext_id: str, mirrors: Mirrors, root: Path, arch: str, fetch: Fetch) -> Extension:
    publisher, name, version = _split(ext_id)
    vsix_dir = root / "vsix"
    vsix_dir.mkdir(parents=True, exist_ok=True)
    if version:
        cached = vsix_dir / f"{publisher}.{name}-{version}.vsix".lower()
        if cached.is_file():
            return unpack(cached, root / "extensions", cached.name)
    import urllib.error

    platform = TARGET_PLATFORM.get(arch, "linux-x64")
    api = f"{mirrors.openvsx}/api/{publisher}/{name}/{platform}/{version or 'latest'}"
    try:
        meta = json.loads(fetch(api))
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise ExtensionError(f"{ext_id}: {api}: HTTP {e.code}") from None
        try:
            meta = json.loads(fetch(f"{mirrors.openvsx}/api/{publisher}/{name}/{version or 'latest'}"))
        except (urllib.error.URLError, ValueError, OSError) as e2:
            raise ExtensionError(f"{ext_id}: not found on {mirrors.openvsx} ({e2})") from None
    except (urllib.error.URLError, ValueError, OSError) as e:
        cached_any = sorted(vsix_dir.glob(f"{publisher}.{name}-*.vsix".lower()))
        if not version and cached_any:
            return unpack(cached_any[-1], root / "extensions", cached_any[-1].name)
        raise ExtensionError(
            f"{ext_id}: cannot reach {mirrors.openvsx} ({e}); set ENVBUILD_MIRROR_OPENVSX to a mirror "
            "or put the .vsix in the build context"
        ) from None
    got = str(meta.get("version") or version or "")
    url = (meta.get("files") or {}).get("download")
    if not got or not url:
        raise ExtensionError(f"{ext_id}: {api} did not name a version and a download")
    cached = vsix_dir / f"{publisher}.{name}-{got}.vsix".lower()
    if not cached.is_file():
        tmp = cached.with_suffix(".part")
        tmp.write_bytes(fetch(url))
        tmp.rename(cached)
    return unpack(cached, root / "extensions", cached.name)


def prepare(
    ids: Sequence[str],
    *,
    context_dir: Path,
    mirrors: Mirrors,
    root: Path | None = None,
    arch: str = "amd64",
    fetch: Fetch = _urlopen,
) -> tuple[Extension, ...]:
    """Download (or reuse) and unpack every extension; ``name.vsix`` ids are build-context files."""
    root = root or cache_root()
    (root / "extensions").mkdir(parents=True, exist_ok=True)
    out: list[Extension] = []
    for ext_id in ids:
        if ext_id.lower().endswith(".vsix"):
            path = (context_dir / ext_id).resolve()
            if not path.is_relative_to(context_dir.resolve()) or not path.is_file():
                raise ExtensionError(f"{ext_id}: no such .vsix file in the build context {context_dir}")
            out.append(unpack(path, root / "extensions", ext_id))
        else:
            out.append(_from_open_vsx(ext_id, mirrors, root, arch, fetch))
    return tuple(out)


def manifest(extensions: Sequence[Extension]) -> str:
    """``extensions.json`` as VS Code Server writes it after installing from a .vsix."""
    entries = [
        {
            "identifier": {"id": e.id},
            "version": e.version,
            "location": {"$mid": 1, "path": f"{EXTENSIONS_DIR}/{e.dir_name}", "scheme": "file"},
            "relativeLocation": e.dir_name,
            "metadata": {"installedTimestamp": 0, "source": "vsix", "pinned": True},
        }
        for e in extensions
    ]
    return json.dumps(entries, indent=1) + "\n"


def all_ids(c: Ctx) -> tuple[str, ...]:
    return tuple(n for call in c.spec.vscode_extensions for n in call.names)


def stage(c: Ctx, state: llb.State, extensions: Sequence[Extension], cache_dir: Path) -> tuple[llb.State, Additions]:
    if not extensions or not c.spec.dev:
        return state, Additions()
    pos = c.spec.vscode_extensions[0].pos if c.spec.vscode_extensions else None
    owner = c.owner()
    src = llb.local(
        LOCAL_NAME,
        include=[p for e in extensions for p in (e.dir_name, f"{e.dir_name}/**")],
        shared_key_hint=LOCAL_NAME,
    )
    action = llb.mkdir("/home/envd/.vscode-server", 0o755, parents=True, owner=owner).mkdir(
        EXTENSIONS_DIR, 0o755, parents=True, owner=owner
    )
    for e in extensions:
        action = action.copy(src, f"/{e.dir_name}", f"{EXTENSIONS_DIR}/{e.dir_name}", owner=owner)
    action = action.mkfile(f"{EXTENSIONS_DIR}/extensions.json", manifest(extensions), owner=owner)
    names = " ".join(f"{e.id}@{e.version}" for e in extensions)
    state = state.file(action, name=c.name(f"vscode extensions: {names}", "vscode", pos))
    return state, Additions(local_dirs={LOCAL_NAME: str(cache_dir / "extensions")})
