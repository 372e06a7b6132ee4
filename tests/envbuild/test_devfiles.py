"""The container's start-up files: the supervisor kick in the entrypoint and the Jupyter launcher."""

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
    launcher = _write(tmp_path / "etc" / "jupyter_lab.py", D.JUPYTER_LAUNCHER_SOURCE)
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
    exec(compile(D.JUPYTER_LAUNCHER_SOURCE, "jupyter_lab.py", "exec"), namespace)
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
    assert files[D.JUPYTER_LAUNCHER] == (D.JUPYTER_LAUNCHER_SOURCE, 0o644)
    assert D.JUPYTER_LAUNCHER not in D.services(workdir="/w", inits=[], daemons=[], jupyter=False, allow_root=False)


def test_entrypoint_is_valid_sh_and_kicks_the_socket_supervisord_listens_on() -> None:
    text = D.entrypoint(1000, 1000)
    if shutil.which("sh"):
        subprocess.run(["sh", "-n"], input=text, text=True, check=True)
    assert f"file={D.SUPERVISOR_SOCKET}\n" in D.supervisord_conf()
    assert "'" not in D._KICK_SUPERVISOR, "the kick is single-quoted in the entrypoint"
    assert f"-c '{D._KICK_SUPERVISOR}' " in text
    kick, exec_line = text.index(D._KICK_SUPERVISOR), text.index("exec /usr/bin/supervisord")
    assert text.index(f"rm -f {D.SUPERVISOR_SOCKET}") < kick < exec_line


def test_kick_waits_for_the_socket_then_connects_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    code = D._KICK_SUPERVISOR.replace(D.SUPERVISOR_SOCKET, str(path))
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
