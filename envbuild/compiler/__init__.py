"""The compiler: an environment spec in, BuildKit LLB and an image config out (pure)."""

from __future__ import annotations

from envbuild.compiler.compile import CompiledBuild, Step, UnsupportedFeature, compile, project_name
from envbuild.compiler.options import UNRESOLVED, BaseConfig, CompileOptions, proxy_from_env

__all__ = [
    "UNRESOLVED",
    "BaseConfig",
    "CompileOptions",
    "CompiledBuild",
    "Step",
    "UnsupportedFeature",
    "compile",
    "project_name",
    "proxy_from_env",
]
