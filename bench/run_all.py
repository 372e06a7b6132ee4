"""All performance targets of envbuild in one run, side by side with envd and a hand-written Dockerfile.

    .venv/bin/python bench/run_all.py [--engine unix:///var/run/docker.sock --engine unix:///run/...sock]
                                      [--rounds 15] [--up-rounds 5] [--cold-rounds 2] [--empty-cache-rounds 1]
                                      [--skip-builds] [--skip-up] [--builds-only] [--envd PATH]

The build rows run on every ``--engine`` (default: $DOCKER_HOST, else the default socket), one table
each; the baseline is the same environment as a hand-written BuildKit Dockerfile on that engine
(bench/baseline.py: apt and uv cache mounts, the CA as a build secret, uv into a venv; JupyterLab and
the packages from one requirements.txt). Each table's title names the engine: version, image store,
and whether envbuild builds merged layers there (MergeOp/DiffOp). Rows (whole processes unless noted;
medians; ratios from the same run, envbuild / other, lower is better for envbuild):

  a  `envbuild debug llb` vs `envd debug llb` on the same build.envd (alternating runs; bench/bench_startup.py)
  b  no-op `envbuild build` vs a cached `docker build` of the Dockerfile (bench/bench_startup.py)
  c  one pip package added: envbuild re-runs that step; the Dockerfile re-runs its requirements layer
  d  cold build with warm download caches: `envbuild build --no-cache` vs `docker build` with a new
     CACHE_BUST build arg (every step re-run, both keep their cache mounts), alternating, median of
     --cold-rounds, both with plain progress: a line per round gives the load average, envbuild's
     merged layers (`layer:` steps, 0 on the chain) and the files each side downloaded (0 when its
     caches were warm); then envbuild with empty
     download caches (the CLI run with cache mount ids of its own, so nothing else on the engine loses
     its caches; those mounts are pruned afterwards) against the same Dockerfile median
  e  `envbuild up` of the built image until sshd and Jupyter answer (bench/bench_up.py)
  f  image size of the Jupyter environment vs the Dockerfile's image, as the engine reports them
  g  scale: evaluate + compile + marshal, in process, for generated files (packages, run() steps, load()ed files)

Targets (issue 18): d <= 0.5x where the engine's builder has MergeOp (`envbuild doctor`), <= 0.7x where
not; f <= 1.0x; b and c no worse than the figures measured when the baseline became BuildKit's (0.35x,
0.20x). envd (1.3.6, `pip install envd` into its own venv, e.g. /work/envd-venv) resolves the base
image from a registry even for `debug llb`: the base is pushed to the loopback registry (127.0.0.1:5000)
and marked insecure in a temporary HOME's `.config/containers/registries.conf`; analytics are off
(ENVD_ANALYTICS=false), otherwise every envd command waits for a telemetry request.
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
from collections.abc import Sequence
from pathlib import Path

import baseline  # bench/ is on sys.path when this file runs as a script
import bench_startup
import engines

ROOT = Path(__file__).resolve().parents[1]
ENVBUILD = str(ROOT / ".venv" / "bin" / "envbuild")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
LOCAL_BASE = baseline.LOCAL_BASE
DEFAULT_ENGINE = "unix:///var/run/docker.sock"

Row = tuple[str, str, str, str, str, str]  # (row, what, envbuild, other, ratio, target)


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


def ms(t: float) -> str:
    return f"{t * 1e3:.0f} ms"


def s(t: float) -> str:
    return f"{t:.2f} s"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def verdict(value: float, limit: float) -> str:
    return f"<= {limit}x " + ("ok" if value <= limit else "MISSED")


# ---------------------------------------------------------------- a: start-up (bench/bench_startup.py)


def row_debug_llb(work: Path, envd: str | None, n: int) -> list[Row]:
    """`debug llb` against envd (no engine involved)."""
    rows: list[Row] = []
    for r in bench_startup.debug_llb_rows(work, ENVBUILD, envd, n):
        if r.name == "python -c pass":
            rows.append(("", "bare `python -c pass` (for reference)", ms(r.ours), "-", "", ""))
            continue
        rows.append(
            (
                "a",
                "`debug llb` vs `envd debug llb` (Jupyter file)",
                ms(r.ours),
                ms(r.other) if r.other is not None else "-",
                f"{r.ratio:.2f}x" if r.ratio is not None else "",
                verdict(r.ratio, r.target) if r.ratio is not None and r.target is not None else "",
            )
        )
    return rows


# ---------------------------------------------------------------- b-d, f: builds vs the BuildKit Dockerfile


class Builds(baseline.Projects):
    def __init__(self, work: Path, run_id: str) -> None:
        super().__init__(work, run_id)
        self.command = [ENVBUILD, "build", "-p", str(self.ours), "-t", self.tag_ours, "--ca-cert", self.ca]
        self.build = [*self.command, "--progress", "quiet"]

    def ours_t(self, *extra: str) -> float:
        t = run([*self.build, *extra])
        self.note_images()
        return t

    def theirs_t(self, *extra: str) -> float:
        t = run(self.docker_build(*extra), env=self.docker_env(clean_env()))
        self.note_images()
        return t

    def ours_cold(self) -> engines.Timeline:
        t = engines.timeline([*self.command, "--progress", "plain", "--no-cache"], clean_env())
        self.note_images()
        return t

    def theirs_cold(self) -> engines.Timeline:
        t = engines.timeline(self.docker_cold("--progress", "plain"), self.docker_env(clean_env()))
        self.note_images()
        return t

    def ours_empty_caches_t(self, namespace: str) -> float:
        t = run([PYTHON, "-c", NAMESPACED_CLI, namespace, *self.build[1:], "--no-cache"])
        self.note_images()
        return t


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
    """Remove the cache mounts envbuild's steps created since ``since`` (the namespaced ones), through
    the engine API (`docker builder prune` needs the buildx plugin with a current CLI)."""
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
        for i in ids:
            client.api.prune_builds(filters={"id": [i]})  # type: ignore[arg-type]  # the stubs list 2 of the filters
    finally:
        client.close()
    return len(ids)


def _epoch(stamp: str) -> float:
    """Docker's UTC stamps (``2026-11-22T07:53:36.316059292Z``), to the second."""
    from datetime import datetime, timezone

    try:
        return datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def rows_builds(engine: engines.Engine, p: Builds, n: int, cold_rounds: int, empty_rounds: int) -> list[Row]:
    p.write(["numpy"])
    first = (p.ours_t(), p.theirs_t())
    sa, sb = baseline.image_size(p.tag_ours), baseline.image_size(p.tag_theirs)
    noop = bench_startup.noop_build_row(p, ENVBUILD, n)
    noop_ratio = noop.ours / (noop.other or 1)
    p.write(["numpy", "six"])
    one = (p.ours_t(), p.theirs_t())
    p.write(["numpy"])
    return [
        ("", "first build of the project (engine has built similar ones)", s(first[0]), s(first[1]), ratio(*first), ""),
        ("f", "image size", f"{sa / 1e6:.0f} MB", f"{sb / 1e6:.0f} MB", ratio(sa, sb), verdict(sa / sb, 1.0)),
        (
            "b",
            "no-op rebuild vs a cached `docker build`",
            ms(noop.ours),
            ms(noop.other or 0),
            f"{noop_ratio:.2f}x",
            verdict(noop_ratio, 0.35),
        ),
        ("c", "one pip package added (six)", s(one[0]), s(one[1]), ratio(*one), verdict(one[0] / one[1], 0.20)),
        *rows_cold(engine, p, cold_rounds, empty_rounds),
    ]


def rows_cold(engine: engines.Engine, p: Builds, rounds: int, empty_rounds: int) -> list[Row]:
    """Alternating cold builds with plain progress: each round's load average, whether envbuild merged
    layers, and what either side downloaded (a round with downloads did not have warm caches)."""
    ours: list[engines.Timeline] = []
    theirs: list[engines.Timeline] = []
    notes: list[str] = []
    for i in range(max(1, rounds)):
        at = load()
        ours.append(p.ours_cold())
        theirs.append(p.theirs_cold())
        notes.append(
            f"round {i + 1}, load {at}: {ours[-1].wall:.1f} s / {theirs[-1].wall:.1f} s, "
            f"{ours[-1].merged} merged layers, downloads {ours[-1].downloads} / {theirs[-1].downloads}"
        )
    a, b = statistics.median(t.wall for t in ours), statistics.median(t.wall for t in theirs)
    target = 0.5 if engine.merge_diff else 0.7
    rows: list[Row] = [
        (
            "d",
            f"cold: every step re-run (--no-cache), download caches warm (n={len(ours)})",
            s(a),
            s(b),
            ratio(a, b),
            verdict(a / b, target),
        ),
        *(("", note, "", "", "", "") for note in notes),
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
                "",
            )
        )
    return rows


# ---------------------------------------------------------------- e: up


def row_up(p: Builds, rounds: int) -> list[Row]:
    r = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "bench_up.py"), "-p", str(p.ours), "-n", str(rounds), "--json"],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    if r.returncode:
        return [("e", "`up` -> sshd and Jupyter answering", f"failed: {r.stderr.strip()[-200:]}", "", "", "")]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    return [
        (
            "e",
            f"`up` of the built image -> sshd + Jupyter answering (n={res['rounds']})",
            s(res["median_s"]),
            "target < 3 s",
            f"min {res['min_s']:.2f} s",
            "",
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
        return [("g", "scale", f"failed: {r.stderr.strip()[-300:]}", "", "", "")]
    res = json.loads(r.stdout)
    base = res[cases["Jupyter example"]][0]
    return [
        (
            "g" if i == 0 else "",
            f"evaluate+compile (in process): {name}",
            f"{res[p][0] * 1e3:.1f} ms",
            f"{res[p][1]} ops",
            f"{res[p][0] / base:.1f}x the example",
            "",
        )
        for i, (name, p) in enumerate(cases.items())
    ]


# ---------------------------------------------------------------- main


def table(rows: list[Row], headers: Row) -> str:
    cols = list(zip(headers, *rows, strict=True))
    widths = [max(len(c) for c in col) for col in cols]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([fmt(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)])


HEADERS: Row = ("#", "what", "envbuild", "envd / Dockerfile", "ratio", "target")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", action="append", help="DOCKER_HOST of an engine to build on (repeatable)")
    ap.add_argument("--rounds", type=int, default=15, help="runs per whole-process timing (median)")
    ap.add_argument("--up-rounds", type=int, default=5)
    ap.add_argument("--cold-rounds", type=int, default=2, help="cold builds of each side, alternating (median)")
    ap.add_argument("--empty-cache-rounds", type=int, default=1, help="envbuild cold builds with empty download caches")
    ap.add_argument("--envd", default=shutil.which("envd") or "/work/envd-venv/bin/envd")
    ap.add_argument("--skip-builds", action="store_true", help="only rows a and g (no engine builds)")
    ap.add_argument("--skip-up", action="store_true", help="leave out row e")
    ap.add_argument("--builds-only", action="store_true", help="only the rows that build on an engine (b-f)")
    args = ap.parse_args()
    envd = args.envd if args.envd and Path(args.envd).exists() else None
    hosts = args.engine or [os.environ.get("DOCKER_HOST") or DEFAULT_ENGINE]
    work = Path(tempfile.mkdtemp(prefix="envbuild-perf-"))
    started = time.time()
    tables: list[tuple[str, list[Row]]] = []
    try:
        if not args.builds_only:
            tables.append(("without an engine", row_debug_llb(work, envd, args.rounds) + rows_scale(work)))
        for host in [] if args.skip_builds else hosts:
            os.environ["DOCKER_HOST"] = host  # every docker, envbuild and SDK call below goes there
            engine = engines.describe(host, ENVBUILD, clean_env())
            print(f"building on {engine.label()} (load {load()})", file=sys.stderr, flush=True)
            run_id = str(int(time.time()))
            p = Builds(work, run_id)
            rows = rows_builds(engine, p, args.rounds, args.cold_rounds, args.empty_cache_rounds)
            if not args.skip_up:
                rows += row_up(p, args.up_rounds)
            p.remove()
            tables.append((f"{engine.label()}; load {load()} after", rows))
            print(f"\n{tables[-1][0]}\n{table(rows, HEADERS)}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for title, rows in tables:
        print(f"\n{title}\n{table(rows, HEADERS)}")
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, {time.time() - started:.0f} s; medians of "
        f"{args.rounds} runs (a, b), single runs (c, f), {args.cold_rounds} alternating rounds (d), "
        f"{args.up_rounds} rounds (e)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
