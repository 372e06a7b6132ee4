"""What a Docker engine over SSH costs: the same commands against the local socket and against the
same engine behind a second sshd on 127.0.0.1 (``DOCKER_HOST=ssh://USER@127.0.0.1:PORT``, the GPU box
of tests/remote_host.py), measured in the same run.

    .venv/bin/python bench/bench_remote.py [--rounds 9] [--json]

Rows (whole `envbuild` processes, medians of alternating runs):
  no-op build   `envbuild build` with nothing changed (the up-to-date check asks the engine for
                the image's labels: over ssh that is the SSH login and one dial-stdio stream)
  small build   a build whose one step runs every time (a new value each round), exported into the
                engine: the gRPC and session streams, the context sent, the image written
  connect       `llb.connect(...)` + ``list_workers()`` in one process (the transport alone)

Both sides talk to the same engine, so the difference is the transport: one SSH connection per
command (ControlMaster), one ``docker system dial-stdio`` per stream. On a real network the round
trips add to it; this is the floor. No targets: the figures are printed for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import remote_host  # noqa: E402 - the same stand-in GPU box the end-to-end tests use

ENVBUILD = [sys.executable, "-c", "from envbuild.cli import main; main()"]
CONNECT = "import llb, sys; c = llb.connect(sys.argv[1], timeout=30); c.list_workers(); c.close()"


def timed(cmd: Sequence[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    r = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-4000:]}")
    return elapsed


def alternate(rounds: int, *commands: Callable[[], float]) -> list[float]:
    """Medians of ``rounds`` interleaved runs, after one warm-up run of each."""
    for command in commands:
        command()
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(rounds):
        for i, command in enumerate(commands):
            times[i].append(command())
    return [statistics.median(t) for t in times]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=9, help="timed runs of each command (median)")
    ap.add_argument("--json", action="store_true", help="one JSON line per row instead of the table")
    args = ap.parse_args()
    reason = remote_host.sshd_reason()
    if reason:
        sys.exit(reason)
    work = Path(tempfile.mkdtemp(prefix="envbuild-remote-bench-"))
    box = remote_host.start(work / "box")
    tag = f"remote-bench-{os.getpid()}"
    try:
        home = work / "home"
        bin_dir = remote_host.client_home(home, box)
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("XDG_", "SSH_", "DOCKER_", "BUILDKIT_")) and k != "PYTHONDONTWRITEBYTECODE"}
        base.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT))
        local = dict(base)
        if os.environ.get("DOCKER_HOST", "").startswith("unix://"):
            local["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
        remote = {**base, "DOCKER_HOST": box.url}

        noop = work / "noop"
        noop.mkdir()
        (noop / "build.envd").write_text(
            'def build():\n    base(image="local/debian:bookworm", dev=False)\n    run(commands=["echo ready > /r"])\n')
        small = work / "small"
        small.mkdir()
        (small / "app.py").write_text("print('hello')\n" * 200)
        counter = [0]

        def small_build(env: dict[str, str]) -> float:
            counter[0] += 1
            (small / "build.envd").write_text(
                'def build():\n    base(image="local/debian:bookworm", dev=False)\n'
                '    io.copy(host_path="app.py", envd_path="/app.py")\n'
                f'    run(commands=["echo {counter[0]} > /round"])\n')
            return timed([*ENVBUILD, "build", "-t", f"{tag}-small:dev", "--progress", "quiet"], env, small)

        build = [*ENVBUILD, "build", "-t", f"{tag}-noop:dev", "--progress", "quiet"]
        rows = []
        a, b = alternate(args.rounds, lambda: timed(build, local, noop), lambda: timed(build, remote, noop))
        rows.append(("no-op build", a, b))
        a, b = alternate(args.rounds, lambda: small_build(local), lambda: small_build(remote))
        rows.append(("small build", a, b))
        connect_local = [sys.executable, "-c", CONNECT, "docker://"]  # $DOCKER_HOST or the local socket
        connect_remote = [sys.executable, "-c", CONNECT, box.url]
        a, b = alternate(args.rounds, lambda: timed(connect_local, local, work),
                         lambda: timed(connect_remote, local, work))
        rows.append(("connect", a, b))
        logins = box.log().count("Accepted publickey")
    finally:
        box.stop()
        for t in (f"{tag}-noop:dev", f"{tag}-small:dev"):
            subprocess.run(["docker", "image", "rm", "-f", t], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        for name, a, b in rows:
            print(json.dumps({"name": name, "local_s": a, "ssh_s": b, "overhead_s": b - a, "ratio": b / a}))
    else:
        print(f"{'what':12} {'local socket':>13} {'ssh://':>10} {'overhead':>10} {'ratio':>7}")
        for name, a, b in rows:
            print(f"{name:12} {a * 1e3:10.0f} ms {b * 1e3:7.0f} ms {(b - a) * 1e3:+7.0f} ms {b / a:6.2f}x")
        print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
              f"medians of {args.rounds} alternating runs; {logins} SSH logins for "
              f"{3 * (args.rounds + 1)} ssh:// commands")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
