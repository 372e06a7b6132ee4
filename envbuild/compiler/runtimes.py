"""Stage 5 of the compiler's order: language runtimes (conda, R, Julia, Rust, Go, Node.js, pixi, uv),
and the codex agent (envd installs it after ``io.copy``; a download that rarely changes sits better here).

`compile._Compiler` calls ``stage(self, state, base, uv_tools, mirrors)`` right after the envd user
is made: ``base`` is the state after ``config.apt_source`` (the download and py-rattler tool stages
start there and run beside the main chain) and ``uv_tools`` the uv tool stage (needed for
``install.uv`` and for pip into a conda env). When conda owns Python the compiler makes no venv of
its own and points uv at `python_prefix` (``UV_PYTHON``). The returned `Additions` carry env and
PATH entries for the image, labels and the host directories a stage mounts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envbuild.compiler import cuda
from envbuild.compiler.stagekit import Additions

if TYPE_CHECKING:
    import llb
    from envbuild.compiler.mirrors import Mirrors
    from envbuild.compiler.stagekit import Ctx

_DOWNLOADED = ("julia", "rust", "go", "nodejs", "pixi", "codex")
"""Runtimes fetched as release archives by one download stage."""


def python_prefix(c: Ctx) -> str | None:
    """Where ``python_packages`` go when conda owns Python (envd: the conda env ``envd``)."""
    if c.spec.conda is None or not c.spec.python:
        return None
    from envbuild.compiler import conda

    return conda.ENV


def stage(
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
        for fn in (languages.julia, languages.rust, languages.go, languages.nodejs, languages.pixi, languages.codex):
            state, a = fn(c, state, tools, mirrors)
            add += a
    if spec.uv is not None:
        if uv_tools is None:
            raise ValueError("install.uv needs the uv tool stage")
        state, a = languages.uv(c, state, uv_tools)
        add += a
    return state, add
