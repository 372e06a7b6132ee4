"""Test helper: a conda channel written with the standard library (noarch packages + repodata)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    files: dict[str, str]
    depends: tuple[str, ...] = ()
    executables: tuple[str, ...] = field(default_factory=tuple)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def build_package(pkg: Package) -> tuple[str, bytes, dict[str, object]]:
    build = "0"
    fn = f"{pkg.name}-{pkg.version}-{build}.tar.bz2"
    index = {
        "name": pkg.name,
        "version": pkg.version,
        "build": build,
        "build_number": 0,
        "depends": list(pkg.depends),
        "noarch": "generic",
        "subdir": "noarch",
        "license": "MIT",
        "timestamp": 1_700_000_000_000,
    }
    paths = {
        "paths": [
            {
                "_path": p,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(body.encode()).hexdigest(),
                "size_in_bytes": len(body.encode()),
            }
            for p, body in sorted(pkg.files.items())
        ],
        "paths_version": 1,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        _add(tar, "info/index.json", json.dumps(index).encode())
        _add(tar, "info/paths.json", json.dumps(paths).encode())
        _add(tar, "info/files", "".join(p + "\n" for p in sorted(pkg.files)).encode())
        for p, body in sorted(pkg.files.items()):
            _add(tar, p, body.encode(), 0o755 if p in pkg.executables else 0o644)
    data = buf.getvalue()
    record = {
        **index,
        "md5": hashlib.md5(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    return fn, data, record


def write_channel(root: Path, packages: list[Package]) -> Path:
    """``root/noarch/*.tar.bz2`` + ``noarch/repodata.json`` + an empty ``linux-64/repodata.json``."""
    noarch = root / "noarch"
    noarch.mkdir(parents=True, exist_ok=True)
    records: dict[str, object] = {}
    for pkg in packages:
        fn, data, record = build_package(pkg)
        (noarch / fn).write_bytes(data)
        records[fn] = record
    (noarch / "repodata.json").write_text(json.dumps({"info": {"subdir": "noarch"}, "packages": records}))
    for sub in ("linux-64", "linux-aarch64"):
        (root / sub).mkdir(exist_ok=True)
        (root / sub / "repodata.json").write_text(json.dumps({"info": {"subdir": sub}, "packages": {}}))
    return root


def demo_packages() -> list[Package]:
    """``greet`` (a script) depends on ``greeting-data`` (a text file it prints)."""
    return [
        Package("greeting-data", "1.0", {"share/greeting/text.txt": "hello from a stdlib conda package\n"}),
        Package(
            "greet",
            "2.1",
            {"bin/greet": '#!/bin/sh\nd=$(dirname "$0")/..\ncat "$d/share/greeting/text.txt"\n'},
            depends=("greeting-data >=1.0",),
            executables=("bin/greet",),
        ),
    ]
