"""The compiler: an environment spec in, BuildKit LLB and an image config out (pure).

The entry point is ``envbuild.compiler.compile.compile(spec, options)`` (the submodule has the
function's name, so the package does not re-export it: the module would shadow it).
"""

from __future__ import annotations

from envbuild.compiler.compile import CompiledBuild, Step
from envbuild.compiler.options import (
    UNRESOLVED,
    BaseConfig,
    CompileOptions,
    project_name,
    proxy_from_env,
)

__all__ = [
    "UNRESOLVED",
    "BaseConfig",
    "CompileOptions",
    "CompiledBuild",
    "Step",
    "project_name",
    "proxy_from_env",
]
