"""Environments on another machine's engine, without one: what is mounted, what the SSH entry says,
how ssh_config values are written, what `sync` sends, and how forwards are recognised."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from envbuild import ssh
from envbuild.errors import UsageError
from envbuild.runtime import options as o
from envbuild.runtime import output, remote
from envbuild.runtime.engine import Endpoint, Environment
from envbuild.runtime.sync import _tar
from frontend.spec import Mount, Runtime, Spec

LABELS = {
    "ai.envbuild.vendor": "envbuild",
    "ai.envbuild.dev": "true",
    "ai.envbuild.project": "proj",
    "ai.envbuild.ports": json.dumps([{"name": "ssh", "port": 2222}, {"name": "jupyter", "port": 8888}]),
}


def _remote_plan(
    tmp_path: Path, spec: Spec | None, project_mount: o.BindMount | None, **opts: object
) -> o.ContainerPlan:
    return o.plan_container(name="proj", image="img:dev", image_labels=LABELS, spec=spec, project=tmp_path,
                            options=o.RunOptions(**opts), authorized_keys="k", token="tok",
                            remote=True, project_mount=project_mount)


def test_on_another_machine_nothing_of_this_one_is_mounted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "etc").mkdir()
    spec = Spec(runtime=Runtime(mounts=(
        Mount(str(tmp_path / "etc"), "/cfg"),
        Mount("~/.cache/envbuild/data/imagenet", "/data", create=True),
        Mount("/nowhere/on/this/machine", "/y"),
    )))
    plan = _remote_plan(tmp_path, spec, o.BindMount(o.project_volume("proj"), "", volume=True),
                        volumes=("/srv/datasets:/datasets:ro",))
    assert plan.mounts == [
        o.BindMount("envbuild-proj-project", "/home/envd/proj", volume=True),
        o.BindMount("envbuild-data-imagenet", "/data", volume=True),
        o.BindMount("/srv/datasets", "/datasets", read_only=True),
    ]
    assert len(plan.refused) == 2 and all("another machine" in r for r in plan.refused)
    assert plan.labels[o.LABEL_PROJECT_PATH] == str(tmp_path)
    assert plan.labels[o.LABEL_PROJECT_SOURCE] == "volume envbuild-proj-project"
    kinds = [(m["Type"], m["Source"]) for m in plan.create_kwargs()["mounts"]]
    assert kinds == [("volume", "envbuild-proj-project"), ("volume", "envbuild-data-imagenet"),
                     ("bind", "/srv/datasets")]
    assert not (tmp_path / "home" / ".cache").exists()  # no data directory made on this machine
    there = _remote_plan(tmp_path, None, o.BindMount("/home/me/proj", ""), remote_path="/home/me/proj")
    assert there.mounts == [o.BindMount("/home/me/proj", "/home/envd/proj")]
    assert there.labels[o.LABEL_PROJECT_SOURCE] == "path /home/me/proj"


def test_remote_paths_and_options(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--remote-path names the project directory on another machine"):
        o.check_options(o.RunOptions(remote_path="/srv/p"), tmp_path)
    o.check_options(o.RunOptions(remote_path="/srv/p", volumes=("/srv/d:/d",)), tmp_path, remote=True)
    for bad in ("relative/p", "/a\nb", "/a,b"):
        with pytest.raises(UsageError, match="absolute path on the engine's machine"):
            o.check_options(o.RunOptions(remote_path=bad), tmp_path, remote=True)
    with pytest.raises(UsageError, match="absolute path on the engine's machine"):
        o.check_options(o.RunOptions(volumes=("data:/d",)), tmp_path, remote=True)
    with pytest.raises(UsageError, match="does not exist on this machine"):
        o.check_options(o.RunOptions(volumes=("/srv/surely/not/here:/d",)), tmp_path)


@pytest.mark.parametrize(
    ("keyword", "value", "written"),
    [
        ("IdentityFile", "/home/me/.config/envbuild/id_ed25519", "/home/me/.config/envbuild/id_ed25519"),
        ("IdentityFile", "/home/me/my keys/k", '"/home/me/my keys/k"'),
        ("IdentityFile", "/home/me/100%/k", "/home/me/100%%/k"),
        ("UserKnownHostsFile", '/x/"q"\\', '"/x/\\"q\\"\\\\"'),
        ("HostName", "#1", '"#1"'),
        ("Port", 2222, "2222"),
        ("ProxyJump", "me@gpu-box:2222", "me@gpu-box:2222"),
        ("Include", "/home/me/a b/ssh_config", '"/home/me/a b/ssh_config"'),
        ("User", "100%", "100%"),
    ],
)
def test_config_value(keyword: str, value: str | int, written: str) -> None:
    assert ssh.config_value(keyword, value) == written


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("IdentityFile", "/a\nProxyCommand evil"), ("IdentityFile", "/a/${HOME}/k"), ("HostName", ""),
     ("Include", "/a/*/b"), ("ProxyJump", "x\x00y")],
)
def test_config_value_refuses_what_cannot_be_one_literal_value(keyword: str, value: str) -> None:
    with pytest.raises(UsageError):
        ssh.config_value(keyword, value)


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no OpenSSH client")
def test_ssh_reads_the_entry_as_written(tmp_path: Path) -> None:
    """The system ssh parses the block back to the same values (`ssh -G` prints what it would use)."""
    entry = ssh.HostEntry("gpu", 32768, jump="me@gpu-box:2222")
    key, known = tmp_path / "my keys" / 'k"1', tmp_path / "known 100%"
    config = tmp_path / "config"
    config.write_text(ssh.render_host(entry, key, known))
    shown = subprocess.run(["ssh", "-G", "-F", str(config), "gpu.envbuild"], capture_output=True, text=True,
                           check=True, stdin=subprocess.DEVNULL).stdout.splitlines()
    assert "proxyjump me@gpu-box:2222" in shown and "port 32768" in shown and "hostname 127.0.0.1" in shown
    assert f"identityfile {key}" in shown
    assert f"userknownhostsfile {known}" in shown


def test_the_endpoints_say_where_things_are() -> None:
    env = Environment(
        name="proj", container_id="c", status="running", image="proj:dev", image_id="i", project_path="/home/me/proj",
        workdir="/home/envd/proj", gpu=False, jupyter_token="tok",
        endpoints=(Endpoint("ssh", 2222, "127.0.0.1", 32768), Endpoint("jupyter", 8888, "127.0.0.1", 32769)),
        labels={o.LABEL_PROJECT_SOURCE: "volume envbuild-proj-project"},
        engine="ssh://me@gpu-box", jump="me@gpu-box",
    )
    assert env.jupyter_url is None  # the remote machine's 127.0.0.1 is not reachable from here
    text = output.endpoints_text(env)
    assert "envbuild jupyter proj" in text and "through me@gpu-box" in text
    assert "volume envbuild-proj-project on me@gpu-box" in text
    from dataclasses import replace

    forwarded = replace(env, tunnel="127.0.0.1:8888")
    assert forwarded.jupyter_url == "http://127.0.0.1:8888/lab?token=tok"
    data = forwarded.to_dict()
    assert data["engine"] == "ssh://me@gpu-box" and data["ssh"]["jump"] == "me@gpu-box"
    assert data["jupyter"]["forward"] == "127.0.0.1:8888"


def test_a_forward_record_is_believed_only_for_that_ssh_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    record = tmp_path / "envbuild" / "tunnel" / "proj.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"name": "proj", "pid": os.getpid(), "local_port": 8888, "remote_port": 32769,
                                  "engine": "ssh://me@gpu-box"}))
    assert remote.forward_of("proj") is None  # this pid is pytest, not `ssh -N -L ...`
    assert remote.stop_forward("proj") is False and not record.exists()
    record.write_text("{damaged")
    assert remote.forward_of("proj") is None


def test_sync_sends_the_project_owned_by_the_environment_user(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "data").mkdir(parents=True)
    (project / "src").mkdir()
    (project / "src" / "a.py").write_text("print(1)\n")
    (project / "data" / "big.bin").write_bytes(b"\0" * 1000)
    (project / ".envdignore").write_text("data/\n")
    (project / "link").symlink_to("src/a.py")
    os.mkfifo(project / "fifo")
    out = io.BytesIO()
    files, size = _tar(project, out, (1234, 4321))  # type: ignore[arg-type]
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {".", ".envdignore", "link", "src", "src/a.py"}
    assert {(m.uid, m.gid) for m in members.values()} == {(1234, 4321)}
    assert members["link"].issym() and members["link"].linkname == "src/a.py"
    assert (files, size) == (2, len("print(1)\n") + len("data/\n"))


def test_remote_of_an_address() -> None:
    box = remote.Remote.of("ssh://me@gpu-box:2222")
    assert (box.jump, box.host) == ("me@gpu-box:2222", "gpu-box")
    assert remote.Remote.of("ssh://[fd00::1]").jump == "[fd00::1]"


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_entries_are_told_apart_by_the_machine_they_jump_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`prune` against one engine must not drop the entries of environments on another."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    ssh.write_host(ssh.HostEntry("here", 1111))
    ssh.write_host(ssh.HostEntry("there", 2222, jump="me@gpu-box:2222"))
    ssh.write_host(ssh.HostEntry("elsewhere", 3333, jump="me@other-box"))
    assert ssh.hosts_through(None) == ["here"]
    assert ssh.hosts_through("me@gpu-box:2222") == ["there"]
    assert ssh.known_hosts() == ["elsewhere", "here", "there"]
