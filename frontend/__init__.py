"""envbuild's frontend: ``build.envd`` (envd v1 Starlark) -> an immutable ``Spec``.

>>> import frontend
>>> spec = frontend.evaluate("examples/jupyter")      # dir, dir/build.envd or file.envd:func
>>> print(spec.to_json())

Importing this package is cheap: the Starlark interpreter loads on the first ``evaluate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    EnvdError,
    EvalError,
    FrontendError,
    LimitExceeded,
    LoadError,
    NameError_,
    SyntaxError_,
    TypeError_,
    V0Syntax,
    ValueError_,
)
from .spec import SCHEMA_VERSION, Pos, Spec, SpecDecodeError

if TYPE_CHECKING:
    from .evaluator import evaluate

__all__ = [
    "SCHEMA_VERSION",
    "EnvdError",
    "EvalError",
    "FrontendError",
    "LimitExceeded",
    "LoadError",
    "NameError_",
    "Pos",
    "Spec",
    "SpecDecodeError",
    "SyntaxError_",
    "TypeError_",
    "V0Syntax",
    "ValueError_",
    "evaluate",
]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from .evaluator import evaluate

        return evaluate
    raise AttributeError(f"module 'frontend' has no attribute {name!r}")
