"""What a build installs with a package manager, where, and from what request.

The compiler records these while it compiles (`CompiledBuild.installs`); ``envbuild lock`` resolves
each request on the very state the build's step runs on (`envbuild.lockresolve`), so what the lock
pins is what that step would install.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    import llb


@dataclass(frozen=True, slots=True)
class AptInstall:
    """An apt transaction of the build, for `envbuild.lockresolve`: apt is asked what ``names``
    install on ``before`` (the state the step runs on), with the step's ``mounts`` and ``mirror``;
    ``words`` are what the step asks apt for (``name=version`` where a lock pins them)."""

    key: str
    step: str
    names: tuple[str, ...]
    words: tuple[str, ...]
    before: llb.State
    mounts: tuple[llb.Mount, ...]
    mirror: str = ""


@dataclass(frozen=True, slots=True)
class PythonInstall:
    """Every Python package the build installs into its environment, for one resolution: the
    ``requirements`` lines (context files at their container paths) with the uv ``options`` and
    ``env``, for ``python`` on ``before`` (the venv made, nothing installed yet), as ``uid``/``gid``.
    ``problems`` are options one resolution cannot honour (the lock refuses them)."""

    before: llb.State
    python: str
    requirements: tuple[str, ...]
    options: tuple[str, ...]
    env: Mapping[str, str]
    mounts: tuple[llb.Mount, ...]
    uid: int
    gid: int
    home: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CondaInstall:
    """The conda environment's packages, for one solve: ``specs`` with ``args`` (channels, files),
    by the conda command on ``before``, with the steps' ``mounts`` and ``env``."""

    before: llb.State
    specs: tuple[str, ...]
    args: tuple[str, ...]
    mounts: tuple[llb.Mount, ...]
    env: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Installs:
    """What the build installs with a package manager, where, and from what request: the lock is
    resolved on exactly these states (`envbuild.lockresolve`)."""

    apt: tuple[AptInstall, ...] = ()
    python: PythonInstall | None = None
    conda: CondaInstall | None = None
