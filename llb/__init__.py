"""llb: build BuildKit LLB graphs in Python and solve them on a BuildKit builder.

The graph builder (`image`, `State.run`, `State.file`, `marshal`, ...) is pure
Python with no daemon and no gRPC. The client (`connect`, exports, progress)
is imported on first use, so `import llb` stays cheap.
"""

from __future__ import annotations

import sys

from .definition import MAX_DEFINITION_BYTES, Definition
from .errors import (
    BuilderUnreachable,
    Cancelled,
    ConnectionError_,
    ExecError,
    InvalidGraph,
    LLBError,
    SolveError,
    UnsupportedByBuilder,
)
from .exec import ExecState, Mount, ProxyEnv, bind, cache, secret, ssh, tmpfs
from .fileop import FileAction, Owner, copy, mkdir, mkfile, rm
from .platform import Platform
from .source import DEFAULT_PATH, git, http, image, local, normalize_image_ref, scratch
from .state import Network, State

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs ~4 ms of start-up
if TYPE_CHECKING:
    from typing import Any
    from .client import *  # noqa: F403
    from .export import *  # noqa: F403
    from .progress import *  # noqa: F403

# Client-side names, resolved on first access so that `import llb` never imports grpc.
_LAZY: dict[str, str] = {
    "connect": "client",
    "Client": "client",
    "TLSConfig": "client",
    "WorkerInfo": "client",
    "SolveResult": "client",
    "VertexInfo": "progress",
    "Export": "export",
    "DockerImage": "export",
    "ImageExport": "export",
    "LocalExport": "export",
    "TarExport": "export",
    "OCIExport": "export",
    "DockerTarExport": "export",
    "ImageConfig": "export",
    "CacheOption": "export",
    "ProgressEvent": "progress",
    "VertexEvent": "progress",
    "StatusEvent": "progress",
    "LogEvent": "progress",
}
_LAZY_MODULES = ("client", "export", "progress")


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module 'llb' has no attribute {name!r}")
    for module_name in (home, *(m for m in _LAZY_MODULES if m != home)):
        try:
            __import__(f"{__name__}.{module_name}")  # not importlib: ~0.5 ms of every start-up
            module = sys.modules[f"{__name__}.{module_name}"]
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module_name}":
                raise
            continue
        if hasattr(module, name):
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module 'llb' has no attribute {name!r} (the client part of llb does not provide it)")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    # graph builder
    "State",
    "ExecState",
    "Network",
    "Platform",
    "Definition",
    "MAX_DEFINITION_BYTES",
    "DEFAULT_PATH",
    "image",
    "local",
    "scratch",
    "git",
    "http",
    "normalize_image_ref",
    "Mount",
    "ProxyEnv",
    "bind",
    "cache",
    "secret",
    "ssh",
    "tmpfs",
    "FileAction",
    "Owner",
    "mkdir",
    "mkfile",
    "rm",
    "copy",
    # errors
    "LLBError",
    "InvalidGraph",
    "BuilderUnreachable",
    "ConnectionError_",
    "SolveError",
    "ExecError",
    "Cancelled",
    "UnsupportedByBuilder",
    # client (lazy)
    *_LAZY,
]
