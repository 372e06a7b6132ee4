"""`frontend.validate.validate_runtime`: a spec from an image label passes the build file's own checks."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import frontend
from frontend import spec as S
from frontend.errors import EnvdError
from frontend.validate import validate_runtime

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
P = S.Pos("build.envd", 7, 5)


@pytest.mark.parametrize("name", sorted(p.parent.name for p in EXAMPLES.glob("*/build.envd")))
def test_every_example_passes(name: str) -> None:
    validate_runtime(frontend.evaluate(EXAMPLES / name, user_config=False))


def _with_runtime(**changes: object) -> S.Spec:
    return S.Spec(base=S.Base(dev=True), runtime=dataclasses.replace(S.Runtime(), **changes))


# (a bad run-time setting as a label may hold it, the same setting written in a build file)
CASES = [
    (
        _with_runtime(exposes=(S.Expose(8000, listen_addr="localhost", pos=P),)),
        'runtime.expose(8000, listen_addr="localhost")',
    ),
    (_with_runtime(exposes=(S.Expose(70000, pos=P),)), "runtime.expose(envd_port=70000)"),
    (_with_runtime(exposes=(S.Expose(2222, pos=P),)), "runtime.expose(envd_port=2222)"),
    (_with_runtime(mounts=(S.Mount("/a", "relative", pos=P),)), 'runtime.mount("/a", "relative")'),
    (_with_runtime(mounts=(S.Mount("/a\x00b", "/x", pos=P),)), 'runtime.mount("/a\\x00b", "/x")'),
    (_with_runtime(environ=(S.EnvVar("1A", "x", pos=P),)), 'runtime.environ(env={"1A": "x"})'),
    (_with_runtime(environ=(S.EnvVar("PATH", "/x", pos=P),)), 'runtime.environ(env={"PATH": "/x"})'),
    (_with_runtime(commands=(S.Command("a\nb", "ls", pos=P),)), 'runtime.command(commands={"a\\nb": "ls"})'),
    (_with_runtime(environ=(S.EnvVar("A", "x\nMatch all", pos=P),)), 'runtime.environ(env={"A": "x\\nMatch all"})'),
    (
        _with_runtime(daemons=(S.Daemon(("a", "b\n[program:x]"), pos=P),)),
        'runtime.daemon(commands=[["a", "b\\n[program:x]"]])',
    ),
    (_with_runtime(daemons=(S.Daemon((), pos=P),)), "runtime.daemon(commands=[[]])"),
    (S.Spec(base=S.Base(dev=True), shm_size=S.ShmSize(0, pos=P)), "config.shm_size(0)"),
    (S.Spec(base=S.Base(dev=True), gpu=S.Gpu(-5, pos=P)), "config.gpu(-5)"),
    (S.Spec(base=S.Base(dev=True), jupyter=S.Jupyter(port=99999, pos=P)), "config.jupyter(port=99999)"),
]


@pytest.mark.parametrize(("spec", "call"), CASES, ids=[c[1] for c in CASES])
def test_a_label_fails_with_the_build_files_message_at_its_position(ev, spec: S.Spec, call: str) -> None:
    with pytest.raises(EnvdError) as from_file:
        ev("def build():\n    base(dev=True)\n    " + call + "\n")
    with pytest.raises(EnvdError) as from_label:
        validate_runtime(S.Spec.from_json(spec.to_json()))
    assert type(from_label.value) is type(from_file.value)
    assert from_label.value.message == from_file.value.message
    assert from_label.value.location == "build.envd:7:5"


def test_rules_across_calls_apply_too() -> None:
    twice = _with_runtime(exposes=(S.Expose(8000, pos=P), S.Expose(8000, pos=S.Pos("build.envd", 9, 5))))
    with pytest.raises(EnvdError, match=r"port 8000 is already exposed at build\.envd:7:5"):
        validate_runtime(twice)
