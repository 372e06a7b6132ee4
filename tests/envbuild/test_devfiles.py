"""The container's start-up files (`envbuild/container/`): the entrypoint and its supervisor kick, the
Jupyter launcher and config, sshd, supervisor and the login profile, with build-file values in them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from envbuild.compiler import devfiles as D

KICK = (D.CONTAINER_DIR / "kick_supervisor.py").read_text()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


FAKE_RFC = """
    import sys
    IMPORTS = sys.modules.setdefault("_rfc_imports", [])
    IMPORTS.append(1)
    RULES = ("iri",)
    def is_valid_syntax(rule, value):
        return rule in RULES and value.startswith("http")
"""

FAKE_LAB = """
    import json, os, sys
    def main():
        rfc = sys.modules.get("rfc3987_syntax")
        print(json.dumps({
            "argv": sys.argv,
            "path0": sys.path[0],
            "rfc_stand_in": rfc is not None and "RULES" not in vars(rfc) and "_rfc_imports" not in sys.modules,
        }))
        return 3
"""


def _launch(tmp_path: Path, *args: str, with_rfc: bool) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    _write(site / "jupyterlab" / "__init__.py", "")
    _write(site / "jupyterlab" / "labapp.py", FAKE_LAB)
    if with_rfc:
        _write(site / "rfc3987_syntax.py", FAKE_RFC)
    launcher = _write(tmp_path / "etc" / "jupyter_lab.py", D.jupyter_launcher())
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, str(launcher), *args], capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize("with_rfc", [True, False])
def test_launcher_runs_jupyterlab_main_like_jupyter_lab(tmp_path: Path, with_rfc: bool) -> None:
    result = _launch(tmp_path, "--config=/etc/envbuild/c.py", "--allow-root", with_rfc=with_rfc)
    assert result.returncode == 3, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["jupyter-lab", "--config=/etc/envbuild/c.py", "--allow-root"]
    assert seen["path0"] != str(tmp_path / "etc"), "the launcher's directory must not be importable"
    assert seen["rfc_stand_in"] is with_rfc


@pytest.fixture
def launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The launcher as a module, with a fake rfc3987_syntax installed; sys.modules restored after."""
    _write(tmp_path / "rfc3987_syntax.py", FAKE_RFC)
    monkeypatch.syspath_prepend(str(tmp_path))
    saved = {k: sys.modules.get(k) for k in ("rfc3987_syntax", "_rfc_imports")}
    for k in saved:
        sys.modules.pop(k, None)
    namespace: dict[str, object] = {"__name__": "envbuild_jupyter_launcher", "__file__": str(tmp_path / "l.py")}
    exec(compile(D.jupyter_launcher(), "jupyter_lab.py", "exec"), namespace)
    yield namespace
    for k, v in saved.items():
        if v is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = v


def test_stand_in_defers_the_import_until_first_use(launcher: dict) -> None:
    assert launcher["defer_rfc3987_syntax"]() is True
    from rfc3987_syntax import is_valid_syntax  # what jsonschema._format does at import

    assert "_rfc_imports" not in sys.modules
    assert is_valid_syntax("iri", "http://x") is True
    assert is_valid_syntax("iri", "nope") is False
    assert sys.modules["_rfc_imports"] == [1]
    real = sys.modules["rfc3987_syntax"]
    assert real.RULES == ("iri",) and real is not launcher["_stand_in"]
    assert is_valid_syntax("iri", "http://y") is True
    assert sys.modules["_rfc_imports"] == [1], "the real module is imported once"


def test_stand_in_forwards_other_names_and_hides_dunders(launcher: dict) -> None:
    launcher["defer_rfc3987_syntax"]()
    stand_in = sys.modules["rfc3987_syntax"]
    assert not hasattr(stand_in, "__path__")  # importlib probes this on `from ... import`
    assert "_rfc_imports" not in sys.modules
    from rfc3987_syntax import RULES

    assert RULES == ("iri",)


def test_no_stand_in_when_absent_or_already_imported(launcher: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import rfc3987_syntax

    assert launcher["defer_rfc3987_syntax"]() is False
    assert sys.modules["rfc3987_syntax"] is rfc3987_syntax
    del sys.modules["rfc3987_syntax"]
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not Path(p, "rfc3987_syntax.py").exists()])
    assert launcher["defer_rfc3987_syntax"]() is False
    assert "rfc3987_syntax" not in sys.modules


def test_jupyter_program_runs_the_launcher_with_the_given_python() -> None:
    files = D.services(workdir="/home/envd/p", inits=[], daemons=[], jupyter=True, allow_root=True,
                       python="/opt/conda/envs/envd/bin/python")
    conf = files[f"{D.SERVICES}/jupyter.conf"][0]
    command = next(line for line in conf.splitlines() if line.startswith("command="))
    assert command == (f"command=/opt/conda/envs/envd/bin/python {D.JUPYTER_LAUNCHER} "
                       f"--config={D.JUPYTER_CONFIG} --allow-root")
    assert files[D.JUPYTER_LAUNCHER] == (D.jupyter_launcher(), 0o644)
    assert D.JUPYTER_LAUNCHER not in D.services(workdir="/w", inits=[], daemons=[], jupyter=False, allow_root=False)


def test_rstudio_program_runs_the_images_rserver_after_the_inits() -> None:
    files = D.services(workdir="/w", inits=[["true"]], daemons=[], jupyter=False, allow_root=False, rstudio=True)
    conf = files[f"{D.SERVICES}/rstudio.conf"][0]
    assert f"command={D.WAIT_INIT} {D.RSTUDIO_LAUNCHER}" in conf and "user=" not in conf
    script, mode = files[D.RSTUDIO_LAUNCHER]
    assert mode == 0o755 and f"exec {D.RSERVER} --server-daemonize=0 --www-port=8787" in script
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)
    assert D.RSTUDIO_LAUNCHER not in D.services(workdir="/w", inits=[], daemons=[], jupyter=False, allow_root=False)


def test_entrypoint_is_valid_sh_and_kicks_the_socket_supervisord_listens_on() -> None:
    text = D.entrypoint(1000, 1000)
    if shutil.which("sh"):
        subprocess.run(["sh", "-n"], input=text, text=True, check=True)
    assert f"file={D.SUPERVISOR_SOCKET}\n" in D.supervisord_conf()
    assert "'" not in KICK, "the kick is single-quoted in the entrypoint"
    assert f"-c '{KICK}' " in text
    kick, exec_line = text.index(KICK), text.index("exec /usr/bin/supervisord")
    assert text.index(f"rm -f {D.SUPERVISOR_SOCKET}") < kick < exec_line


def test_kick_waits_for_the_socket_then_connects_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    code = KICK.replace(D.SUPERVISOR_SOCKET, str(path))
    kick = subprocess.Popen([sys.executable, "-I", "-S", "-c", code])
    accepted: list[float] = []

    def serve() -> None:
        with socket.socket(socket.AF_UNIX) as server:
            server.bind(str(path))
            server.listen(1)
            server.settimeout(10)
            conn, _ = server.accept()
            accepted.append(time.monotonic())
            conn.close()

    time.sleep(0.3)  # supervisord is still starting: connections are refused or the path is missing
    listen_at = time.monotonic()
    thread = threading.Thread(target=serve)
    thread.start()
    thread.join(15)
    assert kick.wait(10) == 0
    assert accepted and accepted[0] - listen_at < 1.0, "supervisord must be woken well before its 1 s poll ends"


# ---- values from the build file, escaped for each file they are written into (issue 15, item 9) --------

TRICKY = ['say "hi"', "back\\slash", "x #not a comment", "a ; b", "tab\there", " lead and trail ", "100%", "$(id)",
          "it's", "\\\"", ""]


def _sshd_argv_split(line: str) -> list[str]:
    """OpenSSH's ``argv_split`` (misc.c), which reads every sshd_config line (``SetEnv`` included)."""
    args: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] in " \t":
            i += 1
            continue
        if line[i] == "#":
            break
        arg: list[str] = []
        quote = ""
        while i < n:
            ch = line[i]
            if ch == "\\" and i + 1 < n and (line[i + 1] in "'\"\\" or (not quote and line[i + 1] == " ")):
                arg.append(line[i + 1])
                i += 2
                continue
            if not quote and ch in " \t":
                break
            if not quote and ch in "\"'":
                quote = ch
            elif quote and ch == quote:
                quote = ""
            elif not quote and ch == "#":
                break
            else:
                arg.append(ch)
            i += 1
        args.append("".join(arg))
    return args


def test_sshd_setenv_carries_every_value_exactly() -> None:
    env = {f"V{i}": v for i, v in enumerate(TRICKY)}
    conf = D.sshd_config(1000, env)
    (line,) = [ln for ln in conf.splitlines() if ln.startswith("SetEnv ")]
    words = _sshd_argv_split(line)
    assert words[0] == "SetEnv"
    assert dict(w.split("=", 1) for w in words[1:]) == env


def test_a_line_break_in_an_sshd_value_is_refused_not_written() -> None:
    for value in ("a\nPasswordAuthentication yes", "a\rb"):
        with pytest.raises(ValueError, match="line break"):
            D.sshd_config(1000, {"X": value})


def test_the_login_profile_exports_exact_values_and_only_valid_names(tmp_path: Path) -> None:
    env = {f"V{i}": v for i, v in enumerate([*TRICKY, "two\nlines"])}
    profile = tmp_path / "profile.sh"
    profile.write_text(D.profile({**env, "BAD;touch pwned": "x", "A B": "y"}))
    script = ". ./profile.sh; for k in " + " ".join(env) + '; do eval "printf \'%s\\0\' \\"\\$$k\\""; done'
    out = subprocess.run(["sh", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env={"HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\0")[:-1] == list(env.values())
    assert not (tmp_path / "pwned").exists() and "BAD" not in profile.read_text()


def _supervisor_config(files: dict[str, tuple[str, int]]) -> dict[str, dict[str, str]]:
    """Read the program sections as supervisor does (inline ; and # comments, no interpolation here)."""
    import configparser

    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    for path, (body, _mode) in sorted(files.items()):
        if path.endswith(".conf"):
            parser.read_string(body, source=path)
    return {s: dict(parser.items(s)) for s in parser.sections()}


def test_daemon_argv_reaches_the_program_exactly_and_injects_no_section(tmp_path: Path) -> None:
    argv = ["printf", "%s|", *TRICKY, "two\nlines", "x\n[program:evil]\ncommand=/bin/evil"]
    files = D.services(workdir="/w", inits=[], daemons=[argv], jupyter=False, allow_root=False)
    sections = _supervisor_config(files)
    assert sorted(sections) == ["program:daemon_0", "program:sshd"], sorted(sections)
    command = sections["program:daemon_0"]["command"]
    script_path = next(p for p in files if p.endswith("daemon_0.sh"))
    assert command == script_path
    script = tmp_path / "daemon.sh"
    script.write_text(files[script_path][0])
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True)
    assert out.stdout == "".join(f"{a}|" for a in argv[2:]), out


def test_a_daemon_waits_for_init_through_its_script() -> None:
    files = D.services(workdir="/w", inits=[["true"]], daemons=[["sleep", "1"]], jupyter=False, allow_root=False)
    body = next(b for p, (b, _) in files.items() if p.endswith("daemon_0.sh"))
    assert body == f"#!/bin/sh\nexec {D.WAIT_INIT} sleep 1\n"


def test_supervisor_words_are_refused_when_ini_cannot_hold_them() -> None:
    assert D.supervisor_word("/etc/envbuild/x 100%") == "'/etc/envbuild/x 100%%'"
    for bad in ("a\nb", "a ;b", "a #b", "a\t;b"):
        with pytest.raises(ValueError, match="supervisord"):
            D.supervisor_word(bad)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_config_values_read_back_exactly(tmp_path: Path) -> None:
    from envbuild.compiler.compile import gitconfig

    values = [*(v for v in TRICKY if v), "two\nlines", "x\n[core]\n\tpager = evil", "\ttab first"]
    for value in values:
        path = tmp_path / "gitconfig"
        path.write_text(gitconfig(value, "e@example.com", value))
        got = subprocess.run(["git", "config", "-f", str(path), "--get", "user.name"], capture_output=True, text=True)
        assert got.returncode == 0 and got.stdout == value + "\n", (value, path.read_text(), got)
        keys = subprocess.run(["git", "config", "-f", str(path), "--list", "--name-only"],
                              capture_output=True, text=True)
        assert keys.stdout.split() == ["user.name", "user.email", "core.editor"], (value, keys.stdout)


def test_plain_git_config_values_are_written_as_before() -> None:
    from envbuild.compiler.compile import gitconfig

    assert gitconfig("Ada Lovelace", "ada@example.com", "vim") == (
        "[user]\n\tname = Ada Lovelace\n\temail = ada@example.com\n[core]\n\teditor = vim\n"
    )


def test_container_files_name_the_paths_the_compiler_uses() -> None:
    entry = D.entrypoint(1000, 1001)
    for path in (D.ETC, D.LOGS, D.INIT_DONE_DIR, D.AUTHORIZED_KEYS, D.JUPYTER_TOKEN, D.SUPERVISOR_SOCKET,
                 D.SUPERVISORD_CONFIG):
        assert path in entry, path
    assert D.SUPERVISOR_SOCKET in KICK and f"{D.SERVICES}/*.conf" in D.supervisord_conf()
    assert f"ls {D.INIT_DONE_DIR} " in D.wait_init(2) and "\nn=2\n" in D.wait_init(2)
    config = D.jupyter_config("/home/envd/it's")
    assert f"pathlib.Path({D.JUPYTER_TOKEN!r})" in config and f"port = {D.JUPYTER_PORT}\n" in config
    assert "c.ServerApp.root_dir = \"/home/envd/it's\"\n" in config
    compile(config, "jupyter_server_config.py", "exec")
    for name in ("entrypoint.sh", "wait_init.sh"):
        subprocess.run(["sh", "-n", str(D.CONTAINER_DIR / name)], check=True)


def test_every_placeholder_needs_a_value() -> None:
    with pytest.raises(KeyError, match="placeholders"):
        D.container_file("wait_init.sh")
    with pytest.raises(KeyError, match="placeholders"):
        D.container_file("supervisord.conf", EXTRA=1)


def test_ssh_sessions_start_in_the_project_directory(tmp_path: Path) -> None:
    """sshd's ForceCommand runs the client's command, or a login shell, in ``$ENVD_WORKDIR``, as envd's sshd."""
    script = tmp_path / "session"
    script.write_text(D.session())
    work = tmp_path / "work dir"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "ENVD_WORKDIR": str(work), "HOME": str(tmp_path)}
    ran = subprocess.run(
        ["sh", str(script)], env={**env, "SSH_ORIGINAL_COMMAND": "pwd; echo $0"}, capture_output=True, text=True
    )
    assert ran.stdout == f"{work}\n/bin/sh\n", ran.stderr
    login = subprocess.run(["sh", str(script)], env=env, input="pwd\n", capture_output=True, text=True)
    assert login.stdout == f"{work}\n", login.stderr
    gone = subprocess.run(  # sshd starts the session in $HOME; without a project directory it stays there
        ["sh", str(script)],
        env={**env, "ENVD_WORKDIR": str(tmp_path / "gone"), "SSH_ORIGINAL_COMMAND": "pwd"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert gone.stdout == f"{tmp_path}\n", gone.stderr
    config = D.sshd_config(1000, {})
    assert f"ForceCommand {D.SESSION}\n" in config and "Subsystem sftp /usr/lib/openssh/sftp-server\n" in config
    assert f"AuthorizedKeysFile {D.AUTHORIZED_KEYS} /var/envd/authorized_keys\n" in config


def test_status_reports_each_inits_exit_status(tmp_path: Path) -> None:
    etc, done = tmp_path / "etc", tmp_path / "done"
    etc.mkdir()
    done.mkdir()
    for i in range(3):
        (etc / f"init_{i}.sh").write_text("")
    (done / "init_0").write_text("0\n")
    (done / "init_1").write_text("127\n")
    text = D.status().replace(D.ETC, str(etc)).replace(D.INIT_DONE_DIR, str(done))
    out = subprocess.run(["sh", "-c", text], capture_output=True, text=True)
    assert out.stdout == "init_0 0\ninit_1 127\ninit_2 running\n", out.stderr
