"""SSH access: the key pair, envbuild's own ssh_config and the single Include in ~/.ssh/config."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from envbuild import ssh


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return tmp_path


def test_config_dir_honours_xdg(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ssh.config_dir() == home / ".config" / "envbuild"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    assert ssh.config_dir() == home / "xdg" / "envbuild"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert ssh.config_dir() == home / ".config" / "envbuild"


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_keypair_is_ed25519_private_0600_and_reused(home: Path) -> None:
    pair = ssh.ensure_keypair()
    assert pair.private == home / ".config" / "envbuild" / "id_ed25519"
    assert stat.S_IMODE(pair.private.stat().st_mode) == 0o600
    assert pair.public_key().startswith("ssh-ed25519 ")
    before = pair.public_key()
    assert ssh.ensure_keypair().public_key() == before
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(pair.private)], capture_output=True, text=True)
    assert "ED25519" in fingerprint.stdout


def test_render_host_is_key_only_and_checks_host_keys_per_env(home: Path) -> None:
    block = ssh.render_host(ssh.HostEntry("demo", 32768), home / "key", home / "kh" / "demo")
    lines = [line.strip() for line in block.splitlines()]
    assert lines[0] == "Host demo.envbuild"
    assert "Port 32768" in lines and "HostName 127.0.0.1" in lines and "User envd" in lines
    assert "IdentitiesOnly yes" in lines and "ForwardAgent yes" in lines
    assert "StrictHostKeyChecking accept-new" in lines
    assert f"UserKnownHostsFile {home / 'kh' / 'demo'}" in lines
    assert not any("StrictHostKeyChecking no" in line or "/dev/null" in line for line in lines)


def test_paths_with_spaces_are_quoted(tmp_path: Path) -> None:
    block = ssh.render_host(ssh.HostEntry("a", 1), tmp_path / "my dir" / "key", tmp_path / "kh")
    assert f'IdentityFile "{tmp_path / "my dir" / "key"}"' in block


def test_parse_and_render_round_trip_keeps_other_envs() -> None:
    text = ssh.render_config({"b": "Host b.envbuild\n  Port 2\n", "a": "Host a.envbuild\n  Port 1\n"})
    blocks = ssh.parse_blocks(text)
    assert blocks == {"a": "Host a.envbuild\n  Port 1\n", "b": "Host b.envbuild\n  Port 2\n"}
    assert ssh.render_config(blocks) == text
    assert ssh.parse_blocks("Host other\n  Port 3\nHost x.envbuild\n  Port 4") == {"x": "Host x.envbuild\n  Port 4\n"}


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_write_update_and_remove_hosts(home: Path) -> None:
    assert ssh.write_host(ssh.HostEntry("one", 1111))
    assert ssh.write_host(ssh.HostEntry("two", 2222))
    assert not ssh.write_host(ssh.HostEntry("two", 2222))
    assert ssh.write_host(ssh.HostEntry("one", 1112))
    text = ssh.ssh_config_path().read_text()
    assert text.count("Host one.envbuild") == 1 and "Port 1112" in text and "Port 1111" not in text
    assert stat.S_IMODE(ssh.ssh_config_path().stat().st_mode) == 0o600
    assert ssh.known_hosts() == ["one", "two"]
    ssh.known_hosts_path("one").write_text("[127.0.0.1]:1112 ssh-ed25519 AAAA\n")
    assert ssh.remove_host("one")
    assert not ssh.known_hosts_path("one").exists()
    assert ssh.known_hosts() == ["two"]
    assert not ssh.remove_host("one")


def test_add_include_puts_it_first_and_is_idempotent(tmp_path: Path) -> None:
    include = tmp_path / ".config" / "envbuild" / "ssh_config"
    user = "Host work\n  User me\n"
    updated = ssh.add_include(user, include)
    assert updated is not None
    first_directive = next(line for line in updated.splitlines() if line and not line.startswith("#"))
    assert first_directive == f"Include {include}"
    assert updated.endswith(user)
    assert ssh.add_include(updated, include) is None
    assert ssh.add_include(f'include "{include}" other\n', include) is None
    assert ssh.add_include("", include) is not None


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_user_config_created_0600_then_never_clobbered(home: Path) -> None:
    ssh.write_host(ssh.HostEntry("demo", 1234))
    user_config = home / ".ssh" / "config"
    assert stat.S_IMODE(user_config.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / ".ssh").stat().st_mode) == 0o700
    original = user_config.read_text() + "Host mine\n  HostName example.org\n"
    user_config.write_text(original)
    user_config.chmod(0o644)
    ssh.write_host(ssh.HostEntry("demo", 1235))
    ssh.write_host(ssh.HostEntry("other", 1236))
    ssh.remove_host("demo")
    assert user_config.read_text() == original
    assert stat.S_IMODE(user_config.stat().st_mode) == 0o644
    assert original.count("Include ") == 1


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_existing_user_config_and_symlink_are_kept(home: Path) -> None:
    dotfiles = home / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "ssh_config"
    real.write_text("Host *\n  ServerAliveInterval 30\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "config").symlink_to(real)
    ssh.write_host(ssh.HostEntry("demo", 1))
    assert (home / ".ssh" / "config").is_symlink()
    text = real.read_text()
    assert text.index("Include ") < text.index("Host *")
    assert text.endswith("Host *\n  ServerAliveInterval 30\n")


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_concurrent_writers_lose_no_entry(home: Path) -> None:
    ssh.ensure_keypair()
    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            ssh.write_host(ssh.HostEntry(f"env{i}", 30000 + i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ssh.known_hosts() == sorted(f"env{i}" for i in range(12))
    assert (home / ".ssh" / "config").read_text().count("Include ") == 1


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
def test_openssh_resolves_the_generated_entry_through_the_include(home: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    ssh.write_host(ssh.HostEntry("demo", 40022))
    out = subprocess.run(["ssh", "-G", "-F", str(home / ".ssh" / "config"), "demo.envbuild"],
                         capture_output=True, text=True, check=True).stdout.lower().splitlines()
    assert "port 40022" in out and "user envd" in out and "hostname 127.0.0.1" in out
    assert "stricthostkeychecking accept-new" in out
    assert f"identityfile {ssh.config_dir() / 'id_ed25519'}".lower() in out
    other = subprocess.run(["ssh", "-G", "-F", str(home / ".ssh" / "config"), "example.org"],
                           capture_output=True, text=True, check=True).stdout.lower()
    assert "port 40022" not in other and "stricthostkeychecking accept-new" not in other


def test_ssh_command_uses_envbuild_config_and_terminates_options(home: Path) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("OpenSSH client not installed")
    argv = ssh.ssh_command("demo", "echo hi", tty=True)
    assert argv[1:3] == ["-F", str(ssh.ssh_config_path())]
    assert "-A" in argv and "-t" in argv
    assert argv[-3:] == ["--", "demo.envbuild", "echo hi"]
    assert os.path.basename(argv[0]) == "ssh"


# ---- the user's bytes are theirs (issue 15, low items) -----------------------------------------------

@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
@pytest.mark.parametrize("original", [
    b"Host work\r\n  User me\r\n",                       # CRLF, as an editor on another system leaves it
    b"# caf\xe9 (latin-1)\nHost work\n  User m\xe9\n",   # not UTF-8
    b"Host a\n  User b\r\nHost c\n",                     # mixed
])
def test_the_user_ssh_config_keeps_its_bytes_but_the_added_lines(home: Path, original: bytes) -> None:
    (home / ".ssh").mkdir()
    config = home / ".ssh" / "config"
    config.write_bytes(original)
    ssh.write_host(ssh.HostEntry("demo", 1234))
    data = config.read_bytes()
    assert data.endswith(original), data
    added = data[: -len(original)]
    assert b"Include " in added and added.count(b"\n") == 3
    newline = b"\r\n" if original.startswith(b"Host work\r\n") else b"\n"
    assert added.endswith(newline + newline)
    ssh.write_host(ssh.HostEntry("demo", 1235))
    assert config.read_bytes() == data


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_a_damaged_envbuild_ssh_config_is_rewritten_not_a_traceback(home: Path) -> None:
    ssh.write_host(ssh.HostEntry("keep", 1000))
    path = ssh.ssh_config_path()
    path.write_bytes(path.read_bytes() + b"\n\xff\xfe garbage \x00\n")
    ssh.write_host(ssh.HostEntry("demo", 1234))
    assert sorted(ssh.known_hosts()) == ["demo", "keep"]
    assert b"\xff" not in path.read_bytes()
    path.write_bytes(b"\xff\xfe")
    assert ssh.known_hosts() == []
    assert ssh.remove_host("demo") is False


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
@pytest.mark.parametrize("which", ["private", "public", "both"])
def test_empty_key_files_are_made_again(home: Path, which: str) -> None:
    pair = ssh.ensure_keypair()
    for side in (("private", "public") if which == "both" else (which,)):
        getattr(pair, side).write_bytes(b"")
    again = ssh.ensure_keypair()
    assert again.public_key().startswith("ssh-ed25519 ") and again.private.stat().st_size > 0
    check = subprocess.run(["ssh-keygen", "-y", "-f", str(again.private)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.split()[:2] == again.public_key().split()[:2]
