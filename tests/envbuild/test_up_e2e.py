"""`envbuild up` end to end, as a user would run it: real engine, real build, real OpenSSH client.

The session starts from a fresh project directory holding the CPU Jupyter example (plus a
``runtime.daemon``), with ``HOME`` pointed at a temporary directory so the tester's own ``~/.ssh`` and
``~/.config`` are never touched. Tests run in file order and share the one environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BASE_IMAGE = "local/debian:bookworm"
DAEMON_MARK = "envbuild-e2e-daemon"


@dataclass
class Session:
    home: Path
    project: Path
    name: str
    env: dict[str, str]
    up: dict[str, Any]
    up_seconds: float

    def envbuild(self, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-c", "from envbuild.cli import main; main()", *args],
                                env=self.env, cwd=self.project, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"envbuild {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def ssh(self, *command: str) -> subprocess.CompletedProcess[str]:
        """The system ssh client with the user's config, which reaches envbuild's entry via Include."""
        return subprocess.run(["ssh", "-F", str(self.home / ".ssh" / "config"), "-o", "BatchMode=yes",
                               f"{self.name}.envbuild", *command],
                              env=self.env, capture_output=True, text=True, timeout=120)


def _up_args(ca: list[str]) -> list[str]:
    return ["up", "--detach", "--format", "json", *ca]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    home = tmp_path_factory.mktemp("home")
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    project = tmp_path_factory.mktemp("projects") / name
    project.mkdir()
    example = (REPO / "examples" / "jupyter" / "build.envd").read_text()
    daemon = (f'    runtime.daemon(commands=[["python3", "-c", '
              f'"import time; mark = \'{DAEMON_MARK}\'; [time.sleep(1) for _ in iter(int, 1)]"]])\n')
    (project / "build.envd").write_text(example.rstrip("\n") + "\n" + daemon)
    (project / "notes.txt").write_text("keep me\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "SSH_"))}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    ca = ["--ca-cert", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    s = Session(home, project, name, env, {}, 0.0)
    start = time.monotonic()
    result = s.envbuild(*_up_args(ca))
    s.up_seconds = time.monotonic() - start
    s.up = json.loads(result.stdout)
    try:
        yield s
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "image", "rm", f"{name}:dev"], capture_output=True)


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_up_returns_endpoints(session: Session) -> None:
    up = session.up
    assert up["name"] == session.name and up["status"] == "running"
    assert up["ssh"]["target"] == f"{session.name}.envbuild" and up["ssh"]["port"]
    assert up["jupyter"]["token"] and up["jupyter"]["token"] in up["jupyter"]["url"]
    assert up["workdir"] == f"/home/envd/{session.name}"


def test_ports_are_bound_only_to_loopback(session: Session) -> None:
    assert {p["name"] for p in session.up["ports"]} >= {"ssh", "jupyter"}
    assert all(p["host_ip"] == "127.0.0.1" for p in session.up["ports"])
    out = subprocess.run(["docker", "port", session.name], capture_output=True, text=True, check=True).stdout
    assert out.strip() and all(line.split(" -> ")[1].startswith("127.0.0.1:") for line in out.strip().splitlines())


def test_jupyter_requires_the_token(session: Session) -> None:
    port = next(p["host_port"] for p in session.up["ports"] if p["name"] == "jupyter")
    url = f"http://127.0.0.1:{port}/api/status"
    assert _status(url, {"Authorization": f"token {session.up['jupyter']['token']}"}) == 200
    assert _status(url) == 403
    assert _status(url, {"Authorization": "token wrong"}) == 403


# Run inside the environment with JupyterLab's own Python (tornado has a websocket client): a kernel
# executes code in the project dir and a terminal runs a command, through the real server.
_KERNEL_AND_TERMINAL = """
import asyncio, json, sys, urllib.request, uuid
from tornado.websocket import websocket_connect

TOKEN, BASE = sys.argv[1], "127.0.0.1:8888"


def api(method, path, body=None):
    data = json.dumps(body or {}).encode() if method == "POST" else None
    request = urllib.request.Request(f"http://{BASE}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"null")


async def kernel():
    k = api("POST", "/api/kernels", {"name": "python3"})
    ws = await websocket_connect(f"ws://{BASE}/api/kernels/{k['id']}/channels?token={TOKEN}")
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "e2e", "session": uuid.uuid4().hex,
              "version": "5.3"}
    await ws.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "channel": "shell",
                                       "content": {"code": "import os; print(6 * 7, os.getcwd())", "silent": False}}))
    while True:
        m = json.loads(await asyncio.wait_for(ws.read_message(), 120))
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "error":
            raise SystemExit(f"kernel error: {m['content']}")
        if m["msg_type"] == "stream":
            ws.close()
            api("DELETE", f"/api/kernels/{k['id']}")
            return m["content"]["text"].strip()


async def terminal():
    t = api("POST", "/api/terminals")
    ws = await websocket_connect(f"ws://{BASE}/terminals/websocket/{t['name']}?token={TOKEN}")
    await ws.write_message(json.dumps(["stdin", "echo term-$((6*7)) $PWD\\r"]))
    seen = ""
    while "term-42" not in seen:
        m = await asyncio.wait_for(ws.read_message(), 60)
        if m is None:
            raise SystemExit(f"terminal closed; it printed {seen!r}")
        kind, *rest = json.loads(m)
        if kind == "stdout":
            seen += rest[0]
    ws.close()
    api("DELETE", f"/api/terminals/{t['name']}")
    return seen[seen.index("term-42"):].split("\\r")[0].strip()


print(json.dumps({"kernel": asyncio.run(kernel()), "terminal": asyncio.run(terminal())}))
"""


def test_jupyter_kernel_runs_code_and_a_terminal_opens(session: Session) -> None:
    result = session.envbuild("exec", session.name, "--", "/opt/envbuild/venv/bin/python", "-c",
                              _KERNEL_AND_TERMINAL, session.up["jupyter"]["token"])
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["kernel"] == f"42 {session.up['workdir']}"
    assert seen["terminal"] == f"term-42 {session.up['workdir']}"
    ps = session.envbuild("exec", session.name, "--", "ps", "-eo", "args").stdout
    assert "/etc/envbuild/jupyter_lab.py --config=" in ps, "Jupyter runs through envbuild's launcher"


def test_ssh_with_the_generated_config(session: Session) -> None:
    result = session.ssh("python", "-c", "'import numpy; print(numpy.__name__)'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "numpy"
    user_config = (session.home / ".ssh" / "config").read_text()
    assert user_config.count("Include ") == 1


def test_files_written_inside_appear_on_the_host_owned_by_the_user(session: Session) -> None:
    result = session.ssh(f"cd {session.up['workdir']} && echo from-inside > made-inside.txt")
    assert result.returncode == 0, result.stderr
    made = session.project / "made-inside.txt"
    assert made.read_text() == "from-inside\n"
    assert made.stat().st_uid == os.getuid()


def test_exec_runs_in_the_project_dir(session: Session) -> None:
    result = session.envbuild("exec", session.name, "--", "cat", "notes.txt")
    assert result.stdout == "keep me\n"
    failing = session.envbuild("exec", session.name, "--", "sh", "-c", "exit 5", check=False)
    assert failing.returncode == 5


def test_ls_lists_it(session: Session) -> None:
    listed = json.loads(session.envbuild("ls", "--format", "json").stdout)
    mine = next(e for e in listed if e["name"] == session.name)
    assert mine["status"] == "running" and mine["ssh"]["target"] == f"{session.name}.envbuild"
    assert mine["jupyter"]["url"] == session.up["jupyter"]["url"]


def _daemon_pid(session: Session) -> int | None:
    """The daemon's pid, found from inside (the finder spells the marker in pieces so it never matches itself)."""
    head, tail = DAEMON_MARK[:8], DAEMON_MARK[8:]
    script = ("import os\n"
              f"mark = {head!r}.encode() + {tail!r}.encode()\n"
              "for p in os.listdir('/proc'):\n"
              "    if p.isdigit() and int(p) != os.getpid():\n"
              "        try: c = open(f'/proc/{p}/cmdline','rb').read()\n"
              "        except OSError: continue\n"
              "        if mark in c: print(p)\n")
    result = session.envbuild("exec", session.name, "--", "python3", "-c", script)
    pids = [int(p) for p in result.stdout.split()]
    return pids[0] if pids else None


def test_daemon_is_restarted_after_being_killed(session: Session) -> None:
    deadline = time.monotonic() + 30
    pid = _daemon_pid(session)
    while pid is None and time.monotonic() < deadline:
        time.sleep(0.5)
        pid = _daemon_pid(session)
    assert pid is not None, "the runtime.daemon is not running"
    session.envbuild("exec", session.name, "--", "kill", "-9", str(pid))
    new_pid = None
    while time.monotonic() < deadline + 30:
        new_pid = _daemon_pid(session)
        if new_pid is not None and new_pid != pid:
            break
        time.sleep(0.5)
    assert new_pid is not None and new_pid != pid


def test_destroy_removes_it_and_keeps_project_files(session: Session) -> None:
    session.envbuild("destroy")
    assert subprocess.run(["docker", "inspect", session.name], capture_output=True).returncode != 0
    assert (session.project / "notes.txt").read_text() == "keep me\n"
    assert (session.project / "build.envd").exists() and (session.project / "made-inside.txt").exists()
    ssh_config = (session.home / ".config" / "envbuild" / "ssh_config").read_text()
    assert f"{session.name}.envbuild" not in ssh_config
    listed = json.loads(session.envbuild("ls", "--format", "json").stdout)
    assert session.name not in {e["name"] for e in listed}


def test_up_again_without_changes_skips_the_build_and_is_fast(session: Session) -> None:
    ca = ["--ca-cert", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []
    start = time.monotonic()
    up = json.loads(session.envbuild(*_up_args(ca)).stdout)
    elapsed = time.monotonic() - start
    assert up["built"] is False and up["action"] == "created"
    assert elapsed < 30, f"up took {elapsed:.1f}s with nothing to build"
    result = session.ssh("true")
    assert result.returncode == 0, result.stderr
    again = json.loads(session.envbuild(*_up_args(ca)).stdout)
    assert again["action"] == "attached" and again["jupyter"]["token"] == up["jupyter"]["token"]
    session.envbuild("destroy")
