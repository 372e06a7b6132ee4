"""All performance targets of envbuild in one run, side by side with envd and a hand-written Dockerfile.

    .venv/bin/python bench/run_all.py [--rounds 15] [--up-rounds 5] [--cold-rounds 2] [--empty-cache-rounds 1]
                                      [--skip-builds] [--envd PATH]

Rows (whole processes unless noted; medians; ratios from the same run, lower is better for envbuild):
  a  `envbuild debug llb` vs `envd debug llb` on the same build.envd (alternating runs; bench/bench_startup.py)
  b  no-op `envbuild build` vs a cached BuildKit `docker build` of the same environment (bench/bench_startup.py)
  c  one pip package added: envbuild (only that step runs) vs the Dockerfile (reinstalls requirements)
  d  cold build with warm download caches: `envbuild build --no-cache` (its apt/uv cache mounts
     survive) vs `docker build --no-cache` (downloads again: a Dockerfile has no such caches),
     alternating, median of --cold-rounds; then envbuild with empty download caches (the CLI run with
     cache mount ids of its own, so nothing else on the engine loses its caches; those mounts are
     pruned afterwards) against the same Dockerfile median
  e  `envbuild up` of the built image until sshd and Jupyter answer (bench/bench_up.py)
  f  image size of the Jupyter environment vs the Dockerfile's image
  g  scale: evaluate + compile + marshal, in process, for generated files (packages, run() steps, load()ed files)

envd (1.3.6, `pip install envd` into its own venv, e.g. /work/envd-venv) resolves the base image from a
registry even for `debug llb`: the base is pushed to the loopback registry (127.0.0.1:5000) and marked
insecure in a temporary HOME's `.config/containers/registries.conf`; analytics are off
(ENVD_ANALYTICS=false), otherwise every envd command waits for a telemetry request. The same file is
given to envbuild, which finds the tagged base in the engine's store. The Docker builds use the
CA bundle of the TLS-inspecting proxy (--ca-cert) like envbuild.
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

import bench_startup  # bench/ is on sys.path when this file runs as a script

ROOT = Path(__file__).resolve().parents[1]
ENVBUILD = str(ROOT / ".venv" / "bin" / "envbuild")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
LOCAL_BASE = "local/debian:bookworm"
CA = "/etc/ssl/certs/ca-certificates.crt"

BUILD_ENVD = """# syntax=v1
def build():
    base(image="{base}", dev=True)
    install.python(version="3.11")
    install.python_packages(name={pkgs})
    config.jupyter()
"""

# The same environment by hand: Debian's python3 + venv, sshd, supervisor, git; one requirements.txt
# (jupyterlab + the project's packages) pip-installed into a venv -- the usual way, and the baseline of
# the issue (a line added to requirements.txt reinstalls all of it).
DOCKERFILE = """FROM {base}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl git less openssh-client \\
    openssh-server procps sudo supervisor python3 python3-venv && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*
RUN useradd -m -u 1000 -s /bin/bash envd && echo 'envd ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/envd
RUN python3 -m venv /opt/venv && chown -R envd /opt/venv
COPY ca.crt requirements.txt /tmp/
RUN PIP_CERT=/tmp/ca.crt /opt/venv/bin/pip install -q -r /tmp/requirements.txt && rm /tmp/ca.crt
USER envd
WORKDIR /home/envd
"""

Row = tuple[str, str, str, str, str]  # (row, what, envbuild, other, ratio)


def clean_env(**extra: str) -> dict[str, str]:
    """Bytecode caches on (this machine's shells set PYTHONDONTWRITEBYTECODE, which no user has)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = True) -> float:
    t = time.perf_counter()
    r = subprocess.run(list(cmd), env=env or clean_env(), cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if check and r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    return dt


def alternate(n: int, *cmds: Callable[[], float]) -> list[float]:
    """Medians of n rounds, the commands interleaved so that machine noise hits all alike."""
    for c in cmds:
        c()
    times: list[list[float]] = [[] for _ in cmds]
    for _ in range(n):
        for i, c in enumerate(cmds):
            times[i].append(c())
    return [statistics.median(t) for t in times]


def ms(t: float) -> str:
    return f"{t * 1e3:.0f} ms"


def s(t: float) -> str:
    return f"{t:.2f} s"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


# ---------------------------------------------------------------- a, b: start-up (bench/bench_startup.py)


def rows_startup(work: Path, envd: str | None, n: int, *, builds: bool) -> list[Row]:
    """`debug llb` against envd and the no-op build against a cached BuildKit `docker build`."""
    work = work / "startup"
    work.mkdir()
    found = bench_startup.debug_llb_rows(work, ENVBUILD, envd, n)
    if builds:
        found.append(bench_startup.noop_build_row(work, ENVBUILD, bench_startup.default_docker(), n))
    names = {
        "debug llb": ("a", "`debug llb` vs `envd debug llb` (Jupyter file)"),
        "python -c pass": ("", "bare `python -c pass` (for reference)"),
        "no-op build": ("b", "no-op rebuild vs a cached BuildKit `docker build`"),
    }
    rows: list[Row] = []
    for r in found:
        key, what = names[r.name]
        target = f" (target <= {r.target}x)" if r.target is not None and r.ratio is not None else ""
        rows.append(
            (
                key,
                what + target,
                ms(r.ours),
                ms(r.other) if r.other is not None else "-",
                f"{r.ratio:.2f}x" if r.ratio is not None else "",
            )
        )
    return rows


# ---------------------------------------------------------------- b-d, f: builds vs a Dockerfile


class Projects:
    def __init__(self, work: Path, run_id: str) -> None:
        self.ours, self.theirs = work / f"jupyter{run_id}", work / "dockerfile"
        self.ours.mkdir()
        self.theirs.mkdir()
        shutil.copy(CA, self.theirs / "ca.crt")
        self.run_id = run_id
        self.tag_ours, self.tag_theirs = f"envbuild-bench/ours:{run_id}", f"envbuild-bench/dockerfile:{run_id}"
        self.build = [
            ENVBUILD,
            "build",
            "-p",
            str(self.ours),
            "-t",
            self.tag_ours,
            "--ca-cert",
            CA,
            "--progress",
            "quiet",
        ]
        self.docker = ["docker", "build", "-q", "-t", self.tag_theirs, str(self.theirs)]
        self.denv = clean_env(DOCKER_BUILDKIT="0")

    def write(self, extra: list[str]) -> None:
        # A lower bound every release meets, unique to this run: the "one package" step is never a cache hit.
        # (No spaces: install.python_packages splits names like a shell, as envd does.)
        pkgs = ["numpy"] + [f"{p}>=0.0.{self.run_id}" for p in extra]
        (self.ours / "build.envd").write_text(BUILD_ENVD.format(base=LOCAL_BASE, pkgs=json.dumps(pkgs)))
        (self.theirs / "Dockerfile").write_text(DOCKERFILE.format(base=LOCAL_BASE))
        (self.theirs / "requirements.txt").write_text(
            "\n".join(["jupyterlab", "numpy", *extra, f"# {self.run_id}"]) + "\n"
        )

    def ours_t(self, *extra: str) -> float:
        return run([*self.build, *extra])

    def theirs_t(self, *extra: str) -> float:
        return run([*self.docker[:3], *extra, *self.docker[3:]], env=self.denv)

    def ours_empty_caches_t(self, namespace: str) -> float:
        return run([PYTHON, "-c", NAMESPACED_CLI, namespace, *self.build[1:], "--no-cache"])


NAMESPACED_CLI = r"""
import sys
from envbuild.compiler import conda, languages, scripts
ns = sys.argv[1]
ids = {
    scripts: (
        "APT_CACHE_ID", "APT_LISTS_ID", "TOOLS_APT_CACHE_ID", "TOOLS_APT_LISTS_ID", "UV_CACHE_ID", "PIP_CACHE_ID",
    ),
    languages: ("DL_CACHE_ID",),
    conda: ("RATTLER_CACHE_ID",),
}
for module, names in ids.items():
    for name in names:
        setattr(module, name, getattr(module, name) + "-" + ns)
from envbuild.cli import main
main(sys.argv[2:])
"""
"""`envbuild` with every download cache mount renamed: a build that starts from empty caches, on the
same engine, without emptying the caches other builds use."""


def prune_cache_mounts(since: float) -> int:
    """Remove the cache mounts envbuild's steps created since ``since`` (the namespaced ones)."""
    import docker

    client = docker.from_env()
    try:
        caches = client.api.df().get("BuildCache") or []
        ids = [
            c["ID"]
            for c in caches
            if c.get("Type") == "exec.cachemount"
            and not c.get("InUse")
            and "/run/envbuild-tls" in (c.get("Description") or "")
            and _epoch(c.get("CreatedAt", "")) >= since
        ]
    finally:
        client.close()
    for i in ids:
        subprocess.run(["docker", "builder", "prune", "-f", "--filter", f"id={i}"], capture_output=True)
    return len(ids)


def _epoch(stamp: str) -> float:
    """Docker's UTC stamps (``2026-11-22T07:53:36.316059292Z``), to the second."""
    from datetime import datetime, timezone

    try:
        return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


def image_size(tag: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def rows_builds(p: Projects, n: int, cold_rounds: int = 2, empty_rounds: int = 1) -> list[Row]:
    rows: list[Row] = []
    p.write([])
    first = (p.ours_t(), p.theirs_t())
    rows.append(
        ("", "first build of a new project (engine has built similar ones)", s(first[0]), s(first[1]), ratio(*first))
    )
    sa, sb = image_size(p.tag_ours), image_size(p.tag_theirs)
    rows.append(("f", "image size", f"{sa / 1e6:.0f} MB", f"{sb / 1e6:.0f} MB", ratio(sa, sb)))
    p.write(["six"])
    a, b = p.ours_t(), p.theirs_t()
    rows.append(("c", "one pip package added (six)", s(a), s(b), f"{b / a:.1f}x faster"))
    p.write([])
    rows += rows_cold(p, cold_rounds, empty_rounds)
    return rows


def rows_cold(p: Projects, rounds: int, empty_rounds: int) -> list[Row]:
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(max(1, rounds)):
        ours.append(p.ours_t("--no-cache"))
        theirs.append(p.theirs_t("--no-cache"))
    a, b = statistics.median(ours), statistics.median(theirs)
    rows: list[Row] = [
        ("d", f"cold: every step re-run (--no-cache), download caches warm (n={len(ours)})", s(a), s(b), ratio(a, b))
    ]
    if empty_rounds > 0:
        started = time.time() - 1
        try:
            empty = [p.ours_empty_caches_t(f"bench{p.run_id}-{i}") for i in range(empty_rounds)]
        finally:
            prune_cache_mounts(started)
        c = statistics.median(empty)
        rows.append(
            (
                "",
                f"cold, empty apt/uv/pip caches (n={empty_rounds}) vs the same Dockerfile median",
                s(c),
                s(b),
                ratio(c, b),
            )
        )
    return rows


# ---------------------------------------------------------------- e: up


def row_up(p: Projects, rounds: int) -> list[Row]:
    r = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "bench_up.py"), "-p", str(p.ours), "-n", str(rounds), "--json"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    if r.returncode:
        return [("e", "`up` -> sshd and Jupyter answering", f"failed: {r.stderr.strip()[-200:]}", "", "")]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return [
        (
            "e",
            f"`up` of the built image -> sshd + Jupyter answering (n={res['rounds']})",
            s(res["median_s"]),
            "target < 3 s",
            f"min {res['min_s']:.2f} s",
        )
    ]


# ---------------------------------------------------------------- g: scale

SCALE = r"""
import json, statistics, sys, time
from envbuild.build import BuildOptions, compile_for, prepare
def once(path):
    t = time.perf_counter()
    o = BuildOptions(path=path, user_config=False)
    d = compile_for(prepare(o), o).definition()
    return time.perf_counter() - t, len(d)
out = {}
for path in sys.argv[1:]:
    once(path)
    ts = [once(path) for _ in range(5)]
    out[path] = (statistics.median(t for t, _ in ts), ts[0][1])
print(json.dumps(out))
"""


def gen_packages(d: Path, packages: int, runs: int) -> Path:
    d.mkdir()
    apt = [f"pkg{i}" for i in range(packages // 2)]
    pip = [f"pypkg{i}" for i in range(packages - len(apt))]
    lines = ["def build():", f'    base(image="{LOCAL_BASE}", dev=True)', '    install.python(version="3.11")']
    for i in range(0, len(apt), 10):
        lines.append(f"    install.apt_packages(name={json.dumps(apt[i : i + 10])})")
    for i in range(0, len(pip), 10):
        lines.append(f"    install.python_packages(name={json.dumps(pip[i : i + 10])})")
    lines.append("    config.jupyter()")
    lines += [f'    run(commands=["echo step {i}", "touch /tmp/s{i}"])' for i in range(runs)]
    (d / "build.envd").write_text("\n".join(lines) + "\n")
    return d


def gen_loads(d: Path, files: int) -> Path:
    (d / "lib").mkdir(parents=True)
    for i in range(files):
        (d / "lib" / f"m{i}.envd").write_text(
            f'def f{i}():\n    install.python_packages(name=["p{i}a", "p{i}b"])\n    run(commands=["echo {i}"])\n'
        )
    loads = "".join(f'load("//lib/m{i}.envd", "f{i}")\n' for i in range(files))
    calls = "".join(f"    f{i}()\n" for i in range(files))
    (d / "build.envd").write_text(
        f'{loads}def build():\n    base(image="{LOCAL_BASE}", dev=True)\n    install.python(version="3.11")\n{calls}'
    )
    return d


def rows_scale(work: Path) -> list[Row]:
    cases = {
        "Jupyter example": str(ROOT / "examples" / "jupyter"),
        "50 packages, 12 run()": str(gen_packages(work / "s50", 50, 12)),
        "100 packages, 25 run()": str(gen_packages(work / "s100", 100, 25)),
        "200 packages, 50 run()": str(gen_packages(work / "s200", 200, 50)),
        "5 files via load()": str(gen_loads(work / "l5", 5)),
        "20 files via load()": str(gen_loads(work / "l20", 20)),
    }
    r = subprocess.run([PYTHON, "-c", SCALE, *cases.values()], capture_output=True, text=True, env=clean_env())
    if r.returncode:
        return [("g", "scale", f"failed: {r.stderr.strip()[-300:]}", "", "")]
    res = json.loads(r.stdout)
    base = res[cases["Jupyter example"]][0]
    return [
        (
            "g" if i == 0 else "",
            f"evaluate+compile (in process): {name}",
            f"{res[p][0] * 1e3:.1f} ms",
            f"{res[p][1]} ops",
            f"{res[p][0] / base:.1f}x the example",
        )
        for i, (name, p) in enumerate(cases.items())
    ]


# ---------------------------------------------------------------- main


def table(rows: list[Row], headers: tuple[str, str, str, str, str]) -> str:
    cols = list(zip(headers, *rows, strict=True))
    widths = [max(len(c) for c in col) for col in cols]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([fmt(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15, help="runs per whole-process timing (median)")
    ap.add_argument("--up-rounds", type=int, default=5)
    ap.add_argument("--cold-rounds", type=int, default=2, help="cold builds of each side, alternating (median)")
    ap.add_argument("--empty-cache-rounds", type=int, default=1, help="envbuild cold builds with empty download caches")
    ap.add_argument("--envd", default=shutil.which("envd") or "/work/envd-venv/bin/envd")
    ap.add_argument("--skip-builds", action="store_true", help="only rows a and g (no engine builds)")
    args = ap.parse_args()
    envd = args.envd if args.envd and Path(args.envd).exists() else None
    work = Path(tempfile.mkdtemp(prefix="envbuild-perf-"))
    run_id = str(int(time.time()))
    rows: list[Row] = []
    started = time.time()
    try:
        rows += rows_startup(work, envd, args.rounds, builds=not args.skip_builds)
        if not args.skip_builds:
            p = Projects(work, run_id)
            rows += rows_builds(p, args.rounds, args.cold_rounds, args.empty_cache_rounds)
            rows += row_up(p, args.up_rounds)
        rows += rows_scale(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table(rows, ("#", "what", "envbuild", "envd / Dockerfile", "ratio")))
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {time.time() - started:.0f} s; medians of "
        f"{args.rounds} runs (a, b), single runs (c), {args.cold_rounds} alternating rounds (d), "
        f"{args.up_rounds} rounds (e)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
