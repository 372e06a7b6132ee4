"""The GPU box over SSH, end to end: a laptop user whose engine is another machine's
(``DOCKER_HOST=ssh://USER@127.0.0.1:PORT``, a second sshd in front of this machine's engine; see
tests/remote_host.py). Build, no-op rebuild, `sync`, `up`, ``ssh NAME.envbuild`` through the jump,
Jupyter through the forward, `destroy`; a docker context that points at the same; and what a box
without docker, a refused key and a connection dropped mid-build are reported as.

``HOME`` is a temporary directory: the tester's own ``~/.ssh`` and ``~/.config`` are never touched.
Tests run in file order and share one environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import remote_host

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
CA = ["--ca-cert", str(CA_BUNDLE)] if CA_BUNDLE.is_file() else []


@dataclass
class Laptop:
    home: Path
    project: Path
    name: str
    box: remote_host.RemoteHost
    env: dict[str, str]
    up: dict[str, Any]

    def envbuild(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
                 timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-c", "from envbuild.cli import main; main()", *args],
                                env=env or self.env, cwd=self.project, capture_output=True, text=True,
                                timeout=timeout, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"envbuild {' '.join(args)} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    def ssh(self, *command: str) -> subprocess.CompletedProcess[str]:
        """What the user types: `ssh NAME.envbuild` (the session's ssh reads $HOME/.ssh/config)."""
        return subprocess.run(["ssh", "-o", "BatchMode=yes", f"{self.name}.envbuild", *command], env=self.env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _user_env(home: Path, bin_dir: Path, docker_host: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "SSH_", "DOCKER_", "BUILDKIT_")) and k != "ENVBUILD_CONTEXT"}
    env.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(REPO))
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return env


@pytest.fixture(scope="module")
def laptop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Laptop]:
    reason = remote_host.sshd_reason()
    if reason:
        pytest.skip(reason)
    box = remote_host.start(tmp_path_factory.mktemp("box"))
    home = tmp_path_factory.mktemp("home")
    bin_dir = remote_host.client_home(home, box)
    name = f"remote-{uuid.uuid4().hex[:8]}"
    project = tmp_path_factory.mktemp("projects") / name
    (project / "data").mkdir(parents=True)
    (project / "src").mkdir()
    with open(project / "data" / "images.bin", "wb") as f:
        f.truncate(10 << 30)  # a 10 GB dataset (sparse): it must never leave the laptop
    (project / "src" / "train.py").write_text("print('training')\n")
    (project / "notes.txt").write_text("keep me\n")
    (project / ".envdignore").write_text("# datasets stay on the laptop\ndata/\n")
    example = (REPO / "examples" / "jupyter" / "build.envd").read_text()
    check = '    run(commands=["test -f src/train.py", "test ! -e data"], mount_host=True)\n'
    (project / "build.envd").write_text(example.rstrip("\n") + "\n" + check)
    laptop = Laptop(home, project, name, box, _user_env(home, bin_dir, box.url), {})
    try:
        yield laptop
    finally:
        laptop.envbuild("destroy", check=False)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        subprocess.run(["docker", "volume", "rm", f"envbuild-{name}-project"], capture_output=True)
        subprocess.run(["docker", "image", "rm", f"{name}:dev"], capture_output=True)
        box.stop()


def _logins(box: remote_host.RemoteHost) -> int:
    return box.log().count("Accepted publickey")


def test_build_over_ssh_sends_the_context_but_not_the_dataset(laptop: Laptop) -> None:
    before = _logins(laptop.box)
    result = laptop.envbuild("build", *CA)
    assert "build context:" in result.stderr and " GB sent" not in result.stderr, result.stderr[-2000:]
    sent = result.stderr.split("build context:")[1].split("sent")[0]
    assert "kB" in sent or " B" in sent, sent  # kilobytes, not the 10 GB dataset
    assert _logins(laptop.box) - before == 1, "one SSH login for the whole build"
    # the same machine's engine: the image is there
    assert subprocess.run(["docker", "image", "inspect", f"{laptop.name}:dev"], capture_output=True).returncode == 0


def test_a_rebuild_with_nothing_changed_ends_at_once(laptop: Laptop) -> None:
    start = time.monotonic()
    result = laptop.envbuild("build", *CA)
    assert "is up to date" in result.stderr, result.stderr
    assert time.monotonic() - start < 30


def test_up_without_a_copy_of_the_project_says_how_to_get_one(laptop: Laptop) -> None:
    result = laptop.envbuild("up", "--detach", *CA, check=False)
    assert result.returncode == 2, result.stderr
    assert "another machine" in result.stderr and "envbuild sync" in result.stderr
    assert "--remote-path" in result.stderr
    assert subprocess.run(["docker", "inspect", laptop.name], capture_output=True).returncode != 0


def test_sync_copies_the_project_without_the_dataset(laptop: Laptop) -> None:
    result = laptop.envbuild("sync", *CA)
    assert f"into the volume envbuild-{laptop.name}-project" in result.stderr, result.stderr
    listing = subprocess.run(
        ["docker", "run", "--rm", "-v", f"envbuild-{laptop.name}-project:/p", "local/debian:bookworm",
         "find", "/p", "-printf", "%P %U\\n"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")
    paths = {line.split(" ")[0] for line in listing if line}
    assert {"notes.txt", "src/train.py", "build.envd", ".envdignore"} <= paths
    assert not any(p.startswith("data") for p in paths)
    assert {line.split(" ")[1] for line in listing if line} == {str(os.getuid())}


def test_up_on_the_remote_engine(laptop: Laptop) -> None:
    laptop.up = json.loads(laptop.envbuild("up", "--detach", "--format", "json", *CA).stdout)
    up = laptop.up
    assert up["engine"] == laptop.box.url and up["ssh"]["jump"] == f"{laptop.box.user}@127.0.0.1:{laptop.box.port}"
    assert up["project_source"] == f"volume envbuild-{laptop.name}-project"
    assert all(p["host_ip"] == "127.0.0.1" for p in up["ports"])  # the remote machine's loopback
    forward = up["jupyter"]["forward"]
    assert forward.startswith("127.0.0.1:") and up["jupyter"]["url"].startswith(f"http://{forward}/lab?token=")
    block = (laptop.home / ".config" / "envbuild" / "ssh_config").read_text()
    assert f"ProxyJump {laptop.box.user}@127.0.0.1:{laptop.box.port}" in block


def test_ssh_through_the_jump(laptop: Laptop) -> None:
    workdir = laptop.up["workdir"]
    result = laptop.ssh("cat", f"{workdir}/notes.txt")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "keep me\n"
    made = laptop.ssh(f"cd {workdir} && echo from-there > made-there.txt && ls")
    assert "made-there.txt" in made.stdout, made.stderr
    assert not (laptop.project / "made-there.txt").exists()  # the laptop's copy is not the remote's


def _status(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_jupyter_through_the_forward_needs_the_token(laptop: Laptop) -> None:
    status_url = f"http://{laptop.up['jupyter']['forward']}/api/status"
    assert _status(status_url, laptop.up["jupyter"]["token"]) == 200
    assert _status(status_url) == 403
    printed = laptop.envbuild("jupyter", laptop.name).stdout.strip()
    assert printed == laptop.up["jupyter"]["url"]
    listed = json.loads(laptop.envbuild("ls", "--format", "json").stdout)
    mine = next(e for e in listed if e["name"] == laptop.name)
    assert mine["jupyter"]["url"] == laptop.up["jupyter"]["url"] and mine["engine"] == laptop.box.url
    assert laptop.up["jupyter"]["url"] in laptop.envbuild("ls").stdout


def test_exec_through_the_jump(laptop: Laptop) -> None:
    assert laptop.envbuild("exec", laptop.name, "--", "cat", "src/train.py").stdout == "print('training')\n"


def test_gpus_on_a_machine_without_the_nvidia_runtime(laptop: Laptop) -> None:
    start = time.monotonic()
    result = laptop.envbuild("up", "--detach", "--gpus", "all", *CA, check=False)
    assert result.returncode == 1, result.stderr
    assert f"the Docker engine at {laptop.box.url} has no 'nvidia' runtime" in result.stderr
    assert "NVIDIA Container Toolkit" in result.stderr and "on that machine" in result.stderr
    assert time.monotonic() - start < 30, "checked before building"


def test_a_docker_context_pointing_at_the_box(laptop: Laptop, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    meta = config / "contexts" / "meta" / hashlib.sha256(b"gpu-box").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": "gpu-box", "Metadata": {}, "Endpoints": {"docker": {"Host": laptop.box.url}}}))
    env = {k: v for k, v in laptop.env.items() if k != "DOCKER_HOST"}
    env.update(DOCKER_CONFIG=str(config), DOCKER_CONTEXT="gpu-box")
    listed = json.loads(laptop.envbuild("ls", "--format", "json", env=env).stdout)
    assert laptop.name in {e["name"] for e in listed}
    assert next(e for e in listed if e["name"] == laptop.name)["engine"] == laptop.box.url
    assert "is up to date" in laptop.envbuild("build", *CA, env=env).stderr
    contexts = laptop.envbuild("context", "ls", env=env).stdout
    assert "gpu-box" in contexts and laptop.box.url in contexts
    laptop.envbuild("context", "create", "box", "--docker", laptop.box.url, "--use")
    try:
        no_host = {k: v for k, v in laptop.env.items() if k != "DOCKER_HOST"}
        listed = json.loads(laptop.envbuild("ls", "--format", "json", env=no_host).stdout)
        assert laptop.name in {e["name"] for e in listed}
    finally:
        laptop.envbuild("context", "use", "default")
        laptop.envbuild("context", "rm", "box")


def test_destroy_stops_the_forward(laptop: Laptop) -> None:
    record = laptop.home / ".cache" / "envbuild" / "tunnel" / f"{laptop.name}.json"
    pid = json.loads(record.read_text())["pid"]
    laptop.envbuild("destroy")
    assert not record.exists()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or b"-N" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert subprocess.run(["docker", "inspect", laptop.name], capture_output=True).returncode != 0
    assert f"{laptop.name}.envbuild" not in (laptop.home / ".config" / "envbuild" / "ssh_config").read_text()
    assert (laptop.project / "notes.txt").read_text() == "keep me\n"


def test_a_connection_dropped_mid_build_is_exit_3_and_leaves_nothing(laptop: Laptop) -> None:
    project = laptop.project.parent / f"{laptop.name}-slow"
    project.mkdir()
    (project / "build.envd").write_text(
        'def build():\n    base(image="local/debian:bookworm", dev=False)\n'
        f'    run(commands=["sleep 60; echo {uuid.uuid4().hex} > /x"])\n'
    )
    scratch = Path(tempfile.mkdtemp(prefix="eb-"))  # the command's own TMPDIR: what is left there is its own
    logins = _logins(laptop.box)
    argv = [sys.executable, "-c", "from envbuild.cli import main; main()", "build", "-p", str(project)]
    proc = subprocess.Popen(argv, env={**laptop.env, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while _logins(laptop.box) == logins and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(8)  # well into the sleep step
        assert laptop.box.drop_connections() > 0
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    try:
        assert proc.returncode == 3, stderr
        assert "Traceback" not in stderr and laptop.box.url in stderr, stderr
        assert "ssh connection" in stderr or "went away" in stderr
        assert subprocess.run(["docker", "image", "inspect", f"{project.name}:dev"],
                              capture_output=True).returncode != 0
        time.sleep(1)
        left = subprocess.run(["pgrep", "-a", "-f", str(scratch)], capture_output=True, text=True).stdout
        assert not [line for line in left.splitlines() if "pgrep" not in line], left  # no ssh process
        assert not list(scratch.iterdir())  # no control socket directory, bridge or session directory
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_machine_without_docker(laptop: Laptop, tmp_path: Path) -> None:
    bare = remote_host.start(tmp_path / "bare", session_env={"PATH": "/nonexistent"},
                             client_key=laptop.box.client_key)
    try:
        home = tmp_path / "home"
        bin_dir = remote_host.client_home(home, bare)
        result = laptop.envbuild("build", check=False, env=_user_env(home, bin_dir, bare.url))
        assert result.returncode == 3, result.stderr
        assert "has no `docker` command on the PATH of a non-interactive SSH session" in result.stderr
        ls = laptop.envbuild("ls", check=False, env=_user_env(home, bin_dir, bare.url))
        assert ls.returncode == 3 and "has no `docker` command" in ls.stderr, ls.stderr
    finally:
        bare.stop()


def test_a_refused_key(laptop: Laptop, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    home = tmp_path / "home"
    bin_dir = remote_host.client_home(home, laptop.box, key=other)
    for command in (["build"], ["ls"], ["up", "--detach"]):
        result = laptop.envbuild(*command, check=False, env=_user_env(home, bin_dir, laptop.box.url), timeout=60)
        assert result.returncode == 3, (command, result.stderr)
        assert "refused the login" in result.stderr and "Traceback" not in result.stderr, result.stderr
