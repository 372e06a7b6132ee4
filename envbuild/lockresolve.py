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
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from envbuild import lock as L
from envbuild.errors import BuildFailed, EngineUnreachable, UsageError
from frontend.spec import Python, Spec


def _rel(path: str) -> str:
    from envbuild.compiler.compile import _rel as rel

    return rel(path)

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
        out.append("the distribution's python3 follows the apt source; the venv's seed packages (pip, setuptools, wheel) are the index's latest (uv itself is pinned and hash-checked)")
    if spec.jupyter:
        out.append("jupyterlab (config.jupyter) is installed unpinned before the locked Python packages")
    if spec.conda_packages or spec.conda:
        out.append("conda packages are resolved at build time (conda locking is not implemented yet)")
    for what, items in (("R packages", spec.r_packages), ("Julia packages", spec.julia_packages)):
        if items:
            out.append(f"{what} are resolved at build time")
    if spec.vscode_extensions:
        out.append("VS Code extensions: versions are pinned; a .vsix downloaded at build time (not in envbuild's "
                   "cache) is not checked against the lock's sha256")
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
    spec: Spec, context_dir: Path, *, arch: str = "amd64", root: Path | None = None, fetch: Any = None,
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
    from envbuild import images

    data = images.inspect_image(images.engine_name(spec.image))
    if data is not None:
        arch = f"{data.get('Os') or 'linux'}/{data.get('Architecture') or 'amd64'}"
        return L.BaseImage(spec.image, str(data.get("Id") or ""), tuple(sorted(data.get("RepoDigests") or ()))), arch
    try:
        digest, config = client.resolve_image_config(spec.image)
    except Exception as exc:  # noqa: BLE001 - reported as the user's problem: the base cannot be found
        raise UsageError(f"base image {spec.image}: not in the engine's store and not resolvable ({exc})") from None
    arch = f"{config.get('os') or 'linux'}/{config.get('architecture') or 'amd64'}"
    repo = L._repository(spec.image)
    return L.BaseImage(spec.image, "", (f"{repo}@{digest}",) if digest else ()), arch


def _owner_words(uid: int, gid: int) -> str:
    return "" if uid == 0 else f"setpriv --reuid={uid} --regid={gid} --init-groups "


def pip_script(
    groups: Sequence[tuple[bool, Sequence[str]]], uid: int, gid: int, *, home: str, upgrade: bool,
    upgrade_packages: Sequence[str], download: bool = False,
) -> str:
    """Resolve each call (``in-N.txt``) with the previous pins (``prev-N.txt``) as preferences, install
    the pins, and leave ``pip-N.txt`` and ``python.txt`` in ``/out``. ``groups``: (has previous pins,
    local wheel paths) per call."""
    from envbuild.compiler import scripts as S

    drop = _owner_words(uid, gid)
    env = f"env HOME={home} UV_CACHE_DIR={S.UV_CACHE_DIR} UV_PYTHON={S.VENV}/bin/python UV_LINK_MODE=copy"
    up = " --upgrade" if upgrade else "".join(f" --upgrade-package {S.q(p)}" for p in upgrade_packages)
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
        lines.append(f"{drop}{env} {S.UV_BIN} pip install --quiet -r {out} {S.words(wheels)}".rstrip())
        lines.append(f"cp {out} {OUT_DIR}/pip-{i}.txt")
        if download:
            lines.append(
                f"env HOME={home} PIP_DISABLE_PIP_VERSION_CHECK=1 {S.VENV}/bin/python -m pip download -q --no-deps"
                f" -r {out} -d {OUT_DIR}/wheels"
            )
    lines.append(
        f"{S.VENV}/bin/python -c 'import platform, sysconfig; print(platform.python_version(), sysconfig.get_platform())'"
        f" > {OUT_DIR}/python.txt"
    )
    return S.script(*lines)


def apt_script(names: Sequence[str], out: str) -> str:
    from envbuild.compiler import scripts as S

    return S.script(
        "export DEBIAN_FRONTEND=noninteractive",
        "rm -f /etc/apt/apt.conf.d/docker-clean",
        "apt-get $APT_TLS -qq update",
        f"apt-get $APT_TLS -s -q install --no-install-recommends {S.words(names)} > {out}",
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
    import llb
    from envbuild import images
    from envbuild.compiler import CompileOptions
    from envbuild.compiler import compile as compiler_mod
    from envbuild.compiler import scripts as S
    from envbuild.compiler.compile import compile as compile_spec
    from envbuild.compiler.credentials import NETRC_PATH, NETRC_SECRET_ID

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
        copts = CompileOptions(
            project=opts.project,
            owner=opts.owner,
            base_config=images.resolve(spec.image, client),
            proxy=dict(opts.proxy),
            network=opts.network,
            python_mirror=opts.python_mirror,
        )
        nonce = {"ENVBUILD_LOCK_RUN": _secrets.token_hex(8)}
        step_env = {**compiler_mod.STEP_PATH, **nonce}
        net = [
            llb.secret(S.CA_SECRET_PATH, S.CA_SECRET_ID, mode=0o444, optional=True),
            llb.tmpfs(S.TLS_DIR),
        ]
        netrc = compiler_mod._Compiler(spec, copts).netrc
        if netrc:  # index credentials: a secret like in the build, never in the step env or the LLB
            net.append(llb.secret(NETRC_PATH, NETRC_SECRET_ID, mode=0o444))
            step_env.update(NETRC=NETRC_PATH)
        apt_mounts = [
            llb.cache("/var/cache/apt", S.APT_CACHE_ID, sharing="locked"),
            llb.cache("/var/lib/apt/lists", S.APT_LISTS_ID, sharing="locked"),
        ]
        copies: list[tuple[Any, str, str]] = []
        uses_context = False
        for i, call in enumerate(spec.apt_packages):
            before = compile_spec(reduced(spec, apt_calls=i, python=False), copts).state
            ex = before.run(
                ["/bin/sh", "-c", apt_script(call.names, f"{OUT_DIR}/apt-{i}.txt")],
                env=step_env, mounts=[*net, *apt_mounts, llb.bind(OUT_DIR, llb.scratch(), readonly=False)],
                network=opts.network, name=f"lock: apt {' '.join(call.names)}",
            )
            copies.append((ex.mount_state(OUT_DIR), f"/apt-{i}.txt", f"/apt-{i}.txt"))
        if spec.python_packages:
            comp = compile_spec(reduced(spec), copts)
            uid, gid = (opts.owner if spec.dev else (0, 0))
            home = "/home/envd" if spec.dev else "/root"
            inputs = llb.scratch().file(_inputs_action(spec, previous))
            mounts = [
                *net,
                llb.cache(S.UV_CACHE_DIR, S.UV_CACHE_ID),
                llb.bind(IN_DIR, inputs),
                llb.bind(OUT_DIR, llb.scratch(), readonly=False),
            ]
            files = [f for c in spec.python_packages for f in ([c.requirements] if c.requirements else []) + list(c.local_wheels)]
            if files:
                uses_context = True
                include = [p for f in files for p in (_rel(f), _rel(f) + "/**")]
                mounts.append(llb.bind(S.CONTEXT_MOUNT, llb.local(copts.context_name, include=include,
                                                                 shared_key_hint=copts.context_name)))
            groups = [
                (_has_prev(previous, i), [posixpath.join(S.CONTEXT_MOUNT, _rel(w)) for w in c.local_wheels])
                for i, c in enumerate(spec.python_packages)
            ]
            uv_env = compiler_mod._Compiler(spec, copts).uv_env()
            ex = comp.state.run(
                ["/bin/sh", "-c", pip_script(groups, uid, gid, home=home, upgrade=opts.upgrade,
                                             upgrade_packages=opts.upgrade_packages, download=opts.download_wheels)],
                env={**step_env, **uv_env}, mounts=mounts, network=opts.network, name="lock: python packages",
            )
            copies.append((ex.mount_state(OUT_DIR), "/", "/"))
        for i, h in enumerate(spec.http):
            if h.checksum:
                continue
            copies.append((llb.http(h.url, filename="f"), "/f", f"/http-{i}"))
        locked_http: list[L.Download] = [L.Download(h.url, h.checksum) for h in spec.http if h.checksum]
        result: dict[str, bytes] = {}
        if copies:
            copy = llb.copy(*copies[0])
            for c in copies[1:]:
                copy = copy.copy(*c)
            with tempfile.TemporaryDirectory(prefix="envbuild-lock-") as tmp:
                try:
                    client.solve(
                        llb.scratch().file(copy, name="lock: collect results"),
                        export=llb.LocalExport(tmp),
                        local_dirs={copts.context_name: str(context_dir)} if uses_context else {},
                        secrets={**({S.CA_SECRET_ID: opts.ca} if opts.ca else {}),
                                 **({NETRC_SECRET_ID: netrc} if netrc else {})},
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
                for p in Path(tmp).iterdir():
                    if p.is_file():
                        result[p.name] = p.read_bytes()
                if opts.download_wheels and (Path(tmp) / "wheels").is_dir():
                    wheels_dir = context_dir / L.WHEELS_DIR
                    wheels_dir.mkdir(parents=True, exist_ok=True)
                    for w in sorted((Path(tmp) / "wheels").iterdir()):
                        shutil.copyfile(w, wheels_dir / w.name)
        for i, h in enumerate(spec.http):
            if not h.checksum:
                locked_http.append(L.Download(h.url, "sha256:" + hashlib.sha256(result[f"http-{i}"]).hexdigest()))
    apt = tuple(
        L.AptGroup(tuple(call.names), L.parse_apt_simulation(result[f"apt-{i}.txt"].decode()))
        for i, call in enumerate(spec.apt_packages)
    )
    for i, call in enumerate(spec.python_packages):
        wheels = tuple(posixpath.join(S.CONTEXT_MOUNT, _rel(w)) for w in call.local_wheels)
        odd = [r for r in L.unpinnable(result[f"pip-{i}.txt"].decode()) if not (wheels and r.endswith(wheels))]
        if odd:
            where = f"{call.pos}: " if call.pos else ""
            raise UsageError(
                f"{where}install.python_packages call {i + 1}: cannot lock {', '.join(odd)} (not a package from an "
                "index: a path, URL or VCS requirement); build it into a wheel and pass it as local_wheels="
            )
    pip = tuple(
        L.PipGroup(L.parse_pip_compile(result[f"pip-{i}.txt"].decode()), tuple(call.local_wheels))
        for i, call in enumerate(spec.python_packages)
    )
    python = result.get("python.txt", b"").decode().strip()
    toolchains, unpinned = _toolchains(spec)
    vscode_locked = lock_extensions(spec, context_dir, arch=platform.rsplit("/", 1)[-1])
    return L.Lock(
        inputs=L.lock_inputs(spec, context_dir),
        base=base,
        platform=platform,
        python=python,
        apt=apt,
        pip=pip,
        http=tuple(sorted(locked_http, key=lambda d: d.url)),
        toolchains=toolchains,
        vscode=vscode_locked,
        unlocked=_unlocked(spec) + unpinned,
    )


def _has_prev(previous: L.Lock | None, i: int) -> bool:
    return previous is not None and i < len(previous.pip) and bool(previous.pip[i].packages)


def _inputs_action(spec: Spec, previous: L.Lock | None) -> Any:
    import llb
    from envbuild.compiler import scripts as S

    action = llb.FileAction()
    for i, call in enumerate(spec.python_packages):
        action = action.mkfile(f"/in-{i}.txt", _pip_input(call, S.CONTEXT_MOUNT), 0o644)
        if _has_prev(previous, i):
            assert previous is not None
            action = action.mkfile(f"/prev-{i}.txt", previous.pip[i].requirements_text(), 0o644)
    return action
