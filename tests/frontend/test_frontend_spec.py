"""The spec's JSON round-trip (fixed and hypothesis-generated) and schema checks."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import frontend
from frontend import spec as S

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _strategy(tp: typing.Any) -> st.SearchStrategy[typing.Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return st.none() | _strategy(args[0])
    if origin is tuple:
        return st.lists(_strategy(typing.get_args(tp)[0]), max_size=3).map(tuple)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return st.builds(tp, **{f.name: _strategy(hints[f.name]) for f in dataclasses.fields(tp) if f.name != "schema"})
    if tp is str:
        return st.text(max_size=12)
    if tp is int:
        return st.integers(min_value=-(2**40), max_value=2**40)
    if tp is bool:
        return st.booleans()
    raise AssertionError(tp)


specs = _strategy(S.Spec)


@settings(max_examples=150, deadline=None)
@given(specs)
def test_random_specs_round_trip(spec: S.Spec) -> None:
    text = spec.to_json()
    back = S.Spec.from_json(text)
    assert back == spec
    assert back.to_json() == text
    assert S.Spec.from_json(spec.to_json(indent=2)) == spec


@pytest.mark.parametrize("name", sorted(p.parent.name for p in EXAMPLES.glob("*/build.envd")))
def test_examples_round_trip(name: str) -> None:
    spec = frontend.evaluate(EXAMPLES / name, user_config=False)
    assert S.Spec.from_json(spec.to_json()) == spec
    hash(spec)


def test_json_is_stable_and_complete() -> None:
    spec = S.Spec(python=S.Python("3.11", S.Pos("b.envd", 1, 2)))
    data = json.loads(spec.to_json())
    assert data["schema"] == S.SCHEMA_VERSION
    assert data["python"] == {"version": "3.11", "pos": {"file": "b.envd", "line": 1, "col": 2}}
    assert set(data) == {f.name for f in dataclasses.fields(S.Spec)}
    assert list(data) == sorted(data)


def test_spec_is_immutable() -> None:
    spec = S.Spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.python = S.Python()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[]", "must be an object"),
        ("{", "not valid JSON"),
        ('{"schema": 99}', "schema 99 is not supported"),
        ("{}", "schema None is not supported"),
        ('{"schema": 1, "bogus": 1}', r"unknown field\(s\) \['bogus'\]"),
        ('{"schema": 1, "python": {"version": 3}}', "spec.python.version: expected a string"),
        ('{"schema": 1, "gpu": {"count": true}}', "spec.gpu.count: expected an integer"),
        ('{"schema": 1, "base": null}', "spec.base: expected an object for Base"),
        ('{"schema": 1, "runs": {}}', "spec.runs: expected a list"),
        ('{"schema": 1, "runs": [{"mount_host": false}]}', "spec.runs\\[0\\]"),
        ('{"schema": 1, "base": {"dev": "yes"}}', "spec.base.dev: expected a boolean"),
    ],
)
def test_decode_errors(text: str, match: str) -> None:
    with pytest.raises(S.SpecDecodeError, match=match):
        S.Spec.from_json(text)


def test_properties() -> None:
    spec = S.Spec(
        base=S.Base("ubuntu:22.04", True),
        cuda=S.Cuda("12.1.1", "8", "nvidia/cuda:x"),
        runtime=S.Runtime(environ=(S.EnvVar("A", "1"), S.EnvVar("A", "2")), commands=(S.Command("t", "x"),)),
    )
    assert spec.dev and spec.gpu_enabled and spec.image == "nvidia/cuda:x"
    assert spec.runtime.environ_dict == {"A": "2"} and spec.runtime.commands_dict == {"t": "x"}
    assert str(S.Pos("a", 1, 2)) == "a:1:2"
