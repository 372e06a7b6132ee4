"""Benchmark: evaluating each example's build.envd (warm in-process and cold whole-process).

    python bench/bench_frontend.py [--warm N] [--cold M]

Warm: median of N ``frontend.evaluate`` calls in one process after a warm-up (the prelude and
globals are cached per process). Cold: median of M fresh ``python -c "import frontend; evaluate"``
processes, minus a bare ``python -c pass`` (interpreter start-up). Finally ``python -X importtime``
shows what ``import frontend`` and one evaluation import, and fails if LLB, envbuild, gRPC, Docker or
rich shows up.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FORBIDDEN = ("llb", "envbuild", "grpc", "docker", "rich", "typer", "google")


def targets() -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = [(p.parent.name, None) for p in sorted(EXAMPLES.glob("*/build.envd"))]
    out.append(("multi-target", "gpu"))
    return out


def warm(n: int) -> None:
    sys.path.insert(0, str(ROOT))
    import frontend

    print(f"warm, in-process (median of {n}):")
    for name, func in targets():
        path = EXAMPLES / name
        for _ in range(20):
            frontend.evaluate(path, function=func, user_config=False)
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            frontend.evaluate(path, function=func, user_config=False)
            times.append(time.perf_counter() - t0)
        label = name + (f":{func}" if func else "")
        print(f"  {label:<22} {statistics.median(times) * 1e3:7.3f} ms   (min {min(times) * 1e3:.3f} ms)")


def _run(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - t0


def cold(m: int) -> None:
    bare = statistics.median(_run("pass") for _ in range(m))
    imp = statistics.median(_run("import frontend") for _ in range(m))
    print(f"\ncold, whole process (median of {m}; bare interpreter {bare * 1e3:.1f} ms):")
    print(f"  {'import frontend':<22} {imp * 1e3:7.1f} ms   (+{(imp - bare) * 1e3:.1f} ms over bare)")
    for name, func in targets():
        code = f"import frontend; frontend.evaluate({str(EXAMPLES / name)!r}, function={func!r}, user_config=False)"
        t = statistics.median(_run(code) for _ in range(m))
        label = name + (f":{func}" if func else "")
        print(f"  {label:<22} {t * 1e3:7.1f} ms   (+{(t - bare) * 1e3:.1f} ms over bare)")


def importtime() -> int:
    code = "import frontend; frontend.evaluate('examples/jupyter', user_config=False).to_json()"
    p = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    rows: list[tuple[int, str, int]] = []  # (cumulative us, module, nesting depth)
    for line in p.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        _self, cum, raw = line[len("import time:") :].split("|", 2)
        if not cum.strip().isdigit():
            continue
        depth = (len(raw) - len(raw.lstrip()) - 1) // 2
        rows.append((int(cum), raw.strip(), depth))
    print('\npython -X importtime -c "import frontend; frontend.evaluate(...)" (cumulative, top-level imports):')
    for cum, name, _depth in sorted((r for r in rows if r[2] == 0), reverse=True)[:10]:
        print(f"  {cum / 1e3:7.2f} ms  {name}")
    bad = sorted({n for _, n, _ in rows if n.split(".")[0] in FORBIDDEN})
    print(f"  modules from {', '.join(FORBIDDEN)}: {bad or 'none'}")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", type=int, default=200, help="warm evaluations per example")
    ap.add_argument("--cold", type=int, default=9, help="fresh processes per example")
    args = ap.parse_args()
    warm(args.warm)
    cold(args.cold)
    return importtime()


if __name__ == "__main__":
    raise SystemExit(main())
