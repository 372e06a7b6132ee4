"""`envbuild.images` asks the engine through the docker SDK: answers, misses, garbage, no engine."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from envbuild import images


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    replies: dict[str, tuple[int, bytes]]
    paths: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: _Engine

    def address_string(self) -> str:  # a unix socket has no client address
        return "engine"

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.path.endswith("/version"):
            status, body = 200, json.dumps({"ApiVersion": "1.41", "Version": "20.10.24"}).encode()
        else:
            status, body = self.server.replies.get(self.path.split("/", 2)[2], (404, b'{"message": "No such image"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[_Engine]:
    """A fake engine on a unix socket: ``replies`` maps ``images/NAME/json`` to (status, body)."""
    server = _Engine(str(tmp_path / "engine.sock"), _Handler)
    server.replies, server.paths = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'engine.sock'}")
    yield server
    server.shutdown()
    server.server_close()


def test_inspect_answers_the_engines_json(engine: _Engine) -> None:
    body = {"Id": "sha256:abc", "Config": {"Labels": {"ai.envbuild.digest": "sha256:d"}}}
    engine.replies["images/reg.example:5000/a/b:tag/json"] = (200, json.dumps(body).encode())
    assert images.image_labels("reg.example:5000/a/b:tag") == {"ai.envbuild.digest": "sha256:d"}
    assert images.inspect_image("reg.example:5000/a/b:tag") == body


@pytest.mark.parametrize(
    "reply", [(404, b'{"message": "No such image"}'), (200, b"not json"), (500, b"{}"), (200, b"[]")]
)
def test_misses_and_garbage_are_none(engine: _Engine, reply: tuple[int, bytes]) -> None:
    engine.replies["images/x:y/json"] = reply
    assert images.inspect_image("x:y") is None


def test_no_engine_is_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    assert images.inspect_image("x:y") is None
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    assert images.inspect_image("x:y") is None


def test_engine_names_default_to_latest() -> None:
    assert images.engine_name("local/debian") == "local/debian:latest"
    assert images.engine_name("local/debian:bookworm") == "local/debian:bookworm"
    assert images.engine_name("reg.example:5000/a/b") == "reg.example:5000/a/b:latest"
    assert images.engine_name("a/b@sha256:" + "0" * 64) == "a/b@sha256:" + "0" * 64
