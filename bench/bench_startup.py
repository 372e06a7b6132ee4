"""Start-up of the commands a user waits for, against baselines measured in the same run.

    .venv/bin/python bench/bench_startup.py [--rounds 15] [--envd PATH] [--skip-build] [--json]

Rows (whole processes, medians of alternating runs, bytecode caches on as users have them):
  debug llb    `envbuild debug llb` vs `envd debug llb` on the same build.envd      target <= 1.5x
  no-op build  `envbuild build` with nothing changed vs a cached `docker build` of the same
               environment as a hand-written BuildKit Dockerfile (bench/baseline.py)   target <= 0.5x
  python       bare `python -c pass`, the floor of every Python command (for reference)

The envbuild measured is this checkout (PYTHONPATH), run through the ``envbuild`` script next to the
Python that runs this file. envd (1.3.6, ``pip install envd`` into its own venv, e.g.
/work/envd-venv) resolves the base image from a registry even for ``debug llb``: the base is pushed to
the loopback registry (127.0.0.1:5000) and marked insecure in a temporary HOME's
``.config/containers/registries.conf``; analytics are off, otherwise envd waits for a telemetry
request. Both builds are run once before timing, so both are cached. ``--check`` exits 1 when a
target is missed. Targets live here, not in tests: machine noise must not fail a test run.
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
from dataclasses import dataclass
from pathlib import Path

import baseline  # bench/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parents[1]
REGISTRY_BASE = "127.0.0.1:5000/envbuild-bench/debian:bookworm"


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    ours: float
    other: float | None
    other_name: str
    target: float | None

    @property
    def ratio(self) -> float | None:
        return self.ours / self.other if self.other else None

    @property
    def met(self) -> bool:
        return self.target is None or self.ratio is None or self.ratio <= self.target


def environment(**extra: str) -> dict[str, str]:
    """This checkout first on the path, bytecode caches on (this machine's shells set
    PYTHONDONTWRITEBYTECODE, which no user has)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def timed(cmd: Sequence[str], *, env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    r = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return elapsed


def alternate(rounds: int, *commands: Callable[[], float]) -> list[float]:
    """Medians of ``rounds`` runs, interleaved so that machine noise hits every command alike
    (after one warm-up run each, which also writes the bytecode caches)."""
    for command in commands:
        command()
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(rounds):
        for i, command in enumerate(commands):
            times[i].append(command())
    return [statistics.median(t) for t in times]


def push_base() -> None:
    subprocess.run(["docker", "tag", baseline.LOCAL_BASE, REGISTRY_BASE], check=True, capture_output=True)
    r = subprocess.run(["docker", "push", "-q", REGISTRY_BASE], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"could not push the base to the loopback registry: {r.stderr.strip()}")


def envd_home(work: Path) -> Path:
    conf = work / "envd-home" / ".config" / "containers"
    conf.mkdir(parents=True)
    (conf / "registries.conf").write_text('[[registry]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n')
    return work / "envd-home"


def debug_llb_rows(work: Path, envbuild: str, envd: str | None, rounds: int) -> list[Row]:
    project = work / "llb"
    project.mkdir()
    (project / "build.envd").write_text(baseline.BUILD_ENVD.format(base=REGISTRY_BASE, packages='["numpy"]'))
    env = environment()
    ours = lambda: timed([envbuild, "debug", "llb"], env=env, cwd=project)  # noqa: E731
    bare = lambda: timed([sys.executable, "-c", "pass"], env=env)  # noqa: E731
    if envd is None:
        a, c = alternate(rounds, ours, bare)
        return [Row("debug llb", a, None, "envd (not found: --envd)", 1.5), Row("python -c pass", c, None, "", None)]
    push_base()
    envd_env = environment(HOME=str(envd_home(work)), ENVD_ANALYTICS="false")
    theirs = lambda: timed([envd, "debug", "llb"], env=envd_env, cwd=project)  # noqa: E731
    a, b, c = alternate(rounds, ours, theirs, bare)
    return [Row("debug llb", a, b, "envd debug llb", 1.5), Row("python -c pass", c, None, "", None)]


def noop_build_row(p: baseline.Projects, envbuild: str, rounds: int) -> Row:
    """The rebuild of an unchanged project against the cached ``docker build`` of its Dockerfile twin
    (both run once before timing, so both are cached)."""
    p.write(["numpy"])
    build = [envbuild, "build", "-p", str(p.ours), "-t", p.tag_ours, "--ca-cert", p.ca, "--progress", "quiet"]
    env = environment()
    docker_env = p.docker_env(env)
    a, b = alternate(rounds, lambda: timed(build, env=env), lambda: timed(p.docker_build(), env=docker_env))
    return Row("no-op build", a, b, "cached BuildKit docker build", 0.5)


def table(rows: list[Row]) -> str:
    lines = [f"{'what':16} {'envbuild':>9} {'baseline':>9} {'ratio':>7} {'target':>7}  baseline"]
    for r in rows:
        other = f"{r.other * 1e3:7.0f} ms" if r.other is not None else f"{'-':>10}"
        ratio = f"{r.ratio:6.2f}x" if r.ratio is not None else f"{'-':>7}"
        target = f"<={r.target}x" if r.target is not None else ""
        verdict = "" if r.target is None or r.ratio is None else ("  ok" if r.met else "  MISSED")
        lines.append(f"{r.name:16} {r.ours * 1e3:6.0f} ms {other} {ratio} {target:>7}  {r.other_name}{verdict}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15, help="timed runs of each command (median)")
    ap.add_argument("--envd", default=shutil.which("envd") or "/work/envd-venv/bin/envd")
    ap.add_argument("--envbuild", default=str(Path(sys.executable).with_name("envbuild")))
    ap.add_argument("--skip-build", action="store_true", help="only the debug llb row (no engine builds)")
    ap.add_argument("--json", action="store_true", help="one JSON line per row instead of the table")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()
    envd = args.envd if args.envd and Path(args.envd).exists() else None
    work = Path(tempfile.mkdtemp(prefix="envbuild-startup-"))
    try:
        rows = debug_llb_rows(work, args.envbuild, envd, args.rounds)
        if not args.skip_build:
            p = baseline.Projects(work, str(int(time.time())))
            try:
                rows.append(noop_build_row(p, args.envbuild, args.rounds))
            finally:
                baseline.remove_images(p.tag_ours, p.tag_theirs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        for r in rows:
            print(
                json.dumps(
                    {
                        "name": r.name,
                        "ours_s": r.ours,
                        "other_s": r.other,
                        "other": r.other_name,
                        "ratio": r.ratio,
                        "target": r.target,
                        "met": r.met,
                    }
                )
            )
    else:
        print(table(rows))
        print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, medians of {args.rounds} alternating runs")
    return 1 if args.check and not all(r.met for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
