"""Fixtures for llb client tests: one engine connection per session, unique image tags.

Tests that use the engine are marked ``engine``; tests/conftest.py skips them, saying how to set the
engine up, when there is none.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

import llb


@pytest.fixture(scope="session")
def engine() -> Iterator[llb.Client]:
    """A connected llb Client on the Docker engine ($DOCKER_HOST)."""
    with llb.connect(timeout=5) as client:
        yield client


@pytest.fixture
def image_tag() -> Iterator[str]:
    """A unique image tag, removed from the engine afterwards."""
    tag = f"llb-test/{uuid.uuid4().hex[:12]}:latest"
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
