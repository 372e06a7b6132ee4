"""spec -> LLB: the fixed stage order, one cacheable step per logical group, and the image config.

Stage order, least to most volatile (docs/architecture.md explains each):

 1. base image (its config inherited; a CUDA base re-checked), then ``config.apt_source``
 2. [dev] development packages (sshd, supervisor, sudo, git, the shell)
 3. ``install.apt_packages``: one step per call
 4. [dev] the ``envd`` user and the fixed development files (entrypoint, supervisor)
 5. language runtimes (`runtimes.stage`): conda (+ its packages), R, Julia, Rust, Go, Node.js,
    pixi, uv; then Python: the distro's or a uv-managed CPython + venv, or the conda env's Python,
    and uv (pinned, from the Python index, hash-checked). The venv and uv are made in a stage of
    their own and copied in here (one FileOp), then a check step installs the distro's python3 the
    venv points at if the image lacks it
 6. tool packages that rarely change: JupyterLab (``config.jupyter``)
 7. language packages: one ``uv pip install`` step per ``install.python_packages`` call (with the
    PyTorch wheel index of the CUDA version when it asks for torch and no index is set)
 8. ``io.http`` downloads, ``io.copy``
 9. [dev] IDE and configuration that follows the spec: VS Code extensions, sshd, services, login
    env, git, work dir, mounts
10. ``run()`` steps in call order, as the final user in the project directory

Tool stages (the Python runtime, py-rattler, uv, downloads) start after ``config.apt_source`` on
their own chains and only their results are copied in, so BuildKit runs them in parallel with the
main chain's apt steps (their apt caches have ids of their own: the main chain's are ``locked``).
Apt steps turn off dpkg's per-file fsync while they run (nothing of it stays in the image).

On a chain everything after a changed step re-runs, so steps 8-9 are file operations that take
milliseconds, and the expensive steps sit as early as their inputs allow. Where the builder has
MergeOp/DiffOp (``CompileOptions.merge_layers``), JupyterLab and the packages install in the Python
stage too and the image is the system chain with the stage's diffs merged on top (`python_layers`;
docs/architecture.md, "Merged layers"): the same files, but neither side re-runs for the other.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import llb
from envbuild.compiler import credentials, cuda, runtimes
from envbuild.compiler import devfiles as D
from envbuild.compiler import scripts as S
from envbuild.compiler.installs import AptInstall, CondaInstall, Installs, PythonInstall
from envbuild.compiler.options import CompileOptions, project_name  # noqa: F401 (re-export)
from envbuild.compiler.stagekit import NONE, Additions
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from frontend.spec import PipIndex, Pos, Spec
    from llb.export import ImageConfig

HOME = "/home/envd"
DEFAULT_UNIX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHELLS = {"bash": ("/bin/bash", ()), "zsh": ("/usr/bin/zsh", ("zsh",)), "fish": ("/usr/bin/fish", ("fish",))}
LABEL = "ai.envbuild."
STEP_PATH = {"PATH": DEFAULT_UNIX_PATH}


@dataclass(frozen=True, slots=True)
class Step:
    """One named vertex the user can relate to a line of build.envd (for progress and errors)."""

    name: str
    kind: str
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class CompiledBuild:
    """The result of `compile`: what a solve needs, and nothing it has to ask for again."""

    state: llb.State
    image: Mapping[str, object]
    steps: tuple[Step, ...]
    local_dirs: Mapping[str, str]
    secrets: tuple[str, ...]
    entitlements: tuple[str, ...]
    proxy: Mapping[str, str]
    notes: tuple[str, ...] = ()
    secret_values: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))
    """Session secrets the solve must provide besides the CA (the index netrc); never in the LLB."""
    installs: Installs = field(default_factory=Installs)
    uncovered: tuple[str, ...] = ()
    """With ``CompileOptions.pins``: the package transactions the lock does not cover (installed
    unpinned, with a note; ``Pins.strict`` makes the first an error instead)."""

    def definition(self) -> llb.Definition:
        """The marshalled graph; one too large for the builder is the build file's mistake."""
        try:
            return self.state.marshal(platform=self._platform)
        except llb.DefinitionTooLarge as exc:
            raise self.too_large(exc) from None

    def too_large(self, exc: llb.DefinitionTooLarge) -> UsageError:
        """``exc`` at the build file call whose step holds the most inline data."""
        step = self.step_for(exc.largest_op)
        where = f"{step.pos}: " if step is not None and step.pos else ""
        return UsageError(f"{where}{exc}")

    @property
    def _platform(self) -> llb.Platform | None:
        p = self.image.get("platform")
        return llb.Platform.parse(str(p)) if p else None

    @property
    def labels(self) -> Mapping[str, str]:
        return self.image["labels"]  # type: ignore[return-value]

    def image_config(self) -> ImageConfig:
        """The `llb.ImageConfig` applied on export (imports the client side of llb lazily)."""
        cfg = {k: v for k, v in self.image.items() if k != "platform"}
        return llb.ImageConfig(**cfg)  # type: ignore[arg-type]

    def step_for(self, name: str) -> Step | None:
        for s in self.steps:
            if s.name == name:
                return s
        return None


def compile(spec: Spec, options: CompileOptions | None = None) -> CompiledBuild:
    """Turn a spec into LLB and an image config; pure (no files, no network)."""
    return _Compiler(spec, options or CompileOptions()).run()


def solve_secrets(compiled: CompiledBuild, ca: bytes | None) -> dict[str, bytes]:
    """The session secrets a solve of ``compiled`` needs: the CA bundle (if any) and the index netrc."""
    out = dict(compiled.secret_values)
    if ca:
        out[S.CA_SECRET_ID] = ca
    return out


class _Compiler:
    """One compilation's working state (the stages of `runtimes`, `conda`, `languages` and `vscode`
    receive it as their `stagekit.Ctx`)."""

    __slots__ = (
        "add",
        "apt_auth",
        "base",
        "conda_auth",
        "edited_contexts",
        "installs",
        "label_spec",
        "netrc",
        "notes",
        "opts",
        "package_merge",
        "secret_values",
        "spec",
        "steps",
        "uncovered",
        "uses_context",
    )

    def __init__(self, spec: Spec, opts: CompileOptions) -> None:
        """The LLB never sees credentials: they travel as session secrets (`credentials`)."""
        self.opts = opts
        self.steps: list[Step] = []
        self.notes: list[str] = []
        self.uncovered: list[str] = []
        self.uses_context = False
        self.add: Additions = NONE
        self.installs = Installs()
        self.base = llb.scratch()
        """The state after ``config.apt_source``, where steps beside the main chain start."""
        self.package_merge: tuple[llb.State, tuple[llb.State, ...], str] | None = None
        """The merged layout's image (`python_layers`): the merge, its inputs and its step name."""
        self.edited_contexts: dict[tuple[str, ...], llb.State] = {}
        self.netrc = credentials.netrc(spec)
        self.secret_values: dict[str, bytes] = {credentials.NETRC_SECRET_ID: self.netrc} if self.netrc else {}
        self.apt_auth: list[llb.Mount] = []
        """The ``config.apt_source`` logins, for every step that runs apt (`apt_mounts`)."""
        if apt_auth := credentials.apt_auth(spec):
            self.apt_auth.append(
                self.secret_file(credentials.APT_AUTH_SECRET_ID, apt_auth, path=credentials.APT_AUTH_PATH)
            )
        self.conda_auth: list[llb.Mount] = []
        """The conda channels' logins, for the conda steps (``RATTLER_AUTH_FILE``)."""
        if conda_auth := credentials.conda_auth(spec):
            self.conda_auth.append(self.secret_file(credentials.CONDA_AUTH_SECRET_ID, conda_auth))
        self.label_spec: Spec | None = credentials.public_spec(spec)
        self.spec = credentials.without_credentials(spec)

    # --- helpers --------------------------------------------------------------------------------

    def name(self, text: str, kind: str, pos: Pos | None) -> str:
        taken = {s.name for s in self.steps}
        name, n = text, 2
        while name in taken:
            name, n = f"{text} ({n})", n + 1
        self.steps.append(Step(name, kind, pos))
        return name

    @property
    def uid(self) -> int:
        return self.opts.owner[0] if self.spec.dev else 0

    @property
    def gid(self) -> int:
        return self.opts.owner[1] if self.spec.dev else 0

    @property
    def home(self) -> str:
        return HOME if self.spec.dev else "/root"

    @property
    def workdir(self) -> str:
        return f"{HOME}/{self.opts.project}"

    def net_mounts(self, *, uid: int = 0, gid: int = 0) -> list[llb.Mount]:
        mounts = [
            llb.secret(S.CA_SECRET_PATH, S.CA_SECRET_ID, uid=uid, gid=gid, mode=0o400, optional=True),
            llb.tmpfs(S.TLS_DIR),
        ]
        if self.netrc:
            # owned by the image user: pip/uv steps drop to it (root reads it anyway)
            mounts.append(
                llb.secret(credentials.NETRC_PATH, credentials.NETRC_SECRET_ID, uid=self.uid, gid=self.gid, mode=0o400)
            )
        return mounts

    def secret_file(self, secret_id: str, data: bytes, *, path: str = "") -> llb.Mount:
        """A session secret (at ``path``, by default ``/run/secrets/<secret_id>``; root-only) for the
        steps that mount it: how a credential reaches a step without entering its command, its env
        or a layer."""
        self.secret_values[secret_id] = data
        return llb.secret(path or f"{credentials.SECRETS_DIR}/{secret_id}", secret_id, mode=0o400)

    def netrc_env(self) -> dict[str, str]:
        return {"NETRC": credentials.NETRC_PATH} if self.netrc else {}

    def apt_mounts(self) -> list[llb.Mount]:
        """What an apt step mounts: the apt caches and the ``config.apt_source`` logins (if any)."""
        return [
            llb.cache("/var/cache/apt", S.APT_CACHE_ID, sharing="locked"),
            llb.cache("/var/lib/apt/lists", S.APT_LISTS_ID, sharing="locked"),
            *self.apt_auth,
        ]

    def tool_apt_mounts(self) -> list[llb.Mount]:
        """A tool stage's apt mounts: its own caches, so it never waits for the main chain's lock."""
        return [
            llb.cache("/var/cache/apt", S.TOOLS_APT_CACHE_ID, sharing="locked"),
            llb.cache("/var/lib/apt/lists", S.TOOLS_APT_LISTS_ID, sharing="locked"),
            *self.apt_auth,
        ]

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
    ) -> llb.State:
        """One apt transaction (``key`` names it in the lock); ``tool``: on a tool stage's caches."""
        step = self.name(name, "apt", pos)
        mounts = self.tool_apt_mounts() if tool else self.apt_mounts()
        request = self.apt_request(state, key, names, step=step, mounts=mounts)
        return self.sh(state, S.apt_install(request, before=before, after=after), name=step, mounts=mounts)

    def apt_request(
        self, state: llb.State, key: str, names: Sequence[str], *, step: str, mounts: Sequence[llb.Mount]
    ) -> S.AptRequest:
        """Record the transaction for `envbuild lock`; in a locked build, the lock's versions of
        everything it installs (a transaction the lock does not cover: `not_locked`)."""
        names = tuple(names)
        spec = self.spec
        mirror = "" if spec.apt_source else self.opts.mirrors.apt
        hint = S.SNAPSHOT_HINT_SOURCE if spec.apt_source else S.SNAPSHOT_HINT_MIRROR
        request = S.AptRequest(names, mirror=mirror, hint=hint)
        pins = self.opts.pins
        if pins is not None:
            pin = pins.apt.get(key)
            if pin is None or pin.names != names:
                self.not_locked(f"the apt packages of step {step!r} ({' '.join(names)})")
            else:
                locked = {w.split("=", 1)[0] for w in pin.packages}
                extra = tuple(n for n in names if n.split("=", 1)[0] not in locked)
                request = S.AptRequest((*pin.packages, *extra), pinned=pin.packages, mirror=mirror, hint=hint)
        record = AptInstall(key, step, names, request.words, state, tuple(mounts), mirror)
        self.installs = replace(self.installs, apt=(*self.installs.apt, record))
        return request

    def record_conda(self, install: CondaInstall) -> None:
        self.installs = replace(self.installs, conda=install)

    def not_locked(self, what: str) -> None:
        """A locked build meets a transaction its lock does not cover: an error with ``--locked``,
        else a note (the transaction installs unpinned)."""
        pins = self.opts.pins
        if pins is not None and pins.strict:
            raise UsageError(f"--locked: the lock does not cover {what}; run `envbuild lock` to update it")
        self.uncovered.append(what)
        self.notes.append(f"the lock does not cover {what}: installed unpinned (run `envbuild lock` to update it)")

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
    ) -> llb.State:
        all_mounts = [*(self.net_mounts() if network else ()), *mounts]
        return state.run(
            [shell, "-c", script],
            env={**STEP_PATH, **(self.netrc_env() if network else {}), **(env or {}), **self.bust()},
            user=user,
            cwd=cwd,
            mounts=all_mounts,
            network=(self.opts.network if network else "none"),
            name=name,
            proxy_env=self.proxy_env() if network else None,
        ).root()

    def context(self, paths: Sequence[str]) -> llb.State:
        """Only the named files travel, so an unrelated edit in the context invalidates nothing."""
        self.uses_context = True
        include: list[str] = []
        for p in paths:
            p = _rel(p)
            include += [p, f"{p}/**"]
        return llb.local(self.opts.context_name, include=include, exclude=self.opts.context_excludes,
                         shared_key_hint=self.opts.context_name)

    def proxy_env(self) -> dict[str, str] | None:
        """The host's proxy settings as the ExecOp's proxy env, which BuildKit keeps out of cache keys."""
        return dict(self.opts.proxy) if self.opts.proxy else None

    def bust(self) -> dict[str, str]:
        return {"ENVBUILD_CACHE_BUST": self.opts.cache_bust} if self.opts.cache_bust else {}

    def owner(self) -> tuple[int, int] | None:
        return (self.uid, self.gid) if self.spec.dev else None

    @property
    def conda_python(self) -> str | None:
        """The conda env's prefix when conda owns Python (``install.conda`` + ``install.python``)."""
        return runtimes.python_prefix(self)

    @property
    def needs_python(self) -> bool:
        spec = self.spec
        return bool(spec.python or spec.python_packages or spec.jupyter)

    # --- the pipeline --------------------------------------------------------------------------

    def run(self) -> CompiledBuild:
        spec = self.spec
        self.check_supported()
        cuda.check(spec)
        base_env = self.opts.base_config.env_dict()
        if not self.opts.base_config.resolved:
            self.notes.append(
                f"the config of {spec.image} could not be read: compiled with an empty base config "
                "(Env/User/WorkingDir/Entrypoint of the base are not inherited in this output)"
            )
        state = llb.image(spec.image, name=self.name(f"base {spec.image}", "base", spec.base.pos))
        if base_env.get("PATH"):
            state = state.with_env("PATH", base_env["PATH"])
        if self.opts.platform:
            state = state.with_platform(self.opts.platform)

        state = self.apt_source(state)
        base = self.base = state
        if spec.dev:
            shell_pkgs = SHELLS[spec.shell.name][1]
            state = self.apt(
                state,
                "dev",
                (*S.DEV_APT_PACKAGES, *shell_pkgs),
                name="dev: system packages (sshd, supervisor, sudo, git)",
                pos=spec.base.pos,
                before=S.DEV_APT_BEFORE,
                after=S.DEV_APT_AFTER,
            )
        for i, call in enumerate(spec.apt_packages):
            state = self.apt(state, f"apt-{i + 1}", call.names, name=f"apt: {' '.join(call.names)}", pos=call.pos)
        if spec.dev:
            state = self.dev_user(state)
        pip_in_conda = bool(self.conda_python and (spec.python_packages or spec.jupyter))
        uv_tools = self.uv_tools(base) if (spec.uv is not None or pip_in_conda) else None
        state, self.add = runtimes.stage(self, state, base, uv_tools, self.opts.mirrors)
        if self.needs_python:
            state = self.python(state, base, uv_tools)
        state = self.copies(state)
        if spec.dev:
            state = self.ide(state)
            state = self.dev_config(state)
        state = self.runs(state)
        local_dirs = {self.opts.context_name: self.opts.context_dir} if self.uses_context else {}
        local_dirs.update(self.add.local_dirs)
        return CompiledBuild(
            state=state,
            image=self.image_config(),
            steps=tuple(self.steps),
            local_dirs=MappingProxyType(local_dirs),
            secrets=(S.CA_SECRET_ID, *self.secret_values),
            entitlements=("network.host",) if self.opts.network == "host" else (),
            proxy=MappingProxyType(dict(self.opts.proxy)),
            notes=tuple(self.notes),
            secret_values=MappingProxyType(dict(self.secret_values)),
            installs=self.installs,
            uncovered=tuple(self.uncovered),
        )

    def check_supported(self) -> None:
        spec = self.spec
        if spec.shell.name not in SHELLS:
            raise UsageError(f"{spec.shell.pos or 'shell'}: unknown shell {spec.shell.name!r}")
        if spec.dev and spec.entrypoint is not None:
            raise UsageError(
                f"{spec.entrypoint.pos or 'config.entrypoint'}: config.entrypoint is only for images built "
                "with base(dev=False); use runtime.init or runtime.daemon in a development image"
            )

    def apt_source(self, state: llb.State) -> llb.State:
        apt_source = self.spec.apt_source
        if apt_source is None:
            return state
        action = (
            llb.rm("/etc/apt/sources.list.d/*.list", allow_not_found=True, allow_wildcard=True)
            .rm("/etc/apt/sources.list.d/*.sources", allow_not_found=True, allow_wildcard=True)
            .mkfile(
                "/etc/apt/sources.list", apt_source.text if apt_source.text.endswith("\n") else apt_source.text + "\n"
            )
        )
        return state.file(action, name=self.name("apt source (config.apt_source)", "file", apt_source.pos))

    def dev_user(self, state: llb.State) -> llb.State:
        shell = SHELLS[self.spec.shell.name][0]
        state = self.sh(
            state,
            S.user_setup(self.uid, self.gid, shell),
            name=self.name(f"dev: user envd (uid {self.uid}, gid {self.gid})", "user", self.spec.base.pos),
            network=False,
        )
        action = (
            llb.mkdir(D.ETC, parents=True)
            .mkdir(D.SERVICES, parents=True)
            .mkdir(D.LOGS, parents=True)
            .mkdir(D.ENVD_DIR, 0o755, parents=True, owner=(self.uid, self.gid))
            .mkfile(D.ENVD_AUTHORIZED_KEYS, "", 0o644, owner=(self.uid, self.gid))
            .mkfile(D.ENTRYPOINT, D.entrypoint(self.uid, self.gid), 0o755)
            .mkfile(D.SESSION, D.session(), 0o755)
            .mkfile(D.STATUS, D.status(), 0o755)
            .mkfile(D.SUPERVISORD_CONFIG, D.supervisord_conf())
        )
        return state.file(action, name=self.name("dev: entrypoint and supervisor", "file", self.spec.base.pos))

    def uv_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        idx = self.spec.pip_index
        if idx:
            env["UV_DEFAULT_INDEX"] = idx.url
            if idx.extra_url:
                env["UV_INDEX"] = idx.extra_url
            if idx.trust:
                hosts = [_host(idx.url)] + ([_host(idx.extra_url)] if idx.extra_url else [])
                env["UV_INSECURE_HOST"] = " ".join(h for h in hosts if h)
        return env

    def uv_tools(self, base: llb.State) -> llb.State:
        """uv in a tool stage (parallel chain), for images that get uv without the venv step."""
        idx = self.spec.pip_index
        tools = self.apt(
            base,
            "tools-uv",
            ("python3-venv", "ca-certificates"),
            name="tools: python3-venv (for uv)",
            pos=None,
            tool=True,
        )
        return self.sh(
            tools,
            S.uv_tool(idx.url if idx else None, idx.extra_url if idx and idx.extra_url else None),
            name=self.name(f"tools: uv {S.UV_VERSION} from the Python index", "pip", None),
            mounts=[llb.cache(S.PIP_CACHE_DIR, S.PIP_CACHE_ID)],
        )

    def python(self, state: llb.State, base: llb.State, uv_tools: llb.State | None = None) -> llb.State:
        """The Python runtime (a venv, or the conda env's Python), then JupyterLab and the packages (a
        locked build: every package of the lock in one `uv pip sync` step): on the image's chain, or,
        for a venv where the builder merges layers, beside it (`python_layers`)."""
        spec = self.spec
        pos = spec.python.pos if spec.python else None
        version = spec.python.version if spec.python else "3"
        if spec.pip_index:
            state = state.file(
                llb.mkfile("/etc/pip.conf", _pip_conf(spec.pip_index)),
                name=self.name("pip index", "file", spec.pip_index.pos),
            )
        prefix = self.conda_python
        pins = self.opts.pins
        exact = pins.python_version if pins is not None and pins.python is not None and not prefix else ""
        if prefix:
            python = f"{prefix}/bin/python"
            if spec.uv is None and uv_tools is not None:
                state = state.file(
                    llb.copy(uv_tools, f"{S.TOOLS_DIR}/bin/uv", S.UV_BIN, mode=0o755),
                    name=self.name(f"uv {S.UV_VERSION} for the conda env's Python", "file", pos),
                )
        elif self.opts.merge_layers:
            return self.python_layers(state, base, version, pos, exact=exact)
        else:
            python = f"{S.VENV}/bin/python"
            state = self.python_stage(state, base, version, pos, exact=exact)
        installed = self.package_installs(state, python)
        return installed[-1][1] if installed else state

    def package_installs(
        self, state: llb.State, python: str, *, init_groups: bool = True
    ) -> list[tuple[Step, llb.State]]:
        """What the build installs into the Python environment of ``state``: the lock's packages in
        one step, or `package_steps`; every step with its result."""
        spec, pins = self.spec, self.opts.pins
        self.record_python(state, python, self.uv_env())
        if pins is not None and pins.python is not None and not self.conda_python:
            synced = self.locked_python(state, python, init_groups=init_groups)
            return [(self.steps[-1], synced)]
        if pins is not None and (spec.python_packages or spec.jupyter or not self.conda_python):
            self.not_locked("the Python packages")
        return self.package_steps(state, python, init_groups=init_groups)

    def package_steps(self, state: llb.State, python: str, *, init_groups: bool = True) -> list[tuple[Step, llb.State]]:
        """JupyterLab, then one ``uv pip install`` per ``install.python_packages`` call, each on the one
        before (a later install may upgrade what an earlier one pulled in): every step with its result.
        ``init_groups=False`` where the owner has no passwd entry (the runtime stage)."""
        spec = self.spec
        env = self.uv_env()
        uv_cache = [llb.cache(S.UV_CACHE_DIR, S.UV_CACHE_ID)]
        results: list[tuple[Step, llb.State]] = []
        if spec.jupyter:
            state = self.sh(
                state,
                S.pip_install(
                    (S.JUPYTER_REQUIREMENT,),
                    (),
                    (),
                    self.uid,
                    self.gid,
                    home=self.home,
                    python=python,
                    init_groups=init_groups,
                ),
                name=self.name("jupyterlab", "pip", spec.jupyter.pos),
                mounts=uv_cache,
                env={**env, "UV_COMPILE_BYTECODE": "1"},  # else every container start compiles Jupyter (~3 s)
            )
            results.append((self.steps[-1], state))
        for call in spec.python_packages:
            files = list(call.files)
            mounts = list(uv_cache)
            if files:
                mounts.append(llb.bind(S.CONTEXT_MOUNT, self.python_context(files)))
            reqs = [posixpath.join(S.CONTEXT_MOUNT, _rel(call.requirements))] if call.requirements else []
            wheels = [posixpath.join(S.CONTEXT_MOUNT, _rel(w)) for w in call.local_wheels]
            options = S.uv_pip_options(call.options)
            own_index = bool(call.options.index_url or call.options.extra_index_urls or call.options.find_links)
            label = " ".join([*call.names, *(f"-r {call.requirements}" for _ in reqs), *call.local_wheels, *options])
            state = self.sh(
                state,
                S.pip_install(
                    call.names,
                    reqs,
                    wheels,
                    self.uid,
                    self.gid,
                    home=self.home,
                    python=python,
                    options=options,
                    init_groups=init_groups,
                ),
                name=self.name(f"python packages: {label}", "pip", call.pos),
                mounts=mounts,
                env={**env, **({} if own_index else cuda.pip_env(spec, call.names, self.opts.mirrors))},
            )
            results.append((self.steps[-1], state))
        return results

    def python_context(self, files: Sequence[str]) -> llb.State:
        """The context ``files`` the Python steps read, with each requirements file among them that
        uv reads differently from pip (``RequirementsFile.edits``) rewritten in place, so that what it
        names by relative path still resolves."""
        key = tuple(files)
        if key in self.edited_contexts:
            return self.edited_contexts[key]
        context = self.context(files)
        edited = {
            f.path: (f.edits, call.pos)
            for call in self.spec.python_packages
            for f in call.requirements_files
            if f.edits and f.path in files
        }
        if edited:
            script = "set -eu\n" + "".join(
                S.requirements_rewrite(posixpath.join(S.EDIT_DIR, _rel(path)), edits)
                for path, (edits, _pos) in edited.items()
            )
            context = self.base.run(
                ["/bin/sh", "-c", script],
                env=STEP_PATH,
                mounts=[llb.bind(S.EDIT_DIR, context, readonly=False)],
                network="none",
                name=self.name(
                    f"{', '.join(edited)}: pip options on lines of their own, for uv",
                    "requirements",
                    next(iter(edited.values()))[1],
                ),
            ).mount_state(S.EDIT_DIR)
        self.edited_contexts[key] = context
        return context

    def python_files(self) -> list[str]:
        """The context files the Python packages come from: requirements files and local wheels."""
        return [f for call in self.spec.python_packages for f in call.files]

    def record_python(self, before: llb.State, python: str, env: Mapping[str, str]) -> None:
        """Every Python package request of the build as one resolution's input (`PythonInstall`):
        JupyterLab, each call's names, requirements files and local wheels, with the calls' index
        options merged (one index for all: a second, different ``--index-url`` or ``--no-deps`` is a
        problem the lock reports)."""
        from frontend.spec import PipOptions

        spec = self.spec
        lines: list[str] = [S.JUPYTER_REQUIREMENT] if spec.jupyter else []
        names: list[str] = []
        problems: list[str] = []
        merged = PipOptions()
        for call in spec.python_packages:
            where = f"{call.pos}: " if call.pos else ""
            lines += call.names
            names += call.names
            if call.requirements:
                lines.append("-r " + posixpath.join(S.CONTEXT_MOUNT, _rel(call.requirements)))
            lines += [posixpath.join(S.CONTEXT_MOUNT, _rel(w)) for w in call.local_wheels]
            o = call.options
            if o.index_url and merged.index_url and o.index_url != merged.index_url:
                problems.append(f"{where}a second --index-url {o.index_url} (the packages resolve together)")
            if o.no_deps:
                problems.append(f"{where}--no-deps (the packages resolve together, with their dependencies)")
            merged = PipOptions(
                index_url=merged.index_url or o.index_url,
                extra_index_urls=tuple(dict.fromkeys((*merged.extra_index_urls, *o.extra_index_urls))),
                find_links=tuple(dict.fromkeys((*merged.find_links, *o.find_links))),
                trusted_hosts=tuple(dict.fromkeys((*merged.trusted_hosts, *o.trusted_hosts))),
                pre=merged.pre or o.pre,
                no_build_isolation=merged.no_build_isolation or o.no_build_isolation,
            )
        own_index = bool(merged.index_url or merged.extra_index_urls or merged.find_links)
        files = self.python_files()
        mounts = [llb.cache(S.UV_CACHE_DIR, S.UV_CACHE_ID)]
        if files:
            mounts.append(llb.bind(S.CONTEXT_MOUNT, self.python_context(files)))
        step_env = {**env, **({} if own_index else cuda.pip_env(spec, names, self.opts.mirrors))}
        self.installs = replace(
            self.installs,
            python=PythonInstall(
                before,
                python,
                tuple(lines),
                tuple(S.uv_pip_options(merged)),
                MappingProxyType(step_env),
                tuple(mounts),
                self.uid,
                self.gid,
                self.home,
                tuple(problems),
            ),
        )

    def locked_python(self, state: llb.State, python: str, *, init_groups: bool = True) -> llb.State:
        """The lock's Python packages in one step: `uv pip sync` with every hash required, so the
        environment holds exactly them (seed packages included)."""
        spec, request, pins = self.spec, self.installs.python, self.opts.pins
        assert request is not None and pins is not None and pins.python is not None
        if request.problems:
            raise UsageError(f"{request.problems[0]}: cannot be used with a lock")
        lock_dir = "/run/envbuild-lock"
        options = list(request.options)
        files = self.python_files()
        if pins.wheelhouse:  # --offline: the locked wheels from the context, no index asked
            files.append(pins.wheelhouse)
            options += ["--no-index", "--find-links", posixpath.join(S.CONTEXT_MOUNT, _rel(pins.wheelhouse))]
        mounts = [
            llb.cache(S.UV_CACHE_DIR, S.UV_CACHE_ID),
            llb.bind(lock_dir, llb.scratch().file(llb.mkfile("/python.txt", pins.python, 0o444))),
        ]
        if files:
            mounts.append(llb.bind(S.CONTEXT_MOUNT, self.python_context(files)))
        count = sum(1 for line in pins.python.splitlines() if line and not line[0].isspace() and line[0] != "#")
        pos = spec.python_packages[0].pos if spec.python_packages else (spec.jupyter.pos if spec.jupyter else None)
        return self.sh(
            state,
            S.pip_sync(
                f"{lock_dir}/python.txt",
                self.uid,
                self.gid,
                home=self.home,
                python=python,
                options=options,
                compile_bytecode=spec.jupyter is not None,  # else every container start compiles Jupyter (~3 s)
                init_groups=init_groups,
            ),
            name=self.name(f"python packages: {count} from the lock", "pip", pos),
            mounts=mounts,
            env=dict(request.env),
        )

    def python_runtime(self, base: llb.State, version: str, pos: Pos | None, *, exact: str = "") -> llb.State:
        """uv, CPython and the venv in a stage of its own: it starts after ``config.apt_source`` and
        needs none of the image's apt packages, so it runs while the dev and apt steps do. ``exact`` (a
        locked build) is the interpreter release the lock saw; the venv then has no seed packages (the
        lock's are synced in)."""
        idx = self.spec.pip_index
        py_env = self.uv_env()
        if self.opts.python_mirror:
            py_env["UV_PYTHON_INSTALL_MIRROR"] = self.opts.python_mirror
        step = self.name(f"python {version} and uv {S.UV_VERSION}", "python", pos)
        apt_mounts = self.tool_apt_mounts()
        mounts = [*apt_mounts, llb.cache(S.UV_CACHE_DIR, S.UV_CACHE_ID), llb.cache(S.PIP_CACHE_DIR, S.PIP_CACHE_ID)]
        return self.sh(
            base,
            S.python_runtime(
                exact or version,
                self.uid,
                self.gid,
                home=self.home,
                apt=self.apt_request(base, "tools-python", S.PYTHON_APT, step=step, mounts=apt_mounts),
                index_url=idx.url if idx else None,
                extra_index_url=idx.extra_url if idx and idx.extra_url else None,
                seed=not exact,
            ),
            name=step,
            mounts=mounts,
            env=py_env,
        )

    def runtime_files(self, runtime: llb.State) -> llb.FileAction:
        """``/opt/envbuild`` (CPython if uv-managed, the venv) and uv from the runtime stage."""
        return llb.copy(runtime, S.UV_BIN, S.UV_BIN, mode=0o755).copy(
            runtime, S.ENVBUILD_DIR, S.ENVBUILD_DIR, owner=self.owner(), follow_symlinks=False
        )

    def python_check(self, state: llb.State, version: str, pos: Pos | None) -> llb.State:
        """Makes sure the image has the interpreter the venv points at (the distro's python3)."""
        step = self.name(f"python {version}: the venv's interpreter in the image", "python", pos)
        mounts = self.apt_mounts()
        return self.sh(
            state,
            S.python_check(self.apt_request(state, "python3", ("python3",), step=step, mounts=mounts)),
            name=step,
            mounts=mounts,
        )

    def python_stage(
        self, state: llb.State, base: llb.State, version: str, pos: Pos | None, *, exact: str = ""
    ) -> llb.State:
        """The runtime stage (`python_runtime`) copied onto the main chain in one FileOp, then the
        interpreter check. JupyterLab and the packages install on the main chain after it: copying them
        in would cost more than the overlap saves, and a new package re-runs only its step."""
        runtime = self.python_runtime(base, version, pos, exact=exact)
        state = state.file(
            self.runtime_files(runtime),
            name=self.name(f"python {version}: copy {S.ENVBUILD_DIR} and uv in", "file", pos),
        )
        return self.python_check(state, version, pos)

    def python_layers(
        self, system: llb.State, base: llb.State, version: str, pos: Pos | None, *, exact: str = ""
    ) -> llb.State:
        """Where the builder has MergeOp/DiffOp: JupyterLab and the packages install in the runtime stage
        too, each step kept as its diff, and the image is the system chain with the runtime's files and
        those diffs merged on top. A change on one side re-runs only its own steps (a new package: its
        step; a new apt package: the apt chain), and a cold build runs both sides at once.

        The runtime's files are a diff of a copy onto the base, so every parent directory keeps the
        base's owner and mode; merged onto the system chain they get the check step, as on the chain.
        The package steps see what they would see on the chain where it matters to a build: the build
        file's apt packages (build dependencies) and, in a development image, git (`package_build_env`)."""
        runtime = self.python_runtime(base, version, pos, exact=exact)
        build_env = self.package_build_env(runtime, pos)
        installs = self.package_installs(build_env, f"{S.VENV}/bin/python", init_groups=False)
        files = self.runtime_files(runtime)
        if installs:
            # On the chain the builder leaves the directory above the package steps' uv cache mount in
            # the image (empty); it is made here, so both layouts hold the same files.
            files = files.mkdir(posixpath.dirname(S.UV_CACHE_DIR), 0o755)
        copied = base.file(files, name=self.name(f"python {version}: copy {S.ENVBUILD_DIR} and uv in", "file", pos))
        layer = llb.diff(base, copied, name=self.name(f"layer: python {version} and uv", "layer", pos))
        with_runtime = llb.merge(
            [system, layer], name=self.name(f"python {version}: runtime layer merged onto the system", "layer", pos)
        )
        checked = self.python_check(with_runtime, version, pos)
        if not installs:
            return checked
        layers = [checked]
        lower = build_env
        for step, upper in installs:
            layers.append(llb.diff(lower, upper, name=self.name(f"layer: {step.name}", "layer", step.pos)))
            lower = upper
        name = self.name("image: package layers merged", "layer", pos)
        merged = llb.merge(layers, name=name)
        self.package_merge = (merged, tuple(layers), name)
        return merged

    def package_build_env(self, runtime: llb.State, pos: Pos | None) -> llb.State:
        """The runtime stage plus what a package build may need from the image's chain: the build
        file's apt packages (headers, compilers) and, in a development image (which has git), git when a
        requirement may come from a git URL. Neither reaches the image from here, only the diffs do, so
        this is no transaction of the lock (`envbuild lock` resolves the chain); a locked build installs
        them and their dependencies at the versions the lock has for them, and fails when apt would
        install anything else."""
        spec = self.spec
        packages = [n for call in spec.apt_packages for n in call.names]
        if spec.dev and any(c.requirements or any("git+" in n for n in c.names) for c in spec.python_packages):
            packages.append("git")
        if not packages:
            return runtime
        names = tuple(dict.fromkeys(packages))
        mirror = "" if spec.apt_source else self.opts.mirrors.apt
        request = S.AptRequest(names, mirror=mirror)
        if self.opts.pins is not None:
            # a locked build: every package apt installs here (dependencies too) at the version the
            # lock has for it, checked against apt's plan like a locked transaction
            locked: dict[str, str] = {}
            for pin in self.opts.pins.apt.values():
                for word in pin.packages:
                    locked.setdefault(word.split("=", 1)[0], word)
            request = S.AptRequest(
                tuple(locked.get(n, n) for n in names),
                pinned=tuple(sorted(locked.values())),
                mirror=mirror,
                hint=S.SNAPSHOT_HINT_SOURCE if spec.apt_source else S.SNAPSHOT_HINT_MIRROR,
                follow_lock=True,
            )
        return self.sh(
            runtime,
            S.apt_install(request),
            name=self.name(f"python packages: build environment (apt: {' '.join(names)})", "apt", pos),
            mounts=self.tool_apt_mounts(),
        )

    def ide(self, state: llb.State) -> llb.State:
        """VS Code extensions the host prepared (`vscode.prepare`); compiling never downloads."""
        spec = self.spec
        if not spec.vscode_extensions:
            return state
        if not self.opts.vscode_extensions:
            self.notes.append(
                "install.vscode_extensions: the extensions are fetched and unpacked on the host when "
                "`envbuild build` runs; this output leaves them out"
            )
            return state
        from envbuild.compiler import vscode

        cache = Path(self.opts.vscode_cache) if self.opts.vscode_cache else vscode.cache_root()
        state, add = vscode.stage(self, state, self.opts.vscode_extensions, cache)
        self.add += add
        return state

    def copies(self, state: llb.State) -> llb.State:
        owner = self.owner()
        for dl in self.spec.http:
            fname = dl.filename or posixpath.basename(dl.url.split("?", 1)[0]) or "download"
            shown = credentials.redact_url(dl.url)  # the progress output and CI logs show no login
            download = llb.http(dl.url, checksum=dl.checksum or None, filename=fname, name=shown)
            dest = f"{self.home}/extra_source/{fname}"
            state = state.file(
                llb.copy(download, fname, dest, owner=owner), name=self.name(f"download {shown}", "http", dl.pos)
            )
        for c in self.spec.copies:
            dest = self.copy_target(c.target)
            if c.image:
                source, source_path = llb.image(c.image), c.source
            else:
                source, source_path = self.context([c.source]), "/" + _rel(c.source)
            # envd's llb.Copy with only CreateDestPath: a directory onto an existing one (``/``, ``/etc``,
            # a target ending in ``/``) lands as <target>/<its name>, onto a new path as that path
            state = state.file(
                llb.copy(
                    source,
                    source_path,
                    dest,
                    owner=owner,
                    copy_dir_contents=False,
                    allow_wildcard=False,
                    allow_empty_wildcard=False,
                    follow_symlinks=False,
                ),
                name=self.name(f"copy {c.image + ':' if c.image else ''}{c.source} -> {dest}", "copy", c.pos),
            )
        return state

    def copy_target(self, target: str) -> str:
        """Where ``io.copy`` puts its source: a relative target is relative to ``/`` (the directory
        envd's copy resolves it against), ``~`` is the image user's home, and a trailing ``/`` stays
        (copy into that directory)."""
        if target == "~" or target.startswith("~/"):
            target = self.home + target[1:]
        path = "/" + posixpath.normpath(posixpath.join("/", target)).lstrip("/")
        return path + "/" if target.endswith("/") and path != "/" else path

    def container_path(self, path: str) -> str:
        if path == "~" or path.startswith("~/"):
            return self.home + path[1:]
        return posixpath.normpath(posixpath.join(self.workdir, path))

    def final_env(self) -> dict[str, str]:
        """Image Env: base env, locale, the runtimes' env, tool env, ``runtime.environ``; PATH =
        extra_path, the venv, the runtimes' dirs (stage order), ~/.local/bin, then the base PATH
        (de-duplicated, first wins)."""
        spec = self.spec
        base = self.opts.base_config.env_dict()
        env = {k: v for k, v in base.items() if k != "PATH"}
        env.setdefault("LANG", "C.UTF-8")
        env.setdefault("LC_ALL", "C.UTF-8")
        env.update(self.add.env)
        installer: list[str] = []
        if self.needs_python and not self.conda_python:
            installer.append(f"{S.VENV}/bin")
            env["VIRTUAL_ENV"] = S.VENV
        installer += self.add.path
        if spec.dev:
            installer.append(f"{HOME}/.local/bin")
            env["ENVD_WORKDIR"] = self.workdir
            env["SHELL"] = SHELLS[spec.shell.name][0]
        env.update(spec.runtime.environ_dict)
        path: list[str] = []
        for entry in [*spec.runtime.extra_path, *installer, *(base.get("PATH") or DEFAULT_UNIX_PATH).split(":")]:
            if entry and entry not in path:
                path.append(entry)
        env["PATH"] = ":".join(path)
        return env

    def session_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """What sshd gives ssh sessions (``SetEnv``, one line of sshd_config): a ``runtime.environ``
        value spanning lines is refused with its position; one from the base image is left out."""
        session: dict[str, str] = {}
        for name, value in env.items():
            if "\n" in value or "\r" in value:
                var = next((v for v in reversed(self.spec.runtime.environ) if v.name == name), None)
                if var is not None:
                    where = f"{var.pos}: " if var.pos else ""
                    raise UsageError(
                        f"{where}runtime.environ(): the value of {name} has a line break, which "
                        "sshd_config cannot hold (ssh sessions get the environment from it)"
                    )
                self.notes.append(f"{name} from the base image spans lines: ssh sessions do not get it")
                continue
            session[name] = value
        return session

    def dev_config(self, state: llb.State) -> llb.State:
        spec = self.spec
        if spec.rstudio_server is not None:
            where = f"{spec.rstudio_server.pos}: " if spec.rstudio_server.pos else ""
            self.notes.append(
                f"{where}config.rstudio_server(): runs the image's RStudio Server ({D.RSERVER}) on port "
                f"{D.RSTUDIO_PORT}; like envd, envbuild does not install it"
            )
        env = self.final_env()
        uid, gid = self.uid, self.gid
        files = {
            D.SSHD_CONFIG: (D.sshd_config(uid, self.session_env(env)), 0o644),
            D.PROFILE: (D.profile(env), 0o644),
            **D.services(
                workdir=self.workdir,
                inits=[i.commands for i in spec.runtime.inits],
                daemons=[d.argv for d in spec.runtime.daemons],
                jupyter=spec.jupyter is not None,
                allow_root=uid == 0,
                python=f"{self.conda_python or S.VENV}/bin/python",  # where the jupyterlab step installed it
                rstudio=spec.rstudio_server is not None,
            ),
        }
        if spec.runtime.inits:
            files[D.WAIT_INIT] = (D.wait_init(len(spec.runtime.inits)), 0o755)
        if spec.jupyter:
            files[D.JUPYTER_CONFIG] = (D.jupyter_config(self.workdir), 0o644)
        action = llb.mkdir("/etc/profile.d", parents=True)
        for path in sorted(files):
            body, mode = files[path]
            action = action.mkfile(path, body, mode)
        if spec.git_config:
            g = spec.git_config
            action = action.mkfile(f"{HOME}/.gitconfig", gitconfig(g.name, g.email, g.editor), owner=(uid, gid))
        action = action.mkdir(self.workdir, 0o755, parents=True, owner=(uid, gid))
        for m in spec.runtime.mounts:
            action = action.mkdir(self.container_path(m.envd_path), 0o755, parents=True, owner=(uid, gid))
        name = self.name("dev: sshd, services, login environment, work dir", "file", spec.base.pos)
        if self.package_merge is not None and state is self.package_merge[0]:
            # Nothing came after the merged package layers: these files go on the system side, under
            # them (the package steps write only the venv), so the image stays a merge the builder
            # exports layer by layer instead of first laying it out on disk for this step (~1.5 s).
            _merged, layers, merge_name = self.package_merge
            return llb.merge([layers[0].file(action, name=name), *layers[1:]], name=merge_name)
        return state.file(action, name=name)

    def runs(self, state: llb.State) -> llb.State:
        spec = self.spec
        env = self.final_env()
        user = "envd" if spec.dev else (self.opts.base_config.user or "root")
        for call in spec.runs:
            mounts: list[llb.Mount] = [*self.net_mounts(uid=self.uid, gid=self.gid)]
            if call.mount_host:
                self.uses_context = True
                mounts.append(
                    llb.bind(
                        self.workdir,
                        llb.local(self.opts.context_name, exclude=self.opts.context_excludes,
                                  shared_key_hint=self.opts.context_name),
                        readonly=False,
                    )
                )
            first = call.commands[0] if call.commands else ""
            state = state.run(
                ["/bin/bash", "-c", S.user_run(call.commands)],
                env={**env, **self.netrc_env(), **self.bust()},
                user=user,
                cwd=self.workdir,
                mounts=mounts,
                network=self.opts.network,
                name=self.name(f"run: {_short(first)}", "run", call.pos),
                proxy_env=self.proxy_env(),
            ).root()
        return state

    # --- image config --------------------------------------------------------------------------

    def ports(self) -> list[dict[str, object]]:
        spec = self.spec
        ports: list[dict[str, object]] = []
        if spec.dev:
            ports.append({"name": "ssh", "port": D.SSH_PORT})
            if spec.jupyter:
                ports.append({"name": "jupyter", "port": D.JUPYTER_PORT})
            if spec.rstudio_server:
                ports.append({"name": "rstudio-server", "port": D.RSTUDIO_PORT})
        for e in spec.runtime.exposes:
            ports.append({"name": e.service or f"port-{e.envd_port}", "port": e.envd_port})
        return ports

    def image_config(self) -> dict[str, object]:
        spec, base = self.spec, self.opts.base_config
        ports = self.ports()
        labels = dict(base.labels)
        labels.update(
            {
                LABEL + "vendor": "envbuild",
                LABEL + "spec": (self.label_spec or credentials.public_spec(spec)).to_json(),
                LABEL + "digest": self.opts.input_digest,
                LABEL + "project": self.opts.project,
                LABEL + "dev": "true" if spec.dev else "false",
                LABEL + "ports": json.dumps(ports, separators=(",", ":")),
                LABEL + "gpu": "true" if spec.gpu_enabled else "false",
                LABEL + "owner": f"{self.uid}:{self.gid}",
            }
        )
        labels.update(self.add.labels)
        if self.opts.inputs_label:
            labels[LABEL + "inputs"] = self.opts.inputs_label
        if spec.repo:
            labels[LABEL + "repo"] = json.dumps(
                {"url": credentials.redact_url(spec.repo.url), "description": spec.repo.description}
            )
        cfg: dict[str, object] = {
            "env": [f"{k}={v}" for k, v in self.final_env().items()],
            "labels": labels,
            "exposed_ports": [f"{p['port']}/tcp" for p in ports],
        }
        if spec.dev:
            cfg.update(
                user="envd" if self.uid != 0 else "root",
                working_dir=self.workdir,
                entrypoint=[D.ENTRYPOINT],
                cmd=[],
            )
        elif spec.entrypoint is not None:
            cfg.update(entrypoint=list(spec.entrypoint.args), cmd=[])
        if self.opts.platform:
            cfg["platform"] = self.opts.platform
        return MappingProxyType(cfg)  # type: ignore[return-value]


def _rel(path: str) -> str:
    """A context-relative path, refusing escapes (the frontend checks too; this keeps LLB honest)."""
    p = posixpath.normpath(path.lstrip("/"))
    if p == ".." or p.startswith("../"):
        raise UsageError(f"{path!r} is outside the build context")
    return p


def _host(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def _short(text: str, n: int = 60) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= n else line[: n - 1] + "…"


def _pip_conf(idx: PipIndex) -> str:
    """pip reads its config with configparser: a value is one line, so a line break is refused."""
    where = f"{idx.pos}: " if idx.pos else ""
    for url in (idx.url, idx.extra_url):
        if "\n" in url or "\r" in url:
            raise UsageError(f"{where}config.pip_index(): {url!r} has a line break, which /etc/pip.conf cannot hold")
    lines = ["[global]", f"index-url = {idx.url}"]
    if idx.extra_url:
        lines.append(f"extra-index-url = {idx.extra_url}")
    if idx.trust:
        hosts = (_host(idx.url), _host(idx.extra_url) if idx.extra_url else "")
        lines.append("trusted-host = " + " ".join(h for h in hosts if h))
    return "\n".join(lines) + "\n"


_GIT_PLAIN = re.compile(r"[^\s\\\"#;\x00-\x1f](?:[^\\\"#;\x00-\x1f]*[^\s\\\"#;\x00-\x1f])?")
"""A value git reads back as written: no quote, backslash, comment character or control character,
and no whitespace at either end."""


def git_value(text: str) -> str:
    """The one escaping function for git config values: as is when `_GIT_PLAIN`, else double-quoted
    with git's escapes for backslash, double quote, newline, tab and backspace, so no value can
    start a key or a section."""
    if _GIT_PLAIN.fullmatch(text):
        return text
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\t", "\\t"), ("\b", "\\b")):
        text = text.replace(raw, escaped)
    return f'"{text}"'


def gitconfig(name: str, email: str, editor: str) -> str:
    """``~/.gitconfig`` from ``git_config(...)``, every value through `git_value`."""
    out = "[user]\n"
    if name:
        out += f"\tname = {git_value(name)}\n"
    if email:
        out += f"\temail = {git_value(email)}\n"
    if editor:
        out += f"[core]\n\teditor = {git_value(editor)}\n"
    return out
