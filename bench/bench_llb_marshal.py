"""In-process time to build and marshal the LLB graph of an example environment.

    .venv/bin/python bench/bench_llb_marshal.py [-n 200] [examples/jupyter]

The build file is evaluated once (and the base image looked up once, which needs the engine); each
round then compiles the spec into an `llb.State` graph, marshals it into a Definition and renders
it with `to_json()`, the three steps of `envbuild debug llb` after start-up. Prints the median and
spread of each step in milliseconds. Run it on two checkouts (PYTHONPATH) to compare them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _time(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1000, result


def _fmt(name: str, ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=10)
    return f"{name:<28} median {statistics.median(ms):7.3f} ms   p10 {q[0]:7.3f}   p90 {q[-1]:7.3f}   (n={len(ms)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("project", nargs="?", default="examples/jupyter", help="example directory with a build.envd")
    ap.add_argument("-n", type=int, default=200, help="rounds (after 10 warm-up rounds)")
    args = ap.parse_args()

    from envbuild.build import BuildOptions, compile_for, prepare

    options = BuildOptions(path=Path(args.project))
    prep = prepare(options)
    timings: dict[str, list[float]] = {"compile (build the graph)": [], "marshal": [], "to_json": [], "total": []}
    for round_ in range(10 + args.n):
        t_compile, compiled = _time(lambda: compile_for(prep, options))
        t_marshal, definition = _time(compiled.definition)
        t_json, _ = _time(definition.to_json)
        if round_ >= 10:
            for name, ms in zip(timings, (t_compile, t_marshal, t_json, t_compile + t_marshal + t_json), strict=True):
                timings[name].append(ms)
    print(f"{args.project}: {len(definition)} ops, {len(definition.to_bytes())} bytes, terminal {definition.terminal}")
    for name, ms in timings.items():
        print(_fmt(name, ms))


if __name__ == "__main__":
    main()
