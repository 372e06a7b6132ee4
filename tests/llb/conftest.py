"""Fixtures for llb client tests: one engine connection per session, unique image tags."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

BASE_IMAGE = "local/debian:bookworm"


def _engine_reason() -> str | None:
    """Why engine tests cannot run here, or None when they can."""
    import socket

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    path = host[len("unix://") :]
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(path)
    except OSError as exc:
        return f"no Docker engine at {path} ({exc.strerror or exc}); run scripts/setup-engine.sh"
    finally:
        s.close()
    return None


@pytest.fixture(scope="session")
def engine() -> Iterator[object]:
    """A connected llb Client on the Docker engine, with the base image present."""
    reason = _engine_reason()
    if reason:
        pytest.skip(reason)
    import llb

    try:
        client = llb.connect(timeout=5)
    except llb.BuilderUnreachable as exc:
        pytest.skip(str(exc))
    probe = subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True)
    if probe.returncode != 0:
        client.close()
        pytest.skip(f"base image {BASE_IMAGE} missing; run scripts/setup-engine.sh")
    yield client
    client.close()


@pytest.fixture
def image_tag() -> Iterator[str]:
    """A unique image tag, removed from the engine afterwards."""
    tag = f"llb-test/{uuid.uuid4().hex[:12]}:latest"
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
