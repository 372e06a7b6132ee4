"""Re-checking a spec that did not come from an evaluation (an image's ``ai.envbuild.spec`` label).

A label is untrusted: anyone can build an image with any label. `validate_runtime` replays every
setting a spec gives the runtime (``runtime.*``, ``config.jupyter``, ``config.gpu``,
``config.shm_size``) through the builtin that records it in a build file, so a label passes exactly
the checks a build file does and fails with the same message, at the position the label names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import spec as S
from .builtins import REGISTRY, bind
from .errors import EnvdError
from .recorder import Recorder

__all__ = ["validate_runtime"]


def _calls(spec: S.Spec) -> Iterator[tuple[str, dict[str, Any], S.Pos | None]]:
    """(builtin, keyword arguments, position) of the calls that would record ``spec``'s run-time settings."""
    rt = spec.runtime
    for m in rt.mounts:
        yield "runtime.mount", {"host_path": m.host_path, "envd_path": m.envd_path}, m.pos
    for e in rt.exposes:
        yield (
            "runtime.expose",
            {"envd_port": e.envd_port, "host_port": e.host_port, "service": e.service, "listen_addr": e.listen_addr},
            e.pos,
        )
    for v in rt.environ:
        yield "runtime.environ", {"env": {v.name: v.value}}, v.pos
    if rt.extra_path:
        yield "runtime.environ", {"extra_path": list(rt.extra_path)}, None
    for c in rt.commands:
        yield "runtime.command", {"commands": {c.name: c.command}}, c.pos
    for d in rt.daemons:
        yield "runtime.daemon", {"commands": [list(d.argv)]}, d.pos
    for i in rt.inits:
        yield "runtime.init", {"commands": list(i.commands)}, i.pos
    if spec.jupyter is not None:
        yield "config.jupyter", {"token": spec.jupyter.token, "port": spec.jupyter.port}, spec.jupyter.pos
    if spec.gpu is not None:
        yield "config.gpu", {"count": spec.gpu.count}, spec.gpu.pos
    if spec.shm_size is not None:
        yield "config.shm_size", {"size": spec.shm_size.size_mb}, spec.shm_size.pos


def validate_runtime(spec: S.Spec) -> None:
    """Raise the build file's own `EnvdError` (positioned) for the first run-time setting it would refuse."""
    rec = Recorder(context_dir="", target=spec.target, base=spec.base)
    for qualname, kwargs, pos in _calls(spec):
        builtin = REGISTRY[qualname]
        try:
            builtin.impl(rec, pos, **bind(builtin, (), kwargs))
        except EnvdError as exc:
            raise exc.at(pos) from None
    rec.finish()  # the rules across calls: one port exposed twice, a host port used twice
