"""Base image configs and existing images, from the engine's own store first.

The engine is asked with one raw HTTP/1.0 request over its unix socket (no docker SDK or http.client
import -- http.client alone pulls in email and ssl, ~15 ms -- and ~0.5 ms a request),
which keeps `envbuild build`'s "up to date" path and offline `debug llb` fast. Images the engine does
not have are resolved through the builder (`Client.resolve_image_config`), i.e. from the registry.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    import llb
    from envbuild.compiler.options import BaseConfig

API_VERSION = "v1.41"


def engine_socket(environ: Mapping[str, str] | None = None) -> str | None:
    """The engine's unix socket path, or None when DOCKER_HOST names something else."""
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return None


def inspect_image(ref: str, *, timeout: float = 2.0) -> dict[str, Any] | None:
    """``docker image inspect`` over the socket: the JSON, or None if absent or no engine answers."""
    return start_inspect(ref, timeout=timeout)()


def start_inspect(ref: str, *, timeout: float = 2.0) -> Callable[[], dict[str, Any] | None]:
    """`inspect_image` in two halves: the request goes out now, the answer is read when the returned
    function is called, so the caller can work (e.g. import the compiler) while the engine looks."""
    path = engine_socket()
    if path is None or not os.path.exists(path):
        return lambda: None
    finish = _send(path, f"/{API_VERSION}/images/{_quote(ref)}/json", timeout)

    def answer() -> dict[str, Any] | None:
        status, body = finish()
        if status != 200:
            return None
        try:
            return decode_json(body)  # type: ignore[no-any-return]
        except ValueError:
            return None

    return answer


class _Scanning:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``, with ``json.loads``' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity: what float() makes of them too


_JSON_SPACE = " \t\n\r"


def decode_json(data: bytes | str) -> Any:
    """``json.loads``, through the C scanner that json itself uses but without importing json: its
    module-level regular expressions pull in re and enum, ~5 ms of a no-op `envbuild build`.
    Anything but plain UTF-8 JSON (a BOM, UTF-16, an error to report) goes to json.loads."""
    try:
        from _json import make_scanner
    except ImportError:  # pragma: no cover - not CPython
        make_scanner = None
    if make_scanner is not None:
        try:
            text = data.decode() if isinstance(data, bytes) else data
            end = len(text)
            i = 0
            while i < end and text[i] in _JSON_SPACE:
                i += 1
            value, i = make_scanner(_Scanning)(text, i)
            while i < end and text[i] in _JSON_SPACE:
                i += 1
            if i == end:
                return value
        except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
            pass
    import json

    return json.loads(data)


def _quote(text: str) -> str:
    """``urllib.parse.quote(text, safe="")`` without importing urllib (ipaddress, re)."""
    return "".join(chr(b) if chr(b).isalnum() and b < 128 or b in b"-._~" else f"%{b:02X}" for b in text.encode())


def _get(path: str, url: str, timeout: float) -> tuple[int, bytes]:
    """One GET over a unix socket, HTTP/1.0 so that the engine sends a plain body and closes;
    (0, b"") when nothing usable answers."""
    return _send(path, url, timeout)()


def _send(path: str, url: str, timeout: float) -> Callable[[], tuple[int, bytes]]:
    """Send the GET now; the returned function reads the answer (and closes the socket)."""
    try:  # the C module: socket.py's enum wrappers cost ~3 ms of a no-op build
        from _socket import AF_UNIX, SOCK_STREAM, socket
    except ImportError:  # pragma: no cover - not CPython
        from socket import AF_UNIX, SOCK_STREAM, socket

    try:
        sock = socket(AF_UNIX, SOCK_STREAM)
    except OSError:
        return lambda: (0, b"")
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(f"GET {url} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
    except OSError:
        sock.close()
        return lambda: (0, b"")

    def receive() -> tuple[int, bytes]:
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            return 0, b""
        finally:
            sock.close()
        head, sep, body = b"".join(chunks).partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            return 0, b""
        return int(parts[1]), body

    return receive


def image_labels(ref: str) -> dict[str, str] | None:
    data = inspect_image(ref)
    if data is None:
        return None
    return dict((data.get("Config") or {}).get("Labels") or {})


def _engine_names(ref: str) -> list[str]:
    """The engine knows ``local/debian:bookworm`` and ``docker.io/local/debian:bookworm`` alike,
    but a bare name means ``:latest``."""
    last = ref.rsplit("/", 1)[-1]
    return [ref if (":" in last or "@" in last) else f"{ref}:latest"]


def base_config(data: Mapping[str, Any]) -> BaseConfig:
    """The compiler's view of an ``image inspect`` answer."""
    from envbuild.compiler.options import BaseConfig

    return BaseConfig.from_docker(data.get("Config"), digest=str(data.get("Id") or ""))


def resolve_local(ref: str) -> BaseConfig | None:
    for name in _engine_names(ref):
        data = inspect_image(name)
        if data is not None:
            return base_config(data)
    return None


def resolve(
    ref: str, client: llb.Client | None = None, *, platform: llb.Platform | None = None, local: bool = True
) -> BaseConfig:
    """Engine store first (``local=False``: the caller asked it already), then the builder (registry);
    UNRESOLVED when neither can answer."""
    from envbuild.compiler.options import UNRESOLVED, BaseConfig

    found = resolve_local(ref) if local else None
    if found is not None:
        return found
    if client is None:
        return UNRESOLVED
    try:
        digest, config = client.resolve_image_config(ref, platform=platform)
    except Exception:  # noqa: BLE001 - any failure means "not resolvable"; the solve reports the real error
        return UNRESOLVED
    return BaseConfig.from_docker(config.get("config"), digest=digest)
