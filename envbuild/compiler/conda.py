"""``install.conda``, ``install.conda_packages``, ``config.conda_channel``: conda without a vendor download.

py-rattler (the conda solver/installer behind pixi) is pip-installed, pinned and hash-checked, from
the user's Python index into a throw-away tool stage that runs in parallel with the main chain; the
main chain gets only that venv and a small conda-style command (`conda_cli.py`) on top of it.
The environment lives at ``/opt/conda/envs/envd`` (envd's path), packages are cached on a
persistent cache mount (a second build downloads nothing), and channels that are directories in
the build context (``./channel``) are bind-mounted as ``file://`` channels. Channel logins
(``user:password@``, a ``/t/<token>``) stay out of ``.condarc`` and the steps' commands: the conda
command reads them from a session secret through ``RATTLER_AUTH_FILE`` (`credentials.conda_auth`).
"""

from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import llb
from envbuild.compiler import credentials
from envbuild.compiler import scripts as S
from envbuild.compiler.installs import CondaInstall
from envbuild.compiler.mirrors import Mirrors
from envbuild.compiler.stagekit import Additions
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.compiler.stagekit import Ctx
    from frontend.spec import CondaPackages

ROOT = "/opt/conda"
ENV = f"{ROOT}/envs/envd"
CONDARC = f"{ROOT}/.condarc"
TOOL_DIR = "/opt/envbuild/conda-tool"
CLI_PATH = f"{TOOL_DIR}/conda_cli.py"
RATTLER_CACHE = "/root/.cache/rattler"
RATTLER_CACHE_ID = "envbuild-rattler-cache"
CHANNEL_MOUNT = "/run/envbuild-conda-channels"
DEFAULT_CONDARC = "channels:\n  - conda-forge\n"

RATTLER_VERSION = "0.28.0"
PYYAML_VERSION = "6.0.3"
WHEEL_SHA256 = {
    # py_rattler-0.28.0-cp310-abi3: manylinux_2_17_x86_64, manylinux_2_28_aarch64
    f"py-rattler=={RATTLER_VERSION}": (
        "4f4ab1d34d5394e7ce130a86e59009c95ace4f5757d9c3af04de1351bcea47eb",
        "61b24202374188e72130f1b3dc63b455befaafc3e49e5481a38b6a6c8828c1e0",
    ),
    # pyyaml-6.0.3 cp310..cp313, manylinux x86_64 then aarch64
    f"pyyaml=={PYYAML_VERSION}": (
        "9c7708761fccb9397fe64bbc0395abcae8c4bf7b0eac081e12b809bf47700d0b",
        "b8bb0864c5a28024fac8a632c443c87c5aa6f215c0b126c449ae1a150412f31d",
        "ba1cc08a7ccde2d2ec775841541641e4548226580ab850948cbfda66a1befcdc",
        "0f29edc409a6392443abf94b9cf89ce99889a1dd5376d94316ae5145dfedd5d6",
        "b30236e45cf30d2b8e7b3e85881719e98507abed1011bf463a8fa23e9c3e98a8",
        "10892704fc220243f5305762e276552a0395f7beb4dbf9b14ec8fd43b57f126c",
        "9149cad251584d5fb4981be1ecde53a1ca46c891a79788c0df828d2f166bda28",
        "ee2922902c45ae8ccada2c5b501ab86c36525b883eff4255313a253a3160861c",
    ),
}


def cli_source() -> str:
    """The shipped command's text (`conda_cli.py`, copied into the image as it is)."""
    return Path(__file__).with_name("conda_cli.py").read_text(encoding="utf-8")


def requirements() -> str:
    return "".join(
        f"{req} " + " ".join(f"--hash=sha256:{h}" for h in hashes) + "\n" for req, hashes in WHEEL_SHA256.items()
    )


def tool_script(index_url: str | None, extra_index_url: str | None) -> str:
    idx = ""
    if index_url:
        idx += f" --index-url {shlex.quote(index_url)}"
    if extra_index_url:
        idx += f" --extra-index-url {shlex.quote(extra_index_url)}"
    return S.script(
        f"python3 -m venv {TOOL_DIR}",
        f"printf '%s' {shlex.quote(requirements())} > /tmp/conda-tool-requirements.txt",
        f"PIP_CACHE_DIR={S.PIP_CACHE_DIR} {TOOL_DIR}/bin/pip install -q --disable-pip-version-check"
        f"{idx} --only-binary :all: --require-hashes -r /tmp/conda-tool-requirements.txt",
        f"{TOOL_DIR}/bin/python -c 'import rattler, yaml'",
    )


def wrapper() -> str:
    return f'#!/bin/sh\nexec {TOOL_DIR}/bin/python -I {CLI_PATH} "$@"\n'


def is_local_channel(channel: str) -> bool:
    """A directory of the build context: ``./x``, ``../``-free relative paths, ``file://./x``."""
    ch = channel.removeprefix("file://")
    return ch.startswith("./") or ch == "."


def tool_stage(c: Ctx, base: llb.State) -> llb.State:
    """py-rattler in a venv, from a state with the base's apt sources (shares the uv stage's apt step)."""
    pos = c.spec.conda.pos if c.spec.conda else None
    idx = c.spec.pip_index
    tools = c.apt(
        base,
        "tools-conda",
        ("python3-venv", "ca-certificates"),
        name="tools: python3-venv (for py-rattler)",
        pos=pos,
        tool=True,
    )
    return c.sh(
        tools,
        tool_script(idx.url if idx else None, idx.extra_url if idx and idx.extra_url else None),
        name=c.name(f"tools: py-rattler {RATTLER_VERSION} from the Python index", "pip", pos),
        mounts=[llb.cache(S.PIP_CACHE_DIR, S.PIP_CACHE_ID)],
    )


def step_env(mirrors: Mirrors) -> dict[str, str]:
    return {
        "ENVBUILD_CONDA_PKGS": RATTLER_CACHE,
        "ENVBUILD_CONDA_CHANNEL_ALIAS": mirrors.conda_channel_alias,
        "HOME": "/root",
    }


def stage(c: Ctx, state: llb.State, tools: llb.State, mirrors: Mirrors) -> tuple[llb.State, Additions]:
    """The conda command and the ``envd`` environment (with Python when ``install.python`` is used),
    then one step per ``install.conda_packages`` call."""
    spec = c.spec
    conda = spec.conda
    if conda is None:
        return state, Additions()
    pos = conda.pos
    owner = c.owner()
    state = c.apt(state, "conda", ("python3",), name="conda: python3 to run the conda command", pos=pos)
    condarc = spec.conda_channel.text if spec.conda_channel else DEFAULT_CONDARC
    action = (
        llb.copy(tools, TOOL_DIR, TOOL_DIR)
        .mkfile(CLI_PATH, cli_source(), 0o644)
        .mkfile("/usr/local/bin/conda", wrapper(), 0o755)
        .mkdir(f"{ROOT}/envs", 0o755, parents=True, owner=owner)
        .mkfile(CONDARC, condarc if condarc.endswith("\n") else condarc + "\n", 0o644)
    )
    if conda.use_mamba:
        action = action.mkfile("/usr/local/bin/micromamba", wrapper(), 0o755).mkfile(
            "/usr/local/bin/mamba", wrapper(), 0o755
        )
    state = state.file(action, name=c.name("conda: the conda command (py-rattler) and .condarc", "file", pos))

    env = step_env(mirrors)
    cache = [llb.cache(RATTLER_CACHE, RATTLER_CACHE_ID, sharing="locked"), *c.conda_auth]
    if c.conda_auth:  # the channels' logins: a secret the conda command reads, never its arguments
        env["RATTLER_AUTH_FILE"] = credentials.CONDA_AUTH_PATH
    chown = f"chown -R {owner[0]}:{owner[1]} {ENV}\n" if owner else ""
    specs = [f"python={spec.python.version}"] if spec.python else []
    label = f"python {spec.python.version}" if spec.python else "empty"
    env_pos = spec.python.pos if spec.python else pos
    calls = [_call_request(c, call) for call in spec.conda_packages]
    channels = {dest: mount for call in calls for dest, mount in call.channels.items()}
    env_files = [f for call in calls for f in call.env_files]
    joint = [*cache, *channels.values()]
    if env_files:
        joint.append(llb.bind(S.CONTEXT_MOUNT, c.context(env_files)))
    pairs = dict.fromkeys((call.args[i], call.args[i + 1]) for call in calls for i in range(0, len(call.args), 2))
    c.record_conda(
        CondaInstall(
            state,
            (*specs, *(n for call in spec.conda_packages for n in call.names)),
            tuple(word for pair in pairs for word in pair),
            tuple(joint),
            MappingProxyType(env),
        )
    )
    pins = c.opts.pins
    if pins is not None and pins.conda is not None:
        lock_dir = "/run/envbuild-lock"
        count = sum(1 for line in pins.conda.splitlines() if "://" in line)
        state = c.sh(
            state,
            S.script(f"conda create -y -p {ENV} --file {lock_dir}/conda.txt", chown),
            name=c.name(f"conda: environment envd, {count} packages from the lock", "conda", env_pos),
            mounts=[*joint, llb.bind(lock_dir, llb.scratch().file(llb.mkfile("/conda.txt", pins.conda, 0o444)))],
            env=env,
        )
    else:
        if pins is not None:
            c.not_locked("the conda packages")
        state = c.sh(
            state,
            S.script(f"conda create -y -p {ENV} {shlex.join(specs)}".rstrip(), chown),
            name=c.name(f"conda: environment envd ({label})", "conda", env_pos),
            mounts=cache,
            env=env,
        )
        for call, request in zip(spec.conda_packages, calls, strict=True):
            mounts = [*cache, *request.channels.values()]
            if request.env_files:
                mounts.append(llb.bind(S.CONTEXT_MOUNT, c.context(request.env_files)))
            state = c.sh(
                state,
                S.script(f"conda install -y -p {ENV} {shlex.join([*request.args, *call.names])}", chown),
                name=c.name(f"conda packages: {request.what}", "conda", call.pos),
                mounts=mounts,
                env=env,
            )
    extra = {"CONDA_DEFAULT_ENV": "envd", "CONDA_PREFIX": ENV}
    if conda.use_mamba:
        extra["MAMBA_ROOT_PREFIX"] = ROOT
    return state, Additions(env=extra, path=(f"{ENV}/bin",))


def _rel(path: str) -> str:
    p = posixpath.normpath(path.lstrip("/"))
    if p == ".." or p.startswith("../"):
        raise UsageError(f"{path!r} is outside the build context")
    return p


@dataclass(frozen=True, slots=True)
class _CallRequest:
    """One ``install.conda_packages`` call: its label, its channel and file arguments, the channel
    directories of the context it mounts (by mount path) and its environment file."""

    what: str
    args: tuple[str, ...]
    channels: dict[str, llb.Mount]
    env_files: tuple[str, ...]


def _call_request(c: Ctx, call: CondaPackages) -> _CallRequest:
    """A channel directory of the context is mounted at a path named after it, so the URLs a lock
    records for its packages are the same in every step and every build."""
    channels: dict[str, llb.Mount] = {}
    args: list[str] = []
    for ch in call.channels:
        if is_local_channel(ch):
            rel = _rel(ch.removeprefix("file://"))
            dest = f"{CHANNEL_MOUNT}/{rel}" if rel != "." else CHANNEL_MOUNT
            channels[dest] = llb.bind(dest, c.context([rel]), source_path="/" + rel)
            args += ["-c", f"file://{dest}"]
        else:
            args += ["-c", ch]
    env_files: tuple[str, ...] = ()
    if call.env_file:
        rel = _rel(call.env_file)
        env_files = (rel,)
        args += ["--file", posixpath.join(S.CONTEXT_MOUNT, rel)]
    what = " ".join([*call.names, *([f"--file {call.env_file}"] if call.env_file else [])])
    return _CallRequest(what, tuple(args), channels, env_files)
