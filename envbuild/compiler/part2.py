"""The part-2 stages in the compiler's stage order, as three calls `compile._Compiler` makes.

Wiring (compile.py):

* stage 5, language runtimes, right after ``dev_user``: ``state, add = runtimes(self, state, base,
  uv_tools, mirrors)`` where ``base`` is the state after ``config.apt_source`` (the fetch and
  py-rattler tool stages start there and run in parallel) and ``uv_tools`` the uv tool stage (needed
  for ``install.uv`` and for pip into a conda env). When `python_in_conda` is true the compiler
  skips its own venv and points uv at `python_prefix` (``UV_PYTHON``).
* stage 7, each ``python_packages`` call: ``env.update(cuda.pip_env(spec, call.names, mirrors))``.
* stage 9, IDE: ``state, add2 = ide(self, state, extensions, cache_dir)`` with the extensions
  `vscode.prepare` made on the host before compiling.

``add`` env/PATH go into ``final_env`` (PATH entries before the base PATH), labels into the image
labels (`cuda.labels`), ``local_dirs`` into ``CompiledBuild.local_dirs`` with their host paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envbuild.compiler import cuda
from envbuild.compiler.stagekit import Additions

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import llb
    from envbuild.compiler import vscode
    from envbuild.compiler.mirrors import Mirrors
    from envbuild.compiler.stagekit import Ctx

_DOWNLOADED = ("julia", "rust", "go", "nodejs", "pixi")

SUPPORTED = frozenset(
    {
        "install.conda", "install.conda_packages", "install.uv", "install.pixi", "install.r_lang",
        "install.r_packages", "install.julia", "install.julia_packages", "install.rust", "install.go",
        "install.nodejs", "install.vscode_extensions",
    }
)
"""Features the part-1 ``check_supported`` can stop refusing once these stages are called."""


def python_in_conda(c: Ctx) -> bool:
    return c.spec.conda is not None


def python_prefix(c: Ctx) -> str | None:
    """Where ``python_packages`` go when conda owns Python (envd: the conda env ``envd``)."""
    if not (python_in_conda(c) and c.spec.python):
        return None
    from envbuild.compiler import conda

    return conda.ENV


def runtimes(
    c: Ctx, state: llb.State, base: llb.State, uv_tools: llb.State | None, mirrors: Mirrors
) -> tuple[llb.State, Additions]:
    """conda, R, Julia, Rust, Go, Node.js, pixi, uv: least to most likely to change, in envd's order."""
    spec = c.spec
    add = cuda.additions(spec)
    if spec.conda is not None:
        from envbuild.compiler import conda

        state, a = conda.stage(c, state, conda.tool_stage(c, base), mirrors)
        add += a
    downloads = any(getattr(spec, n) is not None for n in _DOWNLOADED)
    if spec.r_lang is None and not spec.r_packages and spec.uv is None and not downloads:
        return state, add
    from envbuild.compiler import languages

    state, a = languages.r_lang(c, state, mirrors)
    add += a
    if downloads:
        tools = languages.fetch_tools(c, base)
        for fn in (languages.julia, languages.rust, languages.go, languages.nodejs, languages.pixi):
            state, a = fn(c, state, tools, mirrors)
            add += a
    if spec.uv is not None:
        if uv_tools is None:
            raise ValueError("install.uv needs the uv tool stage")
        state, a = languages.uv(c, state, uv_tools)
        add += a
    return state, add


def ide(
    c: Ctx, state: llb.State, extensions: Sequence[vscode.Extension], cache_dir: str | Path | None = None
) -> tuple[llb.State, Additions]:
    from pathlib import Path

    from envbuild.compiler import vscode

    return vscode.stage(c, state, extensions, Path(cache_dir) if cache_dir else vscode.cache_root())
