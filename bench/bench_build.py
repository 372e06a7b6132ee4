"""Build benchmark: envbuild vs the same environment as a hand-written BuildKit Dockerfile, on one engine.

The Dockerfile is bench/baseline.py's (apt and uv cache mounts, the CA as a build secret, uv into a
venv, JupyterLab in its own layer); the engine is the one ``DOCKER_HOST`` names. Scenarios, each timed
as a whole process (``envbuild build`` / ``DOCKER_BUILDKIT=1 docker build``):
  warm-engine - first build of a new project on an engine that built similar ones (shared layers)
  cold       - every step re-run (--no-cache on both); both keep their download caches (cache mounts)
  noop       - rebuild with nothing changed
  one-pkg    - one Python package added

Usage: .venv/bin/python bench/bench_build.py [--ca-cert /etc/ssl/certs/ca-certificates.crt] [--repeat 3]
                                             [--cold-repeat 1] [--steps] [--linear]
Not run by the tests; prints a table and the envbuild/Dockerfile ratios. ``--steps`` also prints where
envbuild's last cold build spent its time: every step's duration and when it started and ended
relative to the command's start (steps that overlap ran in parallel), from ``--progress json``.
``--linear`` builds envbuild's image as one chain of steps even where the builder has MergeOp.
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

import baseline  # bench/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parents[1]


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
    ap.add_argument("--ca-cert", default=baseline.CA)
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the no-op rebuild (median reported)")
    ap.add_argument("--cold-repeat", type=int, default=1, help="cold builds of each side, alternating (median)")
    ap.add_argument("--steps", action="store_true", help="print envbuild's per-step times of a cold build")
    ap.add_argument("--linear", action="store_true", help="envbuild builds one chain of steps (no MergeOp)")
    args = ap.parse_args()
    envbuild = str(ROOT / ".venv" / "bin" / "envbuild")
    work = Path(tempfile.mkdtemp(prefix="envbuild-bench-"))
    p = baseline.Projects(work, str(int(time.time())), ca=args.ca_cert)
    build = [envbuild, "build", "-p", str(p.ours), "-t", p.tag_ours, "--ca-cert", args.ca_cert]
    if args.linear:
        build.append("--linear")
    eb = [*build, "--progress", "quiet"]
    denv = p.docker_env()
    results: dict[str, tuple[float, float]] = {}
    try:
        p.write(["numpy"])
        results["warm-engine"] = (timed(eb), timed(p.docker_build(), denv))
        cold: tuple[list[float], list[float]] = ([], [])
        for _ in range(max(1, args.cold_repeat)):
            cold[0].append(timed([*eb, "--no-cache"]))
            cold[1].append(timed(p.docker_build("--no-cache"), denv))
        results["cold"] = (statistics.median(cold[0]), statistics.median(cold[1]))
        if args.steps:
            print_steps(*steps([*build, "--progress", "json", "--no-cache"]))
        results["noop"] = (
            statistics.median(timed(eb) for _ in range(args.repeat)),
            statistics.median(timed(p.docker_build(), denv) for _ in range(args.repeat)),
        )
        p.write(["numpy", "tabulate"])
        results["one-pkg"] = (timed(eb), timed(p.docker_build(), denv))
        size = (baseline.image_size(p.tag_ours), baseline.image_size(p.tag_theirs))
    finally:
        baseline.remove_images(p.tag_ours, p.tag_theirs)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'scenario':10} {'envbuild':>10} {'Dockerfile':>11} {'ratio':>7}")
    for name, (a, b) in results.items():
        print(f"{name:10} {a:9.2f}s {b:10.2f}s {a / b:7.2f}")
    print(f"{'image':10} {size[0] / 1e6:8.0f}MB {size[1] / 1e6:9.0f}MB {size[0] / size[1]:7.2f}")
    engine = os.environ.get("DOCKER_HOST", "the default socket")
    print(f"ratio = envbuild / Dockerfile (lower is better for envbuild); engine: {engine}")


if __name__ == "__main__":
    main()
