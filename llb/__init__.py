"""llb: build BuildKit LLB graphs in Python and solve them on a BuildKit builder.

The graph builder (`image`, `State.run`, `State.file`, `merge`, `diff`, `marshal`, ...) needs no
daemon and no gRPC. The client (`connect`, exports, progress) is imported on
first use, so a program that only builds graphs does not load the gRPC stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .definition import MAX_DEFINITION_BYTES, Definition
from .errors import (
    BuilderUnreachable,
    Cancelled,
    ConnectionError_,
    DefinitionTooLarge,
    ExecError,
    InvalidGraph,
    LLBError,
    SolveError,
    UnsupportedByBuilder,
)
from .exec import ExecState, Mount, ProxyEnv, bind, cache, secret, ssh, tmpfs
from .fileop import FileAction, Owner, copy, mkdir, mkfile, rm
from .merge import diff, merge
from .platform import Platform
from .source import DEFAULT_PATH, git, http, image, local, normalize_image_ref, scratch
from .state import Network, State

if TYPE_CHECKING:
    from .capabilities import Cap, Capabilities, WorkerInfo
    from .client import Client, SolveResult, connect
    from .connection import TLSConfig
    from .export import (
        CacheOption,
        DockerImage,
        DockerTarExport,
        Export,
        ImageConfig,
        ImageExport,
        LocalExport,
        OCIExport,
        TarExport,
    )
    from .progress import LogEvent, ProgressEvent, StatusEvent, VertexEvent, VertexInfo

# The client side (gRPC, sessions, exports), imported on first access: a program that only builds
# and marshals graphs, such as `envbuild debug llb`, never loads grpc.
_LAZY: dict[str, str] = {
    "connect": "client",
    "Client": "client",
    "TLSConfig": "connection",
    "WorkerInfo": "capabilities",
    "Capabilities": "capabilities",
    "Cap": "capabilities",
    "SolveResult": "client",
    "Export": "export",
    "DockerImage": "export",
    "ImageExport": "export",
    "LocalExport": "export",
    "TarExport": "export",
    "OCIExport": "export",
    "DockerTarExport": "export",
    "ImageConfig": "export",
    "CacheOption": "export",
    "VertexInfo": "progress",
    "ProgressEvent": "progress",
    "VertexEvent": "progress",
    "StatusEvent": "progress",
    "LogEvent": "progress",
}


def __getattr__(name: str) -> Any:
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module 'llb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


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
    "merge",
    "diff",
    # errors
    "LLBError",
    "InvalidGraph",
    "DefinitionTooLarge",
    "BuilderUnreachable",
    "ConnectionError_",
    "SolveError",
    "ExecError",
    "Cancelled",
    "UnsupportedByBuilder",
    # client (imported on first use, see _LAZY)
    "connect",
    "Client",
    "TLSConfig",
    "WorkerInfo",
    "Capabilities",
    "Cap",
    "SolveResult",
    "Export",
    "DockerImage",
    "ImageExport",
    "LocalExport",
    "TarExport",
    "OCIExport",
    "DockerTarExport",
    "ImageConfig",
    "CacheOption",
    "VertexInfo",
    "ProgressEvent",
    "VertexEvent",
    "StatusEvent",
    "LogEvent",
]
