"""``install.cuda``: the checked ``nvidia/cuda`` base, GPU labels, and PyTorch wheels for that CUDA.

The frontend resolves ``install.cuda(version, cudnn)`` against its dated table when the file is
evaluated; a spec read back from an image label is checked again here, so an image built from a
pair the table no longer lists fails with the list of valid choices instead of "manifest unknown".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envbuild.compiler.stagekit import Additions
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from envbuild.compiler.mirrors import Mirrors
    from frontend.spec import Spec

LABEL = "ai.envbuild."
TORCH_PACKAGES = frozenset({"torch", "torchvision", "torchaudio", "torchtext", "torchdata", "triton", "xformers"})
UPSTREAM_TORCH = "https://download.pytorch.org/whl"


class CudaSpecError(UsageError):
    """The CUDA/cuDNN pair (or the image chosen for it) is not one NVIDIA publishes."""


def check(spec: Spec) -> str:
    """The image to build from, re-validated against the table; raises `CudaSpecError`."""
    cuda = spec.cuda
    if cuda is None:
        return spec.image
    from frontend import cuda as table  # the CUDA table only for a CUDA build

    where = f"{cuda.pos}: " if cuda.pos else ""
    try:
        img = table.resolve(cuda.version, cuda.cudnn, dev=spec.dev, base_image=spec.base.image)
    except table.CudaError as e:
        raise CudaSpecError(f"{where}install.cuda(): {e}") from None
    if img.image != cuda.image:
        raise CudaSpecError(
            f"{where}install.cuda(): the spec names {cuda.image} but this envbuild's CUDA table "
            f"(dated {table.table()['date']}) resolves it to {img.image}; re-evaluate build.envd"
        )
    return img.image


def labels(spec: Spec) -> dict[str, str]:
    cuda = spec.cuda
    if cuda is None:
        return {LABEL + "gpu": "false"}
    return {LABEL + "gpu": "true", LABEL + "cuda": cuda.version, LABEL + "cudnn": cuda.cudnn or "none"}


def _base_name(requirement: str) -> str:
    import re  # only for CUDA specs: the others need no regular expression here

    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return re.sub(r"[-_.]+", "-", m[1]).lower() if m else ""


def torch_index(spec: Spec, mirrors: Mirrors) -> str | None:
    """The PyTorch wheel index for this CUDA, on the PyTorch mirror when one is set."""
    if spec.cuda is None or not spec.cuda.torch_index:
        return None
    url = spec.cuda.torch_index.rstrip("/")
    if url.startswith(UPSTREAM_TORCH):
        url = mirrors.pytorch + url[len(UPSTREAM_TORCH) :]
    return url


def pip_env(spec: Spec, names: Sequence[str], mirrors: Mirrors) -> dict[str, str]:
    """Extra uv env for one ``python_packages`` call (cog-style): when it asks for PyTorch in a CUDA
    environment and the user set no index, the matching wheel index comes first for the torch
    packages (uv's first-index strategy), PyPI stays the default for everything else."""
    if spec.cuda is None or spec.pip_index is not None or not any(_base_name(n) in TORCH_PACKAGES for n in names):
        return {}
    url = torch_index(spec, mirrors)
    return {"UV_INDEX": f"pytorch={url}"} if url else {}


def additions(spec: Spec) -> Additions:
    return Additions(labels=labels(spec))
