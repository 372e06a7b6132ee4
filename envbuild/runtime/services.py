"""What the ``runtime.init`` commands and the services of a running environment are doing.

envd starts them under its supervisor and says nothing when one fails. `envbuild up` waits until
every ``runtime.init`` has ended and every service (``runtime.daemon``, RStudio Server) has stayed
up, and reports a failing one with the last lines of its log; `envbuild ls` shows the same state.
The container tells it through ``envbuild-status`` (`envbuild.compiler.devfiles.status`), run with
the engine's exec as root; an image built before it had that program reports nothing.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

    from envbuild.runtime.engine import Environment
    from frontend.spec import Pos, Spec

STATUS = "/usr/local/bin/envbuild-status"
LOGS = "/var/log/envbuild"
"""Paths of the container contract (docs/container-contract.md), as the build side writes them."""
TAIL_LINES = 20
_SERVICE_PREFIXES = ("daemon_", "rstudio")
_FAILED_STATES = frozenset({"BACKOFF", "FATAL", "EXITED", "STOPPED", "UNKNOWN"})


@dataclass(frozen=True, slots=True)
class Program:
    """One program as ``envbuild-status`` reports it: an init's exit status (``running`` until it
    ends) or a service's supervisor state."""

    name: str
    state: str

    @property
    def is_init(self) -> bool:
        return self.name.startswith("init_")

    @property
    def pending(self) -> bool:
        return self.state == ("running" if self.is_init else "STARTING")

    @property
    def failed(self) -> bool:
        return self.state not in ("running", "0") if self.is_init else self.state in _FAILED_STATES

    def describe(self) -> str:
        if self.is_init:
            return "running" if self.pending else ("done" if self.state == "0" else f"failed: exit {self.state}")
        return self.state.lower()


def parse(text: str) -> tuple[Program, ...]:
    """``envbuild-status`` output: inits, then (with ``--services``) the services envbuild watches."""
    out: dict[str, Program] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] not in out and words[0].startswith(("init_", *_SERVICE_PREFIXES)):
            out[words[0]] = Program(*words)  # an init's exit status comes before its supervisor state
    return tuple(out.values())


def watched(spec: Spec | None) -> tuple[bool, bool]:
    """(has inits, has services) for a spec: nothing to ask an environment without them."""
    if spec is None:
        return False, False
    return bool(spec.runtime.inits), bool(spec.runtime.daemons or spec.rstudio_server)


def _exec(container: Container, argv: list[str]) -> tuple[int, str]:
    code, output = container.exec_run(argv, user="root")
    assert isinstance(output, bytes)  # not streamed
    return int(code or 0), output.decode(errors="replace")


def read(container: Container, *, services: bool) -> tuple[Program, ...]:
    """The programs' states now (no programs for an image without ``envbuild-status``)."""
    code, output = _exec(container, [STATUS, "--services"] if services else [STATUS])
    return parse(output) if code == 0 else ()


def of_environments(client: docker.DockerClient, envs: list[Environment]) -> dict[str, tuple[Program, ...]]:
    """The programs of each running environment whose spec (its image's label) has inits or
    services, asked of all of them at once (one exec each)."""
    from concurrent.futures import ThreadPoolExecutor

    from envbuild.runtime.engine import spec_label

    def ask(env: Environment) -> tuple[str, tuple[Program, ...]]:
        inits, services = watched(spec_label(env.labels))
        if not env.running or not (inits or services):
            return env.name, ()
        return env.name, read(client.containers.get(env.container_id), services=services)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(ask, envs))


def tail(container: Container, name: str, lines: int = TAIL_LINES) -> str:
    code, output = _exec(container, ["tail", "-n", str(lines), f"{LOGS}/{name}.log"])
    return output.rstrip("\n") if code == 0 else ""


def settle(
    container: Container,
    spec: Spec | None,
    timeout: float,
    *,
    interval: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Program, ...]:
    """Wait until every init has ended (or one failed) and no service is still starting, at most
    ``timeout`` seconds; the programs as they are then."""
    inits, services = watched(spec)
    if not (inits or services):
        return ()
    deadline = clock() + timeout
    while True:
        programs = read(container, services=False) if inits else ()
        waiting = any(p.pending for p in programs) and not any(p.failed for p in programs)
        if not waiting and services:
            programs = read(container, services=True)
            waiting = any(p.pending for p in programs if not p.is_init)
        if not waiting or clock() > deadline:
            return programs
        sleep(interval)


def problems(container: Container, spec: Spec, programs: tuple[Program, ...], timeout: float) -> tuple[str, ...]:
    """What `up` reports for failed or unfinished programs: which call, and its log's last lines."""
    out: list[str] = []
    for p in programs:
        if not (p.failed or p.pending):
            continue
        what, pos = _origin(spec, p.name)
        where = f" at {pos}" if pos else ""
        log = f"{LOGS}/{p.name}.log"
        if p.pending:
            head = f"{what}{where} ({p.name}) is still running after {timeout:.0f}s (a longer --timeout waits longer)"
        elif p.is_init:
            head = f"{what}{where} ({p.name}) failed with exit status {p.state}"
        else:
            head = f"{what}{where} ({p.name}) does not stay up: its supervisor reports {p.state}"
        lines = tail(container, p.name)
        body = "\n".join("  | " + line for line in lines.splitlines()) if lines else "  (its log is empty)"
        out.append(f"{head}; the last lines of {log}:\n{body}")
    return tuple(out)


def _origin(spec: Spec, name: str) -> tuple[str, Pos | None]:
    """The build file call that made program ``name``."""
    kind, _, index = name.partition("_")
    i = int(index) if index.isdigit() else -1
    if kind == "init" and 0 <= i < len(spec.runtime.inits):
        return "runtime.init", spec.runtime.inits[i].pos
    if kind == "daemon" and 0 <= i < len(spec.runtime.daemons):
        return "runtime.daemon", spec.runtime.daemons[i].pos
    if name == "rstudio" and spec.rstudio_server is not None:
        return "config.rstudio_server", spec.rstudio_server.pos
    return shlex.quote(name), None


def summary(programs: tuple[Program, ...]) -> str:
    """One phrase for `ls`: what is wrong or still starting, else empty."""
    bad = [f"{p.name} {p.describe()}" for p in programs if p.failed]
    if bad:
        return ", ".join(bad)
    starting = [p.name for p in programs if p.pending]
    return f"{', '.join(starting)} starting" if starting else ""
