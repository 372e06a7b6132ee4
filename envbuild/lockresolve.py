"""`envbuild lock`: resolve everything a spec installs *inside its own image* and make the lock.

The spec is compiled as the build compiles it; the compiler records each package transaction with
the state its step runs on (`envbuild.compiler.installs`). One BuildKit solve then runs, on those
very states (cache hits shared with ``envbuild build``, so markers, wheel tags and the apt
architecture are the image's, not the host's):

* each apt transaction (envbuild's own and every ``install.apt_packages`` call): ``apt-get
  --simulate install`` with the step's sources and flags, which lists the whole closure;
* one ``uv pip compile --generate-hashes`` of every Python package the environment gets
  (JupyterLab, the venv's seed packages, every call's names, requirements files and local wheels)
  against the environment's interpreter, as its owner; a conflict is reported naming both sides;
* one solve of the conda environment (``conda create --dry-run --json``) for its URLs and hashes;
* ``io.http`` downloads without a checksum, fetched by the builder and hashed here.

With an earlier lock (and no ``--upgrade``) the spec is compiled with its pins, so earlier versions
stay where they still resolve: apt is asked for the pinned versions first, uv takes the earlier
pins as preferences, and an unchanged conda request keeps its packages. The resolution steps carry
a fresh nonce, so they always run; their results come back through a local export. Nothing here
writes to the engine's image store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets as _secrets
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import llb
from envbuild import images
from envbuild import lock as L
from envbuild.compiler import compile as compiler_mod
from envbuild.compiler import conda as conda_mod
from envbuild.compiler import scripts as S
from envbuild.compiler.compile import compile as compile_spec
from envbuild.compiler.credentials import NETRC_PATH, NETRC_SECRET_ID, redact_url
from envbuild.compiler.installs import AptInstall, CondaInstall, PythonInstall
from envbuild.compiler.mirrors import Mirrors
from envbuild.compiler.options import CompileOptions, Pins
from envbuild.errors import BuildFailed, EngineUnreachable, UsageError
from envbuild.lockfile import repository
from frontend.spec import Spec

IN_DIR = "/run/envbuild-lock-in"
WORK_DIR = "/run/envbuild-lock-work"
OUT_DIR = "/out"


@dataclasses.dataclass(frozen=True, slots=True)
class ResolveOptions:
    owner: tuple[int, int]
    project: str
    ca: bytes | None = None
    network: str = "sandbox"
    python_mirror: str | None = None
    proxy: Mapping[str, str] = dataclasses.field(default_factory=dict)
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    download_wheels: bool = False
    mirrors: Mirrors = dataclasses.field(default_factory=Mirrors)


def unlocked(spec: Spec) -> tuple[str, ...]:
    """What the build installs that the lock cannot pin (``build --locked`` refuses these)."""
    out: list[str] = []

    def at(item: Any) -> str:
        pos = getattr(item, "pos", None)
        return f" ({pos})" if pos else ""

    out += [f"install.r_packages{at(c)}: R packages come from CRAN as it is at build time" for c in spec.r_packages]
    out += [f"install.julia_packages{at(c)}: Julia packages resolve at build time" for c in spec.julia_packages]
    if spec.rust is not None:
        out.append(f"install.rust{at(spec.rust)}: rustup installs the toolchain the channel has at build time")
    if spec.uv is not None:
        out.append(f"install.uv{at(spec.uv)}: `uv python install` takes the newest matching CPython")
    if spec.pixi is not None:
        out.append(f"install.pixi{at(spec.pixi)}: the pixi archive is checked against its published checksum only")
    if spec.codex is not None:
        out.append(
            f"install.codex{at(spec.codex)}: the codex archive (no published checksum) is checked against the sha256 "
            "of its first download on the building machine only"
        )
    for c in spec.copies:
        if c.image:
            out.append(f"io.copy{at(c)}: files from the image {c.image} as its tag is at build time")
    return tuple(out)


def _toolchains(spec: Spec) -> tuple[tuple[L.Download, ...], tuple[str, ...]]:
    from envbuild.compiler import languages

    found: list[L.Download] = []
    unpinned: list[str] = []
    prefixes = {
        "go": lambda v: f"go{v}.linux-",
        "nodejs": lambda v: f"node-v{v}-linux-",
        "julia": lambda v: f"julia-{languages.JULIA_VERSION}-linux-",
    }
    for attr, prefix in prefixes.items():
        el = getattr(spec, attr)
        if el is None:
            continue
        p = prefix(getattr(el, "version", ""))
        hits = [L.Download(name, sha) for name, sha in sorted(languages.PINNED_SHA256.items()) if name.startswith(p)]
        if hits:
            found += hits
        else:
            unpinned.append(f"install.{attr}: the archive is checked against the upstream's published checksum only")
    return tuple(found), tuple(unpinned)


def lock_extensions(
    spec: Spec,
    context_dir: Path,
    *,
    arch: str = "amd64",
    root: Path | None = None,
    fetch: Any = None,
) -> tuple[tuple[L.LockedExtension, ...], ...]:
    """Resolve each extension id to a version and the sha256 of its .vsix (host side, like the build's
    ``vscode.prepare``: the same Open VSX mirror and cache)."""
    from envbuild.compiler import vscode

    if not spec.vscode_extensions:
        return ()
    mirrors = Mirrors.load()
    root = root or vscode.cache_root()
    kw = {"fetch": fetch} if fetch is not None else {}
    out: list[tuple[L.LockedExtension, ...]] = []
    for call in spec.vscode_extensions:
        locked: list[L.LockedExtension] = []
        for ext_id in call.names:
            (ext,) = vscode.prepare([ext_id], context_dir=context_dir, mirrors=mirrors, root=root, arch=arch, **kw)
            vsix = context_dir / ext_id if ext_id.lower().endswith(".vsix") else root / "vsix" / ext.source
            locked.append(L.LockedExtension(ext_id, ext.version, "sha256:" + L._file_sha(vsix)))
        out.append(tuple(locked))
    return tuple(out)


def _base(spec: Spec, client: Any) -> tuple[L.BaseImage, str]:
    data = images.inspect_image(images.engine_name(spec.image))
    if data is not None:
        arch = f"{data.get('Os') or 'linux'}/{data.get('Architecture') or 'amd64'}"
        return L.BaseImage(spec.image, str(data.get("Id") or ""), tuple(sorted(data.get("RepoDigests") or ()))), arch
    try:
        digest, config = client.resolve_image_config(spec.image)
    except Exception as exc:
        raise UsageError(f"base image {spec.image}: not in the engine's store and not resolvable ({exc})") from None
    arch = f"{config.get('os') or 'linux'}/{config.get('architecture') or 'amd64'}"
    repo = repository(spec.image)
    return L.BaseImage(spec.image, "", (f"{repo}@{digest}",) if digest else ()), arch


# ---- the resolution scripts -----------------------------------------------------------------------


def apt_script(install: AptInstall, out: str) -> str:
    """apt's plan for the transaction: the pinned words first (an earlier lock), else the names."""
    simulate = "apt-get $APT_TLS -s -q install --no-install-recommends"
    command = f"{simulate} {shlex.join(install.names)} > {out}"
    if install.words != install.names:
        command = f"{simulate} {shlex.join(install.words)} > {out} 2>/dev/null || {command}"
    return S.script(S.apt_prepare(install.mirror), command)


def python_script(
    request: PythonInstall,
    *,
    previous: bool,
    upgrade: bool,
    upgrade_packages: Sequence[str],
    download: bool,
) -> str:
    """Resolve ``IN_DIR/requirements.txt`` plus the venv's seed packages in one ``uv pip compile``
    (the previous pins, ``IN_DIR/previous.txt``, as preferences) as the environment's owner. Leaves
    ``python.txt`` (or ``python-error.txt``), ``python-version.txt`` and the wheels in ``OUT_DIR``."""
    uid, gid = request.uid, request.gid
    drop = "" if uid == 0 else f"setpriv --reuid={uid} --regid={gid} --init-groups "
    env = f"env HOME={request.home} UV_CACHE_DIR={S.UV_CACHE_DIR} UV_PYTHON={request.python} UV_LINK_MODE=copy"
    up = " --upgrade" if upgrade else "".join(f" --upgrade-package {shlex.quote(p)}" for p in upgrade_packages)
    options = f" {shlex.join(request.options)}" if request.options else ""
    seed = f"{WORK_DIR}/seed"
    lines = [
        f"mkdir -p {S.UV_CACHE_DIR}",
        f'[ "$(stat -c %u:%g {S.UV_CACHE_DIR})" = "{uid}:{gid}" ] || chown -R {uid}:{gid} {S.UV_CACHE_DIR}',
        f"install -d -m 0755 -o {uid} -g {gid} {WORK_DIR}",
        "# the seed packages `uv venv --seed` gives this interpreter (the build's venv has them)",
        f"{drop}{env} {S.UV_BIN} -q venv --seed --python {request.python} {seed}",
        f"cp {IN_DIR}/requirements.txt {WORK_DIR}/in.txt",
        f"{drop}{env} {S.UV_BIN} pip freeze --python {seed}/bin/python | sed 's/==.*//' >> {WORK_DIR}/in.txt",
        f"chown {uid}:{gid} {WORK_DIR}/in.txt",
    ]
    if previous:
        lines.append(f"install -m 0644 -o {uid} -g {gid} {IN_DIR}/previous.txt {WORK_DIR}/python.txt")
    lines += [
        f"if {drop}{env} {S.UV_BIN} pip compile --quiet --generate-hashes --strip-extras --no-header --no-annotate"
        f"{up}{options} {WORK_DIR}/in.txt -o {WORK_DIR}/python.txt 2> {OUT_DIR}/python-error.txt; then",
        f"  cp {WORK_DIR}/python.txt {OUT_DIR}/python.txt",
        "fi",
        f"{request.python} -c 'import platform, sysconfig;"
        f" print(platform.python_version(), sysconfig.get_platform())' > {OUT_DIR}/python-version.txt",
    ]
    if download:
        lines += [
            f"if [ -s {OUT_DIR}/python.txt ]; then",
            f"  awk {shlex.quote(without_local_wheels(S.CONTEXT_MOUNT))} {OUT_DIR}/python.txt"
            f" > {WORK_DIR}/download.txt",
            f"  env HOME={request.home} PIP_DISABLE_PIP_VERSION_CHECK=1 {seed}/bin/python -m pip download -q"
            f" --no-deps -r {WORK_DIR}/download.txt -d {OUT_DIR}/wheels",
            "fi",
        ]
    return S.script(*lines)


def without_local_wheels(context_mount: str) -> str:
    """An awk program that drops the requirements under ``context_mount`` (local wheels, already in
    the project) with their ``--hash`` continuation lines."""
    return f"index($0, {json.dumps(context_mount + '/')}) == 1 {{ skip = 1 }} !skip {{ print }} !/\\\\$/ {{ skip = 0 }}"


def conda_script(request: CondaInstall) -> str:
    """One solve of the conda environment's request, without installing: the packages as JSON."""
    words = shlex.join(["conda", "create", "--dry-run", "--json", "-p", conda_mod.ENV, *request.args, *request.specs])
    return S.script(f"{words} > {OUT_DIR}/conda.json 2> {OUT_DIR}/conda-error.txt || true")


# ---- the solve --------------------------------------------------------------------------------------


def resolve(
    spec: Spec,
    context_dir: Path,
    opts: ResolveOptions,
    *,
    previous: L.Lock | None = None,
    builder: str | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> L.Lock:
    """Run the resolution steps in one solve and turn what they report into the lock."""
    if spec.conda is not None and spec.python is not None and (spec.python_packages or spec.jupyter):
        raise UsageError(
            "envbuild lock: Python packages installed into a conda environment cannot be locked yet "
            "(install them with install.conda_packages, or remove the lock file to build unlocked)"
        )
    try:
        client = llb.connect(builder)
    except llb.LLBError as exc:
        raise EngineUnreachable(str(exc)) from None
    with client:
        base, platform = _base(spec, client)
        steps = _Steps.make(spec, context_dir, opts, client, previous)
        inputs = L.lock_inputs(spec, context_dir)
        reports = [*steps.apt(), *steps.python(previous), *steps.conda(previous, inputs), *_downloads(spec)]
        files = _collect(client, steps, reports, context_dir, on_event)
    return _lock(spec, context_dir, base, platform, files, steps, previous)


def not_covered(spec: Spec, context_dir: Path, lock: L.Lock) -> tuple[str, ...]:
    """What a build of ``spec`` by this envbuild installs that ``lock`` does not pin, although its
    inputs are fresh: package transactions envbuild itself adds or asks differently for (a lock made
    by another envbuild version), found by compiling the build with the lock's pins. Pure."""
    try:
        pins = L.pins(spec, lock)
    except L.LockError as exc:
        return (str(exc),)
    compiled = compile_spec(spec, CompileOptions(context_dir=str(context_dir), pins=pins))
    return compiled.uncovered


def previous_pins(spec: Spec, context_dir: Path, previous: L.Lock | None) -> Pins | None:
    """The earlier lock's versions to resolve on (non-strict: what no longer matches installs
    unpinned), without its interpreter release when the build asks for another Python or base."""
    if previous is None:
        return None
    try:
        pins = L.pins(spec, previous)
    except L.LockError:
        return None
    now = L.lock_inputs(spec, context_dir)
    if any(previous.inputs.get(k) != now[k] for k in ("image", "python")):
        pins = dataclasses.replace(pins, python_version="")
    return pins


@dataclasses.dataclass(frozen=True, slots=True)
class _Report:
    """A file a resolution step leaves behind: ``path`` in ``state``, collected as ``name``."""

    state: llb.State
    path: str
    name: str


@dataclasses.dataclass(slots=True)
class _Steps:
    """The resolution steps, on the build's own compiled steps and with its secrets and mounts."""

    spec: Spec
    opts: ResolveOptions
    compiled: compiler_mod.CompiledBuild
    env: dict[str, str]
    net: list[llb.Mount]
    conda_kept: bool = False

    @classmethod
    def make(
        cls, spec: Spec, context_dir: Path, opts: ResolveOptions, client: llb.Client, previous: L.Lock | None
    ) -> _Steps:
        pins = previous_pins(spec, context_dir, previous) if not opts.upgrade else None
        compile_options = CompileOptions(
            project=opts.project,
            owner=opts.owner,
            base_config=images.resolve(spec.image, client),
            proxy=dict(opts.proxy),
            network=opts.network,
            python_mirror=opts.python_mirror,
            mirrors=opts.mirrors,
            pins=pins,
            context_dir=str(context_dir),
        )
        compiled = compile_spec(spec, compile_options)
        env = {**compiler_mod.STEP_PATH, "ENVBUILD_LOCK_RUN": _secrets.token_hex(8)}  # always runs
        net = [llb.secret(S.CA_SECRET_PATH, S.CA_SECRET_ID, mode=0o444, optional=True), llb.tmpfs(S.TLS_DIR)]
        if NETRC_SECRET_ID in compiled.secret_values:  # index credentials: a secret like in the build
            net.append(llb.secret(NETRC_PATH, NETRC_SECRET_ID, mode=0o444))
            env.update(NETRC=NETRC_PATH)
        return cls(spec, opts, compiled, env, net)

    def secrets(self) -> dict[str, bytes]:
        return compiler_mod.solve_secrets(self.compiled, self.opts.ca)

    def run(
        self,
        state: llb.State,
        script: str,
        mounts: Sequence[llb.Mount],
        name: str,
        env: Mapping[str, str] | None = None,
    ) -> llb.ExecState:
        """A resolution step: ``OUT_DIR`` is a fresh scratch mount it writes its report into."""
        return state.run(
            ["/bin/sh", "-c", script],
            env={**(env or {}), **self.env},
            mounts=[*self.net, *mounts, llb.bind(OUT_DIR, llb.scratch(), readonly=False)],
            network=self.opts.network,
            name=name,
            proxy_env=dict(self.opts.proxy) or None,
        )

    def apt(self) -> list[_Report]:
        """apt's plan for each transaction, on the state the transaction runs on."""
        reports = []
        for i, install in enumerate(self.compiled.installs.apt):
            ran = self.run(
                install.before,
                apt_script(install, f"{OUT_DIR}/apt.txt"),
                install.mounts,
                f"lock: apt {install.step}",
            )
            reports.append(_Report(ran.mount_state(OUT_DIR), "/apt.txt", f"/apt-{i}.txt"))
        return reports

    def python(self, previous: L.Lock | None) -> list[_Report]:
        """One resolution of every Python package of the environment."""
        request = self.compiled.installs.python
        if request is None or (self.spec.conda is not None and self.spec.python is not None):
            return []
        if request.problems:
            raise UsageError(f"{request.problems[0]}: cannot be locked")
        keep = previous is not None and previous.python_packages is not None and not self.opts.upgrade
        inputs = llb.FileAction().mkfile("/requirements.txt", "".join(f"{r}\n" for r in request.requirements), 0o644)
        if keep:
            assert previous is not None and previous.python_packages is not None
            inputs = inputs.mkfile("/previous.txt", L.python_requirements(previous.python_packages, S.CONTEXT_MOUNT))
        script = python_script(
            request,
            previous=keep,
            upgrade=self.opts.upgrade,
            upgrade_packages=self.opts.upgrade_packages,
            download=self.opts.download_wheels,
        )
        mounts = [*request.mounts, llb.bind(IN_DIR, llb.scratch().file(inputs)), llb.tmpfs(WORK_DIR)]
        ran = self.run(request.before, script, mounts, "lock: python packages")
        return [_Report(ran.mount_state(OUT_DIR), "/", "/")]

    def conda(self, previous: L.Lock | None, inputs: Mapping[str, Any]) -> list[_Report]:
        """One solve of the conda environment; an unchanged request keeps the earlier lock's packages."""
        request = self.compiled.installs.conda
        if request is None:
            return []
        if (
            previous is not None
            and previous.conda is not None
            and not self.opts.upgrade
            and all(previous.inputs.get(k) == L.plain(inputs[k]) for k in _CONDA_INPUTS)
        ):
            self.conda_kept = True
            return []
        ran = self.run(request.before, conda_script(request), request.mounts, "lock: conda packages", request.env)
        return [_Report(ran.mount_state(OUT_DIR), "/conda.json", "/conda.json")]


_CONDA_INPUTS = ("conda_packages", "conda_channel", "python", "languages", "image")
"""The inputs a conda solve depends on: while they stay the same, so do the conda packages."""


def _downloads(spec: Spec) -> list[_Report]:
    """``io.http`` files without a checksum, fetched by the builder to be hashed here."""
    return [
        _Report(llb.http(h.url, filename="f"), "/f", f"/http-{i}") for i, h in enumerate(spec.http) if not h.checksum
    ]


def _collect(
    client: llb.Client,
    steps: _Steps,
    reports: Sequence[_Report],
    context_dir: Path,
    on_event: Callable[[Any], None] | None,
) -> dict[str, bytes]:
    """Solve the steps and read what they reported (file name -> bytes); downloaded wheels are
    copied into the project's wheel directory."""
    if not reports:
        return {}
    action = llb.copy(reports[0].state, reports[0].path, reports[0].name)
    for r in reports[1:]:
        action = action.copy(r.state, r.path, r.name)
    opts = steps.opts
    with tempfile.TemporaryDirectory(prefix="envbuild-lock-") as tmp:
        try:
            client.solve(
                llb.scratch().file(action, name="lock: collect results"),
                export=llb.LocalExport(tmp),
                local_dirs=dict(steps.compiled.local_dirs),
                secrets=steps.secrets(),
                entitlements=steps.compiled.entitlements,
                on_event=on_event,
            )
        except llb.ExecError as exc:
            tail = "\n".join("  | " + line for line in exc.log_tail[-20:])
            raise BuildFailed(f"lock: step {exc.vertex_name!r} failed\n{tail}") from None
        except llb.BuilderUnreachable as exc:
            raise EngineUnreachable(str(exc)) from None
        except llb.Cancelled:
            raise KeyboardInterrupt from None
        except llb.LLBError as exc:
            raise BuildFailed(f"lock: {exc}") from None
        out = Path(tmp)
        files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        if opts.download_wheels and (out / "wheels").is_dir():
            wheels_dir = context_dir / L.WHEELS_DIR
            wheels_dir.mkdir(parents=True, exist_ok=True)
            for wheel in sorted((out / "wheels").iterdir()):
                shutil.copyfile(wheel, wheels_dir / wheel.name)
    return files


# ---- the lock from the reports ----------------------------------------------------------------------


def _lock(
    spec: Spec,
    context_dir: Path,
    base: L.BaseImage,
    platform: str,
    files: Mapping[str, bytes],
    steps: _Steps,
    previous: L.Lock | None,
) -> L.Lock:
    apt = tuple(
        L.AptStep(install.key, install.names, L.parse_apt_simulation(files[f"apt-{i}.txt"].decode()))
        for i, install in enumerate(steps.compiled.installs.apt)
    )
    python_packages = _python_packages(spec, files, context_dir) if "python-version.txt" in files else None
    if steps.conda_kept:
        assert previous is not None
        conda = previous.conda
    else:
        conda = _conda_packages(spec, files) if "conda.json" in files else None
    toolchains, unpinned = _toolchains(spec)
    return L.Lock(
        inputs=L.lock_inputs(spec, context_dir),
        base=base,
        platform=platform,
        python=files.get("python-version.txt", b"").decode().strip() if python_packages is not None else "",
        apt=apt,
        python_packages=python_packages,
        conda=conda,
        http=downloads(spec, files),
        toolchains=toolchains,
        vscode=lock_extensions(spec, context_dir, arch=platform.rsplit("/", 1)[-1]),
        unlocked=unlocked(spec) + unpinned,
    )


def downloads(spec: Spec, files: Mapping[str, bytes]) -> tuple[L.Download, ...]:
    """The ``io.http`` records: each URL as the lock shows it (a login redacted: the lock is
    committed; `lock.apply_lock` finds them by the same form), with its checksum or the sha256 of
    what the resolution downloaded (``http-<i>``)."""
    http = [
        L.Download(redact_url(h.url), h.checksum or "sha256:" + hashlib.sha256(files[f"http-{i}"]).hexdigest())
        for i, h in enumerate(spec.http)
    ]
    return tuple(sorted(http, key=lambda d: d.url))


def _python_packages(spec: Spec, files: Mapping[str, bytes], context_dir: Path) -> tuple[L.PythonPackage, ...]:
    if "python.txt" not in files:
        error = files.get("python-error.txt", b"").decode(errors="replace")
        raise UsageError(conflict_message(spec, error, context_dir))
    text = files["python.txt"].decode()
    odd = L.unpinnable(text, context_mount=S.CONTEXT_MOUNT)
    if odd:
        where = next((f"{c.pos}: " for c in spec.python_packages if c.pos), "")
        raise UsageError(
            f"{where}install.python_packages: cannot lock {', '.join(odd)} (not a package from an index: a path, "
            "URL or VCS requirement); build it into a wheel and pass it as local_wheels="
        )
    return L.parse_pip_compile(text, context_mount=S.CONTEXT_MOUNT)


_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)")


def conflict_message(spec: Spec, error: str, context_dir: Path) -> str:
    """uv could not resolve the packages together: name each side the build file asked for (with
    its position) whose package uv's explanation mentions, then the explanation."""
    mentioned = {L.normalise(m) for m in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", error)}
    sides: list[str] = []
    if spec.jupyter is not None and "jupyterlab" in mentioned:
        where = f" at {spec.jupyter.pos}" if spec.jupyter.pos else ""
        sides.append(f"config.jupyter(){where} ({S.JUPYTER_REQUIREMENT})")
    for call in spec.python_packages:
        names = list(call.names)
        if call.requirements:
            names += _requirements_lines(context_dir / call.requirements)
        asked = [n for n in names if (m := _REQUIREMENT_NAME.match(n)) and L.normalise(m.group(1)) in mentioned]
        if asked:
            where = f" at {call.pos}" if call.pos else ""
            sides.append(f"install.python_packages{where} ({', '.join(asked)})")
    explanation = "\n".join("  " + line for line in error.strip().splitlines()[-12:])
    if len(sides) >= 2:
        head = f"{sides[0]} conflicts with {' and '.join(sides[1:])}"
    elif sides:
        head = f"the Python packages cannot be resolved: {sides[0]}"
    else:
        head = "the Python packages cannot be resolved"
    return f"envbuild lock: {head} (uv says:)\n{explanation}"


def _requirements_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements file (what the user wrote there), for messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("-")]


def _conda_packages(spec: Spec, files: Mapping[str, bytes]) -> tuple[L.CondaPackage, ...]:
    where = f"{spec.conda.pos}: " if spec.conda is not None and spec.conda.pos else ""
    try:
        data = json.loads(files["conda.json"].decode() or "null")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        error = files.get("conda-error.txt", b"").decode(errors="replace").strip()
        raise UsageError(f"{where}envbuild lock: the conda packages cannot be solved:\n  {error[-2000:]}")
    if data.get("pip"):
        raise UsageError(
            f"{where}envbuild lock: the pip dependencies of a conda environment file cannot be locked "
            f"({', '.join(map(str, data['pip']))}); install them with install.python_packages"
        )
    fields = [f.name for f in dataclasses.fields(L.CondaPackage)]
    packages = [L.CondaPackage(**{k: str(p.get(k, "")) for k in fields}) for p in data.get("packages", ())]
    return tuple(sorted(packages, key=lambda p: (p.name, p.subdir)))
