"""Time from `envbuild up` (image already built) to Jupyter answering with its token.

Each round removes the environment, then runs the real CLI (`envbuild up --detach --format json`,
which returns only once sshd sends its banner and Jupyter's /api/status answers 200 with the token)
and, separately, checks Jupyter itself from here. The first `up` builds the image and is not counted.

    python bench/bench_up.py                       # examples/jupyter in a temp project dir
    python bench/bench_up.py -p myproject -n 7
    python bench/bench_up.py --image some:tag      # `envbuild run --image` instead of `up`
    python bench/bench_up.py --phases              # also where each round's time went (medians)

Phases come from the engine's timestamps and the container's own logs (supervisord, Jupyter), all
UTC wall clock: cli (process start to container created: imports, up-to-date check, image lookup),
engine (created to started), boot (entrypoint and supervisord start-up), spawn (supervisord ready
to spawning Jupyter), jupyter (spawned to serving), seen (serving to `up` having returned).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def envbuild(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", "from envbuild.cli import main; main()", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"envbuild {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def jupyter_ok(url: str, token: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status == 200


PHASES = ("cli", "engine", "boot", "spawn", "jupyter", "seen")
_SUPERVISOR_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO "
_JUPYTER_STAMP = r"\[I (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ServerApp\] "


def _utc(text: str) -> float:
    return datetime.strptime(text.replace(",", "."), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


def _engine_time(text: str) -> float:
    """Docker's RFC 3339 with nanoseconds; Python parses microseconds."""
    head, _, frac = text.rstrip("Z").partition(".")
    return _utc(f"{head.replace('T', ' ')}.{(frac + '000000')[:6]}")


def phases(name: str, started: float, returned: float) -> dict[str, float] | None:
    """Seconds per phase of one round (see the module doc), or None when a mark is missing."""
    inspect = subprocess.run(
        ["docker", "inspect", "--format", "{{.Created}} {{.State.StartedAt}}", name], capture_output=True, text=True
    )
    logs = subprocess.run(
        ["docker", "exec", name, "cat", "/var/log/envbuild/supervisord.log", "/var/log/envbuild/jupyter.log"],
        capture_output=True,
        text=True,
    )
    if inspect.returncode != 0 or logs.returncode != 0:
        return None
    created, running = (_engine_time(t) for t in inspect.stdout.split())
    marks = {
        "supervisord": re.search(_SUPERVISOR_STAMP + r"supervisord started", logs.stdout),
        "spawned": re.search(_SUPERVISOR_STAMP + r"spawned: 'jupyter'", logs.stdout),
        "serving": re.search(_JUPYTER_STAMP + r"Jupyter Server \S+ is running at", logs.stdout),
    }
    if not all(marks.values()):
        return None
    at = {k: _utc(m.group(1)) for k, m in marks.items() if m}
    points = [started, created, running, at["supervisord"], at["spawned"], at["serving"], returned]
    return {phase: round(b - a, 3) for phase, a, b in zip(PHASES, points, points[1:], strict=False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--path", type=Path, help="project dir (default: a copy of examples/jupyter)")
    parser.add_argument("--image", help="bench `envbuild run --image IMAGE` instead of `up`")
    parser.add_argument("-n", "--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--phases", action="store_true", help="also report where the time went, per phase")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="envbuild-bench-home-"))
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("XDG_CONFIG_HOME", None)
    if args.path:
        project = args.path.resolve()
    else:
        project = Path(tempfile.mkdtemp(prefix="envbuild-bench-")) / "bench-jupyter"
        shutil.copytree(REPO / "examples" / "jupyter", project)
    name = "bench-up"
    ca = ["--ca-cert", str(CA_BUNDLE)] if CA_BUNDLE.is_file() and not args.image else []
    up = ["run", "--image", args.image, "-p", str(project)] if args.image else ["up", "-p", str(project)]
    up += ["--name", name, "--detach", "--format", "json", *ca]

    envbuild(up, env, project)  # builds (or reuses) the image; not timed
    times: list[float] = []
    rounds: list[dict[str, float]] = []
    try:
        for _ in range(args.rounds):
            envbuild(["destroy", "--name", name], env, project)
            wall = time.time()
            start = time.perf_counter()
            out = json.loads(envbuild(up, env, project).stdout)
            returned = wall + time.perf_counter() - start
            port = next(p["host_port"] for p in out["ports"] if p["name"] == "jupyter")
            if not jupyter_ok(f"http://127.0.0.1:{port}/api/status", out["jupyter"]["token"]):
                sys.exit("Jupyter did not answer after up returned")
            times.append(time.perf_counter() - start)
            if out.get("built"):
                sys.exit("the image was rebuilt during the benchmark; nothing should have changed")
            if args.phases and (split := phases(name, wall, returned)) is not None:
                rounds.append(split)
    finally:
        subprocess.run(
            [sys.executable, "-c", "from envbuild.cli import main; main()", "destroy", "--name", name],
            env=env,
            cwd=project,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)
    result: dict[str, object] = {
        "rounds": len(times),
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }
    if rounds:
        result["phases_median_s"] = {p: round(statistics.median(r[p] for r in rounds), 3) for p in PHASES}
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"up -> Jupyter ready (built image, {len(times)} rounds): median {result['median_s']:.2f}s, "
            f"min {result['min_s']:.2f}s, max {result['max_s']:.2f}s"
        )
        if rounds:
            split = result["phases_median_s"]
            assert isinstance(split, dict)
            print("  phases (median s): " + ", ".join(f"{p} {v:.3f}" for p, v in split.items()))


if __name__ == "__main__":
    main()
