"""One skip rule for every test module: a test marked ``engine`` needs the Docker engine and the local
base image (``scripts/setup-engine.sh``). Without them it is skipped, with the reason and the fix,
before any of its fixtures run.

Ctrl-C is on: a test run started in the background of a non-interactive shell (``nohup pytest &``,
some CI runners) inherits SIGINT ignored, and so would every envbuild it starts; the tests of what
Ctrl-C does would then see a build that ignores it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess

import pytest

BASE_IMAGE = "local/debian:bookworm"
_checked: list[str | None] = []


def engine_reason() -> str | None:
    """Why engine tests cannot run here, or None when they can (asked afresh on every call)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        try:
            s.connect(host[len("unix://") :])
        except OSError as exc:
            return f"no Docker engine at {host} ({exc.strerror or exc}); run scripts/setup-engine.sh"
        finally:
            s.close()
    if shutil.which("docker") is None:
        return "docker CLI not installed; run scripts/setup-engine.sh"
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode:
        return f"base image {BASE_IMAGE} is not in the engine's store; run scripts/setup-engine.sh"
    return None


def pytest_configure(config: pytest.Config) -> None:
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # children start with SIGINT as default


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("engine") is None:
        return
    if not _checked:
        _checked.append(engine_reason())
    if _checked[0]:
        pytest.skip(_checked[0])
