"""llb's copy of ``record`` (the packages share no code): same behaviour as frontend's, checked briefly."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys

import pytest

from llb._record import field, fields, record, replace


@record
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)


@record
class Point3(Point):
    z: int = 0


def test_value_semantics_and_helpers() -> None:
    p = Point3(1, z=3)
    assert p == Point3(1, 0, (), 3) and hash(p) == hash(Point3(1, z=3)) and p != Point(1)
    assert [f.name for f in fields(p)] == ["x", "y", "tags", "z"] and Point3.__match_args__ == ("x", "y", "tags", "z")
    assert replace(p, y=2) == dataclasses.replace(p, y=2) == Point3(1, 2, (), 3)
    assert dataclasses.asdict(p) == {"x": 1, "y": 0, "tags": (), "z": 3}
    assert pickle.loads(pickle.dumps(p)) == p and repr(p) == "Point3(x=1, y=0, tags=(), z=3)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(TypeError, match="missing 1 required argument: 'x'"):
        Point3()  # type: ignore[call-arg]


def test_llb_graph_builder_imports_little() -> None:
    """Building and marshalling a graph loads none of the costly standard modules (start-up time)."""
    heavy = ["dataclasses", "pathlib", "typing", "json", "re", "enum", "functools", "collections", "shlex"]
    code = (
        "import sys, llb\n"
        "s = llb.image('alpine').run(['true'], network='none').root().file(llb.mkdir('/x', 0o755, owner='app:app'))\n"
        "s.marshal().to_bytes(); s.marshal().to_json()\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
