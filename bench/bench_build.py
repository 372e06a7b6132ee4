"""Build benchmark: envbuild vs an equivalent hand-written Dockerfile on the same engine.

Scenarios, each timed as a whole process (``envbuild build`` / ``DOCKER_BUILDKIT=0 docker build``):
  warm-engine - first build of a new project on an engine that built similar ones (shared layers)
  cold       - every step re-run (--no-cache on both); envbuild's downloads come from its cache
               mounts (apt, uv), which is what a user's second project sees; the Dockerfile has none
  noop       - rebuild with nothing changed
  one-pkg    - one Python package added

Usage: .venv/bin/python bench/bench_build.py [--ca-cert /etc/ssl/certs/ca-certificates.crt] [--repeat 3]
                                             [--cold-repeat 1] [--steps]
Not run by the tests; prints a table and the envbuild/Dockerfile ratios. ``--steps`` also prints where
envbuild's last cold build spent its time: every step's duration and when it started and ended
relative to the command's start (steps that overlap ran in parallel), from ``--progress json``.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "local/debian:bookworm"

BUILD_ENVD = """def build():
    base(image="{base}", dev=True)
    install.python(version="3.11")
    install.python_packages(name={pkgs!r})
    config.jupyter()
"""

DOCKERFILE = """FROM {base}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl git less openssh-client \\
    openssh-server procps sudo supervisor python3 python3-venv && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*
RUN useradd -m -u 1000 -s /bin/bash envd && echo 'envd ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/envd
RUN python3 -m venv /opt/venv && chown -R envd /opt/venv
COPY ca.crt /tmp/ca.crt
RUN PIP_CERT=/tmp/ca.crt /opt/venv/bin/pip install -q jupyterlab
COPY requirements.txt /tmp/requirements.txt
RUN PIP_CERT=/tmp/ca.crt /opt/venv/bin/pip install -q -r /tmp/requirements.txt && rm /tmp/ca.crt
USER envd
WORKDIR /home/envd
"""


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return dt


def steps(cmd: list[str]) -> tuple[float, list[tuple[str, float, float]]]:
    """Run a build with JSON progress: its wall time and (name, start, end) of every step that ran."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    began: dict[str, float] = {}
    spans: list[tuple[str, float, float]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter() - t0
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("type") != "step":
            continue
        name = str(ev.get("name"))
        if ev.get("state") == "running":
            began.setdefault(name, now)
        elif ev.get("state") == "done" and name in began:
            spans.append((name, began[name], now))
    if proc.wait():
        sys.exit(f"failed: {' '.join(cmd)}")
    return time.perf_counter() - t0, spans


def print_steps(wall: float, spans: list[tuple[str, float, float]]) -> None:
    print(f"\nenvbuild cold build, {wall:.2f} s; steps that ran (start..end, relative to the command's start):")
    for name, a, b in sorted(spans, key=lambda s: s[1]):
        print(f"  {a:6.2f} .. {b:6.2f}  {b - a:6.2f} s  {name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ca-cert", default="/etc/ssl/certs/ca-certificates.crt")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the no-op rebuild (median reported)")
    ap.add_argument("--cold-repeat", type=int, default=1, help="cold builds of each side, alternating (median)")
    ap.add_argument("--steps", action="store_true", help="print envbuild's per-step times of a cold build")
    args = ap.parse_args()
    envbuild = str(ROOT / ".venv" / "bin" / "envbuild")
    work = Path(tempfile.mkdtemp(prefix="envbuild-bench-"))
    run_id = str(int(time.time()))
    ours, theirs = work / f"bench{run_id}", work / "dockerfile"
    ours.mkdir()
    theirs.mkdir()
    tag_ours, tag_theirs = f"envbuild-bench/ours:{run_id}", f"envbuild-bench/dockerfile:{run_id}"
    pkgs = ["numpy"]
    shutil.copy(args.ca_cert, theirs / "ca.crt")

    def write(extra: list[str]) -> None:
        (ours / "build.envd").write_text(BUILD_ENVD.format(base=BASE, pkgs=pkgs + extra))
        (theirs / "Dockerfile").write_text(DOCKERFILE.format(base=BASE))
        (theirs / "requirements.txt").write_text("\n".join(pkgs + extra + [f"# {run_id}"]) + "\n")

    eb = [envbuild, "build", "-p", str(ours), "-t", tag_ours, "--ca-cert", args.ca_cert, "--progress", "quiet"]
    db = ["docker", "build", "-q", "-t", tag_theirs, str(theirs)]
    denv = {**os.environ, "DOCKER_BUILDKIT": "0"}
    results: dict[str, tuple[float, float]] = {}
    write([])
    results["warm-engine"] = (timed(eb), timed(db, denv))
    cold: tuple[list[float], list[float]] = ([], [])
    for _ in range(max(1, args.cold_repeat)):
        cold[0].append(timed([*eb, "--no-cache"]))
        cold[1].append(timed([*db[:3], "--no-cache", *db[3:]], denv))
    results["cold"] = (statistics.median(cold[0]), statistics.median(cold[1]))
    if args.steps:
        json_build = [*eb[: eb.index("--progress")], "--progress", "json", "--no-cache"]
        print_steps(*steps(json_build))
    results["noop"] = (
        statistics.median(timed(eb) for _ in range(args.repeat)),
        statistics.median(timed(db, denv) for _ in range(args.repeat)),
    )
    write(["tabulate"])
    results["one-pkg"] = (timed(eb), timed(db, denv))
    print(f"{'scenario':10} {'envbuild':>10} {'Dockerfile':>11} {'ratio':>7}")
    for name, (a, b) in results.items():
        print(f"{name:10} {a:9.2f}s {b:10.2f}s {a / b:7.2f}")
    print("ratio = envbuild / Dockerfile (lower is better for envbuild)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
