"""What a stage in a module of its own (runtimes, conda, languages, VS Code) needs from the
compiler, and what it hands back besides the new state.

Stages are functions ``stage(c, state, ...) -> (state, Additions)``. ``c`` is the compiler itself
(``compile._Compiler`` satisfies `Ctx` structurally), so a stage names its vertices, runs scripts
with the CA secret and proxy env, and uses the shared cache mounts exactly like the compiler's own
stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Protocol

    import llb
    from envbuild.compiler.installs import CondaInstall
    from envbuild.compiler.options import CompileOptions
    from frontend.spec import Pos, Spec

    class Ctx(Protocol):
        spec: Spec
        opts: CompileOptions
        notes: list[str]
        conda_auth: list[llb.Mount]

        @property
        def uid(self) -> int: ...

        @property
        def gid(self) -> int: ...

        @property
        def home(self) -> str: ...

        def name(self, text: str, kind: str, pos: Pos | None) -> str: ...

        def sh(
            self,
            state: llb.State,
            script: str,
            *,
            name: str,
            mounts: Sequence[llb.Mount] = (),
            env: Mapping[str, str] | None = None,
            user: str = "root",
            cwd: str = "/",
            shell: str = "/bin/sh",
            network: bool = True,
        ) -> llb.State: ...

        def apt_mounts(self) -> list[llb.Mount]: ...

        def apt(
            self,
            state: llb.State,
            key: str,
            names: Sequence[str],
            *,
            name: str,
            pos: Pos | None,
            tool: bool = False,
            before: str = "",
            after: str = "",
        ) -> llb.State: ...

        def not_locked(self, what: str) -> None: ...

        def record_conda(self, install: CondaInstall) -> None: ...

        def tool_apt_mounts(self) -> list[llb.Mount]: ...

        def context(self, paths: Sequence[str]) -> llb.State: ...

        def owner(self) -> tuple[int, int] | None: ...

        def secret_file(self, secret_id: str, data: bytes, *, path: str = "") -> llb.Mount: ...


def _frozen(d: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True, slots=True)
class Additions:
    """Image-config contributions of a stage.

    ``path`` entries go before the base PATH (in stage order); ``local_dirs`` are extra local
    sources (name -> host directory) the solve must offer, besides the build context.
    """

    env: Mapping[str, str] = field(default_factory=_frozen)
    path: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=_frozen)
    local_dirs: Mapping[str, str] = field(default_factory=_frozen)

    def __add__(self, other: Additions) -> Additions:
        return Additions(
            env=_frozen({**self.env, **other.env}),
            path=tuple(dict.fromkeys((*self.path, *other.path))),
            labels=_frozen({**self.labels, **other.labels}),
            local_dirs=_frozen({**self.local_dirs, **other.local_dirs}),
        )


NONE = Additions()
