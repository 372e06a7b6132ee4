"""Build benchmark: envbuild vs the same environment as a hand-written BuildKit Dockerfile, on one engine.

The Dockerfile is bench/baseline.py's (apt and uv cache mounts, the CA as a build secret, uv into a
venv; JupyterLab and the packages from one requirements.txt); the engine is the one ``DOCKER_HOST``
names. Scenarios, each timed as a whole process (``envbuild build`` / ``DOCKER_BUILDKIT=1 docker build``):
  warm-engine - first build of a new project on an engine that built similar ones (shared layers)
  cold       - every step re-run, both keep their download caches (cache mounts): envbuild --no-cache,
               the Dockerfile with a new CACHE_BUST build arg (baseline.Projects.docker_cold)
  noop       - rebuild with nothing changed
  one-pkg    - one Python package added

Usage: .venv/bin/python bench/bench_build.py [--ca-cert /etc/ssl/certs/ca-certificates.crt] [--repeat 3]
                                             [--cold-repeat 1] [--steps] [--linear]
Not run by the tests; prints the engine (version, image store, whether envbuild merges layers there),
a table and the envbuild/Dockerfile ratios. The cold builds run with ``--progress plain`` on both sides:
each round prints the load average before it, whether envbuild's build merged layers (its ``layer:``
steps) and how many files each side downloaded (0 when the download caches were warm, as the row
means). ``--steps`` also prints every step of both sides' cold builds: when it started, its duration
as the builder reports it (steps that overlap ran in parallel). ``--linear`` builds envbuild's image as
one chain of steps even where the builder has MergeOp.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import baseline  # bench/ is on sys.path when this file runs as a script
import engines

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return dt


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ca-cert", default=baseline.CA)
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the no-op rebuild (median reported)")
    ap.add_argument("--cold-repeat", type=int, default=1, help="cold builds of each side, alternating (median)")
    ap.add_argument("--steps", action="store_true", help="print both sides' per-step times of the cold builds")
    ap.add_argument("--linear", action="store_true", help="envbuild builds one chain of steps (no MergeOp)")
    args = ap.parse_args()
    envbuild = str(ROOT / ".venv" / "bin" / "envbuild")
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    engine = engines.describe(host, envbuild, os.environ)
    print(engine.label(linear=args.linear), flush=True)
    work = Path(tempfile.mkdtemp(prefix="envbuild-bench-"))
    p = baseline.Projects(work, str(int(time.time())), ca=args.ca_cert)
    build = [envbuild, "build", "-p", str(p.ours), "-t", p.tag_ours, "--ca-cert", args.ca_cert]
    if args.linear:
        build.append("--linear")
    eb = [*build, "--progress", "quiet"]
    denv = p.docker_env()
    results: dict[str, tuple[float, float]] = {}
    timelines: list[tuple[engines.Timeline, engines.Timeline, str]] = []
    try:
        p.write(["numpy"])
        results["warm-engine"] = (timed(eb), timed(p.docker_build(), denv))
        for _ in range(max(1, args.cold_repeat)):
            at = load()
            ours = engines.timeline([*build, "--progress", "plain", "--no-cache"], os.environ)
            theirs = engines.timeline(p.docker_cold("--progress", "plain"), denv)
            p.note_images()
            timelines.append((ours, theirs, at))
        results["cold"] = (
            statistics.median(t[0].wall for t in timelines),
            statistics.median(t[1].wall for t in timelines),
        )
        results["noop"] = (
            statistics.median(timed(eb) for _ in range(args.repeat)),
            statistics.median(timed(p.docker_build(), denv) for _ in range(args.repeat)),
        )
        p.note_images()
        p.write(["numpy", "tabulate"])
        results["one-pkg"] = (timed(eb), timed(p.docker_build(), denv))
        size = (baseline.image_size(p.tag_ours), baseline.image_size(p.tag_theirs))
    finally:
        p.remove()
        shutil.rmtree(work, ignore_errors=True)
    for i, (ours, theirs, at) in enumerate(timelines, 1):
        merged = f"{ours.merged} merged layers" if ours.merged else "no merged layers"
        print(
            f"cold round {i} (load {at}): envbuild {ours.wall:.2f} s ({merged}), Dockerfile {theirs.wall:.2f} s; "
            f"downloads: envbuild {ours.downloads}, Dockerfile {theirs.downloads}"
        )
        if args.steps:
            print(ours.render("  envbuild"), theirs.render("  Dockerfile"), sep="\n")
    print(f"{'scenario':10} {'envbuild':>10} {'Dockerfile':>11} {'ratio':>7}")
    for name, (a, b) in results.items():
        print(f"{name:10} {a:9.2f}s {b:10.2f}s {a / b:7.2f}")
    print(f"{'image':10} {size[0] / 1e6:8.0f}MB {size[1] / 1e6:9.0f}MB {size[0] / size[1]:7.2f}")
    print(f"ratio = envbuild / Dockerfile (lower is better for envbuild); load after: {load()}")


if __name__ == "__main__":
    main()
