"""SSH access to environments: the user's key pair and the `Host <name>.envbuild` entries.

Everything envbuild writes lives under ``~/.config/envbuild/`` (``$XDG_CONFIG_HOME`` honoured): the
ed25519 key pair, an envbuild-owned ``ssh_config`` with one block per environment, and one known-hosts
file per environment (each container has its own host keys, so a recreated environment must not trip
over the old key, and no other host's checking is relaxed). The user's ``~/.ssh/config`` only gains a
single ``Include`` line at its top, added once; its content is never rewritten otherwise.

All paths written into SSH configuration are absolute: OpenSSH expands ``~`` from the password
database, not ``$HOME``, and resolves relative ``Include`` paths against ``~/.ssh``.
"""

from __future__ import annotations

import contextlib
import fcntl
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from envbuild import paths
from envbuild._files import atomic_write
from envbuild.errors import EnvbuildError, RuntimeFailure, UsageError

HOST_SUFFIX = ".envbuild"
SSH_USER = "envd"
KEY_NAME = "id_ed25519"
_INCLUDE_COMMENT = "# Added by envbuild: `ssh <name>.envbuild` and VS Code Remote-SSH for envbuild environments."
_HEADER = (
    "# Managed by envbuild: one block per environment, rewritten by `envbuild up` and `envbuild destroy`.\n"
    "# Edits here are lost; put your own settings in ~/.ssh/config.\n"
)
_HOST_LINE = re.compile(r"^\s*Host\s+(\S+)\s*$", re.IGNORECASE)
_INCLUDE_LINE = re.compile(r"^\s*Include\s+(.+?)\s*$", re.IGNORECASE)


def config_dir() -> Path:
    """Where envbuild keeps per-user state: ``$XDG_CONFIG_HOME/envbuild`` or ``~/.config/envbuild``."""
    return paths.config_dir()


def ssh_config_path() -> Path:
    return config_dir() / "ssh_config"


def known_hosts_path(name: str) -> Path:
    return config_dir() / "known_hosts.d" / name


def user_ssh_config_path() -> Path:
    return Path.home() / ".ssh" / "config"


def host_alias(name: str) -> str:
    """The SSH host (and VS Code Remote-SSH target) for an environment."""
    return f"{name}{HOST_SUFFIX}"


@dataclass(frozen=True, slots=True)
class KeyPair:
    private: Path
    public: Path

    def public_key(self) -> str:
        return self.public.read_text().strip()


@dataclass(frozen=True, slots=True)
class HostEntry:
    """One environment's SSH endpoint; ``jump`` (``[user@]host[:port]``) is the machine whose
    engine runs it, when that is not this one: ``hostname`` and ``port`` are then that machine's."""

    name: str
    port: int
    hostname: str = "127.0.0.1"
    jump: str | None = None


_TOKENS = frozenset({
    "certificatefile", "controlpath", "hostname", "identityagent", "identityfile", "knownhostscommand",
    "localcommand", "localforward", "proxycommand", "proxyjump", "remotecommand", "remoteforward",
    "userknownhostsfile",
})
"""Keywords whose values expand %-tokens (ssh_config(5), TOKENS): a literal % is written %%."""
_ENVIRONMENT = frozenset({
    "certificatefile", "controlpath", "identityagent", "identityfile", "knownhostscommand", "userknownhostsfile",
})
"""Keywords whose values expand ${VARIABLE}, which has no escape."""
_NEEDS_QUOTES = re.compile(r"[\s\"'\\#]")


def config_value(keyword: str, value: Path | str | int) -> str:
    """``value`` as one argument of ``keyword`` in ssh_config: ``%`` doubled where the keyword expands
    tokens, quoted with ``\\`` and ``"`` escaped when it holds blanks, quotes, backslashes or ``#``.
    What cannot be written as one literal value (a control character, ``${`` where the keyword expands
    variables, glob characters in an ``Include`` path) is a UsageError."""
    text = str(value)
    key = keyword.lower()
    if not text or any(not c.isprintable() for c in text):
        raise UsageError(f"{keyword} {text!r} cannot be written into an ssh_config file (empty or a control character)")
    if key in _ENVIRONMENT and "${" in text:
        raise UsageError(f"{keyword} {text!r}: ssh would read '${{' as a variable; use a path without it")
    if key == "include" and any(c in text for c in "*?["):
        raise UsageError(f"Include {text!r}: ssh would read '*', '?' or '[' as a pattern; use a path without them")
    if key in _TOKENS:
        text = text.replace("%", "%%")
    if _NEEDS_QUOTES.search(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """Serialise edits of envbuild's files and ``~/.ssh/config`` between concurrent envbuild runs."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _usable(pair: KeyPair) -> bool:
    """Both key files there and not empty (a full disk or a crash can leave empty ones)."""
    try:
        return pair.private.stat().st_size > 0 and pair.public.stat().st_size > 0
    except FileNotFoundError:
        return False


def ensure_keypair() -> KeyPair:
    """Create the per-user ed25519 key pair once (with the system ``ssh-keygen``), then reuse it."""
    directory = config_dir()
    pair = KeyPair(directory / KEY_NAME, directory / f"{KEY_NAME}.pub")
    if _usable(pair):
        return pair
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise EnvbuildError(
            "ssh-keygen was not found on PATH; install the OpenSSH client (e.g. apt install openssh-client)"
        )
    with locked():
        if _usable(pair):
            return pair
        for path in (pair.private, pair.public):
            path.unlink(missing_ok=True)
        result = subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "envbuild", "-f", str(pair.private)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise RuntimeFailure(f"ssh-keygen failed: {result.stderr.strip() or result.stdout.strip()}")
        pair.private.chmod(0o600)
    return pair


def render_host(entry: HostEntry, identity: Path, known_hosts: Path) -> str:
    """The ``Host`` block for one environment: key-only, agent forwarding, its own known-hosts file."""
    jump = f"  ProxyJump {config_value('ProxyJump', entry.jump)}\n" if entry.jump else ""
    return (
        f"Host {host_alias(entry.name)}\n"
        f"  HostName {config_value('HostName', entry.hostname)}\n"
        f"  Port {config_value('Port', int(entry.port))}\n"
        f"  User {SSH_USER}\n"
        f"{jump}"
        f"  IdentityFile {config_value('IdentityFile', identity)}\n"
        "  IdentitiesOnly yes\n"
        "  ForwardAgent yes\n"
        "  StrictHostKeyChecking accept-new\n"
        f"  UserKnownHostsFile {config_value('UserKnownHostsFile', known_hosts)}\n"
        "  LogLevel ERROR\n"
    )


def parse_blocks(text: str) -> dict[str, str]:
    """Split envbuild's ssh_config into ``{environment name: block}``; other text is dropped, and so
    is any line that is not printable text (a damaged file heals on the next write)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines(keepends=True):
        match = _HOST_LINE.match(line)
        if match:
            alias = match.group(1)
            current = None
            if alias.endswith(HOST_SUFFIX) and len(alias) > len(HOST_SUFFIX):
                current = blocks.setdefault(alias[: -len(HOST_SUFFIX)], [])
                current.clear()
        text_only = line.rstrip("\r\n").replace("\t", " ")
        if current is not None and line.strip() and text_only.isprintable():
            current.append(line if line.endswith("\n") else line + "\n")
    return {name: "".join(lines) for name, lines in blocks.items()}


def render_config(blocks: dict[str, str]) -> str:
    return _HEADER + "".join(f"\n{blocks[name]}" for name in sorted(blocks))


def _atomic_write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with atomic_write(path, mode=mode) as handle:
        handle.write(_encode(text))


def _decode(data: bytes) -> str:
    """A config file's text, whatever its encoding: bytes that are not UTF-8 are kept as they are
    (surrogate escapes), and line endings are not translated."""
    return data.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _read(path: Path) -> str:
    """`_decode` of a file, or "" when there is none."""
    try:
        return _decode(path.read_bytes())
    except FileNotFoundError:
        return ""


def add_include(user_config: str, include_path: Path) -> str | None:
    """The user's ssh config with envbuild's ``Include`` on top, or None when it is already there.

    ``Include`` must precede every ``Host``/``Match`` block: ssh_config applies an ``Include`` inside a
    block only to that block. The added lines end like the file's first line (``\r\n`` or ``\n``);
    the user's text follows unchanged.
    """
    wanted = str(include_path)
    for line in user_config.splitlines():
        match = _INCLUDE_LINE.match(line)
        if match is None:
            continue
        try:
            files = shlex.split(match.group(1))
        except ValueError:
            files = match.group(1).split()
        if wanted in files:
            return None
    first = user_config.split("\n", 1)[0]
    nl = "\r\n" if first.endswith("\r") else "\n"
    return f"{_INCLUDE_COMMENT}{nl}Include {config_value('Include', include_path)}{nl}{nl}{user_config}"


def ensure_included() -> None:
    """Add the ``Include`` line to ``~/.ssh/config`` once (creating it 0600), keeping everything else."""
    target = user_ssh_config_path()
    if target.is_symlink():
        target = target.resolve()
    try:
        current = _decode(target.read_bytes())
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        current, mode = "", 0o600
    updated = add_include(current, ssh_config_path())
    if updated is None:
        return
    if not target.parent.exists():
        target.parent.mkdir(mode=0o700, parents=True)
    _atomic_write(target, updated, mode)


def write_host(entry: HostEntry, *, include: bool = True) -> bool:
    """Add or update one environment's block; returns whether anything changed on disk."""
    pair = ensure_keypair()
    with locked():
        path = ssh_config_path()
        current = _read(path)
        blocks = parse_blocks(current)
        blocks[entry.name] = render_host(entry, pair.private, known_hosts_path(entry.name))
        text = render_config(blocks)
        changed = text != current
        if changed:
            _atomic_write(path, text, 0o600)
        known_hosts_path(entry.name).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if include:
            ensure_included()
    return changed


def forget_host_key(name: str) -> None:
    """Drop a recreated environment's old host key (its new container has new keys)."""
    known_hosts_path(name).unlink(missing_ok=True)


def remove_host(name: str) -> bool:
    """Remove one environment's block and its known-hosts file; returns whether a block existed."""
    with locked():
        path = ssh_config_path()
        existed = False
        if path.exists():
            current = _read(path)
            blocks = parse_blocks(current)
            existed = blocks.pop(name, None) is not None
            if existed:
                _atomic_write(path, render_config(blocks), 0o600)
        forget_host_key(name)
    return existed


def known_hosts() -> list[str]:
    """Environment names that have an SSH entry (to find stale ones)."""
    return sorted(parse_blocks(_read(ssh_config_path())))


_JUMP_LINE = re.compile(r"^\s*ProxyJump\s+(\S+)\s*$", re.IGNORECASE | re.MULTILINE)


def hosts_through(jump: str | None) -> list[str]:
    """The environments whose entry jumps through ``jump`` (None: those on this machine's engine),
    so that a prune against one engine leaves the entries of another's alone."""
    found = []
    for name, block in parse_blocks(_read(ssh_config_path())).items():
        match = _JUMP_LINE.search(block)
        if (match.group(1) if match else None) == jump:
            found.append(name)
    return sorted(found)


def ssh_command(
    name: str, *args: str, agent: bool = True, tty: bool | None = None, jump: bool = False
) -> list[str]:
    """An OpenSSH command line for an environment that reads only envbuild's config file, or, for
    one that jumps through another machine (``jump``), the user's ``~/.ssh/config`` (which includes
    envbuild's): the jump host's own settings (alias, key, port) are there.

    Using ``-F`` keeps it working when ``$HOME`` differs from the password database's home (OpenSSH
    reads ``~/.ssh/config`` from the latter).
    """
    ssh = shutil.which("ssh")
    if ssh is None:
        raise EnvbuildError("ssh was not found on PATH; install the OpenSSH client (e.g. apt install openssh-client)")
    argv = [ssh, "-F", str(user_ssh_config_path() if jump else ssh_config_path())]
    if agent:
        argv.append("-A")
    if tty is True:
        argv.append("-t")
    elif tty is False:
        argv.append("-T")
    argv += ["--", host_alias(name), *args]
    return argv
