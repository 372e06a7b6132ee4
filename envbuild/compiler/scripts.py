"""Shell scripts the build steps run, and the files a development image carries.

Everything here is plain text derived from the spec and options, so it is unit-testable and ends up
in the LLB verbatim (a change to a script changes only the steps that run it). The scripts are POSIX
`sh` unless they say otherwise: the base may be any Debian or Ubuntu image, with or without bash.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from frontend.spec import LineEdit, PipOptions


CA_SECRET_ID = "envbuild-ca"
CA_SECRET_PATH = "/run/secrets/envbuild-ca.crt"
TLS_DIR = "/run/envbuild-tls"
CA_BUNDLE = f"{TLS_DIR}/ca.pem"

APT_CACHE_ID = "envbuild-apt-cache"
APT_LISTS_ID = "envbuild-apt-lists"
TOOLS_APT_CACHE_ID = "envbuild-apt-cache-tools"
TOOLS_APT_LISTS_ID = "envbuild-apt-lists-tools"
"""Apt caches of the parallel tool stages: the main chain's are ``locked``, so sharing them would make
a tool stage wait for the main chain's apt steps instead of running beside them."""
UV_CACHE_ID = "envbuild-uv-cache"
PIP_CACHE_ID = "envbuild-pip-cache"
UV_CACHE_DIR = "/var/cache/envbuild/uv"
PIP_CACHE_DIR = "/var/cache/envbuild/pip"

UV_VERSION = "0.13.9"
UV_WHEEL_SHA256 = (
    # manylinux_2_17_x86_64, musllinux_1_1_x86_64, manylinux_2_17_aarch64(+musl), manylinux_2_28_aarch64
    "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    "2c45530751517d6c3bbc69a19473f6effe47cce047bede01ffd8af7ea7b36b25",
    "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    "ecb6028d79dc96fbeafffe5c8af62a7099487ebc05a701e76714eebcffd06375",
)
TOOLS_DIR = "/opt/envbuild-tools"
UV_BIN = "/usr/local/bin/uv"

ENVBUILD_DIR = "/opt/envbuild"
VENV = f"{ENVBUILD_DIR}/venv"
MANAGED_PYTHON_DIR = f"{ENVBUILD_DIR}/python"
CONTEXT_MOUNT = "/run/envbuild-context"

DEV_APT_PACKAGES = (
    "ca-certificates",
    "curl",
    "git",
    "less",
    "openssh-client",
    "openssh-server",
    "procps",
    "sudo",
    "supervisor",
)

_TLS_PREAMBLE = (
    f"if [ -s {CA_SECRET_PATH} ]; then\n"
    f"  b={CA_BUNDLE}\n"
    f"  {{ cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null || true; cat {CA_SECRET_PATH}; }} 2>/dev/null > $b"
    f" || b={CA_SECRET_PATH}\n"
    "  export SSL_CERT_FILE=$b PIP_CERT=$b REQUESTS_CA_BUNDLE=$b CURL_CA_BUNDLE=$b GIT_SSL_CAINFO=$b"
    " NODE_EXTRA_CA_CERTS=$b\n"
    '  APT_TLS="-o Acquire::https::CAInfo=$b"\n'
    "else\n"
    '  APT_TLS=""\n'
    "fi\n"
)
"""Trust the user's extra CA (a secret mount, optional) for this step only: the combined bundle is
written to a tmpfs, so neither it nor the variables pointing at it reach a layer or the cache key."""


def script(*parts: str) -> str:
    """Join script parts; every step starts with `set -eu` and the CA preamble."""
    return "set -eu\n" + _TLS_PREAMBLE + "".join(p if p.endswith("\n") else p + "\n" for p in parts if p)


DPKG_UNSAFE_IO = "/etc/dpkg/dpkg.cfg.d/envbuild-unsafe-io"
APT_STEP_DIR = f"{TLS_DIR}/apt"
"""Step-private apt files (the rewritten sources, a locked transaction's plan): on the step's tmpfs,
so nothing of them reaches a layer."""

_APT_PREPARE = f"""\
export DEBIAN_FRONTEND=noninteractive
rm -f /etc/apt/apt.conf.d/docker-clean
printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d
echo force-unsafe-io > {DPKG_UNSAFE_IO}
trap 'rm -f /usr/sbin/policy-rc.d {DPKG_UNSAFE_IO}' EXIT
"""
"""No services start, and dpkg skips its fsync per file while the step runs (a step that dies is
thrown away anyway, so the syncs buy nothing); neither setting stays in the image."""

APT_MIRROR = re.compile(r"[a-z][a-z0-9+.-]*://[A-Za-z0-9._~:/?=@%+-]*(\{archive\}[A-Za-z0-9._~:/?=@%+-]*)?")
"""An apt mirror URL (``ENVBUILD_MIRROR_APT``), ``{archive}`` standing for the last path component
of each URI it replaces (``debian``, ``debian-security``, ``ubuntu``): only characters that need no
escaping in a sed replacement or a shell word."""


def _apt_mirror(mirror: str) -> str:
    """Point this step's apt at ``mirror`` instead of the image's sources (``APT_CONFIG``, on the
    step's tmpfs): the image keeps its own sources, and expired snapshot Release files are accepted."""
    if not APT_MIRROR.fullmatch(mirror):
        raise ValueError(f"not an apt mirror URL: {mirror!r}")
    replacement = mirror.replace("{archive}", "\\1")
    expr = f"s#[a-z][a-z0-9+.-]*://[^[:space:]]*/([^/[:space:]]+)/?([[:space:]]|$)#{replacement}\\2#g"
    return f"""\
mkdir -p {APT_STEP_DIR}/sources.list.d
: > {APT_STEP_DIR}/sources.list
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  out={APT_STEP_DIR}/sources.list.d/${{f##*/}}
  [ "$f" != /etc/apt/sources.list ] || out={APT_STEP_DIR}/sources.list
  sed -E {shlex.quote(expr)} "$f" > "$out"
done
printf 'Dir::Etc::SourceList "%s";\\nDir::Etc::SourceParts "%s";\\nAcquire::Check-Valid-Until "false";\\n' \\
  {APT_STEP_DIR}/sources.list {APT_STEP_DIR}/sources.list.d > {APT_STEP_DIR}/apt.conf
export APT_CONFIG={APT_STEP_DIR}/apt.conf
"""


def apt_prepare(mirror: str = "") -> str:
    """Before any apt-get of a step: quiet policies, the mirror (if any), then ``apt-get update``."""
    return _APT_PREPARE + (_apt_mirror(mirror) if mirror else "") + "apt-get $APT_TLS -qq update\n"


SNAPSHOT_HINT_MIRROR = (
    "run `envbuild lock --upgrade` to lock the versions it has now, or keep these versions by setting "
    "ENVBUILD_MIRROR_APT (or apt in [mirrors]) to a snapshot of the archive, "
    "e.g. http://snapshot.debian.org/archive/{archive}/20250101T000000Z"
)
SNAPSHOT_HINT_SOURCE = (
    "run `envbuild lock --upgrade` to lock the versions it has now, or keep these versions by pointing "
    "config.apt_source at a snapshot of the archive, e.g. "
    "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/20250101T000000Z bookworm main"
)


@dataclass(frozen=True, slots=True)
class AptRequest:
    """One apt transaction: ``words`` are package names or, from a lock, ``name=version``.

    ``pinned`` (a locked transaction) lists every package it may install, as ``name=version``: the
    step first asks apt for its plan and fails when apt would install anything else or another
    version, or when the source no longer has a locked version (saying which, and ``hint``).
    ``follow_lock``: apt prefers the ``pinned`` versions for every package it installs (a
    transaction that asks for names, not for a locked closure). ``mirror`` replaces the image's apt
    sources for the step (`APT_MIRROR`)."""

    words: tuple[str, ...]
    pinned: tuple[str, ...] | None = None
    mirror: str = ""
    hint: str = SNAPSHOT_HINT_MIRROR
    follow_lock: bool = False


PREFERENCES_DIR = f"{APT_STEP_DIR}/preferences.d"


def _apt_lock_option(req: AptRequest) -> str:
    """apt's option that reads `_apt_plan_check`'s preferences (a `follow_lock` request)."""
    return f" -o Dir::Etc::PreferencesParts={PREFERENCES_DIR}" if req.follow_lock and req.pinned is not None else ""


def _apt_plan_check(req: AptRequest) -> str:
    plan, allowed, planned = f"{APT_STEP_DIR}/plan", f"{APT_STEP_DIR}/locked", f"{APT_STEP_DIR}/planned"
    prefer = ""
    if req.follow_lock:  # the image's preferences, then every locked version at a priority above all
        prefer = (
            f"mkdir -p {PREFERENCES_DIR}\n"
            f"cp -p /etc/apt/preferences.d/* {PREFERENCES_DIR}/ 2>/dev/null || true\n"
            "awk -F= '$0 != \"\" { printf \"Package: %s\\nPin: version %s\\nPin-Priority: 1001\\n\\n\", "
            f"$1, substr($0, length($1) + 2) }}' {allowed} > {PREFERENCES_DIR}/zz-envbuild-lock.pref\n"
        )
    simulate = f"apt-get $APT_TLS{_apt_lock_option(req)} -s -q install --no-install-recommends {shlex.join(req.words)}"
    return f"""\
mkdir -p {APT_STEP_DIR}
printf '%s\\n' {shlex.join(req.pinned or ("",))} > {allowed}
{prefer}if ! {simulate} > {plan} 2>&1; then
  missing=$(sed -n -e "s/^E: Version '\\(.*\\)' for '\\(.*\\)' was not found$/\\2=\\1/p" \\
    -e "s/^E: Unable to locate package \\(.*\\)$/\\1/p" \\
    -e "s/^E: Package '\\(.*\\)' has no installation candidate$/\\1/p" \\
    {plan} | tr '\\n' ' ')
  if [ -n "$missing" ]; then
    printf 'envbuild: error: the apt source no longer has the locked %s: %s\\n' \\
      "${{missing% }}" {shlex.quote(req.hint)} >&2
    exit 100
  fi
  cat {plan} >&2
  exit 100
fi
sed -n 's/^Inst \\([^ ]*\\) \\(\\[[^]]*\\] \\)\\{{0,1\\}}(\\([^ ]*\\) .*/\\1=\\3/p' {plan} > {planned}
if grep -vxqF -f {allowed} {planned}; then
  moved=$(grep -vxF -f {allowed} {planned} \\
    | awk -F= 'NR == FNR {{ v[$1] = $0; next }} $1 in v {{ printf "%s ", v[$1] }}' {allowed} -)
  if [ -n "$moved" ]; then
    printf 'envbuild: error: the apt source no longer has the locked %s: %s\\n' \\
      "${{moved% }}" {shlex.quote(req.hint)} >&2
    exit 100
  fi
  extra=$(grep -vxF -f {allowed} {planned} | tr '\\n' ' ')
  printf 'envbuild: error: apt would also install %s, which the lock does not have: run `envbuild lock`\\n' \\
    "${{extra% }}" >&2
  exit 100
fi
"""


def apt_get_install(req: AptRequest) -> str:
    """The install command (after `apt_prepare`); a locked request checks apt's plan first."""
    check = _apt_plan_check(req) if req.pinned is not None else ""
    return (
        check + f"apt-get $APT_TLS{_apt_lock_option(req)} -y -q install --no-install-recommends "
        f"-o APT::Keep-Downloaded-Packages=true {shlex.join(req.words)}\n"
    )


def apt_install(req: AptRequest, *, before: str = "", after: str = "") -> str:
    """One apt transaction; caches are mounts, so no apt lists or .debs land in the layer."""
    return script(apt_prepare(req.mirror), before, apt_get_install(req), after)


DEV_APT_BEFORE = (
    "mkdir -p /etc/ssh\n"
    "for t in rsa ecdsa ed25519; do [ -e /etc/ssh/ssh_host_${t}_key ] || : > /etc/ssh/ssh_host_${t}_key; done\n"
)
"""openssh-server's postinst makes only the host keys that do not exist yet: empty stand-ins save
it the key generation (~0.6 s CPU), since `DEV_APT_AFTER` removes the keys anyway."""
DEV_APT_AFTER = "rm -f /etc/ssh/ssh_host_*\n"
"""openssh-server's postinst makes host keys: remove them so no two containers share keys."""


def user_setup(uid: int, gid: int, shell: str) -> str:
    """Create `envd` with the host user's ids, reusing or renaming what the base already has."""
    sh = shlex.quote(shell)
    if uid == 0:
        body = f"""\
getent passwd envd >/dev/null || useradd -o -u 0 -g 0 -M -d /home/envd -s {sh} envd
usermod -p '*' envd
mkdir -p /home/envd
"""
    else:
        body = f"""\
getent group {gid} >/dev/null || groupadd -g {gid} envd
old=$(getent passwd {uid} | cut -d: -f1 || true)
if [ -n "$old" ] && [ "$old" != envd ]; then
  usermod -l envd -d /home/envd -m -g {gid} -s {sh} "$old"
elif getent passwd envd >/dev/null; then
  usermod -u {uid} -g {gid} -d /home/envd -s {sh} envd
else
  useradd -m -d /home/envd -u {uid} -g {gid} -s {sh} envd
fi
usermod -p '*' envd
mkdir -p /home/envd /etc/sudoers.d
chown {uid}:{gid} /home/envd
printf 'envd ALL=(ALL) NOPASSWD:ALL\\n' > /etc/sudoers.d/envd
chmod 0440 /etc/sudoers.d/envd
"""
    return "set -eu\n" + body + f"install -d -m 0755 -o {uid} -g {gid} {ENVBUILD_DIR}\n"


def _uv_requirement() -> str:
    return f"uv=={UV_VERSION} " + " ".join(f"--hash=sha256:{h}" for h in UV_WHEEL_SHA256)


def _index_args(index_url: str | None, extra_index_url: str | None) -> str:
    idx = ""
    if index_url:
        idx += f" --index-url {shlex.quote(index_url)}"
    if extra_index_url:
        idx += f" --extra-index-url {shlex.quote(extra_index_url)}"
    return idx


UV_WHEELS = f"{PIP_CACHE_DIR}/envbuild-uv-{UV_VERSION}"
"""The pinned uv wheel, kept in the pip cache mount once pip has downloaded it (hash-checked): later
builds check its hash again and take the binaries out of it, without starting pip (~4 s)."""

_UV_UNPACK = f"""\
import glob, hashlib, os, platform, shutil, sys, zipfile
wheels, dest = sys.argv[1:3]
for wheel in sorted(glob.glob(os.path.join(wheels, "uv-{UV_VERSION}-*.whl"))):
    if platform.machine() not in os.path.basename(wheel):
        continue
    with open(wheel, "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() not in {UV_WHEEL_SHA256!r}:
            continue
    os.makedirs(dest, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for name in ("uv", "uvx"):
            member = "uv-{UV_VERSION}.data/scripts/" + name
            if name == "uvx" and member not in z.namelist():
                continue
            with z.open(member) as src, open(os.path.join(dest, name + ".part"), "wb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(out.name, 0o755)
            os.replace(out.name, os.path.join(dest, name))
    sys.exit(0)
sys.exit(1)
"""
"""``python3 -c`` program: the binaries of a cached uv wheel whose sha256 is one of the pinned ones, for
this machine, into a directory; exit 1 when there is none."""


def _uv_binaries(dest: str, index_url: str | None, extra_index_url: str | None) -> str:
    """uv and uvx into ``dest``: from the cached wheel (`UV_WHEELS`), else downloaded first by pip from
    the user's index with every hash required (no GitHub download, and a mirror just works). The
    download lands in a directory of its own and is moved in whole, so a concurrent build never sees
    half a wheel; a wheel whose hash is not pinned is never used."""
    return (
        f"uv_unpack() {{ python3 -c {shlex.quote(_UV_UNPACK)} {UV_WHEELS} {dest}; }}\n"
        "if ! uv_unpack 2>/dev/null; then\n"
        "  whl=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | tail -n 1 || true)\n"
        '  if [ -n "$whl" ]; then\n'
        '    pip="python3 $whl/pip"\n'
        "  else\n"
        f"    python3 -m venv {TOOLS_DIR}-pip\n"
        f"    pip={TOOLS_DIR}-pip/bin/pip\n"
        "  fi\n"
        f"  mkdir -p {UV_WHEELS}\n"
        f"  t=$(mktemp -d {UV_WHEELS}/.download.XXXXXX)\n"
        f"  printf '%s\\n' {shlex.quote(_uv_requirement())} > $t/requirements.txt\n"
        f"  PIP_CACHE_DIR={PIP_CACHE_DIR} $pip download -q --disable-pip-version-check --no-deps"
        f'{_index_args(index_url, extra_index_url)} --require-hashes -d "$t" -r $t/requirements.txt\n'
        f'  mv "$t"/uv-*.whl {UV_WHEELS}/\n'
        f'  rm -rf "$t" {TOOLS_DIR}-pip\n'
        "  uv_unpack\n"
        "fi\n"
    )


def _uv_bootstrap(index_url: str | None, extra_index_url: str | None) -> str:
    """The pinned, hash-checked uv at `UV_BIN`, unless the image has it (`_uv_binaries`; not indented:
    the unpacking program is Python)."""
    return (
        f"if ! {UV_BIN} --version 2>/dev/null | grep -q {shlex.quote('uv ' + UV_VERSION)}; then\n"
        + _uv_binaries(f"{TOOLS_DIR}/bin", index_url, extra_index_url)
        + f"install -m 0755 {TOOLS_DIR}/bin/uv {UV_BIN}\n"
        f"rm -rf {TOOLS_DIR}\n"
        "fi\n"
        f"{UV_BIN} --version\n"
    )


def uv_tool(index_url: str | None = None, extra_index_url: str | None = None) -> str:
    """The same pinned uv (and uvx) in a tool stage's ``TOOLS_DIR``, for images that get uv without
    the venv step (conda owns Python, or ``install.uv``): only the binaries are copied out."""
    return script(_uv_binaries(f"{TOOLS_DIR}/bin", index_url, extra_index_url), f"{TOOLS_DIR}/bin/uv --version")


def _drop_to(uid: int, gid: int, *, init_groups: bool = True) -> str:
    """Run as the image user; ``init_groups=False`` where the user has no passwd entry (a tool stage)."""
    if uid == 0:
        return ""
    groups = "--init-groups" if init_groups else "--clear-groups"
    return f"setpriv --reuid={uid} --regid={gid} {groups} "


def _own_cache(uid: int, gid: int) -> str:
    """A shared cache stays usable when the owner changes: re-own it only then (cheap otherwise)."""
    return (
        f"mkdir -p {UV_CACHE_DIR}\n"
        f'[ "$(stat -c %u:%g {UV_CACHE_DIR})" = "{uid}:{gid}" ] || chown -R {uid}:{gid} {UV_CACHE_DIR}\n'
    )


PYTHON_APT = ("ca-certificates", "python3", "python3-venv")
"""What the Python runtime stage installs with apt (the venv and uv are made with the distribution's
Python)."""


def python_runtime(
    version: str,
    uid: int,
    gid: int,
    *,
    home: str,
    apt: AptRequest,
    index_url: str | None = None,
    extra_index_url: str | None = None,
    seed: bool = True,
) -> str:
    """uv, then the distribution's CPython when it is the version asked for, else a uv-managed one; a venv.

    ``version`` is a minor version (``3.11``; ``3``: the distribution's) or, from a lock, an exact
    one (``3.12.7``), which the distribution's Python satisfies only when it is that very release.
    Runs in a stage of its own beside the main chain (the image user has no passwd entry there, the
    ids are numeric); `python_check` then makes sure the image has the interpreter the venv points at.
    The choice is made in the step (the distro's version is a fact of the base image, unknown to the
    pure compiler); a uv-managed CPython honours `UV_PYTHON_INSTALL_MIRROR` set on the step.
    ``seed=False`` (a locked build) leaves pip and friends to the locked packages.
    """
    v = shlex.quote(version)
    drop = _drop_to(uid, gid, init_groups=False)
    uv_env = f"env HOME={home} UV_CACHE_DIR={UV_CACHE_DIR} UV_PYTHON_INSTALL_DIR={MANAGED_PYTHON_DIR}"
    return script(
        apt_prepare(apt.mirror),
        apt_get_install(apt),
        _uv_bootstrap(index_url, extra_index_url),
        f"install -d -m 0755 -o {uid} -g {gid} {ENVBUILD_DIR}",
        f"[ -d {home} ] || install -d -m 0755 -o {uid} -g {gid} {home}",
        _own_cache(uid, gid),
        "distro=$(python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])')",
        "release=$(python3 -c 'import platform; print(platform.python_version())')",
        f"want={v}",
        'case "$want" in 3) want="$distro" ;; esac',
        'if [ "$distro" = "$want" ] || [ "$release" = "$want" ]; then',
        "  py=$(command -v python3)",
        "else",
        '  echo "envbuild: the base image has Python $release; installing CPython $want with uv"',
        f"  install -d -m 0755 -o {uid} -g {gid} {MANAGED_PYTHON_DIR}",
        f'  {drop}{uv_env} {UV_BIN} -q python install "$want"',
        '  py="$want"',
        "fi",
        f'{drop}{uv_env} UV_LINK_MODE=copy {UV_BIN} -q venv{" --seed" if seed else ""} --python "$py" {VENV}',
        f"{VENV}/bin/python --version",
    )


def python_check(apt: AptRequest) -> str:
    """The venv came from another stage: install the distribution's python3 it points at when the
    image lacks it (a development image has it already, supervisor needs it)."""
    indented = (apt_prepare(apt.mirror) + apt_get_install(apt)).replace("\n", "\n  ").rstrip(" ")
    return script(
        f'if ! {VENV}/bin/python -c "" 2>/dev/null; then',
        "  " + indented,
        "fi",
        f"{VENV}/bin/python --version",
    )


JUPYTER_REQUIREMENT = "jupyterlab>=4"
"""``config.jupyter``'s package: envbuild's Jupyter service is configured for jupyter_server 2
(``IdentityProvider.token``), which JupyterLab 4 brings; a user pin that rules it out is a conflict
`envbuild lock` reports, not a silent downgrade."""


def uv_pip_options(options: PipOptions) -> list[str]:
    """The uv spelling of the pip options a ``python_packages`` call carries in its names."""
    args: list[str] = []
    if options.index_url:
        args += ["--index-url", options.index_url]
    for url in options.extra_index_urls:
        args += ["--extra-index-url", url]
    for url in options.find_links:
        args += ["--find-links", url]
    for host in options.trusted_hosts:
        args += ["--allow-insecure-host", host]
    if options.pre:
        args.append("--prerelease=allow")
    if options.no_deps:
        args.append("--no-deps")
    if options.upgrade:
        args.append("--upgrade")
    if options.no_build_isolation:
        args.append("--no-build-isolation")
    return args


def pip_install(
    names: Sequence[str],
    requirements: Sequence[str],
    wheels: Sequence[str],
    uid: int,
    gid: int,
    *,
    home: str,
    python: str = f"{VENV}/bin/python",
    options: Sequence[str] = (),
    init_groups: bool = True,
) -> str:
    """`uv pip install` into the environment as its owner, downloads through the shared uv cache.

    ``python`` is the environment's interpreter: the venv's, or the conda env's when conda owns Python.
    ``options`` (uv options, see `uv_pip_options`) come before the requirements. ``init_groups=False``
    where the owner has no passwd entry (the Python stage, when its packages are layers of their own).
    """
    args = [*options, *names]
    for r in requirements:
        args += ["-r", r]
    args += wheels
    drop = _drop_to(uid, gid, init_groups=init_groups)
    return script(
        _own_cache(uid, gid),
        f"{drop}env HOME={home} UV_CACHE_DIR={UV_CACHE_DIR} UV_LINK_MODE=copy UV_PYTHON={python}"
        f" {UV_BIN} pip install {shlex.join(args)}",
    )


def pip_sync(
    requirements: str,
    uid: int,
    gid: int,
    *,
    home: str,
    python: str = f"{VENV}/bin/python",
    options: Sequence[str] = (),
    compile_bytecode: bool = False,
    init_groups: bool = True,
) -> str:
    """A locked build's Python packages: `uv pip sync` of the lock's hashed requirements, so the
    environment holds exactly those packages (anything else is removed) and every file's hash is
    checked. ``init_groups`` as for `pip_install`."""
    env = f"env HOME={home} UV_CACHE_DIR={UV_CACHE_DIR} UV_LINK_MODE=copy UV_PYTHON={python}"
    if compile_bytecode:
        env += " UV_COMPILE_BYTECODE=1"
    return script(
        _own_cache(uid, gid),
        f"{_drop_to(uid, gid, init_groups=init_groups)}{env} {UV_BIN} pip sync --require-hashes "
        f"{shlex.join([*options, requirements])}",
    )


EDIT_DIR = "/run/envbuild-edit"
"""Where a requirements file is rewritten for uv (a writable copy of the context files)."""


def requirements_rewrite(path: str, edits: Sequence[LineEdit]) -> str:
    """Replace lines of the requirements file ``path`` in place (`frontend.spec.LineEdit`): awk
    prints each edit's text for its first line and skips the rest; the texts are awk ``-v`` values,
    their line breaks written ``\\n`` (they hold no backslash: `frontend.pip` refuses one)."""
    assigns: list[str] = []
    rules: list[str] = []
    for i, e in enumerate(edits):
        assigns += ["-v", f"r{i}=" + e.text.replace("\n", "\\n")]
        rules.append(f"NR >= {e.first} && NR <= {e.last} {{ if (NR == {e.first}) print r{i}; next }}")
    program = " ".join([*rules, "{ print }"])
    p = shlex.quote(path)
    return f"awk {shlex.join([*assigns, program])} {p} > {p}.uv && mv {p}.uv {p}\n"


def user_run(commands: Sequence[str]) -> str:
    """A `run()` call: bash with `set -euo pipefail`, like envd, but each command passed verbatim."""
    return "set -euo pipefail\n" + _TLS_PREAMBLE + "".join(c + "\n" for c in commands)
