"""A download stage on the real engine: ``install.go`` from a mirror the test serves (reachable from
build steps through the Docker bridge), checked against the published ``.sha256``, unpacked and
copied in; a tampered archive is refused; a forced rebuild with the mirror gone uses the cache."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import uuid
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

import llb
from envbuild.compiler import languages
from envbuild.compiler.compile import _Compiler
from envbuild.compiler.mirrors import Mirrors
from envbuild.compiler.options import CompileOptions
from frontend import spec as S

pytestmark = pytest.mark.engine

BASE = "local/debian:bookworm"
VERSION = f"0.{uuid.uuid4().int % 10**6}.0"  # unique: the download cache outlives the test


def _tarball(message: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = f"#!/bin/sh\necho {message}\n".encode()
        info = tarfile.TarInfo("go/bin/go")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _publish(root: Path, body: bytes, *, published: bytes | None = None) -> None:
    for arch in ("amd64", "arm64"):
        name = f"go{VERSION}.linux-{arch}.tar.gz"
        (root / name).write_bytes(body)
        (root / f"{name}.sha256").write_text(hashlib.sha256(published or body).hexdigest() + "\n")


def _build(url: str, tag: str, bust: str = "") -> None:
    spec = S.Spec(base=S.Base(BASE), go=S.Go(VERSION))
    c = _Compiler(spec, CompileOptions(cache_bust=bust))
    base = llb.image(BASE)
    state, add = languages.go(c, base, languages.fetch_tools(c, base), Mirrors(go=url))
    env = [f"PATH={':'.join(add.path)}:/usr/bin:/bin"]
    with llb.connect() as client:
        client.solve(state, export=llb.DockerImage(tag), image_config=llb.ImageConfig(env=env))


def test_go_from_a_mirror_verified_cached_and_tamper_refused(mirror: tuple[Path, str, ThreadingHTTPServer]) -> None:
    root, url, server = mirror
    tag = f"envbuild-test/go-{uuid.uuid4().hex[:8]}:1"
    marker = uuid.uuid4().hex[:8]
    try:
        _publish(root, _tarball(f"go-{marker}"), published=b"something else")
        with pytest.raises(llb.ExecError) as err:
            _build(url, tag)
        assert "does not match" in "\n".join(err.value.log_tail)
        _publish(root, _tarball(f"go-{marker}"))
        _build(url, tag)
        run = subprocess.run(["docker", "run", "--rm", tag, "go"], capture_output=True, text=True, timeout=60)
        assert run.stdout == f"go-{marker}\n", run.stderr
        server.shutdown()
        _build(url, tag, bust=uuid.uuid4().hex)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
