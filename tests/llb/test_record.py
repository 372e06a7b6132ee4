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


def test_llb_graph_builder_does_not_import_dataclasses() -> None:
    code = (
        "import sys, llb\n"
        "s = llb.image('alpine').run(['true']).root().file(llb.mkdir('/x', 0o755))\n"
        "llb.Definition.__name__; s.marshal().to_bytes()\n"
        "assert 'dataclasses' not in sys.modules and 'pathlib' not in sys.modules, sorted(sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
