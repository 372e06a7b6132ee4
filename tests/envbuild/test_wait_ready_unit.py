"""`engine.wait_ready`: the poll loop `up` spends most of its time in, on a scripted container and clock."""

from __future__ import annotations

import json
from typing import Any

import pytest

from envbuild.errors import RuntimeFailure
from envbuild.runtime import engine

PORTS = json.dumps([{"name": "ssh", "port": 2222}, {"name": "jupyter", "port": 8888}])


class ScriptedContainer:
    """Each reload() moves to the next (status, restart_count) of the script; the last one stays."""

    def __init__(self, states: list[tuple[str, int]], *, jupyter: bool = True) -> None:
        self.states = states
        self.reloads = 0
        self.name = "env"
        self.id = "cid"
        self.jupyter = jupyter

    def reload(self) -> None:
        self.reloads += 1

    @property
    def attrs(self) -> dict[str, Any]:
        status, restarts = self.states[min(self.reloads, len(self.states)) - 1]
        ports = {"2222/tcp": [{"HostIp": "127.0.0.1", "HostPort": "40022"}]}
        if self.jupyter:
            ports["8888/tcp"] = [{"HostIp": "127.0.0.1", "HostPort": "40888"}]
        return {"Config": {"Labels": {"ai.envbuild.name": "env", "ai.envbuild.ports": PORTS},
                           "Env": ["ENVBUILD_JUPYTER_TOKEN=tok"], "Image": "img", "WorkingDir": "/w"},
                "Image": "sha256:1", "State": {"Status": status}, "HostConfig": {}, "RestartCount": restarts,
                "NetworkSettings": {"Ports": ports}}

    def logs(self, tail: int = 20) -> bytes:
        return b"jupyter: boom"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _answers_from(round_no: int, calls: list[tuple[Any, ...]]):
    def probe(*args: Any) -> bool:
        calls.append(args)
        return len(calls) >= round_no

    return probe


def test_returns_as_soon_as_both_answer_and_stops_probing_a_ready_service() -> None:
    clock, ssh_calls, jupyter_calls = Clock(), [], []
    container = ScriptedContainer([("running", 0)])
    env = engine.wait_ready(container, 10, ssh_probe=_answers_from(2, ssh_calls),  # type: ignore[arg-type]
                            jupyter_probe=_answers_from(5, jupyter_calls), clock=clock, sleep=clock.sleep)
    assert env.name == "env" and env.jupyter_token == "tok"
    assert ssh_calls == [("127.0.0.1", 40022)] * 2, "sshd answered in round 2 and was not probed again"
    assert jupyter_calls == [("127.0.0.1:40888", "tok")] * 5
    assert clock.sleeps == [engine.POLL_INTERVAL] * 4
    assert engine.POLL_INTERVAL <= 0.05, "a coarse interval adds up to its length to every `up`"


def test_no_jupyter_endpoint_means_only_sshd_is_awaited() -> None:
    clock, jupyter_calls = Clock(), []
    container = ScriptedContainer([("running", 0)], jupyter=False)
    engine.wait_ready(container, 10, ssh_probe=lambda h, p: True,  # type: ignore[arg-type]
                      jupyter_probe=_answers_from(1, jupyter_calls), clock=clock, sleep=clock.sleep)
    assert jupyter_calls == [] and clock.sleeps == []


def test_probes_wait_until_the_container_runs() -> None:
    clock, calls = Clock(), []
    container = ScriptedContainer([("created", 0), ("created", 0), ("running", 0)])
    engine.wait_ready(container, 10, ssh_probe=_answers_from(1, calls), jupyter_probe=lambda a, t: True,  # type: ignore[arg-type]
                      clock=clock, sleep=clock.sleep)
    assert len(calls) == 1 and len(clock.sleeps) == 2


@pytest.mark.parametrize("states", [[("running", 0), ("exited", 0)], [("running", 1), ("running", 2)]])
def test_a_crash_or_restart_while_starting_fails_with_the_logs(states: list[tuple[str, int]]) -> None:
    clock = Clock()
    with pytest.raises(RuntimeFailure, match="stopped while starting") as info:
        engine.wait_ready(ScriptedContainer(states), 10, ssh_probe=lambda h, p: False,  # type: ignore[arg-type]
                          jupyter_probe=lambda a, t: False, clock=clock, sleep=clock.sleep)
    assert "jupyter: boom" in str(info.value)


def test_timeout_names_what_did_not_answer() -> None:
    clock = Clock()
    with pytest.raises(RuntimeFailure, match=r"within 2s \(waiting for Jupyter\)"):
        engine.wait_ready(ScriptedContainer([("running", 0)]), 2, ssh_probe=lambda h, p: True,  # type: ignore[arg-type]
                          jupyter_probe=lambda a, t: False, clock=clock, sleep=clock.sleep)
    assert 2 <= clock.now <= 2 + 2 * engine.POLL_INTERVAL
