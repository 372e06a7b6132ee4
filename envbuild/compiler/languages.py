"""Language runtimes and their packages: R, Julia, Rust, Go, Node.js, uv, pixi; and the codex agent.

Downloads happen in throw-away *fetch* stages (base + curl/xz) that run in parallel with the main
chain; only the unpacked result is copied in, so no curl, archive or checksum file reaches the image.
Every URL starts at a `Mirrors` setting. Each archive is verified with sha256: a checksum pinned
here when known for that version and architecture, else the checksum file the upstream publishes
next to its archives (fetched from the same mirror), and the step fails when neither matches. An
upstream that publishes no checksum (codex) has its first download's sha256 kept beside the cached
archive, and the step says so. Archives land on a persistent cache mount, so a rebuild downloads nothing.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

import llb
from envbuild.compiler import credentials
from envbuild.compiler import scripts as S
from envbuild.compiler.mirrors import Mirrors
from envbuild.compiler.stagekit import Additions

if TYPE_CHECKING:
    from envbuild.compiler.stagekit import Ctx

DL_CACHE = "/var/cache/envbuild/downloads"
DL_CACHE_ID = "envbuild-downloads"
OUT = "/out"

JULIA_VERSION = "1.10.10"
PIXI_VERSION = "0.62.2"
CODEX_VERSION = "rust-v0.98.0"
"""envd's fallback when GitHub cannot be asked for the latest release; envbuild's default."""
R_SITE_LIBRARY = "/usr/local/lib/R/site-library"
JULIA_DEPOT = "/opt/julia/user_packages"
DEFAULT_CRAN = "https://cran.rstudio.com"

PINNED_SHA256 = {
    "julia-1.10.10-linux-x86_64.tar.gz": "6a78a03a71c7ab792e8673dc5cedb918e037f081ceb58b50971dfb7c64c5bf81",
    "julia-1.10.10-linux-aarch64.tar.gz": "a4b157ed68da10471ea86acc05a0ab61c1a6931ee592a9b236be227d72da50ff",
    "go1.25.3.linux-amd64.tar.gz": "0335f314b6e7bfe08c3d0cfaa7c19db961b7b99fb20be62b0a826c992ad14e0f",
    "node-v25.1.0-linux-x64.tar.xz": "dbfed2a1ec191af657f727c9bdc87e88ec9b10fd1a095ed68996090648b0a03f",
}
"""Upstream sha256 of default-version archives; other versions use the published checksum file."""


@dataclass(frozen=True, slots=True)
class Archive:
    """One architecture's download: the archive URL and where its published checksum is (empty:
    the upstream publishes none)."""

    url: str
    sums_url: str
    cache_name: str = ""
    """The archive's name on the download cache when its file name is the same for every version
    (codex keeps the version in the directory)."""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def fetch_tools(c: Ctx, base: llb.State) -> llb.State:
    return c.apt(
        base,
        "tools-downloads",
        ("curl", "ca-certificates", "xz-utils"),
        name="tools: curl and xz (downloads)",
        pos=None,
        tool=True,
    )


def fetch_script(what: str, archives: dict[str, Archive], then: str, *, netrc: str | None = None) -> str:
    """Download (or reuse) the archive for this architecture, verify it, then run ``then``
    (with ``$f`` the archive path). A verified checksum is remembered next to the cached archive,
    so a rebuild needs neither the archive nor the checksum file from the network. ``netrc``: the
    path of a netrc file with the mirror's login (the URLs themselves carry none)."""
    curl = "curl -fsSL --retry 3" + (f" --netrc-file {shlex.quote(netrc)}" if netrc else "")
    cases = ""
    for arch, a in sorted(archives.items()):
        url, sums = shlex.quote(a.url), shlex.quote(a.sums_url)
        pinned = shlex.quote(PINNED_SHA256.get(a.filename, ""))
        keep = f"; keep={shlex.quote(a.cache_name)}" if a.cache_name else ""
        cases += f"  {arch}) url={url}; sums={sums}; pinned={pinned}{keep} ;;\n"
    return S.script(
        f"what={shlex.quote(what)}",  # a version from the build file: shell text only as this one quoted word
        "arch=$(dpkg --print-architecture 2>/dev/null || uname -m)",
        'case "$arch" in\n' + cases + '  *) echo "envbuild: $what has no build for $arch" >&2; exit 1 ;;\nesac',
        f"mkdir -p {DL_CACHE} {OUT}",
        f"name=${{url##*/}}; f={DL_CACHE}/$name",
        f'f="{DL_CACHE}/$keep"' if any(a.cache_name for a in archives.values()) else "",
        f'if [ ! -s "$f" ]; then {curl} -o "$f.part" "$url"; mv "$f.part" "$f"; fi',
        "want=$pinned",
        'if [ -z "$want" ] && [ -s "$f.verified" ]; then want=$(cat "$f.verified"); fi',
        _published_checksum(archives, curl),
        'if [ -z "$want" ] || ! echo "$want  $f" | sha256sum -c - >/dev/null; then',
        '  echo "envbuild: $what: sha256 of $name does not match ${want:-the published checksum} ($sums)" >&2',
        '  rm -f "$f"; exit 1',
        "fi",
        'echo "$want" > "$f.verified"',
        then,
    )


def _published_checksum(archives: dict[str, Archive], curl: str) -> str:
    """``want`` from the published checksum file (fetched with ``curl``); where the upstream publishes
    none, the sha256 of this first download (kept in ``$f.verified``, so later builds must match it)."""
    fetch = (
        f'  want=$({curl} "$sums" | awk -v n="$name" \'NF == 1 {{print $1}} '
        'NF > 1 {p = $2; sub(/^[*]/, "", p); sub(/.*[/]/, "", p); if (p == n) print $1}\' | head -n1)\n'
    )
    if all(a.sums_url for a in archives.values()):
        return 'if [ -z "$want" ]; then\n' + fetch + "fi\n"
    return (
        'if [ -z "$want" ]; then\n'
        '  want=$(sha256sum "$f" | cut -d" " -f1)\n'
        '  echo "envbuild: $what publishes no checksum: $name has sha256 $want, kept for later builds" >&2\n'
        "fi\n"
    )


def _stage(
    c: Ctx,
    tools: llb.State,
    state: llb.State,
    *,
    what: str,
    archives: dict[str, Archive],
    then: str,
    dest: str,
    pos: object,
    kind: str,
    env: dict[str, str] | None = None,
    user_owned: bool = True,
) -> llb.State:
    mounts = [llb.cache(DL_CACHE, DL_CACHE_ID, sharing="locked")]
    urls = [u for a in archives.values() for u in (a.url, a.sums_url)]
    login = credentials.netrc_for(urls, where=f"mirror of {kind}")
    netrc = None
    if login:  # the mirror's login reaches curl as a secret, never the step's command
        archives = {
            arch: Archive(credentials.strip_url(a.url), credentials.strip_url(a.sums_url))
            for arch, a in archives.items()
        }
        mounts.append(c.secret_file(f"envbuild-download-netrc-{kind}", login))
        netrc = f"{credentials.SECRETS_DIR}/envbuild-download-netrc-{kind}"
    fetched = c.sh(
        tools,
        fetch_script(what, archives, then, netrc=netrc),
        name=c.name(f"tools: download {what}", "download", pos),  # type: ignore[arg-type]
        mounts=mounts,
        env=env,
    )
    return state.file(
        llb.copy(fetched, OUT, dest, owner=c.owner() if user_owned else None),
        name=c.name(f"{what}: copy into {dest}", kind, pos),  # type: ignore[arg-type]
    )


def go(c: Ctx, state: llb.State, tools: llb.State, m: Mirrors) -> tuple[llb.State, Additions]:
    g = c.spec.go
    if g is None:
        return state, Additions()
    archives = {
        deb: Archive(f"{m.go}/go{g.version}.linux-{deb}.tar.gz", f"{m.go}/go{g.version}.linux-{deb}.tar.gz.sha256")
        for deb in ("amd64", "arm64")
    }
    state = _stage(
        c,
        tools,
        state,
        what=f"go {g.version}",
        archives=archives,
        then=f'tar -xzf "$f" -C {OUT} --strip-components=1',
        dest="/usr/local/go",
        pos=g.pos,
        kind="go",
        user_owned=False,
    )
    return state, Additions(path=("/usr/local/go/bin",))


def nodejs(c: Ctx, state: llb.State, tools: llb.State, m: Mirrors) -> tuple[llb.State, Additions]:
    n = c.spec.nodejs
    if n is None:
        return state, Additions()
    v = n.version.removeprefix("v")
    base = f"{m.nodejs}/v{v}"
    archives = {
        deb: Archive(f"{base}/node-v{v}-linux-{arch}.tar.xz", f"{base}/SHASUMS256.txt")
        for deb, arch in (("amd64", "x64"), ("arm64", "arm64"))
    }
    state = _stage(
        c,
        tools,
        state,
        what=f"node.js {v}",
        archives=archives,
        then=f'tar -xJf "$f" -C {OUT} --strip-components=1',
        dest="/opt/nodejs",
        pos=n.pos,
        kind="nodejs",
    )
    return state, Additions(path=("/opt/nodejs/bin",))


def julia(c: Ctx, state: llb.State, tools: llb.State, m: Mirrors) -> tuple[llb.State, Additions]:
    j = c.spec.julia
    if j is None:
        return state, Additions()
    v, minor = JULIA_VERSION, ".".join(JULIA_VERSION.split(".")[:2])
    sums = f"{m.julia}/checksums/julia-{v}.sha256"
    archives = {
        "amd64": Archive(f"{m.julia}/linux/x64/{minor}/julia-{v}-linux-x86_64.tar.gz", sums),
        "arm64": Archive(f"{m.julia}/linux/aarch64/{minor}/julia-{v}-linux-aarch64.tar.gz", sums),
    }
    state = _stage(
        c,
        tools,
        state,
        what=f"julia {v}",
        archives=archives,
        then=f'tar -xzf "$f" -C {OUT} --strip-components=1',
        dest="/opt/julia",
        pos=j.pos,
        kind="julia",
    )
    env = {"JULIA_DEPOT_PATH": JULIA_DEPOT}
    server = c.spec.julia_pkg_server
    secret: list[llb.Mount] = []
    from_secret = ""
    if server:
        env["JULIA_PKG_SERVER"] = credentials.strip_url(server.url)
        if credentials.has_credentials(server.url):
            secret.append(c.secret_file(credentials.JULIA_SECRET_ID, server.url.encode()))
            from_secret = f"JULIA_PKG_SERVER=$(cat {credentials.SECRETS_DIR}/{credentials.JULIA_SECRET_ID}) "
    for call in c.spec.julia_packages:
        names = "[" + ", ".join(_jl_str(n) for n in call.names) + "]"
        owner = c.owner()
        chown = f"chown -R {owner[0]}:{owner[1]} {JULIA_DEPOT}\n" if owner else ""
        state = c.sh(
            state,
            S.script(
                f"mkdir -p {JULIA_DEPOT}",
                f"{from_secret}/opt/julia/bin/julia -e {shlex.quote(f'using Pkg; Pkg.add({names})')}",
                chown,
            ),
            name=c.name(f"julia packages: {' '.join(call.names)}", "julia", call.pos),
            env=env,
            mounts=secret,
        )
    return state, Additions(env=env, path=("/opt/julia/bin",))


def rust(c: Ctx, state: llb.State, tools: llb.State, m: Mirrors) -> tuple[llb.State, Additions]:
    r = c.spec.rust
    if r is None:
        return state, Additions()
    archives = {
        deb: Archive(
            f"{m.rustup_update_root}/dist/{triple}/rustup-init",
            f"{m.rustup_update_root}/dist/{triple}/rustup-init.sha256",
        )
        for deb, triple in (("amd64", "x86_64-unknown-linux-gnu"), ("arm64", "aarch64-unknown-linux-gnu"))
    }
    env = {
        "RUSTUP_HOME": "/opt/rust",
        "CARGO_HOME": "/opt/rust",
        "RUSTUP_DIST_SERVER": m.rustup_dist_server,
        "RUSTUP_UPDATE_ROOT": credentials.strip_url(m.rustup_update_root),  # its login is for the download only
    }
    toolchain = r.version or "stable"
    then = (
        f'install -m 0755 "$f" /tmp/rustup-init\n'
        f"RUSTUP_HOME={OUT} CARGO_HOME={OUT} /tmp/rustup-init -y -q --no-modify-path --profile minimal"
        f" --default-toolchain {shlex.quote(toolchain)}\n"
        f"RUSTUP_HOME={OUT} CARGO_HOME={OUT} {OUT}/bin/rustc --version"
    )
    step_env = {k: v for k, v in env.items() if k.startswith("RUSTUP_") and k != "RUSTUP_HOME"}
    state = _stage(
        c,
        tools,
        state,
        what=f"rust {toolchain} (rustup)",
        archives=archives,
        then=then,
        dest="/opt/rust",
        pos=r.pos,
        kind="rust",
        env=step_env,
    )
    return state, Additions(env=env, path=("/opt/rust/bin",))


def pixi(c: Ctx, state: llb.State, tools: llb.State, m: Mirrors) -> tuple[llb.State, Additions]:
    """pixi is not on PyPI (the PyPI ``pixi`` is another project): the release archive from a
    configurable base URL, checked against the ``.sha256`` file published beside it."""
    p = c.spec.pixi
    if p is None:
        return state, Additions()
    base = f"{m.pixi}/v{PIXI_VERSION}"
    archives = {
        deb: Archive(
            f"{base}/pixi-{arch}-unknown-linux-musl.tar.gz", f"{base}/pixi-{arch}-unknown-linux-musl.tar.gz.sha256"
        )
        for deb, arch in (("amd64", "x86_64"), ("arm64", "aarch64"))
    }
    state = _stage(
        c,
        tools,
        state,
        what=f"pixi {PIXI_VERSION}",
        archives=archives,
        then=f'tar -xzf "$f" -C {OUT} pixi && chmod 0755 {OUT}/pixi',
        dest="/usr/local/bin",
        pos=p.pos,
        kind="pixi",
        user_owned=False,
    )
    config = ""
    if p.use_pixi_mirror:
        config += '[mirrors]\n"https://conda.anaconda.org/conda-forge" = ["https://prefix.dev/conda-forge"]\n'
    if p.pypi_index:  # a TOML basic string: JSON's string escapes are TOML's
        config += f"[pypi-config]\nindex-url = {json.dumps(p.pypi_index, ensure_ascii=False)}\n"
    if config:
        state = state.file(
            llb.mkdir("/etc/pixi", parents=True).mkfile("/etc/pixi/config.toml", config),
            name=c.name("pixi: /etc/pixi/config.toml", "file", p.pos),
        )
    return state, Additions()


def uv(c: Ctx, state: llb.State, uv_tools: llb.State) -> tuple[llb.State, Additions]:
    """``install.uv``: the uv the compiler already fetched (PyPI, hash-checked), plus a managed CPython."""
    u = c.spec.uv
    if u is None:
        return state, Additions()
    state = state.file(
        llb.copy(uv_tools, f"{S.TOOLS_DIR}/bin/uv", S.UV_BIN, mode=0o755).copy(
            uv_tools, f"{S.TOOLS_DIR}/bin/uvx", "/usr/local/bin/uvx", mode=0o755
        ),
        name=c.name("uv: copy uv and uvx from the tool stage", "file", u.pos),
    )
    env = {"UV_LINK_MODE": "copy", "UV_PYTHON_PREFERENCE": "only-managed"}
    step_env = dict(env)
    if c.opts.python_mirror:
        step_env["UV_PYTHON_INSTALL_MIRROR"] = c.opts.python_mirror
    drop = "" if c.uid == 0 else f"setpriv --reuid={c.uid} --regid={c.gid} --init-groups "
    state = c.sh(
        state,
        S.script(
            f"mkdir -p {S.UV_CACHE_DIR}",
            f'[ "$(stat -c %u {S.UV_CACHE_DIR})" = "{c.uid}" ] || chown -R {c.uid}:{c.gid} {S.UV_CACHE_DIR}',
            f"{drop}env HOME={c.home} UV_CACHE_DIR={S.UV_CACHE_DIR} {S.UV_BIN} python install "
            f"{shlex.quote(u.python_version)}",
        ),
        name=c.name(f"uv: python {u.python_version}", "uv", u.pos),
        mounts=[llb.cache(S.UV_CACHE_DIR, S.UV_CACHE_ID)],
        env=step_env,
    )
    return state, Additions(env=env, path=(f"{c.home}/.local/bin",))


def codex(c: Ctx, state: llb.State, tools: llb.State, m: Mirrors) -> tuple[llb.State, Additions]:
    """``install.codex``: OpenAI's static codex binary from its release archive to ``/usr/bin/codex``,
    as envd installs it. Without a version envd asks GitHub for the latest release when it compiles;
    envbuild takes `CODEX_VERSION` (envd's own fallback) and says so, so a build does not change
    behind the user's back."""
    x = c.spec.codex
    if x is None:
        return state, Additions()
    version = x.version or CODEX_VERSION
    if x.version is None:
        where = f"{x.pos}: " if x.pos else ""
        c.notes.append(
            f"{where}install.codex(): no version given, so codex {version} is installed (envd asks GitHub "
            "for the latest release); pin one with install.codex(version=...)"
        )
    archives = {
        deb: Archive(
            f"{m.codex}/{version}/codex-{arch}-unknown-linux-musl.tar.gz",
            "",
            cache_name=f"codex-{version}-{arch}-unknown-linux-musl.tar.gz",
        )
        for deb, arch in (("amd64", "x86_64"), ("arm64", "aarch64"))
    }
    state = _stage(
        c,
        tools,
        state,
        what=f"codex {version}",
        archives=archives,
        then=(
            'mkdir -p /tmp/codex && tar -xzf "$f" -C /tmp/codex\n'
            f"install -m 0755 /tmp/codex/codex-*-unknown-linux-musl {OUT}/codex"
        ),
        dest="/usr/bin",
        pos=x.pos,
        kind="codex",
        user_owned=False,
    )
    return state, Additions()


def cran_mirror(c: Ctx, m: Mirrors) -> str:
    return (c.spec.cran_mirror.url if c.spec.cran_mirror else "") or m.cran or DEFAULT_CRAN


def r_lang(c: Ctx, state: llb.State, m: Mirrors) -> tuple[llb.State, Additions]:
    """Debian/Ubuntu's own r-base (mirrorable with ``config.apt_source``), the CRAN mirror in
    ``Rprofile.site``, and a site library the ``envd`` user can write."""
    r = c.spec.r_lang
    if r is None and not c.spec.r_packages:
        return state, Additions()
    pos = r.pos if r else c.spec.r_packages[0].pos
    mirror = cran_mirror(c, m)
    owner = c.owner()
    secret: list[llb.Mount] = []
    repos = _r_str(mirror)
    if credentials.has_credentials(mirror):  # the steps read it at run time; the image names it without
        secret.append(c.secret_file(credentials.CRAN_SECRET_ID, mirror.encode()))
        repos = f"readLines({_r_str(f'{credentials.SECRETS_DIR}/{credentials.CRAN_SECRET_ID}')}, warn = FALSE)[1]"
    public = _r_str(credentials.strip_url(mirror))
    after = (
        f"mkdir -p {R_SITE_LIBRARY}\n"
        f"printf '%s\\n' {shlex.quote(f'options(repos = c(CRAN = {public}))')} >> /etc/R/Rprofile.site\n"
        + (f"chown -R {owner[0]}:{owner[1]} {R_SITE_LIBRARY}\n" if owner else "")
    )
    state = c.apt(state, "r", ("r-base", "r-base-dev"), name="r: r-base from the distribution", pos=pos, after=after)
    for call in c.spec.r_packages:
        pkgs = "c(" + ", ".join(_r_str(n) for n in call.names) + ")"
        expr = (
            f"pkgs <- {pkgs}; install.packages(pkgs, lib = {_r_str(R_SITE_LIBRARY)}, repos = {repos}); "
            f"missing <- setdiff(pkgs, rownames(installed.packages())); "
            f"if (length(missing)) {{ message('not installed: ', paste(missing, collapse = ' ')); quit(status = 1) }}"
        )
        chown = f"chown -R {owner[0]}:{owner[1]} {R_SITE_LIBRARY}\n" if owner else ""
        state = c.sh(
            state,
            S.script(f"Rscript -e {shlex.quote(expr)}", chown),
            name=c.name(f"r packages: {' '.join(call.names)}", "r", call.pos),
            mounts=secret,
        )
    return state, Additions()


def _r_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _jl_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
