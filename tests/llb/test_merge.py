"""MergeOp and DiffOp in the graph builder: shapes, wire encoding, settings and errors (no daemon)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import llb
from llb._proto import ops_pb2

AMD64 = llb.Platform("linux", "amd64")
GOLDEN = Path(__file__).parent / "golden"


def ops_of(state: llb.State) -> list[tuple[str, ops_pb2.Op, ops_pb2.OpMetadata]]:
    return list(state.marshal(platform=AMD64).iter_ops())


def layered_graph() -> llb.State:
    """Two independent steps as diffs on one base, merged back onto it; the golden graph."""
    base = llb.image("local/debian:bookworm", resolve_mode="local", name="base")
    tools = base.run("apt-get install -y git", name="git").root()
    runtime = base.run("python3 -m venv /opt/venv", name="venv").root()
    packages = runtime.run("/opt/venv/bin/pip install six", name="six").root()
    return llb.merge(
        [base, llb.diff(base, tools), llb.diff(base, runtime), llb.diff(runtime, packages, name="six: changes")],
        name="image layers",
    )


def test_merge_op_lists_its_inputs_in_order_without_a_platform() -> None:
    a = llb.image("debian").run("touch /a").root()
    b = llb.image("debian").run("touch /b").root()
    (*_, (_, op, md), _terminal) = ops_of(llb.merge([a, b]))
    assert op.WhichOneof("op") == "merge"
    assert [i.input for i in op.merge.inputs] == [0, 1]
    digests = a.marshal(platform=AMD64).digests[-2], b.marshal(platform=AMD64).digests[-2]
    assert [i.digest for i in op.inputs] == list(digests)
    assert not op.HasField("platform")  # like BuildKit's client: a merge is not platform specific
    assert dict(md.caps) == {"mergeop": True}


def test_merge_keeps_a_repeated_input_as_two_layers() -> None:
    a = llb.image("debian").run("touch /a").root()
    b = llb.image("debian").run("touch /b").root()
    (*_, (_, op, _), _terminal) = ops_of(llb.merge([a, b, a]))
    assert [i.input for i in op.merge.inputs] == [0, 1, 2]
    assert op.inputs[0] == op.inputs[2]


def test_merge_leaves_scratch_out_and_collapses_to_one_input() -> None:
    a = llb.image("debian").run("touch /a").root()
    assert llb.merge([]).is_scratch
    assert llb.merge([llb.scratch(), llb.scratch()]).is_scratch
    assert llb.merge([llb.scratch(), a, llb.scratch()]) is a
    (*_, (_, op, _), _terminal) = ops_of(llb.merge([llb.scratch(), a, llb.scratch(), a]))
    assert len(op.merge.inputs) == 2


def test_merge_takes_the_settings_of_its_first_layer() -> None:
    a = llb.image("debian").with_env("A", "1").with_cwd("/w").with_user("u").with_network("none")
    b = llb.image("debian").with_env("B", "2").run("touch /b").root()
    merged = llb.merge([llb.scratch(), a, b])
    assert merged.envs == {**llb.image("debian").envs, "A": "1"}
    assert (merged.cwd, merged.user, merged.network) == ("/w", "u", llb.Network.NONE)


def test_diff_op_points_at_lower_and_upper() -> None:
    base = llb.image("debian")
    upper = base.run("touch /x").root()
    changes = llb.diff(base, upper, name="what touch adds")
    (source, _, _), (run, _, _), (_, op, md), _terminal = ops_of(changes)
    assert op.WhichOneof("op") == "diff"
    assert (op.diff.lower.input, op.diff.upper.input) == (0, 1)
    assert [i.digest for i in op.inputs] == [source, run]
    assert not op.HasField("platform")
    assert dict(md.caps) == {"diffop": True, "meta.description": True}
    assert md.description["llb.customname"] == "what touch adds"


def test_diff_to_scratch_has_only_the_lower_input() -> None:
    base = llb.image("debian")
    (*_, (_, op, _), _terminal) = ops_of(llb.diff(base, llb.scratch()))
    assert len(op.inputs) == 1 and (op.diff.lower.input, op.diff.upper.input) == (0, -1)


def test_diff_from_scratch_is_the_upper_state() -> None:
    upper = llb.image("debian").run("touch /x").root()
    assert llb.diff(llb.scratch(), upper) is upper
    assert llb.diff(llb.scratch(), llb.scratch()).is_scratch


def test_diff_keeps_the_lower_settings() -> None:
    base = llb.image("debian").with_env("K", "lower").with_cwd("/lower")
    upper = llb.image("debian").with_env("K", "upper").run("true").root()
    changes = llb.diff(base, upper)
    assert (changes.env("K"), changes.cwd) == ("lower", "/lower")


def test_field_numbers_are_buildkits() -> None:
    """Op.merge = 6 and Op.diff = 7 (BuildKit's solver/pb/ops.proto), each input index in field 1 of its
    message: the bytes after an op's inputs, written out by hand."""
    a, b = llb.image("debian").run("touch /a").root(), llb.image("debian").run("touch /b").root()
    merged_state = llb.merge([a, b]).marshal(platform=AMD64)
    merge_op = merged_state.op(merged_state.digests[-2])
    merged = merge_op.SerializeToString(deterministic=True)
    # field 6, 6 bytes: MergeInput{} (input 0 is proto3's default) and MergeInput{input: 1}
    assert merged.endswith(bytes([6 << 3 | 2, 6, 1 << 3 | 2, 0, 1 << 3 | 2, 2, 1 << 3, 1]))
    diffed = llb.diff(a, llb.scratch()).marshal(platform=AMD64)
    diff_op = diffed.op(diffed.digests[-2])
    # field 7: lower {} (input 0), upper {input: -1} as a ten-byte varint
    upper = bytes([1 << 3]) + b"\xff" * 9 + b"\x01"
    expected = bytes([7 << 3 | 2, 2 + 2 + len(upper), 1 << 3 | 2, 0, 2 << 3 | 2, len(upper)]) + upper
    assert diff_op.SerializeToString(deterministic=True).endswith(expected)


def test_layered_graph_marshals_each_op_once_inputs_first() -> None:
    definition = layered_graph().marshal(platform=AMD64)
    kinds = [op.WhichOneof("op") for _, op, _ in definition.iter_ops()]
    assert sorted(k or "" for k in kinds) == ["", "diff", "diff", "diff", "exec", "exec", "exec", "merge", "source"]
    position = {d: i for i, d in enumerate(definition.digests)}
    for d, op, _ in definition.iter_ops():
        assert all(position[i.digest] < position[d] for i in op.inputs)
    dot = definition.to_dot()
    assert "image layers" in dot and "six: changes" in dot


def test_equal_merges_are_one_vertex() -> None:
    a = llb.image("debian").run("touch /a").root()
    b = llb.image("debian").run("touch /b").root()
    first, second = llb.merge([a, b]), llb.merge([a, b])
    definition = first.file(llb.copy(second, "/b", "/c")).marshal(platform=AMD64)
    assert [op.WhichOneof("op") for _, op, _ in definition.iter_ops()].count("merge") == 1


def test_unnamed_ops_are_labelled_by_kind() -> None:
    a = llb.image("debian").run("touch /a").root()
    b = llb.image("debian").run("touch /b").root()
    dot = llb.merge([a, llb.diff(a, b)]).marshal(platform=AMD64).to_dot()
    assert "merge of 2 layers" in dot and '"diff\\n' in dot


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: llb.merge(llb.image("debian")), "sequence of States"),
        (lambda: llb.merge([llb.image("debian"), "/etc"]), "must be States"),
        (lambda: llb.diff(llb.image("debian"), None), "two States"),
        (lambda: llb.merge([llb.image("debian").run("a").root(), llb.image("b")], name=3), "name"),
    ],
)
def test_bad_arguments_are_invalid_graphs(call: object, message: str) -> None:
    with pytest.raises(llb.InvalidGraph, match=message):
        call()  # type: ignore[operator]


def test_golden_layered_graph() -> None:
    definition = layered_graph().marshal(platform=AMD64)
    golden, golden_bin = GOLDEN / "layered_graph.json", GOLDEN / "layered_graph.sha256"
    digest = hashlib.sha256(definition.to_bytes()).hexdigest() + "\n"
    if os.environ.get("LLB_UPDATE_GOLDEN"):
        golden.write_text(definition.to_json_text())
        golden_bin.write_text(digest)
    assert definition.to_json_text() == golden.read_text(), "wire output changed; see test_definition's docstring"
    assert digest == golden_bin.read_text()
