"""``record`` behaves like ``dataclass(frozen=True, slots=True)`` in everything the code relies on."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from frontend._record import record


@record
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)


@record(eq=False)
class Node:
    name: str
    cache: dict[str, int] = dataclasses.field(default_factory=dict, repr=False, compare=False)


@record
class Labelled(Point):
    label: str = ""

    def __repr__(self) -> str:
        return f"<{self.label}>"


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    x: int
    y: int = 0
    tags: tuple[str, ...] = dataclasses.field(default_factory=tuple)


def test_construction_matches_dataclass() -> None:
    assert Point(1) == Point(x=1, y=0, tags=())
    assert Point(1, 2, ("a",)).tags == ("a",)
    assert repr(Point(1, 2)) == repr(Reference(1, 2)).replace("Reference", "Point")
    for args, kwargs in [((), {}), ((1, 2, (), 4), {}), ((1,), {"x": 2}), ((1,), {"z": 3})]:
        with pytest.raises(TypeError) as ours:
            Point(*args, **kwargs)
        with pytest.raises(TypeError):
            Reference(*args, **kwargs)
        assert "Point.__init__()" in str(ours.value)


def test_frozen_slotted_value_semantics() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x  # type: ignore[misc]
    assert not hasattr(p, "__dict__")
    assert hash(Point(1, 2)) == hash(Point(1, 2)) and {Point(1), Point(1)} == {Point(1)}
    assert Point(1) != Labelled(1) and Point(1) != (1, 0, ())
    assert Point(1).tags is not None and Point(1).tags == ()


def test_dataclass_helpers_work() -> None:
    p = Point(1, 2)
    assert dataclasses.is_dataclass(p) and [f.name for f in dataclasses.fields(p)] == ["x", "y", "tags"]
    assert dataclasses.replace(p, y=5) == Point(1, 5)
    assert dataclasses.asdict(p) == {"x": 1, "y": 2, "tags": ()}
    assert Point.__match_args__ == ("x", "y", "tags")
    assert copy.deepcopy(p) == p and pickle.loads(pickle.dumps(p)) == p


def test_identity_eq_field_flags_and_own_methods() -> None:
    a, b = Node("n"), Node("n")
    assert a != b and a == a and len({a, b}) == 2
    assert repr(a) == "Node(name='n')" and a.cache == {} and a.cache is not b.cache
    assert repr(Labelled(1, label="l")) == "<l>" and Labelled(1, 2, (), "l").label == "l"
    assert Labelled(1, label="l") == Labelled(1, label="l") != Labelled(1, label="m")


def test_own_helpers_and_field_options() -> None:
    from typing import ClassVar

    from frontend._record import field, fields, is_record, replace

    @record
    class Opts:
        LIMIT: ClassVar[int] = 3
        name: str
        extra: dict[str, int] = field(default_factory=dict, compare=False)

        def __hash__(self) -> int:
            return 7

    o = Opts("a", {"x": 1})
    assert [f.name for f in fields(o)] == ["name", "extra"] and Opts.LIMIT == 3
    assert replace(o, name="b") == Opts("b") and replace(o, name="b").extra == {"x": 1}
    assert o == Opts("a") and hash(o) == 7  # an explicit __hash__ stays, as with dataclass
    assert is_record(o) and is_record(Opts) and not is_record(Reference(1))
    with pytest.raises(TypeError, match="not a record"):
        fields(Reference(1))
    with pytest.raises(ValueError):
        field(default=1, default_factory=list)


def test_defining_records_does_not_import_dataclasses() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom frontend._record import record, field\n"
        "@record\nclass P:\n    x: int\n    y: list = field(default_factory=list)\n"
        "p = P(1); assert p == P(1) and repr(p) == 'P(x=1, y=[])'\n"
        "assert 'dataclasses' not in sys.modules, 'dataclasses imported'\n"
        "import dataclasses; assert dataclasses.replace(p, x=2) == P(2)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
