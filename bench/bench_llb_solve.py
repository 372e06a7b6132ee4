"""Cold vs fully cached solve of a small graph, against the bare gRPC round trip.

    .venv/bin/python bench/bench_llb_solve.py [-n 20] [--address docker://] [--export]

Prints medians (and min/max) in milliseconds and the ratios, all from one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

import llb


def _graph(marker: str) -> llb.State:
    base = llb.image("local/debian:bookworm")
    return (
        base.run(["sh", "-c", f"echo {marker} > /m"], name="write marker")
        .root()
        .file(llb.mkdir("/app").mkfile("/app/x", marker))
        .run(["sh", "-c", "cat /m /app/x > /both"], name="combine")
        .root()
    )


def _times(n: int, fn: Callable[[int], object]) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _fmt(name: str, ms: list[float]) -> str:
    return (
        f"{name:<34} median {statistics.median(ms):8.2f} ms   min {min(ms):8.2f}   max {max(ms):8.2f}   (n={len(ms)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="repetitions of each measurement")
    ap.add_argument("--cold", type=int, default=5, help="repetitions of the cold solve")
    ap.add_argument("--address", default=None, help="builder address (default: $BUILDKIT_HOST or the Docker engine)")
    ap.add_argument("--export", action="store_true", help="also export to the engine's image store")
    args = ap.parse_args()

    tag = f"llb-bench/solve:{uuid.uuid4().hex[:8]}"
    export = llb.DockerImage(tag) if args.export else None
    t0 = time.perf_counter()
    with llb.connect(args.address) as client:
        connect_ms = (time.perf_counter() - t0) * 1000
        client.list_workers()
        bare = _times(args.n, lambda _i: client.list_workers())
        run_id = uuid.uuid4().hex
        cold = _times(args.cold, lambda i: client.solve(_graph(f"{run_id}-{i}"), export=export))
        warm_state = _graph(f"{run_id}-0")
        cached_results: list[llb.SolveResult] = []
        cached = _times(args.n, lambda _i: cached_results.append(client.solve(warm_state, export=export)))
        all_cached = all(v.cached for r in cached_results for v in r.vertices if v.name in ("write marker", "combine"))
    if args.export:
        import subprocess

        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)

    m_bare, m_cold, m_cached = (statistics.median(x) for x in (bare, cold, cached))
    print(f"builder: {client.address}   export: {'DockerImage' if export else 'none'}   connect: {connect_ms:.1f} ms")
    print(_fmt("bare gRPC round trip (ListWorkers)", bare))
    print(_fmt("cold solve (cache miss)", cold))
    print(_fmt("fully cached solve", cached))
    print(f"cached exec vertices reported cached: {all_cached}")
    print(
        f"ratios: cold/cached {m_cold / m_cached:.1f}x   cached/bare {m_cached / m_bare:.1f}x   "
        f"cached - bare {m_cached - m_bare:+.2f} ms"
    )


if __name__ == "__main__":
    main()
