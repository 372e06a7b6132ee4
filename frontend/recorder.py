"""What one evaluation has recorded so far, and the cross-call rules that turn it into a ``Spec``.

Builtins only record; rules that involve several calls (entrypoint vs dev, conda packages without
conda, CUDA tags against the base, port clashes) are checked in ``Recorder.finish``, so the order of
the calls in a file never matters.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from . import spec as S
from .errors import EnvdError, ValueError_


@dataclass(frozen=True, slots=True)
class CudaRequest:
    """``install.cuda`` as called; resolved against the base image in ``finish``."""

    version: str
    cudnn: str | None
    pos: S.Pos | None


@dataclass(slots=True)
class Recorder:
    """Mutable state of one evaluation; ``finish`` turns it into an immutable ``Spec``."""

    context_dir: str
    target: str = "build"
    printer: Callable[[str], None] | None = None
    sources: dict[str, list[str]] = field(default_factory=dict)
    """Lines of every evaluated file by label, for the source line of an error."""
    source_files: list[S.SourceFile] = field(default_factory=list)
    error: EnvdError | None = None
    """The error a builtin raised: Starlark only passes its text on, this keeps the object."""
    includes: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    warnings: list[S.Warning_] = field(default_factory=list)
    notes: list[S.Note] = field(default_factory=list)

    base: S.Base | None = None
    base_image_named: bool = False
    """``base(image=...)`` was given: otherwise the image is envd's default and CUDA may pick the Ubuntu."""
    shell: S.Shell | None = None
    python: S.Python | None = None
    conda: S.Conda | None = None
    uv: S.Uv | None = None
    pixi: S.Pixi | None = None
    cuda: CudaRequest | None = None
    r_lang: S.RLang | None = None
    julia: S.Julia | None = None
    rust: S.Rust | None = None
    go: S.Go | None = None
    nodejs: S.NodeJS | None = None
    codex: S.Codex | None = None
    pip_index: S.PipIndex | None = None
    conda_channel: S.Text | None = None
    apt_source: S.Text | None = None
    cran_mirror: S.Url | None = None
    julia_pkg_server: S.Url | None = None
    jupyter: S.Jupyter | None = None
    rstudio_server: S.RStudioServer | None = None
    gpu: S.Gpu | None = None
    shm_size: S.ShmSize | None = None
    entrypoint: S.Entrypoint | None = None
    repo: S.Repo | None = None
    owner: S.Owner | None = None
    git_config: S.GitConfig | None = None
    apt_packages: list[S.AptPackages] = field(default_factory=list)
    python_packages: list[S.PythonPackages] = field(default_factory=list)
    conda_packages: list[S.CondaPackages] = field(default_factory=list)
    r_packages: list[S.RPackages] = field(default_factory=list)
    julia_packages: list[S.JuliaPackages] = field(default_factory=list)
    vscode_extensions: list[S.VSCodeExtensions] = field(default_factory=list)
    runs: list[S.Run] = field(default_factory=list)
    copies: list[S.Copy] = field(default_factory=list)
    http: list[S.HttpDownload] = field(default_factory=list)
    commands: list[S.Command] = field(default_factory=list)
    daemons: list[S.Daemon] = field(default_factory=list)
    inits: list[S.Init] = field(default_factory=list)
    exposes: list[S.Expose] = field(default_factory=list)
    environ: list[S.EnvVar] = field(default_factory=list)
    extra_path: list[str] = field(default_factory=list)
    mounts: list[S.Mount] = field(default_factory=list)

    def warn(self, message: str, pos: S.Pos | None) -> None:
        self.warnings.append(S.Warning_(message, pos))

    def warn_if_repeated(self, call: str, earlier: object, pos: S.Pos | None) -> None:
        """Calls that set one thing: the last one wins (as in envd), but a second call is usually a slip."""
        if earlier is not None:
            where = getattr(earlier, "pos", None) or "an earlier call"
            self.warn(f"{call} is called again: this call at {pos} replaces the one at {where}", pos)

    def input_path(self, qualname: str, param: str, value: str, *, directory_ok: bool = False) -> str:
        """A context-relative path the build reads (``requirements=``, ``io.copy`` ...).

        Refused: anything outside the context (``..``, absolute, a symlink leading out), a dangling
        symlink, a FIFO, device or socket, and a directory unless ``directory_ok``. A symlink to a
        file inside the context is recorded as that file, which is what the build receives."""
        if not value:
            raise ValueError_(f"{qualname}(): '{param}' must not be empty")
        if os.path.isabs(value) or value.startswith("~"):
            raise ValueError_(
                f"{qualname}(): '{param}' must be a path relative to the build context, got {value!r}",
                hint="files outside the build context cannot be sent to the build",
            )
        norm = os.path.normpath(value).replace(os.sep, "/")
        if norm == ".." or norm.startswith("../"):
            raise ValueError_(f"{qualname}(): '{param}' {value!r} points outside the build context")
        root = os.path.realpath(self.context_dir)
        full = os.path.join(root, norm)
        if not os.path.lexists(full):
            raise ValueError_(f"{qualname}(): {param} {value!r} not found in the build context {self.context_dir}")
        real = os.path.realpath(full)
        if real != root and not real.startswith(root + os.sep):
            raise ValueError_(f"{qualname}(): '{param}' {value!r} is a symlink that leaves the build context")
        try:
            mode = os.stat(real).st_mode
        except OSError:
            raise ValueError_(f"{qualname}(): {param} {value!r} is a symlink to nothing") from None
        if stat.S_ISDIR(mode) and not directory_ok:
            raise ValueError_(f"{qualname}(): {param} {value!r} is a directory, not a file")
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ValueError_(
                f"{qualname}(): {param} {value!r} is not a regular file (a FIFO, device or socket cannot be sent)"
            )
        if not directory_ok:
            norm = os.path.relpath(real, root).replace(os.sep, "/")
        if norm not in self.inputs:
            self.inputs.append(norm)
        return norm

    def input_text(self, qualname: str, path: str, *, limit: int = 16 << 20) -> str | None:
        """The text of an input file `input_path` accepted, or None when it is not UTF-8 (then only
        the build reads it)."""
        with open(os.path.join(self.context_dir, path), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ValueError_(f"{qualname}(): {path!r} is larger than {limit >> 20} MiB")
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return None

    def finish(self) -> S.Spec:
        """Check the rules that span several calls and freeze the result."""
        base, cuda = self._resolve_cuda(self.base or S.Base())
        self._check_entrypoint(base)
        self._check_conda()
        self._check_dev_only(base)
        self._check_ports()
        return S.Spec(
            target=self.target,
            base=base,
            shell=self.shell or S.Shell(),
            python=self.python,
            conda=self.conda,
            uv=self.uv,
            pixi=self.pixi,
            cuda=cuda,
            r_lang=self.r_lang,
            julia=self.julia,
            rust=self.rust,
            go=self.go,
            nodejs=self.nodejs,
            codex=self.codex,
            apt_packages=tuple(self.apt_packages),
            python_packages=tuple(self.python_packages),
            conda_packages=tuple(self.conda_packages),
            r_packages=tuple(self.r_packages),
            julia_packages=tuple(self.julia_packages),
            vscode_extensions=tuple(self.vscode_extensions),
            pip_index=self.pip_index,
            conda_channel=self.conda_channel,
            apt_source=self.apt_source,
            cran_mirror=self.cran_mirror,
            julia_pkg_server=self.julia_pkg_server,
            jupyter=self.jupyter,
            rstudio_server=self.rstudio_server,
            gpu=self.gpu,
            shm_size=self.shm_size,
            entrypoint=self.entrypoint,
            repo=self.repo,
            owner=self.owner,
            git_config=self.git_config,
            runs=tuple(self.runs),
            copies=tuple(self.copies),
            http=tuple(self.http),
            runtime=S.Runtime(
                commands=tuple(self.commands),
                daemons=tuple(self.daemons),
                inits=tuple(self.inits),
                exposes=tuple(self.exposes),
                environ=tuple(self.environ),
                extra_path=tuple(self.extra_path),
                mounts=tuple(self.mounts),
            ),
            inputs=tuple(self.inputs),
            source_files=tuple(self.source_files),
            warnings=tuple(self.warnings),
            notes=tuple(self.notes),
        )

    def _resolve_cuda(self, base: S.Base) -> tuple[S.Base, S.Cuda | None]:
        """The ``nvidia/cuda`` image for ``install.cuda`` on this base (it replaces the base image);
        without a named base image, the Ubuntu the CUDA version exists for becomes the base."""
        request = self.cuda
        if request is None:
            return base, None
        from . import cuda as cuda_table  # the table is read only by files that ask for CUDA

        try:
            img = cuda_table.resolve(
                request.version, request.cudnn, dev=base.dev, base_image=base.image, base_named=self.base_image_named
            )
        except cuda_table.UbuntuMismatch as e:
            dev = ", dev=True" if base.dev else ""
            where = f" at {base.pos}" if base.pos else ""
            raise ValueError_(f'install.cuda(): {e}; write base(image="ubuntu:{e.valid[-1]}"{dev}){where} instead').at(
                request.pos
            ) from None
        except cuda_table.CudaError as e:
            raise ValueError_(f"install.cuda(): {e}").at(request.pos) from None
        for message in img.warnings:
            self.warn(message, request.pos)
        for message in img.notes:
            self.notes.append(S.Note(message, request.pos))
        if not self.base_image_named:
            base = S.Base(f"ubuntu:{img.ubuntu}", base.dev, base.pos)
        return base, S.Cuda(img.version, img.cudnn, img.image, img.torch_index, request.pos)

    def _check_entrypoint(self, base: S.Base) -> None:
        if self.entrypoint is not None and base.dev:
            raise ValueError_(
                "`config.entrypoint` is only for custom image, maybe you need `runtime.init`",
                hint="base(dev=True) images start the envbuild supervisor; use runtime.init or runtime.daemon",
            ).at(self.entrypoint.pos)

    def _check_conda(self) -> None:
        if self.conda is None and self.conda_packages:
            raise ValueError_(
                "cannot install conda packages when conda is not installed",
                hint="add install.conda() (anywhere in the same function)",
            ).at(self.conda_packages[0].pos)
        if self.conda is None and self.conda_channel is not None:
            self.warn("config.conda_channel has no effect without install.conda()", self.conda_channel.pos)

    def _check_dev_only(self, base: S.Base) -> None:
        if base.dev:
            return
        if self.vscode_extensions:
            self.warn(
                "install.vscode_extensions only applies to dev images (base(dev=True)); ignored",
                self.vscode_extensions[0].pos,
            )
        if self.git_config is not None:
            self.warn("git_config only applies to dev images (base(dev=True)); ignored", self.git_config.pos)
        if self.rstudio_server is not None:
            self.warn(
                "config.rstudio_server only applies to dev images (base(dev=True)); ignored", self.rstudio_server.pos
            )

    def _check_ports(self) -> None:
        """No container port exposed twice, no host port bound twice (Jupyter's included)."""
        seen: dict[int, S.Expose] = {}
        host_seen: dict[tuple[str, int], S.Expose] = {}
        for e in self.exposes:
            if e.envd_port in seen:
                raise ValueError_(
                    f"runtime.expose(): port {e.envd_port} is already exposed at {seen[e.envd_port].pos}"
                ).at(e.pos)
            seen[e.envd_port] = e
            if e.host_port:
                key = (e.listen_addr, e.host_port)
                if key in host_seen:
                    raise ValueError_(
                        f"runtime.expose(): host port {e.host_port} on {e.listen_addr} is already used at "
                        f"{host_seen[key].pos}"
                    ).at(e.pos)
                host_seen[key] = e
        jup = self.jupyter
        if jup is not None and jup.port and ("127.0.0.1", jup.port) in host_seen:
            raise ValueError_(
                f"config.jupyter(): host port {jup.port} is also used by runtime.expose at "
                f"{host_seen[('127.0.0.1', jup.port)].pos}"
            ).at(jup.pos)


current: ContextVar[Recorder] = ContextVar("frontend_recorder")
"""The recorder of the running evaluation: Starlark calls builtins without any context argument."""
