"""CUDA knowledge as data: which ``nvidia/cuda`` tags exist, and which PyTorch index matches.

envd formats ``nvidia/cuda:<v>-cudnn<c>-<devel|runtime>-ubuntu22.04`` blindly, so a pair NVIDIA never
published (or a spelling NVIDIA changed, like ``-cudnn-`` without a digit since CUDA 12.4) fails late
with "manifest unknown". Here the pair is checked against ``data/cuda.json`` at evaluation time and
the error lists what exists. ``scripts/refresh-cuda-table.py`` regenerates the table.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache

from ._record import record

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~4 ms of start-up
if TYPE_CHECKING:
    from typing import Any

TABLE_PATH = os.path.join(os.path.dirname(__file__), "data", "cuda.json")
DEFAULT_UBUNTU = "22.04"


class CudaError(ValueError):
    """No published image matches; the message lists the valid choices."""


@record
class CudaImage:
    version: str
    cudnn: str
    image: str
    ubuntu: str
    torch_index: str | None
    warnings: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    with open(TABLE_PATH, "rb") as f:
        return json.loads(f.read().decode("utf-8"))  # type: ignore[no-any-return]


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


def resolve(version: str, cudnn: str | None, *, dev: bool, base_image: str) -> CudaImage:
    """Pick the ``nvidia/cuda`` image for ``install.cuda(version, cudnn)`` in this environment.

    ``cudnn`` None means the newest cuDNN NVIDIA published for that CUDA; ``""`` means no cuDNN.
    A version without a patch (``12.8``) resolves to the newest patch in the table, with a warning.
    """
    t = table()
    known = t["versions"]
    warnings: list[str] = []
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?", version):
        raise CudaError(f"CUDA version {version!r} is not a version number like '12.1.1'")
    if version not in known:
        same_minor = [v for v in versions() if v.startswith(version + ".")] if version.count(".") == 1 else []
        if same_minor:
            warnings.append(f"CUDA {version} resolved to {same_minor[-1]} (pin the patch version to be exact)")
            version = same_minor[-1]
        else:
            minor = ".".join(version.split(".")[:2])
            near = [v for v in versions() if v.startswith(minor + ".")]
            choices = ", ".join(near or versions())
            raise CudaError(
                f"nvidia/cuda has no images for CUDA {version} (table dated {t['date']}); "
                f"valid versions: {choices}"
            )
    entry = known[version]
    cudnn_tags: dict[str, str] = entry["cudnn"]
    if cudnn is None:
        cudnn = entry["default_cudnn"]
    cudnn = cudnn.strip().lower().removeprefix("cudnn")
    if cudnn and cudnn not in cudnn_tags:
        major = cudnn.split(".")[0]
        if major in cudnn_tags:
            cudnn = major
        else:
            valid = ", ".join([repr(c) for c in cudnn_tags] + ["'' (no cuDNN)"])
            raise CudaError(
                f"nvidia/cuda has no image with cuDNN {cudnn} for CUDA {version}; valid cudnn values: {valid}"
            )
    ubuntu = _ubuntu_of(base_image)
    if ubuntu is None:
        ubuntu = DEFAULT_UBUNTU if DEFAULT_UBUNTU in entry["ubuntu"] else entry["ubuntu"][-1]
        warnings.append(
            f"install.cuda replaces base image {base_image!r} with an Ubuntu {ubuntu} CUDA image; "
            f"use base(image=\"ubuntu:{ubuntu}\") to make this explicit"
        )
    elif ubuntu not in entry["ubuntu"]:
        raise CudaError(
            f"nvidia/cuda has no CUDA {version} images for Ubuntu {ubuntu}; "
            f"valid Ubuntu versions: {', '.join(entry['ubuntu'])}"
        )
    variant = "devel" if dev else "runtime"
    parts = [version] + ([cudnn_tags[cudnn]] if cudnn else []) + [variant, f"ubuntu{ubuntu}"]
    image = f"{t['repository']}:{'-'.join(parts)}"
    return CudaImage(version, cudnn, image, ubuntu, torch_index(version), tuple(warnings))
