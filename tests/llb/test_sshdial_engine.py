"""`llb.connect("ssh://...")` against this machine's engine behind a second sshd on 127.0.0.1
(tests/remote_host.py): a solve over ssh, one SSH login per connection however many streams it
opens, nothing left behind, and what each broken setup is reported as."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import llb
from llb import sshdial
from tests import remote_host

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[remote_host.RemoteHost]:
    reason = remote_host.sshd_reason()
    if reason:
        pytest.skip(reason)
    host = remote_host.start(tmp_path_factory.mktemp("box"))
    yield host
    host.stop()


@pytest.fixture
def user(box: remote_host.RemoteHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user whose ~/.ssh/config reaches the box; every dialer is closed afterwards."""
    home = tmp_path / "home"
    bin_dir = remote_host.client_home(home, box)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    yield home
    sshdial.close_all()


def _logins(box: remote_host.RemoteHost) -> int:
    return box.log().count("Accepted publickey")


def _ssh_processes(control_dir: str) -> list[str]:
    out = subprocess.run(["pgrep", "-a", "-f", control_dir], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_a_solve_over_ssh_logs_in_once(box: remote_host.RemoteHost, user: Path) -> None:
    tag = f"llb-test/ssh-{uuid.uuid4().hex[:8]}:latest"
    before = _logins(box)
    state = llb.image("local/debian:bookworm").run(["sh", "-c", f"echo {tag} > /hello"]).root()
    try:
        with llb.connect(box.url, timeout=10) as client:
            assert client.is_docker_engine
            client.solve(state, export=llb.DockerImage(tag))
            client.solve(state, export=llb.DockerImage(tag))  # a second solve: another session stream
        dialer = sshdial.dialer(box.url)
        assert dialer.streams_opened == 3  # the check (then gRPC on the same stream), two sessions
        assert _logins(box) - before == 1, box.log()[-2000:]
        run = subprocess.run(["docker", "run", "--rm", tag, "cat", "/hello"], capture_output=True, text=True)
        assert run.stdout == f"{tag}\n", run.stderr
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


def test_closing_leaves_no_process_and_no_directory(box: remote_host.RemoteHost, user: Path) -> None:
    with llb.connect(box.url, timeout=10) as client:
        client.list_workers()
    control = sshdial.dialer(box.url)._dir
    assert Path(control).is_dir() and _ssh_processes(control)
    sshdial.close_all()
    deadline = time.monotonic() + 5
    while _ssh_processes(control) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _ssh_processes(control)
    assert not Path(control).exists()


def test_a_key_the_box_refuses(box: remote_host.RemoteHost, tmp_path: Path, user: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    remote_host.client_home(user, box, key=other)
    t0 = time.monotonic()
    with pytest.raises(llb.BuilderUnreachable) as info:
        llb.connect(box.url, timeout=10)
    assert time.monotonic() - t0 < 10
    assert "refused the login" in info.value.reason and "Permission denied (publickey)" in info.value.reason
    assert "ssh-add" in info.value.hint


def test_an_unknown_host_key(box: remote_host.RemoteHost, tmp_path: Path, user: Path) -> None:
    config = user / ".ssh" / "config"
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    config.write_text(config.read_text().replace(str(box.known_hosts), str(empty)))
    with pytest.raises(llb.BuilderUnreachable) as info:
        llb.connect(box.url, timeout=10)
    assert "host key of 127.0.0.1 is unknown" in info.value.reason


def test_a_box_without_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reason = remote_host.sshd_reason()
    if reason:
        pytest.skip(reason)
    bare = remote_host.start(tmp_path / "bare", session_env={"PATH": "/nonexistent"})
    try:
        home = tmp_path / "home"
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("PATH", f"{remote_host.client_home(home, bare)}{os.pathsep}{os.environ['PATH']}")
        with pytest.raises(llb.BuilderUnreachable) as info:
            llb.connect(bare.url, timeout=10)
        assert "has no `docker` command on the PATH" in info.value.reason
        assert "install the Docker CLI" in info.value.hint
    finally:
        sshdial.close_all()
        bare.stop()
