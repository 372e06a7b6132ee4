"""The files a development image carries (see docs/container-contract.md): entrypoint, sshd and
supervisor configuration, service programs, the login environment and Jupyter's settings.

The programs that run in the container are files of their own in `envbuild/container/` (linted and
tested like the rest); the functions here fill in their few parameters. Every value that comes from
a build file is written through the one escaping function of the file's format: ``shlex.quote``
for shell, `sshd_word` for sshd_config, `supervisor_word` for supervisord's ini files; a value a
format cannot hold is refused (ValueError), never written half-escaped.
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.compiler.scripts import VENV

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ENTRYPOINT = "/usr/local/bin/envbuild-entrypoint"
WAIT_INIT = "/usr/local/bin/envbuild-wait-init"
SESSION = "/usr/local/bin/envbuild-session"
STATUS = "/usr/local/bin/envbuild-status"
ENVD_DIR = "/var/envd"
ENVD_AUTHORIZED_KEYS = f"{ENVD_DIR}/authorized_keys"
"""envd's keys file: libraries append keys to it from ``runtime.init``; sshd reads it after the runtime's."""
ETC = "/etc/envbuild"
SERVICES = f"{ETC}/services"
LOGS = "/var/log/envbuild"
AUTHORIZED_KEYS = f"{ETC}/authorized_keys"
JUPYTER_TOKEN = f"{ETC}/jupyter_token"
JUPYTER_CONFIG = f"{ETC}/jupyter_server_config.py"
JUPYTER_LAUNCHER = f"{ETC}/jupyter_lab.py"
SSHD_CONFIG = f"{ETC}/sshd_config"
SUPERVISORD_CONFIG = f"{ETC}/supervisord.conf"
SUPERVISOR_SOCKET = "/run/envbuild-supervisor.sock"
PROFILE = "/etc/profile.d/envbuild.sh"
INIT_DONE_DIR = "/run/envbuild-init"
SSH_PORT = 2222
JUPYTER_PORT = 8888
RSTUDIO_PORT = 8787
RSERVER = "/usr/lib/rstudio-server/bin/rserver"
RSTUDIO_LAUNCHER = f"{ETC}/rstudio.sh"

CONTAINER_DIR = Path(__file__).resolve().parent.parent / "container"
"""The container-side programs and configuration, shipped in the package as they run."""
_PLACEHOLDER = re.compile(r'"@([A-Z_]+)@"|@([A-Z_]+)@')
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@cache
def _read(name: str) -> str:
    return (CONTAINER_DIR / name).read_text(encoding="utf-8")


def container_file(name: str, **values: object) -> str:
    """A file of `CONTAINER_DIR` with its placeholders filled. In a Python file a placeholder is
    the string literal ``"@NAME@"`` and becomes ``repr(value)`` (so the file stays valid Python);
    elsewhere ``@NAME@`` becomes ``str(value)``. Every placeholder needs a value, and every value a
    placeholder."""
    text = _read(name)
    python = name.endswith(".py")
    wanted = {m[1] or m[2] for m in _PLACEHOLDER.finditer(text)}
    if wanted != set(values):
        raise KeyError(f"{name}: placeholders {sorted(wanted)}, values given for {sorted(values)}")
    for key, value in values.items():
        token = f'"@{key}@"' if python else f"@{key}@"
        text = text.replace(token, repr(value) if python else str(value))
    return text


def entrypoint(uid: int, gid: int) -> str:
    """Runs as root: per-container host keys and credentials from the environment, then supervisor.

    Host keys are ed25519 and ecdsa only (~10 ms); ``ssh-keygen -A`` also makes an RSA key (~0.5 s
    of every start).

    supervisord spawns its programs only after its first ``poll()`` returns, which without activity
    takes its whole 1 s timeout; a background connection to its socket (``kick_supervisor.py``, run
    inline with ``python3 -c``, so it holds no single quote) ends that first poll as soon as
    supervisord listens, so sshd and Jupyter start ~1 s sooner.

    With arguments (``docker run IMAGE cmd``) it just runs them, so images are easy to probe.
    """
    return container_file("entrypoint.sh", UID=int(uid), GID=int(gid), KICK_SUPERVISOR=_read("kick_supervisor.py"))


def wait_init(count: int) -> str:
    """Daemons and Jupyter start only after every ``runtime.init`` program has finished."""
    return container_file("wait_init.sh", COUNT=int(count))


def session() -> str:
    """sshd's ForceCommand: a command or a login shell in the project directory, as envd's sshd
    runs them (its working directory is ``$ENVD_WORKDIR``)."""
    return container_file("session.sh")


def status() -> str:
    """What ``envbuild up`` and ``envbuild ls`` read (`envbuild.runtime.services`): each
    ``runtime.init``'s exit status, and with ``--services`` each supervisor program's state."""
    return container_file("status.sh", INIT_DONE_DIR=INIT_DONE_DIR, ETC=ETC, SUPERVISORD_CONFIG=SUPERVISORD_CONFIG)


def sshd_word(text: str) -> str:
    """One sshd_config argument: double-quoted, ``\\`` and ``"`` escaped (OpenSSH's ``argv_split``
    reads them back). sshd_config is read line by line, so a line break cannot be written at all."""
    if "\n" in text or "\r" in text:
        raise ValueError(f"{text!r} has a line break, which sshd_config cannot hold")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sshd_config(uid: int, env: Mapping[str, str]) -> str:
    """Key-only sshd on 2222; the session environment matches the image's (sshd does not inherit it).

    ``PermitRootLogin`` must allow keys when envd has uid 0 (sshd checks the uid, not the name).
    Keys: the runtime's, then envd's ``/var/envd/authorized_keys``. Every session (sftp too, run by
    the shell as an external program) starts in the project directory (`session`).
    """
    setenv = " ".join(sshd_word(f"{k}={v}") for k, v in env.items() if _ENV_NAME.fullmatch(k))
    lines = [
        f"Port {SSH_PORT}",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "HostKey /etc/ssh/ssh_host_ecdsa_key",
        "PubkeyAuthentication yes",
        f"AuthorizedKeysFile {AUTHORIZED_KEYS} {ENVD_AUTHORIZED_KEYS}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        f"PermitRootLogin {'prohibit-password' if uid == 0 else 'no'}",
        "UsePAM yes",
        "AllowAgentForwarding yes",
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "PidFile /run/envbuild-sshd.pid",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        f"ForceCommand {SESSION}",
    ]
    if setenv:
        lines.append(f"SetEnv {setenv}")
    return "\n".join(lines) + "\n"


def profile(env: Mapping[str, str]) -> str:
    """Login shells over ssh get the image's environment (Debian's /etc/profile resets PATH).

    A name no shell can export (a base image may have one) is left out."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if _ENV_NAME.fullmatch(k))


def supervisord_conf() -> str:
    return container_file("supervisord.conf")


def supervisor_word(arg: str) -> str:
    """One word of a supervisord ``command=``: supervisor splits it like a shell (``shlex.quote``), reads ``%``
    as interpolation (doubled), and its ini reader cuts a value at a line break or at ``;``/``#``
    after whitespace, which nothing can escape: those are refused (daemons run from a script)."""
    word = shlex.quote(arg).replace("%", "%%")
    if "\n" in word or "\r" in word or re.search(r"\s[;#]", word):
        raise ValueError(f"{arg!r} cannot be written into a supervisord command line")
    return word


def _program(
    name: str,
    argv: Sequence[str],
    *,
    user: str | None,
    directory: str | None,
    home: str | None,
    once: bool = False,
    priority: int = 500,
) -> str:
    cmd = " ".join(supervisor_word(a) for a in argv)
    lines = [f"[program:{name}]", f"command={cmd}", f"priority={priority}"]
    if user:
        lines.append(f"user={user}")
    if directory:
        lines.append(f"directory={directory}")
    if home:
        lines.append(f'environment=HOME="{home}",USER="{user or "root"}"')
    if once:
        lines += ["autorestart=false", "startsecs=0", "startretries=0"]
    else:
        lines += ["autorestart=true", "startsecs=1", "startretries=5"]
    lines += [
        f"stdout_logfile={LOGS}/{name}.log",
        "stdout_logfile_maxbytes=10MB",
        "stdout_logfile_backups=2",
        "redirect_stderr=true",
        "stopasgroup=true",
        "killasgroup=true",
    ]
    return "\n".join(lines) + "\n"


def services(
    *,
    workdir: str,
    inits: Sequence[Sequence[str]],
    daemons: Sequence[Sequence[str]],
    jupyter: bool,
    allow_root: bool,
    python: str = f"{VENV}/bin/python",
    rstudio: bool = False,
) -> dict[str, tuple[str, int]]:
    """Absolute path -> (content, mode): one supervisor program per service (named as in the
    contract), a script per ``runtime.init`` and ``runtime.daemon`` (their text is the build file's:
    shell holds any of it, supervisor's ini does not), with Jupyter its launcher run by ``python``
    (the interpreter JupyterLab is installed in), and with ``config.rstudio_server`` the image's own
    RStudio Server (envd runs it and installs nothing either)."""
    files: dict[str, tuple[str, int]] = {}
    programs = {
        "sshd": _program(
            "sshd",
            ["/usr/sbin/sshd", "-D", "-e", "-p", str(SSH_PORT), "-f", SSHD_CONFIG],
            user=None,
            directory=None,
            home=None,
            priority=10,
        )
    }
    for i, cmds in enumerate(inits):
        script = f"{ETC}/init_{i}.sh"
        files[script] = ("#!/bin/bash\nset -euo pipefail\n" + "".join(c + "\n" for c in cmds), 0o755)
        argv = ["/bin/sh", "-c", f"{script}; rc=$?; echo $rc > {INIT_DONE_DIR}/init_{i}; exit $rc"]
        programs[f"init_{i}"] = _program(
            f"init_{i}", argv, user="envd", directory=workdir, home="/home/envd", once=True, priority=100
        )
    wait = [WAIT_INIT] if inits else []
    for i, daemon in enumerate(daemons):
        script = f"{ETC}/daemon_{i}.sh"
        files[script] = (f"#!/bin/sh\nexec {shlex.join([*wait, *daemon])}\n", 0o755)
        programs[f"daemon_{i}"] = _program(
            f"daemon_{i}", [script], user="envd", directory=workdir, home="/home/envd", priority=200
        )
    if jupyter:
        argv = [*wait, python, JUPYTER_LAUNCHER, f"--config={JUPYTER_CONFIG}"]
        if allow_root:
            argv.append("--allow-root")
        programs["jupyter"] = _program(
            "jupyter", argv, user="envd", directory=workdir, home="/home/envd", priority=300
        )
        files[JUPYTER_LAUNCHER] = (jupyter_launcher(), 0o644)
    if rstudio:
        files[RSTUDIO_LAUNCHER] = (container_file("rstudio.sh", RSERVER=RSERVER, PORT=RSTUDIO_PORT), 0o755)
        programs["rstudio"] = _program(
            "rstudio", [*wait, RSTUDIO_LAUNCHER], user=None, directory=workdir, home=None, priority=300
        )
    for name, body in programs.items():
        files[f"{SERVICES}/{name}.conf"] = (body, 0o644)
    return files


def jupyter_launcher() -> str:
    """`jupyter lab` without ~1.2 s of import time (``jupyter_lab.py`` says how)."""
    return container_file("jupyter_lab.py")


def jupyter_config(workdir: str) -> str:
    """The token comes from the file the entrypoint writes; without one Jupyter refuses to start."""
    return container_file("jupyter_server_config.py", TOKEN_FILE=JUPYTER_TOKEN, WORKDIR=workdir)
