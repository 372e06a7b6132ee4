"""envbuild's frontend: ``build.envd`` (envd v1 Starlark) -> an immutable ``Spec``.

>>> import frontend
>>> spec = frontend.evaluate("examples/jupyter")      # dir, dir/build.envd or file.envd:func
>>> print(spec.to_json())

The errors import eagerly; the spec classes and the Starlark interpreter load on first use of
``frontend.Spec`` / ``frontend.evaluate``, because ``envbuild build``'s up-to-date check imports
``frontend.target`` (and so this package) without needing either.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import (
    EnvdError,
    EvalError,
    FrontendError,
    LimitExceeded,
    LoadError,
    NameError_,
    NetworkError,
    SyntaxError_,
    TypeError_,
    V0Syntax,
    ValueError_,
)

if TYPE_CHECKING:
    from .evaluator import evaluate
    from .spec import SCHEMA_VERSION, Pos, Spec, SpecDecodeError

_LAZY = {
    "evaluate": "frontend.evaluator",
    "SCHEMA_VERSION": "frontend.spec",
    "Pos": "frontend.spec",
    "Spec": "frontend.spec",
    "SpecDecodeError": "frontend.spec",
}

__all__ = [
    "SCHEMA_VERSION",
    "EnvdError",
    "EvalError",
    "FrontendError",
    "LimitExceeded",
    "LoadError",
    "NameError_",
    "NetworkError",
    "Pos",
    "Spec",
    "SpecDecodeError",
    "SyntaxError_",
    "TypeError_",
    "V0Syntax",
    "ValueError_",
    "evaluate",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'frontend' has no attribute {name!r}")
