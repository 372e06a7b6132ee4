"""The environment spec: what a ``build.envd`` asks for, as immutable typed values.

The spec is the only thing ``frontend`` hands to the rest of envbuild. It is a tree of frozen
dataclasses that serialises to JSON (``Spec.to_json`` / ``Spec.from_json``) so the compiler can
store it in an image label and ``envbuild up`` can read it back without the build files.

Semantics:

* **envd v1 semantics** (same meaning as envd's graph): ``base``, ``shell``, every ``install.*``,
  ``config.*``, ``runtime.*`` and ``io.*`` record, ``git_config``, and ``runs`` in call order.
  Repeated package calls accumulate, one element per call, because envd builds one layer per call.
  Singletons (``install.python``, ``config.jupyter``, ...) keep the last call.
* **envbuild extensions**: ``Pos`` on every element (errors from later stages point at the call
  that caused them); ``Cuda.image``/``Cuda.torch_index`` resolved from the dated CUDA table;
  ``Mount.create`` for ``data.envd`` directories; ``inputs`` (context-relative files the build
  reads, for content-hash rebuild checks instead of envd's mtime check); ``source_files`` with
  content digests; ``target`` (the evaluated function); ``warnings``; and ``schema``.
  ``config.conda_channel`` is recorded regardless of call order (envd errors if it precedes
  ``install.conda()``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

_T = TypeVar("_T")

SCHEMA_VERSION = 1
"""Bumped on any incompatible change; ``from_json`` refuses a different version."""

DEFAULT_BASE_IMAGE = "ubuntu:22.04"
DEFAULT_PYTHON = "3.11"
DEFAULT_SHELL = "bash"
DEFAULT_GO = "1.25.3"
DEFAULT_NODEJS = "25.1.0"
DEFAULT_CRAN_MIRROR = "https://cran.rstudio.com"
JUPYTER_CONTAINER_PORT = 8888
RSTUDIO_CONTAINER_PORT = 8787
SSH_CONTAINER_PORT = 2222


class SpecDecodeError(ValueError):
    """Raised when JSON does not describe a spec this version understands (e.g. a newer schema)."""


@dataclass(frozen=True, slots=True)
class Pos:
    """Where a call was made. ``file`` is a label: context-relative path, user config or git URL."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Base:
    image: str = DEFAULT_BASE_IMAGE
    dev: bool = False
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Shell:
    name: str = DEFAULT_SHELL
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Python:
    version: str = DEFAULT_PYTHON
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Conda:
    use_mamba: bool = False
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Uv:
    python_version: str = DEFAULT_PYTHON
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Pixi:
    use_pixi_mirror: bool = False
    pypi_index: str | None = None
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Cuda:
    """``install.cuda``: ``image`` is the resolved ``nvidia/cuda`` reference (it replaces the base).

    ``torch_index`` is the PyTorch wheel index for this CUDA version (None when PyTorch publishes
    none), so the compiler can install ``torch`` built for the right CUDA.
    """

    version: str
    cudnn: str
    image: str
    torch_index: str | None = None
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class RLang:
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Julia:
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Rust:
    version: str | None = None
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Go:
    version: str = DEFAULT_GO
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class NodeJS:
    version: str = DEFAULT_NODEJS
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Codex:
    """``version`` None means "latest", resolved by the compiler (envd asks GitHub at compile time)."""

    version: str | None = None
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class AptPackages:
    names: tuple[str, ...]
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class PipOptions:
    """pip options written inside ``install.python_packages(name=[...])`` strings, as envd passes
    them to pip: ``"torch --index-url https://download.pytorch.org/whl/cpu"``. They apply to that
    call's step only. URLs hold no credentials (those go through ``config.pip_index``)."""

    index_url: str = ""
    """``--index-url``/``-i``: replaces the default index."""
    extra_index_urls: tuple[str, ...] = ()
    """``--extra-index-url``, in order."""
    find_links: tuple[str, ...] = ()
    """``--find-links``/``-f``: pages or directories of links to archives."""
    trusted_hosts: tuple[str, ...] = ()
    """``--trusted-host``: hosts reached without TLS verification."""
    pre: bool = False
    """``--pre``: pre-releases allowed."""
    no_deps: bool = False
    """``--no-deps``."""
    upgrade: bool = False
    """``--upgrade``/``-U``."""
    no_build_isolation: bool = False
    """``--no-build-isolation``."""


@dataclass(frozen=True, slots=True)
class LineEdit:
    """Physical lines ``first``..``last`` of a requirements file, as uv must read them: ``text``
    (pip options moved off a requirement line onto lines of their own, its hashes kept)."""

    first: int
    last: int
    text: str


@dataclass(frozen=True, slots=True)
class RequirementsFile:
    """A requirements file a call reads, and its lines uv must read differently (`frontend.pip`)."""

    path: str
    edits: tuple[LineEdit, ...] = ()


@dataclass(frozen=True, slots=True)
class PythonPackages:
    """One ``install.python_packages`` call; paths are relative to the build context.

    ``names`` are requirements after shell splitting (envd's reading); ``options`` the pip options
    found among them; ``requirements_files`` every requirements file the call reads: its own, then
    those it names with ``-r``/``-c`` (envd mounts the whole context for such a file)."""

    names: tuple[str, ...] = ()
    requirements: str | None = None
    local_wheels: tuple[str, ...] = ()
    pos: Pos | None = None
    options: PipOptions = field(default_factory=PipOptions)
    requirements_files: tuple[RequirementsFile, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        """The context files the call reads: requirements files (nested ones too) and wheels."""
        reqs = [f.path for f in self.requirements_files] or ([self.requirements] if self.requirements else [])
        return (*reqs, *self.local_wheels)


@dataclass(frozen=True, slots=True)
class CondaPackages:
    names: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    env_file: str | None = None
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class RPackages:
    names: tuple[str, ...]
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class JuliaPackages:
    names: tuple[str, ...]
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class VSCodeExtensions:
    """Extension ids ``publisher.name`` (optionally ``publisher.name-version``)."""

    names: tuple[str, ...]
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class PipIndex:
    url: str
    extra_url: str = ""
    trust: bool = False
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Text:
    """A verbatim text setting: ``config.conda_channel`` (.condarc), ``config.apt_source``."""

    text: str
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Url:
    """A URL setting: ``config.cran_mirror``, ``config.julia_pkg_server``."""

    url: str
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Jupyter:
    """``port`` is the host port (0 = pick a free one); the container port is always 8888."""

    token: str = ""
    port: int = 0
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class RStudioServer:
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Gpu:
    count: int
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class ShmSize:
    """Shared memory for ``up``/``run`` in MB (envd's default when unset is 2048)."""

    size_mb: int
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Entrypoint:
    args: tuple[str, ...]
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Repo:
    url: str
    description: str = ""
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Owner:
    uid: int
    gid: int
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class GitConfig:
    name: str = ""
    email: str = ""
    editor: str = ""
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """One ``run()`` call: one build step running the commands in order (``set -euo pipefail``)."""

    commands: tuple[str, ...]
    mount_host: bool = False
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Copy:
    """``io.copy``: ``source`` is context-relative unless ``image`` is set (then a path in it)."""

    source: str
    target: str
    image: str = ""
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class HttpDownload:
    """``io.http``: lands in ``/home/envd/extra_source/<filename or URL basename>``."""

    url: str
    checksum: str = ""
    filename: str = ""
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A ``runtime.command`` entry: a named shell command (``envbuild exec --command NAME``)."""

    name: str
    command: str
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Daemon:
    argv: tuple[str, ...]
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Init:
    """One ``runtime.init`` call: commands run once, in order, before daemons start."""

    commands: tuple[str, ...]
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Expose:
    envd_port: int
    host_port: int = 0
    service: str = ""
    listen_addr: str = "127.0.0.1"
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class EnvVar:
    name: str
    value: str
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Mount:
    """Run-time bind mount. ``create``: a ``data.envd`` directory the runtime makes (mode 0755)."""

    host_path: str
    envd_path: str
    create: bool = False
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Runtime:
    """Run-time settings (envd stores these in the ``graph.runtime`` label)."""

    commands: tuple[Command, ...] = ()
    daemons: tuple[Daemon, ...] = ()
    inits: tuple[Init, ...] = ()
    exposes: tuple[Expose, ...] = ()
    environ: tuple[EnvVar, ...] = ()
    extra_path: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()

    @property
    def environ_dict(self) -> dict[str, str]:
        """Later settings of one variable win, as with envd's map."""
        return {e.name: e.value for e in self.environ}

    @property
    def commands_dict(self) -> dict[str, str]:
        return {c.name: c.command for c in self.commands}


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A build file that was evaluated: its label (as in ``Pos.file``) and sha256 of its bytes."""

    label: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Warning_:
    """A non-fatal remark (e.g. a CUDA image on an OS other than the base's)."""

    message: str
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """What envbuild decided where the file leaves a choice open (e.g. the Ubuntu of a CUDA image)."""

    message: str
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Spec:
    """A whole environment. Build it with ``frontend.evaluate``; it never changes afterwards."""

    schema: int = SCHEMA_VERSION
    target: str = "build"
    base: Base = field(default_factory=Base)
    shell: Shell = field(default_factory=Shell)
    python: Python | None = None
    conda: Conda | None = None
    uv: Uv | None = None
    pixi: Pixi | None = None
    cuda: Cuda | None = None
    r_lang: RLang | None = None
    julia: Julia | None = None
    rust: Rust | None = None
    go: Go | None = None
    nodejs: NodeJS | None = None
    codex: Codex | None = None
    apt_packages: tuple[AptPackages, ...] = ()
    python_packages: tuple[PythonPackages, ...] = ()
    conda_packages: tuple[CondaPackages, ...] = ()
    r_packages: tuple[RPackages, ...] = ()
    julia_packages: tuple[JuliaPackages, ...] = ()
    vscode_extensions: tuple[VSCodeExtensions, ...] = ()
    pip_index: PipIndex | None = None
    conda_channel: Text | None = None
    apt_source: Text | None = None
    cran_mirror: Url | None = None
    julia_pkg_server: Url | None = None
    jupyter: Jupyter | None = None
    rstudio_server: RStudioServer | None = None
    gpu: Gpu | None = None
    shm_size: ShmSize | None = None
    entrypoint: Entrypoint | None = None
    repo: Repo | None = None
    owner: Owner | None = None
    git_config: GitConfig | None = None
    runs: tuple[Run, ...] = ()
    copies: tuple[Copy, ...] = ()
    http: tuple[HttpDownload, ...] = ()
    runtime: Runtime = field(default_factory=Runtime)
    inputs: tuple[str, ...] = ()
    source_files: tuple[SourceFile, ...] = ()
    warnings: tuple[Warning_, ...] = ()
    notes: tuple[Note, ...] = ()

    @property
    def dev(self) -> bool:
        return self.base.dev

    @property
    def gpu_enabled(self) -> bool:
        """envd attaches GPUs at run time only when ``install.cuda`` was called."""
        return self.cuda is not None

    @property
    def image(self) -> str:
        """The image the build starts from: the CUDA image replaces ``base(image=...)``."""
        return self.cuda.image if self.cuda is not None else self.base.image

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, *, indent: int | None = None) -> str:
        """Stable JSON (sorted keys, every field present) for image labels and diffs."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent, separators=None if indent else (",", ":"))

    @classmethod
    def from_dict(cls, data: object) -> Spec:
        if not isinstance(data, dict):
            raise SpecDecodeError(f"spec JSON must be an object, got {type(data).__name__}")
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise SpecDecodeError(
                f"spec schema {schema!r} is not supported (this envbuild reads schema {SCHEMA_VERSION}); "
                "rebuild the image with this envbuild version"
            )
        return _decode(cls, data, "spec")

    @classmethod
    def from_json(cls, text: str | bytes) -> Spec:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise SpecDecodeError(f"spec is not valid JSON: {e}") from None
        return cls.from_dict(data)


# ---- JSON decoding ------------------------------------------------------------------------------


def _decode(cls: type[_T], data: object, where: str) -> _T:
    if not isinstance(data, dict):
        raise SpecDecodeError(f"{where}: expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise SpecDecodeError(f"{where}: unknown field(s) {sorted(unknown)} for {cls.__name__}")
    kwargs = {name: _decode_value(hints[name], data[name], f"{where}.{name}") for name in data}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise SpecDecodeError(f"{where}: {e}") from None


def _decode_value(tp: Any, value: object, where: str) -> object:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in typing.get_args(tp):
                return None
            raise SpecDecodeError(f"{where}: must not be null")
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode_value(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise SpecDecodeError(f"{where}: expected a list, got {type(value).__name__}")
        item = typing.get_args(tp)[0]
        return tuple(_decode_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return _decode(tp, value, where)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecDecodeError(f"{where}: expected a boolean, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecDecodeError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise SpecDecodeError(f"{where}: expected a string, got {value!r}")
        return value
    raise SpecDecodeError(f"{where}: cannot decode type {tp!r}")  # pragma: no cover
