"""Fixtures of the envbuild tests."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def _gateway() -> str | None:
    """The engine's bridge gateway: an address of this machine that build steps can reach (an engine
    started with its defaults names only the subnet; the gateway is then its first address)."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}"], capture_output=True, text=True
    )
    if out.returncode != 0:
        return None
    for config in json.loads(out.stdout or "[]") or []:
        if config.get("Gateway"):
            return str(config["Gateway"])
        if config.get("Subnet"):
            network = ipaddress.ip_network(config["Subnet"])
            if network.version == 4:
                return str(next(network.hosts()))
    return None


@pytest.fixture(scope="session")
def builder_merges_layers() -> bool:
    """What `build` reads to choose the layout: whether the builder has MergeOp/DiffOp (the engine with
    the containerd image store does; 20.10 and a graph-driver engine do not). Where it does, the
    packages install beside the system chain, so a step of both sides may be the one that fails."""
    from envbuild import capabilities, contexts

    rb = contexts.resolve_builder()
    with rb.connect() as client:
        return capabilities.read(rb, client).merge_diff


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[tuple[Path, str, ThreadingHTTPServer]]:
    """A download mirror for build steps: (its directory, its base URL, the server), served on the
    engine's bridge gateway (the engine tests' skip rule has made sure there is an engine)."""
    gw = _gateway()
    if not gw:
        pytest.skip("the engine's bridge network has no gateway address")
    root = tmp_path / "mirror"
    root.mkdir()
    server = ThreadingHTTPServer((gw, 0), partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f"http://{gw}:{server.server_address[1]}", server
    finally:
        server.shutdown()
