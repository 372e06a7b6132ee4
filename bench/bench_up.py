"""Time from `envbuild up` (image already built) to Jupyter answering with its token.

Each round removes the environment, then runs the real CLI (`envbuild up --detach --format json`,
which returns only once sshd sends its banner and Jupyter's /api/status answers 200 with the token)
and, separately, checks Jupyter itself from here. The first `up` builds the image and is not counted.

    python bench/bench_up.py                       # examples/jupyter in a temp project dir
    python bench/bench_up.py -p myproject -n 7
    python bench/bench_up.py --image some:tag      # `envbuild run --image` instead of `up`
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
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def envbuild(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-c", "from envbuild.cli import main; main()", *args],
                            env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"envbuild {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def jupyter_ok(url: str, token: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status == 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--path", type=Path, help="project dir (default: a copy of examples/jupyter)")
    parser.add_argument("--image", help="bench `envbuild run --image IMAGE` instead of `up`")
    parser.add_argument("-n", "--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
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
    up = (["run", "--image", args.image, "-p", str(project)] if args.image else ["up", "-p", str(project)])
    up += ["--name", name, "--detach", "--format", "json", *ca]

    envbuild(up, env, project)  # builds (or reuses) the image; not timed
    times: list[float] = []
    try:
        for _ in range(args.rounds):
            envbuild(["destroy", "--name", name], env, project)
            start = time.perf_counter()
            out = json.loads(envbuild(up, env, project).stdout)
            port = next(p["host_port"] for p in out["ports"] if p["name"] == "jupyter")
            if not jupyter_ok(f"http://127.0.0.1:{port}/api/status", out["jupyter"]["token"]):
                sys.exit("Jupyter did not answer after up returned")
            times.append(time.perf_counter() - start)
            if out.get("built"):
                sys.exit("the image was rebuilt during the benchmark; nothing should have changed")
    finally:
        subprocess.run([sys.executable, "-c", "from envbuild.cli import main; main()", "destroy", "--name", name],
                       env=env, cwd=project, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    result = {"rounds": len(times), "median_s": round(statistics.median(times), 3),
              "min_s": round(min(times), 3), "max_s": round(max(times), 3)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"up -> Jupyter ready (built image, {len(times)} rounds): median {result['median_s']:.2f}s, "
              f"min {result['min_s']:.2f}s, max {result['max_s']:.2f}s")


if __name__ == "__main__":
    main()
