"""envbuild's frontend: ``build.envd`` (envd v1 Starlark) -> an immutable ``Spec``.

>>> import frontend
>>> spec = frontend.evaluate("examples/jupyter")      # dir, dir/build.envd or file.envd:func
>>> print(spec.to_json())

Importing this package is cheap (errors only): the spec classes and the Starlark interpreter load on
first use of ``frontend.Spec`` / ``frontend.evaluate``.
"""

from __future__ import annotations

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

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: importing typing would double the import time
if TYPE_CHECKING:
    from typing import Any

    from .evaluator import evaluate
    from .spec import SCHEMA_VERSION, Pos, Spec, SpecDecodeError

_SPEC_NAMES = frozenset({"SCHEMA_VERSION", "Pos", "Spec", "SpecDecodeError"})

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
    """Lazy exports: the spec classes (~45 records) and the interpreter load on first use."""
    if name == "evaluate":
        from .evaluator import evaluate

        return evaluate
    if name in _SPEC_NAMES:
        from . import spec

        return getattr(spec, name)
    raise AttributeError(f"module 'frontend' has no attribute {name!r}")
