"""`envbuild.engine_api`: an engine that accepts connections and never answers fails every command
quickly, with exit 3 and the usual message, not after the SDK's 60 s read timeout."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ENVBUILD = [sys.executable, "-c", "from envbuild.cli import main; main()"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def silent_engine(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts every connection and never sends a byte."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    yield f"unix://{path}"
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize("command", [["ls"], ["images"], ["exec", "someenv", "--", "true"], ["up", "-d"], ["build"],
                                     ["destroy", "--name", "someenv"], ["prune"]])
def test_a_silent_engine_fails_every_command_fast(silent_engine: str, tmp_path: Path, command: list[str]) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "build.envd").write_text('def build():\n    base(image="local/debian:bookworm", dev=True)\n')
    env = {k: v for k, v in os.environ.items() if k not in ("BUILDKIT_HOST", "ENVBUILD_CONTEXT")}
    env.update(DOCKER_HOST=silent_engine, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
               XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    # 20 s: far under the SDK's 60 s read timeout, which a command that waits on the engine would reach
    r = subprocess.run([*ENVBUILD, *command], cwd=project, capture_output=True, text=True, env=env, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert "did not answer" in r.stderr, r.stderr
