"""The engine a build row runs on, and where a build spent its time, for bench_build and run_all.

`describe` asks the engine ``DOCKER_HOST`` names for its version and image store (``docker info``)
and asks ``envbuild doctor`` whether its builder has MergeOp/DiffOp; `timeline` runs a build with
``--progress plain`` (envbuild's and BuildKit's ``docker build`` print the same ``#N name`` /
``#N DONE 1.2s`` lines) and returns every step that ran, so both sides of a row can be read the same
way, and whether envbuild's build merged layers (its ``layer: ...`` steps are DiffOps).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Engine:
    host: str
    version: str
    store: str
    merge_diff: bool
    """The builder reports MergeOp/DiffOp (`envbuild doctor`): envbuild builds its merged layout there."""

    def label(self, *, linear: bool = False) -> str:
        layout = "merged layers (MergeOp/DiffOp)" if self.merge_diff and not linear else "one chain (no MergeOp)"
        if self.merge_diff and linear:
            layout = "one chain (--linear)"
        return f"Docker {self.version} at {self.host}, {self.store}; envbuild builds {layout}"


def describe(host: str, envbuild: str, env: Mapping[str, str]) -> Engine:
    """What the engine at ``host`` is, and whether envbuild's builder there has MergeOp."""
    env = {**env, "DOCKER_HOST": host}
    info = subprocess.run(["docker", "info", "--format", "{{json .}}"], capture_output=True, text=True, env=env)
    if info.returncode:
        sys.exit(f"no engine at {host}: {info.stderr.strip()}")
    facts = json.loads(info.stdout)
    containerd = any("io.containerd.snapshotter" in str(v) for pair in facts.get("DriverStatus") or [] for v in pair)
    doctor = subprocess.run([envbuild, "doctor", "--format", "json"], capture_output=True, text=True, env=env)
    reports = json.loads(doctor.stdout) if doctor.stdout.strip() else {}
    report: dict[str, object] = reports[0] if isinstance(reports, list) and reports else reports or {}
    store = "containerd image store" if containerd else f"{facts.get('Driver')} graph driver"
    return Engine(host, str(facts.get("ServerVersion")), store, bool(report.get("merge_diff")))


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    start: float
    """Seconds from the command's start to the step's first line."""
    seconds: float
    """The builder's own duration (its ``DONE`` line)."""


@dataclass(frozen=True, slots=True)
class Timeline:
    wall: float
    steps: tuple[Step, ...]
    downloads: int = 0
    """Files the build fetched (apt's ``Get:`` lines, uv's ``Downloading``): 0 when its download caches
    were warm."""

    @property
    def merged(self) -> int:
        """envbuild's DiffOp steps (named ``layer: ...``): > 0 when the build used MergeOp/DiffOp."""
        return sum(1 for s in self.steps if s.name.startswith("layer: "))

    def render(self, title: str, *, min_seconds: float = 0.05) -> str:
        fetched = f", {self.downloads} downloads" if self.downloads else ""
        lines = [f"{title}: {self.wall:.2f} s{fetched}; steps (start..end from the command's start, duration):"]
        for s in sorted(self.steps, key=lambda s: s.start):
            if s.seconds >= min_seconds:
                name = s.name if len(s.name) <= 100 else s.name[:97] + "..."
                lines.append(f"  {s.start:6.2f} .. {s.start + s.seconds:6.2f}  {s.seconds:6.2f} s  {name}")
        return "\n".join(lines)


_HEAD = re.compile(r"^#(\d+) (\S.*)$")
_DONE = re.compile(r"^#(\d+) DONE (\d+(?:\.\d+)?)s$")
_FETCH = re.compile(r"^#\d+ +\d+(?:\.\d+)? (?:Get:\d+ |\s*Downloading )")


def parse_plain(lines: Sequence[tuple[float, str]]) -> list[Step]:
    """Steps from ``--progress plain`` lines (each with its arrival time): a step's name is its first
    ``#N text`` line, its duration the ``#N DONE`` line's; cached steps and log lines are skipped."""
    names: dict[str, tuple[str, float]] = {}
    steps: list[Step] = []
    for at, line in lines:
        line = line.rstrip("\n")
        done = _DONE.match(line)
        if done:
            if done.group(1) in names:
                name, start = names[done.group(1)]
                steps.append(Step(name, start, float(done.group(2))))
            continue
        head = _HEAD.match(line)
        if not head or head.group(1) in names:
            continue
        text = head.group(2)
        if text == "CACHED" or text.startswith("sha256:") or re.match(r"\d+(\.\d+)? ", text):
            continue
        names[head.group(1)] = (text, at)
    return steps


def timeline(cmd: Sequence[str], env: Mapping[str, str]) -> Timeline:
    """Run a build with plain progress (added to ``cmd`` by the caller) and time its steps."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env))
    assert proc.stdout is not None
    lines = [(time.perf_counter() - t0, line) for line in proc.stdout]
    if proc.wait():
        tail = "".join(line for _, line in lines[-40:])
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    wall = time.perf_counter() - t0
    return Timeline(wall, tuple(parse_plain(lines)), sum(1 for _, line in lines if _FETCH.search(line)))
