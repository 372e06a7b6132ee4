"""Faults injected into real builds: the engine missing, forbidden or dropping away mid-build, Ctrl-C,
a failing step, a dead package index, concurrent builds, `destroy` during a build.

Each fault ends in a documented exit code and a message that says what to do, nothing keeps running
on the builder afterwards, and the next build works. The engine "restart" is simulated without
disturbing the shared engine: the build talks to dockerd through a Unix-socket relay owned by the
test, and the relay is torn down in the middle of a step (from the client that is exactly what a
restarting engine looks like), then brought back for the next build.

Build files are small (``local/debian:bookworm``, ``dev=False``, ``run()`` steps) and every step
that must not come from the cache carries a fresh token.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

ENVBUILD = Path(sys.executable).with_name("envbuild")
DOCKER_SOCK = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
"""The engine the tests use (``DOCKER_HOST`` points them at another one): relays connect to it."""
BASE_IMAGE = "local/debian:bookworm"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def _engine_answers() -> bool:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(DOCKER_SOCK)
        return True
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    e = {k: v for k, v in os.environ.items() if k not in ("BUILDKIT_HOST", "ENVBUILD_CONTEXT")}
    e.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        NO_COLOR="1",
        COLUMNS="200",
    )
    return e


def project(tmp_path: Path, body: str, name: str | None = None) -> Path:
    p = tmp_path / (name or f"faults-{uuid.uuid4().hex[:8]}")
    p.mkdir()
    (p / "build.envd").write_text(f'def build():\n    base(image="{BASE_IMAGE}", dev=False)\n' + body)
    return p


def envbuild(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENVBUILD), *args], capture_output=True, text=True, env=env, timeout=timeout, stdin=subprocess.DEVNULL
    )


def running_with(token: str) -> list[str]:
    """Host processes whose command line contains ``token`` (build steps run in the host PID view)."""
    out = subprocess.run(["ps", "-eww", "-o", "pid,args"], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines()[1:] if token in ln and "ps -eww" not in ln]


def wait_until(pred, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


class Build:
    """An `envbuild build` in the background whose stderr is collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [str(ENVBUILD), "build", "--progress", "plain", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        self.err: list[str] = []
        self.out: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _pump(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def builds() -> Iterator[list[Build]]:
    started: list[Build] = []
    yield started
    for b in started:
        b.kill()


# ---- the engine is not there, or not ours ----------------------------------------------------------


@pytest.mark.parametrize("command", [["build"], ["ls"], ["up", "-d"]])
def test_engine_not_running(command: list[str], env: dict[str, str], tmp_path: Path) -> None:
    p = project(tmp_path, '    run(commands=["true"])\n')
    env["DOCKER_HOST"] = f"unix://{tmp_path}/no-such-engine.sock"
    args = [*command, "-p", str(p)] if command[0] != "ls" else command
    r = envbuild(args, env, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert "no-such-engine.sock" in r.stderr or "Docker engine" in r.stderr
    assert any(w in r.stderr for w in ("systemctl start docker", "dockerd", "DOCKER_HOST")), r.stderr


def test_engine_socket_refuses(env: dict[str, str], tmp_path: Path) -> None:
    """A socket file with nobody listening (a crashed engine leaves exactly this behind)."""
    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    env["DOCKER_HOST"] = f"unix://{path}"
    p = project(tmp_path, '    run(commands=["true"])\n')
    r = envbuild(["build", "-p", str(p)], env, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert any(w in r.stderr.lower() for w in ("refused", "not running", "start")), r.stderr


def test_engine_socket_not_permitted(env: dict[str, str], tmp_path: Path) -> None:
    """A socket the user may not open: exit 3 and a hint about access, not about starting the engine.

    The socket is mode 000 and envbuild runs without CAP_DAC_OVERRIDE (``setpriv``), which is what a
    user outside the docker group meets; a real unprivileged user could not run this venv's Python.
    """
    if os.geteuid() != 0 or subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
        pytest.skip("needs root and setpriv to drop the capability that bypasses file permissions")
    path = tmp_path / "forbidden.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    path.chmod(0)
    env["DOCKER_HOST"] = f"unix://{path}"
    p = project(tmp_path, '    run(commands=["true"])\n')
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]
    try:
        for command in (["build", "-p", str(p)], ["ls"]):
            r = subprocess.run([*drop, str(ENVBUILD), *command], capture_output=True, text=True, env=env, timeout=60)
            assert r.returncode == 3, f"{command}: exit {r.returncode}\n{r.stderr}"
            assert "Traceback" not in r.stderr
            assert "ermission denied" in r.stderr, r.stderr
            assert "docker group" in r.stderr, (
                f"{command}: the message should say how to get access (the docker group):\n{r.stderr}"
            )
    finally:
        listener.close()


# ---- a step fails, a package index is down ----------------------------------------------------------


def test_failing_step_names_step_exit_code_log_and_line(env: dict[str, str], tmp_path: Path) -> None:
    token = uuid.uuid4().hex[:12]
    p = project(
        tmp_path,
        f'    run(commands=["echo ok-{token}"])\n'
        f'    run(commands=["echo first-{token}", "echo second-{token} >&2", "exit 7"])\n',
    )
    r = envbuild(["build", "-p", str(p), "--progress", "plain"], env)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("envbuild: error:")]
    assert len(err) == 1, r.stderr
    assert "build.envd:4:5:" in err[0] and "exit code 7" in err[0] and f"echo first-{token}" in err[0], err[0]
    tail = r.stderr[r.stderr.index("envbuild: error:") :]
    assert f"first-{token}" in tail and f"second-{token}" in tail, tail


def test_package_index_down(env: dict[str, str], tmp_path: Path) -> None:
    p = project(
        tmp_path,
        "    install.python()\n"
        '    config.pip_index(url="http://127.0.0.1:9/simple")\n'
        f'    install.python_packages(name=["envbuild-no-such-{uuid.uuid4().hex[:6]}"])\n',
    )
    r = envbuild(["build", "-p", str(p), "--progress", "plain", "--ca-cert", CA_BUNDLE], env, timeout=600)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    err = r.stderr[r.stderr.index("envbuild: error:") :] if "envbuild: error:" in r.stderr else ""
    # The index serves the python step too (uv comes from it), so either line may be the one that fails.
    assert "build.envd:3:5:" in err or "build.envd:5:5:" in err, r.stderr[-3000:]
    assert "failed (exit code" in err.splitlines()[0], err
    assert "127.0.0.1:9" in err or "onnection refused" in err, f"the error should show why:\n{err}"


# ---- interrupted builds -----------------------------------------------------------------------------


def test_ctrl_c_cancels_the_solve(env: dict[str, str], tmp_path: Path, builds: list[Build]) -> None:
    token = f"envbuild-sigint-{uuid.uuid4().hex[:10]}"
    p = project(tmp_path, f'    run(commands=["sleep 300 && echo {token}"])\n')
    b = Build(["-p", str(p)], env)
    builds.append(b)
    assert wait_until(lambda: running_with(token), 120), f"the step never started:\n{b.stderr}"
    t0 = time.monotonic()
    b.proc.send_signal(signal.SIGINT)
    rc = b.wait(timeout=60)
    assert rc == 130, f"exit {rc}\n{b.stderr}"
    assert time.monotonic() - t0 < 15, "Ctrl-C took too long to take effect"
    assert "Traceback" not in b.stderr, b.stderr
    assert wait_until(lambda: not running_with(token), 15), (
        f"the step still runs on the builder after Ctrl-C: {running_with(token)}"
    )


def test_client_killed_mid_build_leaves_nothing_running(
    env: dict[str, str], tmp_path: Path, builds: list[Build]
) -> None:
    """SIGKILL gives the client no chance to cancel: the builder must notice the session is gone."""
    token = f"envbuild-sigkill-{uuid.uuid4().hex[:10]}"
    p = project(tmp_path, f'    run(commands=["sleep 300 && echo {token}"])\n')
    b = Build(["-p", str(p)], env)
    builds.append(b)
    assert wait_until(lambda: running_with(token), 120), f"the step never started:\n{b.stderr}"
    b.proc.kill()
    b.wait(timeout=30)
    assert wait_until(lambda: not running_with(token), 20), f"orphaned step: {running_with(token)}"
    assert _engine_answers(), "the engine went away after a client was killed"
    (p / "build.envd").write_text((p / "build.envd").read_text().replace("sleep 300 && ", ""))
    try:
        r = envbuild(["build", "-p", str(p)], env)
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        subprocess.run(["docker", "rmi", "-f", f"{p.name}:latest"], capture_output=True)


def test_engine_drops_away_mid_build_then_next_build_works(
    env: dict[str, str], tmp_path: Path, builds: list[Build]
) -> None:
    token = f"envbuild-drop-{uuid.uuid4().hex[:10]}"
    p = project(tmp_path, f'    run(commands=["sleep 60 && echo {token}"])\n')
    relay = Relay(tmp_path / "relay.sock", DOCKER_SOCK)
    try:
        env["DOCKER_HOST"] = f"unix://{relay.path}"
        b = Build(["-p", str(p)], env)
        builds.append(b)
        assert wait_until(lambda: running_with(token), 120), f"the step never started:\n{b.stderr}"
        relay.stop()
        rc = b.wait(timeout=90)
        assert rc in (1, 3), f"exit {rc}\n{b.stderr}"
        assert "Traceback" not in b.stderr, b.stderr
        assert "envbuild: error:" in b.stderr, b.stderr
        assert wait_until(lambda: not running_with(token), 30), "the step kept running after the client went away"
        relay.start()
        (p / "build.envd").write_text((p / "build.envd").read_text().replace("sleep 60 && ", ""))
        r = envbuild(["build", "-p", str(p), "--progress", "plain"], env)
        assert r.returncode == 0, r.stderr[-3000:]
    finally:
        relay.stop()
        subprocess.run(["docker", "rmi", "-f", f"{p.name}:latest"], capture_output=True)


# ---- concurrency ------------------------------------------------------------------------------------


def test_two_builds_of_one_project_at_once(env: dict[str, str], tmp_path: Path, builds: list[Build]) -> None:
    token = uuid.uuid4().hex[:12]
    p = project(tmp_path, f'    run(commands=["sleep 3", "echo {token} > /marker"])\n')
    tag = f"envbuild-faults-{token}:dev"
    try:
        first, second = Build(["-p", str(p), "-t", tag], env), Build(["-p", str(p), "-t", tag], env)
        builds += [first, second]
        rcs = [first.wait(), second.wait()]
        for b, rc in zip((first, second), rcs, strict=True):
            assert "Traceback" not in b.stderr, b.stderr
            assert rc == 0 or ("envbuild: error:" in b.stderr and rc in (1, 2)), f"exit {rc}\n{b.stderr}"
        assert 0 in rcs, f"neither build succeeded:\n{first.stderr}\n{second.stderr}"
        out = subprocess.run(["docker", "run", "--rm", tag, "cat", "/marker"], capture_output=True, text=True)
        assert out.stdout.strip() == token, out
        again = envbuild(["build", "-p", str(p), "-t", tag], env)
        assert again.returncode == 0 and "up to date" in again.stderr, again.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_destroy_while_a_build_runs(env: dict[str, str], tmp_path: Path, builds: list[Build]) -> None:
    token = uuid.uuid4().hex[:12]
    p = project(
        tmp_path, f'    run(commands=["sleep 5", "echo {token} > /marker"])\n', name=f"faults-destroy-{token[:6]}"
    )
    tag = f"envbuild-faults-{token}:dev"
    try:
        b = Build(["-p", str(p), "-t", tag], env)
        builds.append(b)
        assert wait_until(lambda: running_with(f"echo {token}"), 120), b.stderr
        d = envbuild(["destroy", "-p", str(p)], env, timeout=60)
        assert d.returncode == 0, d.stderr
        assert "Traceback" not in d.stderr
        assert b.wait() == 0, b.stderr
        out = subprocess.run(["docker", "run", "--rm", tag, "cat", "/marker"], capture_output=True, text=True)
        assert out.stdout.strip() == token
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


# ---- a relay that can play a restarting engine ---------------------------------------------------------


class Relay:
    """A Unix-socket relay to dockerd; ``stop`` cuts every connection at once, ``start`` listens again."""

    def __init__(self, path: Path, target: str) -> None:
        self.path = path
        self.target = target
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.start()

    def start(self) -> None:
        if self.path.exists():
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def test_engine_lost_during_up_is_exit_3_with_the_usual_message(env: dict[str, str], tmp_path: Path) -> None:
    """The engine goes away after the build, while `up` creates the environment and waits for it."""
    p = project(tmp_path, "", name=f"faults-up-{uuid.uuid4().hex[:6]}")
    (p / "build.envd").write_text(f'def build():\n    base(image="{BASE_IMAGE}", dev=True)\n')
    built = envbuild(["build", "-p", str(p), "--ca-cert", CA_BUNDLE], env, timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    relay = Relay(tmp_path / "relay.sock", DOCKER_SOCK)
    env["DOCKER_HOST"] = f"unix://{relay.path}"
    proc = subprocess.Popen([str(ENVBUILD), "up", "-d", "-p", str(p), "--ca-cert", CA_BUNDLE], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    try:
        assert wait_until(lambda: any(line.startswith("Starting ") for line in err) or proc.poll() is not None, 300)
        relay.stop()
        rc = proc.wait(timeout=120)
        time.sleep(0.2)
        text = "".join(err)
        assert rc == 3, f"exit {rc}\n{text}"
        assert "Traceback" not in text
        assert "envbuild: error: lost the Docker engine" in text and "systemctl start docker" in text, text
    finally:
        relay.stop()
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["docker", "rm", "-f", p.name], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "-f", f"{p.name}:dev"], capture_output=True, check=False)


def test_three_ups_of_one_project_at_once_all_attach(env: dict[str, str], tmp_path: Path) -> None:
    """Each round changes the build file, so all three build, export (three image ids, one content
    digest) and race to create the environment; the losers attach to the winner's."""
    p = project(tmp_path, "", name=f"faults-3up-{uuid.uuid4().hex[:6]}")
    try:
        for round_ in range(3):
            (p / "build.envd").write_text(f'def build():\n    base(image="{BASE_IMAGE}", dev=True)\n'
                                          f'    run(commands=["echo {uuid.uuid4().hex} {round_}"])\n')
            subprocess.run(["docker", "rm", "-f", p.name], capture_output=True, check=False)
            procs = [subprocess.Popen([str(ENVBUILD), "up", "-d", "-p", str(p), "--ca-cert", CA_BUNDLE], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      stdin=subprocess.DEVNULL) for _ in range(3)]
            results = [(proc.wait(timeout=600), proc.communicate()[1]) for proc in procs]
            for rc, err in results:
                assert rc == 0, f"round {round_}: exit {rc}\n{err[-2000:]}"
            said = sorted(next(ln for ln in err.splitlines() if ln.endswith(f" {p.name}.")) for _, err in results)
            assert sum(s.startswith("Started") for s in said) == 1, said
            running = subprocess.run(["docker", "ps", "--filter", f"name=^{p.name}$", "-q"], capture_output=True,
                                     text=True).stdout.split()
            assert len(running) == 1
    finally:
        subprocess.run(["docker", "rm", "-f", p.name], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", "-f", f"{p.name}:dev"], capture_output=True, check=False)
