"""CUDA knowledge as data: which ``nvidia/cuda`` tags exist, and which PyTorch index matches.

envd formats ``nvidia/cuda:<v>-cudnn<c>-<devel|runtime>-ubuntu22.04`` blindly, so a pair NVIDIA never
published (or a spelling NVIDIA changed, like ``-cudnn-`` without a digit since CUDA 12.4) fails late
with "manifest unknown". Here the pair is checked against ``data/cuda.json`` at evaluation time and
the error lists what exists. ``scripts/refresh-cuda-table.py`` regenerates the table.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).with_name("data") / "cuda.json"
DEFAULT_UBUNTU = "22.04"


class CudaError(ValueError):
    """No published image matches; the message lists the valid choices."""


class UbuntuMismatch(CudaError):
    """The named Ubuntu has no image for this CUDA; ``valid`` are the Ubuntu versions that do."""

    def __init__(self, message: str, valid: tuple[str, ...]) -> None:
        super().__init__(message)
        self.valid = valid


@dataclass(frozen=True, slots=True)
class CudaImage:
    version: str
    cudnn: str
    image: str
    ubuntu: str
    torch_index: str | None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@functools.cache
def table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    return data


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def versions() -> list[str]:
    return sorted(table()["versions"], key=_vkey)


def torch_index(version: str) -> str | None:
    """PyTorch wheel index URL for a CUDA version (``12.1.1`` -> ``.../whl/cu121``), or None."""
    t = table()
    minor = ".".join(version.split(".")[:2])
    suffix = t["torch_index"].get(minor)
    return t["torch_index_base"] + suffix if suffix else None


def _ubuntu_of(base_image: str) -> str | None:
    m = re.fullmatch(r"(?:(?:docker\.io/)?(?:library/)?)ubuntu:(\d\d\.\d\d)(?:@.*)?", base_image)
    return m[1] if m else None


def _table_version(version: str) -> tuple[str, str, list[str]]:
    """(the version to use, the table entry whose tags it follows, warnings).

    ``12.8`` becomes the newest ``12.8.x`` of the table; a well-formed ``X.Y.Z`` the table does not
    know (newer than its date, say) follows the nearest older entry's tag spelling, with a warning:
    whether the image exists is then for the registry to say.
    """
    t = table()
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
        raise CudaError(f"CUDA version {version!r} is not a version number like '12.1.1'")
    if version in t["versions"]:
        return version, version, []
    known = versions()
    if version.count(".") == 1:
        same_minor = [v for v in known if v.startswith(version + ".")]
        if same_minor:
            warning = f"CUDA {version} resolved to {same_minor[-1]} (pin the patch version to be exact)"
            return same_minor[-1], same_minor[-1], [warning]
    else:
        older = [v for v in known if _vkey(v) < _vkey(version)]
        if older:
            return (
                version,
                older[-1],
                [
                    f"CUDA {version} is not in envbuild's table of nvidia/cuda images (dated {t['date']}); its tag "
                    f"is spelled like {older[-1]}'s, and the build fails if the registry has no such image"
                ],
            )
    minor = ".".join(version.split(".")[:2])
    near = [v for v in known if v.startswith(minor + ".")]
    raise CudaError(
        f"nvidia/cuda has no images for CUDA {version} (table dated {t['date']}); "
        f"valid versions: {', '.join(near or known)}"
    )


def _cudnn(version: str, cudnn: str | None) -> str:
    """The cuDNN key of the table entry (``""`` for none); None picks the newest for that CUDA."""
    entry = table()["versions"][version]
    tags: dict[str, str] = entry["cudnn"]
    if cudnn is None:
        cudnn = str(entry["default_cudnn"])
    cudnn = cudnn.strip().lower().removeprefix("cudnn")
    if not cudnn or cudnn in tags:
        return cudnn
    major = cudnn.split(".")[0]
    if major in tags:
        return major
    valid = ", ".join([repr(c) for c in tags] + ["'' (no cuDNN)"])
    raise CudaError(f"nvidia/cuda has no image with cuDNN {cudnn} for CUDA {version}; valid cudnn values: {valid}")


def check_pair(version: str, cudnn: str | None) -> None:
    """Raise ``CudaError`` unless this CUDA/cuDNN pair can name an image (on some Ubuntu)."""
    _, entry, _ = _table_version(version)
    _cudnn(entry, cudnn)


def resolve(version: str, cudnn: str | None, *, dev: bool, base_image: str, base_named: bool = True) -> CudaImage:
    """Pick the ``nvidia/cuda`` image for ``install.cuda(version, cudnn)`` in this environment.

    ``cudnn`` None means the newest cuDNN NVIDIA published for that CUDA; ``""`` means no cuDNN.
    ``base_named`` False: the file names no base image, so the Ubuntu is envd's default (22.04) when
    NVIDIA publishes the version for it, else the newest Ubuntu that has it (``CudaImage.ubuntu``;
    the caller makes it the base), with a note.
    """
    t = table()
    version, key, warnings = _table_version(version)
    cudnn = _cudnn(key, cudnn)
    entry = t["versions"][key]
    valid: list[str] = entry["ubuntu"]
    notes: list[str] = []
    ubuntu = _ubuntu_of(base_image)
    if not base_named:
        ubuntu = DEFAULT_UBUNTU if DEFAULT_UBUNTU in valid else valid[-1]
        if ubuntu != DEFAULT_UBUNTU:
            notes.append(
                f"no base image is named and nvidia/cuda has no CUDA {version} image for Ubuntu {DEFAULT_UBUNTU} "
                f'(envd\'s default): the environment is Ubuntu {ubuntu}; write base(image="ubuntu:{ubuntu}") '
                "to say so in the file"
            )
    elif ubuntu is None:
        ubuntu = DEFAULT_UBUNTU if DEFAULT_UBUNTU in valid else valid[-1]
        warnings.append(
            f"install.cuda replaces base image {base_image!r} with an Ubuntu {ubuntu} CUDA image; "
            f'use base(image="ubuntu:{ubuntu}") to make this explicit'
        )
    elif ubuntu not in valid:
        raise UbuntuMismatch(
            f"nvidia/cuda has no CUDA {version} images for Ubuntu {ubuntu}; valid Ubuntu versions: {', '.join(valid)}",
            tuple(valid),
        )
    variant = "devel" if dev else "runtime"
    parts = [version] + ([entry["cudnn"][cudnn]] if cudnn else []) + [variant, f"ubuntu{ubuntu}"]
    image = f"{t['repository']}:{'-'.join(parts)}"
    return CudaImage(version, cudnn, image, ubuntu, torch_index(version), tuple(warnings), tuple(notes))
