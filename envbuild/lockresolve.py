"""`envbuild lock`: resolve a spec's packages *inside its own image* and write the lock.

Resolution runs in one BuildKit solve on the real build's own steps (the spec compiled without its
package lists, so the base, apt and Python steps are cache hits shared with ``envbuild build``):

* each ``install.apt_packages`` call: ``apt-get --simulate install`` on the image as built up to
  that call, with the build's apt source and flags (``--no-install-recommends``);
* the ``install.python_packages`` calls, in order, in one step as the environment's owner:
  ``uv pip compile --generate-hashes`` against the image's venv interpreter (its markers and wheel
  tags), then ``uv pip install`` of that pinned closure so the next call resolves on top of it, as
  the locked build will; an earlier lock's pins are uv's preferences unless ``--upgrade``;
* ``io.http`` downloads without a checksum, fetched by the builder and hashed here.

The resolution steps carry a fresh nonce, so they always run; their results come back through a
local export. Nothing here writes to the engine's image store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
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
from envbuild.compiler import scripts as S
from envbuild.compiler.compile import _rel
from envbuild.compiler.compile import compile as compile_spec
from envbuild.compiler.credentials import NETRC_PATH, NETRC_SECRET_ID
from envbuild.compiler.options import CompileOptions
from envbuild.errors import BuildFailed, EngineUnreachable, UsageError
from frontend.spec import Python, Spec

IN_DIR = "/run/envbuild-lock-in"
WORK_DIR = "/tmp/envbuild-lock"
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


def reduced(spec: Spec, *, apt_calls: int | None = None, python: bool = True) -> Spec:
    """The spec up to the package steps: same base/apt/Python steps as the build (cache hits), none
    of the steps that depend on what is being resolved."""
    changes: dict[str, Any] = {"python_packages": (), "runs": (), "copies": (), "http": ()}
    if apt_calls is not None:
        changes["apt_packages"] = spec.apt_packages[:apt_calls]
    if not python:
        changes.update(python=None, jupyter=None)
    elif spec.python_packages and spec.python is None:
        changes["python"] = Python(version="3")
    return dataclasses.replace(spec, **changes)


def _unlocked(spec: Spec) -> tuple[str, ...]:
    out: list[str] = []
    if spec.dev:
        out.append("development packages envbuild installs (sshd, supervisor, sudo, git, ...) follow the apt source")
    if spec.python or spec.python_packages or spec.jupyter:
        out.append(
            "the distribution's python3 follows the apt source; the venv's seed packages (pip, setuptools, wheel) "
            "are the index's latest (uv itself is pinned and hash-checked)"
        )
    if spec.jupyter:
        out.append("jupyterlab (config.jupyter) is installed unpinned before the locked Python packages")
    if spec.conda_packages or spec.conda:
        out.append("conda packages are resolved at build time (conda locking is not implemented yet)")
    for what, items in (("R packages", spec.r_packages), ("Julia packages", spec.julia_packages)):
        if items:
            out.append(f"{what} are resolved at build time")
    if spec.vscode_extensions:
        out.append(
            "VS Code extensions: versions are pinned; a .vsix downloaded at build time (not in envbuild's "
            "cache) is not checked against the lock's sha256"
        )
    if spec.runs:
        out.append("run() commands run as written; what they download is not locked")
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
            unpinned.append(f"{attr} archives are checked against the upstream's published checksum at build time")
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
    from envbuild.compiler.mirrors import Mirrors

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
    repo = L._repository(spec.image)
    return L.BaseImage(spec.image, "", (f"{repo}@{digest}",) if digest else ()), arch


def _owner_words(uid: int, gid: int) -> str:
    return "" if uid == 0 else f"setpriv --reuid={uid} --regid={gid} --init-groups "


def pip_script(
    groups: Sequence[tuple[bool, Sequence[str]]],
    uid: int,
    gid: int,
    *,
    home: str,
    upgrade: bool,
    upgrade_packages: Sequence[str],
    download: bool = False,
) -> str:
    """Resolve each call (``in-N.txt``) with the previous pins (``prev-N.txt``) as preferences, install
    the pins, and leave ``pip-N.txt`` and ``python.txt`` in ``/out``. ``groups``: (has previous pins,
    local wheel paths) per call."""
    from envbuild.compiler import scripts as S

    drop = _owner_words(uid, gid)
    env = f"env HOME={home} UV_CACHE_DIR={S.UV_CACHE_DIR} UV_PYTHON={S.VENV}/bin/python UV_LINK_MODE=copy"
    up = " --upgrade" if upgrade else "".join(f" --upgrade-package {shlex.quote(p)}" for p in upgrade_packages)
    lines = [
        f"mkdir -p {S.UV_CACHE_DIR}",
        f'[ "$(stat -c %u:%g {S.UV_CACHE_DIR})" = "{uid}:{gid}" ] || chown -R {uid}:{gid} {S.UV_CACHE_DIR}',
        f"install -d -m 0755 -o {uid} -g {gid} {WORK_DIR}",
    ]
    for i, (prev, wheels) in enumerate(groups):
        out = f"{WORK_DIR}/pip-{i}.txt"
        if prev:
            lines.append(f"install -m 0644 -o {uid} -g {gid} {IN_DIR}/prev-{i}.txt {out}")
        lines.append(
            f"{drop}{env} {S.UV_BIN} pip compile --quiet --generate-hashes --strip-extras --no-header --no-annotate"
            f"{up} {IN_DIR}/in-{i}.txt -o {out}"
        )
        lines.append(f"{drop}{env} {S.UV_BIN} pip install --quiet -r {out} {shlex.join(wheels)}".rstrip())
        lines.append(f"cp {out} {OUT_DIR}/pip-{i}.txt")
        if download:
            lines.append(
                f"env HOME={home} PIP_DISABLE_PIP_VERSION_CHECK=1 {S.VENV}/bin/python -m pip download -q --no-deps"
                f" -r {out} -d {OUT_DIR}/wheels"
            )
    lines.append(
        f"{S.VENV}/bin/python -c 'import platform, sysconfig;"
        f" print(platform.python_version(), sysconfig.get_platform())' > {OUT_DIR}/python.txt"
    )
    return S.script(*lines)


def apt_script(names: Sequence[str], out: str) -> str:
    return S.script(
        "export DEBIAN_FRONTEND=noninteractive",
        "rm -f /etc/apt/apt.conf.d/docker-clean",
        "apt-get $APT_TLS -qq update",
        f"apt-get $APT_TLS -s -q install --no-install-recommends {shlex.join(names)} > {out}",
    )


def _pip_input(call: Any, context_mount: str) -> str:
    lines = list(call.names)
    if call.requirements:
        lines.append("-r " + posixpath.join(context_mount, _rel(call.requirements)))
    lines += [posixpath.join(context_mount, _rel(w)) for w in call.local_wheels]
    return "".join(x + "\n" for x in lines)


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
    if spec.conda is not None and spec.python_packages:
        raise UsageError(
            "envbuild lock: Python packages installed into a conda environment cannot be locked yet "
            "(remove the lock file to build unlocked)"
        )
    try:
        client = llb.connect(builder)
    except llb.LLBError as exc:
        raise EngineUnreachable(str(exc)) from None
    with client:
        base, platform = _base(spec, client)
        steps = _Steps.make(spec, opts, client)
        reports = [*steps.apt(), *steps.python(previous), *_downloads(spec)]
        files = _collect(client, steps, reports, context_dir, on_event)
    return _lock(spec, context_dir, base, platform, files)


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
    compile_options: CompileOptions
    env: dict[str, str]
    net: list[llb.Mount]
    netrc: bytes | None
    uses_context: bool = False

    @classmethod
    def make(cls, spec: Spec, opts: ResolveOptions, client: llb.Client) -> _Steps:
        compile_options = CompileOptions(
            project=opts.project,
            owner=opts.owner,
            base_config=images.resolve(spec.image, client),
            proxy=dict(opts.proxy),
            network=opts.network,
            python_mirror=opts.python_mirror,
        )
        env = {**compiler_mod.STEP_PATH, "ENVBUILD_LOCK_RUN": _secrets.token_hex(8)}  # always runs
        net = [llb.secret(S.CA_SECRET_PATH, S.CA_SECRET_ID, mode=0o444, optional=True), llb.tmpfs(S.TLS_DIR)]
        netrc = compiler_mod._Compiler(spec, compile_options).netrc
        if netrc:  # index credentials: a secret like in the build, never in the step env or the LLB
            net.append(llb.secret(NETRC_PATH, NETRC_SECRET_ID, mode=0o444))
            env.update(NETRC=NETRC_PATH)
        return cls(spec, opts, compile_options, env, net, netrc)

    def secrets(self) -> dict[str, bytes]:
        return {
            **({S.CA_SECRET_ID: self.opts.ca} if self.opts.ca else {}),
            **({NETRC_SECRET_ID: self.netrc} if self.netrc else {}),
        }

    def apt(self) -> list[_Report]:
        """``apt-get --simulate`` of each call on the image as built up to that call."""
        apt_mounts = [
            llb.cache("/var/cache/apt", S.APT_CACHE_ID, sharing="locked"),
            llb.cache("/var/lib/apt/lists", S.APT_LISTS_ID, sharing="locked"),
        ]
        reports = []
        for i, call in enumerate(self.spec.apt_packages):
            before = compile_spec(reduced(self.spec, apt_calls=i, python=False), self.compile_options).state
            simulated = before.run(
                ["/bin/sh", "-c", apt_script(call.names, f"{OUT_DIR}/apt-{i}.txt")],
                env=self.env,
                mounts=[*self.net, *apt_mounts, llb.bind(OUT_DIR, llb.scratch(), readonly=False)],
                network=self.opts.network,
                name=f"lock: apt {' '.join(call.names)}",
            )
            reports.append(_Report(simulated.mount_state(OUT_DIR), f"/apt-{i}.txt", f"/apt-{i}.txt"))
        return reports

    def python(self, previous: L.Lock | None) -> list[_Report]:
        """One step for every ``install.python_packages`` call: compile, pin, install, in order."""
        spec, opts = self.spec, self.opts
        if not spec.python_packages:
            return []
        compiled = compile_spec(reduced(spec), self.compile_options)
        uid, gid = opts.owner if spec.dev else (0, 0)
        mounts = [
            *self.net,
            llb.cache(S.UV_CACHE_DIR, S.UV_CACHE_ID),
            llb.bind(IN_DIR, llb.scratch().file(_inputs_action(spec, previous))),
            llb.bind(OUT_DIR, llb.scratch(), readonly=False),
        ]
        files = [
            f
            for call in spec.python_packages
            for f in ([call.requirements] if call.requirements else []) + list(call.local_wheels)
        ]
        if files:
            self.uses_context = True
            include = [p for f in files for p in (_rel(f), _rel(f) + "/**")]
            context_name = self.compile_options.context_name
            mounts.append(
                llb.bind(S.CONTEXT_MOUNT, llb.local(context_name, include=include, shared_key_hint=context_name))
            )
        groups = [
            (_has_prev(previous, i), [posixpath.join(S.CONTEXT_MOUNT, _rel(w)) for w in call.local_wheels])
            for i, call in enumerate(spec.python_packages)
        ]
        script = pip_script(
            groups,
            uid,
            gid,
            home="/home/envd" if spec.dev else "/root",
            upgrade=opts.upgrade,
            upgrade_packages=opts.upgrade_packages,
            download=opts.download_wheels,
        )
        resolved = compiled.state.run(
            ["/bin/sh", "-c", script],
            env={**self.env, **compiler_mod._Compiler(spec, self.compile_options).uv_env()},
            mounts=mounts,
            network=opts.network,
            name="lock: python packages",
        )
        return [_Report(resolved.mount_state(OUT_DIR), "/", "/")]


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
    opts, context_name = steps.opts, steps.compile_options.context_name
    with tempfile.TemporaryDirectory(prefix="envbuild-lock-") as tmp:
        try:
            client.solve(
                llb.scratch().file(action, name="lock: collect results"),
                export=llb.LocalExport(tmp),
                local_dirs={context_name: str(context_dir)} if steps.uses_context else {},
                secrets=steps.secrets(),
                entitlements=("network.host",) if opts.network == "host" else (),
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


def _lock(spec: Spec, context_dir: Path, base: L.BaseImage, platform: str, files: Mapping[str, bytes]) -> L.Lock:
    """The lock from the resolution steps' reports."""
    http = [L.Download(h.url, h.checksum) for h in spec.http if h.checksum]
    http += [
        L.Download(h.url, "sha256:" + hashlib.sha256(files[f"http-{i}"]).hexdigest())
        for i, h in enumerate(spec.http)
        if not h.checksum
    ]
    apt = tuple(
        L.AptGroup(tuple(call.names), L.parse_apt_simulation(files[f"apt-{i}.txt"].decode()))
        for i, call in enumerate(spec.apt_packages)
    )
    for i, call in enumerate(spec.python_packages):
        wheels = tuple(posixpath.join(S.CONTEXT_MOUNT, _rel(w)) for w in call.local_wheels)
        odd = [r for r in L.unpinnable(files[f"pip-{i}.txt"].decode()) if not (wheels and r.endswith(wheels))]
        if odd:
            where = f"{call.pos}: " if call.pos else ""
            raise UsageError(
                f"{where}install.python_packages call {i + 1}: cannot lock {', '.join(odd)} (not a package from an "
                "index: a path, URL or VCS requirement); build it into a wheel and pass it as local_wheels="
            )
    pip = tuple(
        L.PipGroup(L.parse_pip_compile(files[f"pip-{i}.txt"].decode()), tuple(call.local_wheels))
        for i, call in enumerate(spec.python_packages)
    )
    toolchains, unpinned = _toolchains(spec)
    return L.Lock(
        inputs=L.lock_inputs(spec, context_dir),
        base=base,
        platform=platform,
        python=files.get("python.txt", b"").decode().strip(),
        apt=apt,
        pip=pip,
        http=tuple(sorted(http, key=lambda d: d.url)),
        toolchains=toolchains,
        vscode=lock_extensions(spec, context_dir, arch=platform.rsplit("/", 1)[-1]),
        unlocked=_unlocked(spec) + unpinned,
    )


def _has_prev(previous: L.Lock | None, i: int) -> bool:
    return previous is not None and i < len(previous.pip) and bool(previous.pip[i].packages)


def _inputs_action(spec: Spec, previous: L.Lock | None) -> llb.FileAction:
    action = llb.FileAction()
    for i, call in enumerate(spec.python_packages):
        action = action.mkfile(f"/in-{i}.txt", _pip_input(call, S.CONTEXT_MOUNT), 0o644)
        if _has_prev(previous, i):
            assert previous is not None
            action = action.mkfile(f"/prev-{i}.txt", previous.pip[i].requirements_text(), 0o644)
    return action
