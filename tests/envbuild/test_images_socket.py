"""`envbuild.images` talks raw HTTP/1.0 over the engine's unix socket: answers, misses and garbage."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbuild import images


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[bytes], list[bytes]]]:
    """A fake engine: answers each connection with the next canned reply, records the requests."""
    replies: list[bytes] = []
    requests: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "engine.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        server.listen(4)

        def serve() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                except OSError:
                    return
                with conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(4096)
                    requests.append(data)
                    conn.sendall(replies.pop(0))

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        yield replies, requests
        server.close()


def test_inspect_answers_json_and_quotes_the_reference(engine: tuple[list[bytes], list[bytes]]) -> None:
    replies, requests = engine
    body = b'{"Id": "sha256:abc", "Config": {"Labels": {"ai.envbuild.digest": "sha256:d"}}}'
    replies.append(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)
    assert images.image_labels("reg.example:5000/a/b:tag") == {"ai.envbuild.digest": "sha256:d"}
    assert requests[0].startswith(b"GET /v1.41/images/reg.example%3A5000%2Fa%2Fb%3Atag/json HTTP/1.0\r\n")


@pytest.mark.parametrize(
    "reply",
    [
        b'HTTP/1.0 404 Not Found\r\n\r\n{"message": "No such image"}',
        b"HTTP/1.0 200 OK\r\n\r\nnot json",
        b"garbage without a header end",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"",
    ],
)
def test_misses_and_garbage_are_none(engine: tuple[list[bytes], list[bytes]], reply: bytes) -> None:
    replies, _ = engine
    replies.append(reply)
    assert images.inspect_image("x:y") is None


def test_no_socket_is_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/absent.sock")
    assert images.inspect_image("x:y") is None
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert images.inspect_image("x:y") is None
