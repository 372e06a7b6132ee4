"""The files a development image carries (see docs/container-contract.md): entrypoint, sshd and
supervisor configuration, service programs, the login environment and Jupyter's settings."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from envbuild.compiler.scripts import VENV

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

ENTRYPOINT = "/usr/local/bin/envbuild-entrypoint"
WAIT_INIT = "/usr/local/bin/envbuild-wait-init"
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


# Connects once to supervisord's socket, retrying while it starts (at most ~5 s); single-quote free for sh.
_KICK_SUPERVISOR = f"""import socket, time
for _ in range(500):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect("{SUPERVISOR_SOCKET}")
        break
    except OSError:
        time.sleep(0.01)
    finally:
        s.close()
"""


def entrypoint(uid: int, gid: int) -> str:
    """Runs as root: per-container host keys and credentials from the environment, then supervisor.

    Host keys are ed25519 and ecdsa only (~10 ms); ``ssh-keygen -A`` also makes an RSA key (~0.5 s
    of every start).

    supervisord spawns its programs only after its first ``poll()`` returns, which without activity
    takes its whole 1 s timeout; a background connection to its socket (`_KICK_SUPERVISOR`) ends that
    first poll as soon as supervisord listens, so sshd and Jupyter start ~1 s sooner.

    With arguments (``docker run IMAGE cmd``) it just runs them, so images are easy to probe.
    """
    return f"""#!/bin/sh
set -eu
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
if [ "$(id -u)" != 0 ]; then
  echo "envbuild-entrypoint: must start as root (docker run --user root); services drop to envd" >&2
  exit 1
fi
umask 022
mkdir -p {ETC} {LOGS} /run/sshd
rm -rf {INIT_DONE_DIR}
install -d -m 0755 -o {uid} -g {gid} {INIT_DONE_DIR}
for t in ed25519 ecdsa; do
  [ -s /etc/ssh/ssh_host_${{t}}_key ] || ssh-keygen -q -t $t -N '' -f /etc/ssh/ssh_host_${{t}}_key
done
printf '%s\\n' "${{ENVBUILD_AUTHORIZED_KEYS:-}}" > {AUTHORIZED_KEYS}
chown 0:0 {AUTHORIZED_KEYS}
chmod 0644 {AUTHORIZED_KEYS}
rm -f {JUPYTER_TOKEN}
if [ -n "${{ENVBUILD_JUPYTER_TOKEN:-}}" ]; then
  (umask 027; printf '%s' "$ENVBUILD_JUPYTER_TOKEN" > {JUPYTER_TOKEN})
  chown 0:{gid} {JUPYTER_TOKEN}
  chmod 0640 {JUPYTER_TOKEN}
fi
unset ENVBUILD_AUTHORIZED_KEYS ENVBUILD_JUPYTER_TOKEN
rm -f {SUPERVISOR_SOCKET}
if [ -x /usr/bin/python3 ]; then
  /usr/bin/python3 -I -S -c '{_KICK_SUPERVISOR}' </dev/null >/dev/null 2>&1 &
fi
exec /usr/bin/supervisord -n -c {SUPERVISORD_CONFIG}
"""


def wait_init(count: int) -> str:
    """Daemons and Jupyter start only after every ``runtime.init`` program has finished."""
    return f"""#!/bin/sh
n={count}
while [ "$(ls {INIT_DONE_DIR} 2>/dev/null | wc -l)" -lt "$n" ]; do sleep 0.05; done
exec "$@"
"""


def sshd_config(uid: int, env: Mapping[str, str]) -> str:
    """Key-only sshd on 2222; the session environment matches the image's (sshd does not inherit it).

    ``PermitRootLogin`` must allow keys when envd has uid 0 (sshd checks the uid, not the name).
    """
    setenv = " ".join(f'"{k}={v}"' for k, v in env.items())
    lines = [
        f"Port {SSH_PORT}",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "HostKey /etc/ssh/ssh_host_ecdsa_key",
        "PubkeyAuthentication yes",
        f"AuthorizedKeysFile {AUTHORIZED_KEYS}",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        f"PermitRootLogin {'prohibit-password' if uid == 0 else 'no'}",
        "UsePAM yes",
        "AllowAgentForwarding yes",
        "AllowTcpForwarding yes",
        "X11Forwarding no",
        "PrintMotd no",
        "PidFile /run/envbuild-sshd.pid",
        "Subsystem sftp internal-sftp",
    ]
    if setenv:
        lines.append(f"SetEnv {setenv}")
    return "\n".join(lines) + "\n"


def profile(env: Mapping[str, str]) -> str:
    """Login shells over ssh get the image's environment (Debian's /etc/profile resets PATH)."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()) + (
        'if [ -n "${SSH_CONNECTION:-}" ] && [ "$PWD" = "$HOME" ] && [ -d "$ENVD_WORKDIR" ]; then\n'
        '  cd "$ENVD_WORKDIR"\nfi\n'
    )


def supervisord_conf() -> str:
    return f"""[supervisord]
nodaemon=true
user=root
logfile={LOGS}/supervisord.log
pidfile=/run/envbuild-supervisord.pid
childlogdir={LOGS}

[unix_http_server]
file={SUPERVISOR_SOCKET}
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{SUPERVISOR_SOCKET}

[include]
files={SERVICES}/*.conf
"""


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
    cmd = " ".join(_supervisor_quote(a) for a in argv)
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


def _supervisor_quote(arg: str) -> str:
    """supervisor splits ``command`` with shlex; ``%`` is its interpolation character."""
    return shlex.quote(arg).replace("%", "%%")


def services(
    *,
    workdir: str,
    inits: Sequence[Sequence[str]],
    daemons: Sequence[Sequence[str]],
    jupyter: bool,
    allow_root: bool,
    python: str = f"{VENV}/bin/python",
) -> dict[str, tuple[str, int]]:
    """Absolute path -> (content, mode): one supervisor program per service (named as in the
    contract), a script per ``runtime.init`` (supervisor's ``command`` is a single line) and, with
    Jupyter, its launcher run by ``python`` (the interpreter JupyterLab is installed in)."""
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
        argv = ["/bin/sh", "-c", f"{script}; rc=$?; touch {INIT_DONE_DIR}/init_{i}; exit $rc"]
        programs[f"init_{i}"] = _program(
            f"init_{i}", argv, user="envd", directory=workdir, home="/home/envd", once=True, priority=100
        )
    wait = [WAIT_INIT] if inits else []
    for i, argv in enumerate(daemons):
        programs[f"daemon_{i}"] = _program(
            f"daemon_{i}", [*wait, *argv], user="envd", directory=workdir, home="/home/envd", priority=200
        )
    if jupyter:
        argv = [*wait, python, JUPYTER_LAUNCHER, f"--config={JUPYTER_CONFIG}"]
        if allow_root:
            argv.append("--allow-root")
        programs["jupyter"] = _program(
            "jupyter", argv, user="envd", directory=workdir, home="/home/envd", priority=300
        )
        files[JUPYTER_LAUNCHER] = (JUPYTER_LAUNCHER_SOURCE, 0o644)
    for name, body in programs.items():
        files[f"{SERVICES}/{name}.conf"] = (body, 0o644)
    return files


JUPYTER_LAUNCHER_SOURCE = '''"""`jupyter lab`, started by envbuild's supervisor without ~1.2 s of import time.

jsonschema imports rfc3987_syntax (its "iri" format checker) eagerly, and that module builds ~35
Lark parsers at import: over a second of every Jupyter start, for a format no Jupyter schema uses.
Here the module is a stand-in that imports the real one on first use, so checks behave the same.
Calling JupyterLab's entry point directly also skips `jupyter`'s exec of `jupyter-lab`.
"""

import importlib
import importlib.util
import os
import sys
import types

_NAME = "rfc3987_syntax"
_stand_in = types.ModuleType(_NAME)


def _real() -> types.ModuleType:
    if sys.modules.get(_NAME) is _stand_in:
        del sys.modules[_NAME]
    return importlib.import_module(_NAME)


def _is_valid_syntax(*args, **kwargs):
    return _real().is_valid_syntax(*args, **kwargs)


def _getattr(attr: str):
    if attr.startswith("__"):
        raise AttributeError(attr)
    return getattr(_real(), attr)


def defer_rfc3987_syntax() -> bool:
    """Put the stand-in in place when the real module is installed and not yet imported."""
    if _NAME in sys.modules or importlib.util.find_spec(_NAME) is None:
        return False
    _stand_in.is_valid_syntax = _is_valid_syntax
    _stand_in.__getattr__ = _getattr
    sys.modules[_NAME] = _stand_in
    return True


def main() -> None:
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # /etc/envbuild: not a place to import from (`jupyter-lab` has its bin dir)
    defer_rfc3987_syntax()
    from jupyterlab.labapp import main as lab

    sys.argv[0] = "jupyter-lab"
    sys.exit(lab())


if __name__ == "__main__":
    main()
'''


def jupyter_config(workdir: str) -> str:
    """The token comes from the file the entrypoint writes; without one Jupyter refuses to start."""
    return f"""import pathlib
import sys

_token_file = pathlib.Path({JUPYTER_TOKEN!r})
_token = _token_file.read_text().strip() if _token_file.exists() else ""
if not _token:
    sys.exit("envbuild: no Jupyter token ({JUPYTER_TOKEN} is missing or empty); refusing to start")
c = get_config()  # noqa: F821
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = {JUPYTER_PORT}
c.ServerApp.port_retries = 0
c.ServerApp.open_browser = False
c.ServerApp.root_dir = {workdir!r}
c.IdentityProvider.token = _token
"""
