"""The compiler: an environment spec in, BuildKit LLB and an image config out (pure).

The entry point is ``envbuild.compiler.compile.compile(spec, options)`` (the submodule has the
function's name, so the package does not re-export it: the module would shadow it). Names load lazily
so the no-op build path (options, project name) does not import llb/protobuf.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from envbuild.compiler.options import (
    UNRESOLVED,
    BaseConfig,
    CompileOptions,
    project_name,
    proxy_from_env,
)

if TYPE_CHECKING:
    from typing import Any

    from envbuild.compiler.compile import CompiledBuild, Step, UnsupportedFeature

_LAZY = {"CompiledBuild", "Step", "UnsupportedFeature"}

__all__ = [
    "UNRESOLVED",
    "BaseConfig",
    "CompileOptions",
    "CompiledBuild",
    "Step",
    "UnsupportedFeature",
    "project_name",
    "proxy_from_env",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        __import__("envbuild.compiler.compile")  # not importlib: ~0.5 ms of start-up
        value = getattr(sys.modules["envbuild.compiler.compile"], name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'envbuild.compiler' has no attribute {name!r}")
