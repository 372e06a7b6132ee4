"""`envbuild.runtime.services`: what up and ls make of ``envbuild-status`` (a fake container answers)."""

from __future__ import annotations

from pathlib import Path

import frontend
from envbuild.runtime import services


class FakeContainer:
    """Answers ``envbuild-status`` from a script of outputs, and ``tail`` from ``logs``."""

    def __init__(self, answers: list[str], logs: dict[str, str] | None = None) -> None:
        self.answers, self.logs, self.asked = answers, logs or {}, []

    def exec_run(self, argv: list[str], user: str = "") -> tuple[int, bytes]:
        assert user == "root"
        self.asked.append(argv)
        if argv[0] == "tail":
            name = argv[-1].rsplit("/", 1)[-1].removesuffix(".log")
            return (0, self.logs[name].encode()) if name in self.logs else (1, b"")
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return 0, answer.encode()


def spec_of(tmp_path: Path, body: str) -> frontend.Spec:
    (tmp_path / "build.envd").write_text("def build():\n" + "".join(f"    {line}\n" for line in body.splitlines()))
    return frontend.evaluate(tmp_path, user_config=False)


def test_status_lines_become_programs_inits_first() -> None:
    text = "init_0 0\ninit_1 running\nsshd RUNNING\ninit_0 EXITED\ndaemon_0 BACKOFF\nrstudio STARTING\njupyter FATAL\n"
    programs = services.parse(text)
    assert [(p.name, p.state) for p in programs] == [
        ("init_0", "0"),
        ("init_1", "running"),
        ("daemon_0", "BACKOFF"),
        ("rstudio", "STARTING"),
    ]
    assert [(p.pending, p.failed) for p in programs] == [(False, False), (True, False), (False, True), (True, False)]
    assert services.summary(programs) == "daemon_0 backoff"
    assert services.summary(services.parse("init_0 3\n")) == "init_0 failed: exit 3"
    assert services.summary(services.parse("init_0 running\n")) == "init_0 starting"
    assert services.summary(services.parse("init_0 0\ndaemon_0 RUNNING\n")) == ""


def test_up_waits_for_the_inits_then_the_services_and_names_the_failing_call(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path,
        'base(image="x", dev=True)\n'
        'runtime.init(commands=["echo ok"])\n'
        'runtime.init(commands=["download-the-data"])\n'
        'runtime.daemon(commands=[["serve"]])',
    )
    container = FakeContainer(
        [
            "init_0 0\ninit_1 running\n",
            "init_0 0\ninit_1 running\n",
            "init_0 0\ninit_1 127\n",
            "init_0 0\ninit_1 127\ndaemon_0 STARTING\n",
            "init_0 0\ninit_1 127\ndaemon_0 RUNNING\n",
        ],
        logs={"init_1": "/etc/envbuild/init_1.sh: line 3: download-the-data: command not found"},
    )
    slept: list[float] = []
    programs = services.settle(container, spec, 60, sleep=slept.append)
    assert len(slept) == 3 and container.asked[-1] == [services.STATUS, "--services"]
    (problem,) = services.problems(container, spec, programs, 60)
    assert problem == (
        "runtime.init at build.envd:4:5 (init_1) failed with exit status 127; the last lines of "
        "/var/log/envbuild/init_1.log:\n  | /etc/envbuild/init_1.sh: line 3: download-the-data: command not found"
    )


def test_a_service_that_does_not_stay_up_and_an_init_that_does_not_end(tmp_path: Path) -> None:
    spec = spec_of(
        tmp_path, 'base(image="x", dev=True)\nruntime.init(commands=["sleep 1000"])\nruntime.daemon(commands=[["x"]])'
    )
    now = [0.0]
    container = FakeContainer(["init_0 running\n"])
    programs = services.settle(container, spec, 5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert now[0] > 5 and [p.name for p in programs] == ["init_0"]
    (problem,) = services.problems(container, spec, programs, 5)
    assert problem.startswith("runtime.init at build.envd:3:5 (init_0) is still running after 5s")
    assert problem.endswith("(its log is empty)")
    container = FakeContainer(["init_0 0\n", "init_0 0\ndaemon_0 FATAL\n"], logs={"daemon_0": "x: not found"})
    programs = services.settle(container, spec, 5, sleep=lambda _s: None)
    (problem,) = services.problems(container, spec, programs, 5)
    assert problem.startswith(
        "runtime.daemon at build.envd:4:5 (daemon_0) does not stay up: its supervisor reports FATAL"
    )


def test_nothing_is_asked_of_an_environment_without_inits_or_services(tmp_path: Path) -> None:
    container = FakeContainer(["init_0 1\n"])
    assert services.settle(container, spec_of(tmp_path, 'base(image="x", dev=True)'), 5) == ()
    assert services.settle(container, None, 5) == () and container.asked == []
