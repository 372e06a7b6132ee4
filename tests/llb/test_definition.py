"""Marshalling: structure, determinism, de-duplication, limits, serialisation and the golden graph.

Golden files live in tests/llb/golden/. After an intended change to the wire
output, regenerate them with

    LLB_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/llb/test_definition.py -k golden

and review the diff: every changed digest is a cache miss for users.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import llb
from llb._proto import ops_pb2

AMD64 = llb.Platform("linux", "amd64")
GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[2]


def small_graph() -> llb.State:
    """A fixed graph touching every op kind; its JSON is the golden file."""
    base = llb.image("local/debian:bookworm", resolve_mode="local", name="base")
    ctx = llb.local("context", exclude=["*.pyc"])
    prepared = (
        base.with_env("LANG", "C.UTF-8")
        .with_cwd("/app")
        .file(
            llb.mkdir("/app", parents=True).mkfile("config.toml", "x = 1\n", owner="1000:1000").copy(ctx, "src/", "./"),
            name="prepare /app",
        )
    )
    built = prepared.run(
        "python -m compileall .",
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        mounts=[
            llb.cache("/root/.cache/pip", "pip", sharing="locked"),
            llb.secret("/run/secrets/ca.pem", "ca"),
            llb.bind("/ctx", ctx),
            llb.tmpfs("/tmp"),
        ],
        network="none",
    )
    return built.root().file(llb.rm("/app/__pycache__", allow_not_found=True))


def test_structure_terminal_metadata_and_digests() -> None:
    definition = small_graph().marshal(platform=AMD64)
    pb = definition.to_pb()
    defs = list(getattr(pb, "def"))
    assert len(defs) == 6  # image, local, file, exec, file, terminal
    for data, digest in zip(defs, definition.digests, strict=True):
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert set(pb.metadata) == set(definition.digests)
    terminal = ops_pb2.Op.FromString(defs[-1])
    assert terminal.WhichOneof("op") is None and not terminal.HasField("platform")
    assert len(terminal.inputs) == 1 and terminal.inputs[0].digest == definition.digests[-2]
    assert definition.terminal == definition.digests[-1]
    position = {d: i for i, d in enumerate(definition.digests)}
    for d, op, _ in definition.iter_ops():
        for inp in op.inputs:
            assert position[inp.digest] < position[d], "inputs must precede their users"


def test_same_graph_same_bytes_within_a_process() -> None:
    assert small_graph().marshal(platform=AMD64).to_bytes() == small_graph().marshal(platform=AMD64).to_bytes()
    state = small_graph()
    assert state.marshal(platform=AMD64) == state.marshal(platform=AMD64)


def test_same_graph_same_bytes_across_processes() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import test_definition as t, llb; "
        "sys.stdout.write(t.small_graph().marshal(platform=llb.Platform()).to_bytes().hex())"
    )
    outputs = set()
    for seed in ("0", "1", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run(
            [sys.executable, "-c", code, str(Path(__file__).parent)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.add(result.stdout)
    assert outputs == {small_graph().marshal(platform=AMD64).to_bytes().hex()}


def test_shared_vertices_are_marshalled_once() -> None:
    base = llb.image("debian")
    left = base.run("touch /l").root()
    right = base.run("touch /r").root()
    joined = left.file(llb.copy(right, "/r", "/r"))
    definition = joined.marshal(platform=AMD64)
    kinds = [op.WhichOneof("op") for _, op, _ in definition.iter_ops()]
    assert kinds == ["source", "exec", "exec", "file", None]


def test_equal_vertices_built_separately_are_deduplicated_by_digest() -> None:
    a = llb.image("debian").run("true").root()
    b = llb.image("debian").run("true").root()
    joined = a.file(llb.copy(b, "/etc/hostname", "/x"))
    definition = joined.marshal(platform=AMD64)
    assert len(definition) == 4  # image, exec, file, terminal
    file_op = definition.op(definition.digests[2])
    assert len(file_op.inputs) == 1
    assert file_op.file.actions[0].input == 0 and file_op.file.actions[0].secondaryInput == 0


def test_metadata_of_duplicates_is_merged() -> None:
    a = llb.image("debian").run("true", name="first").root()
    b = llb.image("debian").run("true", name="second", ignore_cache=True).root()
    definition = a.file(llb.copy(b, "/a", "/b")).marshal(platform=AMD64)
    md = definition.op_metadata(definition.digests[1])
    assert md.description["llb.customname"] == "first"
    assert md.ignore_cache


def test_every_vertex_has_metadata_even_unnamed() -> None:
    definition = llb.image("debian").run("true").root().marshal(platform=AMD64)
    assert [d for d, _ in definition.metadata] == definition.digests


def test_output_index_reaches_the_terminal() -> None:
    ran = llb.image("debian").run("gen", mounts=[llb.bind("/out", llb.scratch(), readonly=False)])
    definition = ran.mount_state("/out").marshal(platform=AMD64)
    assert definition.op(definition.terminal).inputs[0].index == 1


def test_definition_over_the_engine_limit_is_rejected_with_a_hint() -> None:
    chunk = b"x" * (llb.fileop.MAX_INLINE_FILE_BYTES - 10)
    state = llb.scratch().file(llb.mkfile("/a", chunk).mkfile("/b", chunk))
    with pytest.raises(llb.InvalidGraph, match=r"llb\.local\(\)") as info:
        state.marshal()
    assert "mkfile /a" in str(info.value)
    small = llb.scratch().file(llb.mkfile("/a", chunk)).marshal()
    assert len(small.to_bytes()) < llb.MAX_DEFINITION_BYTES


def test_too_large_says_which_op_is_largest_by_name() -> None:
    chunk = b"x" * (llb.fileop.MAX_INLINE_FILE_BYTES - 10)
    state = llb.scratch().file(llb.mkfile("/a", b"small")).file(llb.mkfile("/b", chunk).mkfile("/c", chunk), name="big")
    with pytest.raises(llb.DefinitionTooLarge) as info:
        state.marshal()
    err = info.value
    assert isinstance(err, llb.InvalidGraph)
    assert err.largest_op == "big" and err.size > err.limit == llb.MAX_DEFINITION_BYTES


def test_long_chains_do_not_hit_the_recursion_limit() -> None:
    state = llb.image("debian")
    for i in range(3000):
        state = state.run(["echo", str(i)]).root()
    assert len(state.marshal(platform=AMD64)) == 3002


def test_bytes_round_trip_and_write_to() -> None:
    definition = small_graph().marshal(platform=AMD64)
    data = definition.to_bytes()
    again = llb.Definition.from_bytes(data)
    assert again == definition and again.to_bytes() == data
    sink = io.BytesIO()
    definition.write_to(sink)
    assert sink.getvalue() == data
    text = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    definition.write_to(text)
    assert text.buffer.getvalue() == data


def test_from_bytes_rejects_garbage_and_orphan_metadata() -> None:
    with pytest.raises(llb.InvalidGraph):
        llb.Definition.from_bytes(b"\xff\xff\xff")
    pb = ops_pb2.Definition()
    getattr(pb, "def").append(b"")
    pb.metadata["sha256:" + "0" * 64].ignore_cache = True
    with pytest.raises(llb.InvalidGraph, match="unknown ops"):
        llb.Definition.from_pb(pb)


def test_to_dot_lists_every_op_and_edge() -> None:
    definition = small_graph().marshal(platform=AMD64)
    dot = definition.to_dot()
    assert dot.startswith("digraph llb {")
    for d in definition.digests:
        assert f'"{d}" [label=' in dot
    edges = sum(len(op.inputs) for _, op, _ in definition.iter_ops())
    assert dot.count(" -> ") == edges
    assert "prepare /app" in dot and "python -m compileall ." in dot


def test_golden_definition_json() -> None:
    definition = small_graph().marshal(platform=AMD64)
    golden = GOLDEN / "small_graph.json"
    text = definition.to_json_text()
    if os.environ.get("LLB_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text(), "wire output changed; see the module docstring to regenerate"
    golden_bin = GOLDEN / "small_graph.sha256"
    digest = hashlib.sha256(definition.to_bytes()).hexdigest() + "\n"
    if os.environ.get("LLB_UPDATE_GOLDEN"):
        golden_bin.write_text(digest)
    assert digest == golden_bin.read_text()


def test_json_entries_name_digest_op_and_metadata() -> None:
    entries = small_graph().marshal(platform=AMD64).to_json()
    assert all(set(e) == {"Op", "Digest", "OpMetadata"} for e in entries)
    assert entries[0]["Op"]["source"]["identifier"] == "docker-image://docker.io/local/debian:bookworm"
    assert entries[-1]["OpMetadata"] == {}


def test_hello_example_writes_a_definition_to_stdout() -> None:
    result = subprocess.run([sys.executable, "examples/llb_hello.py"], cwd=REPO, capture_output=True, check=True)
    definition = llb.Definition.from_bytes(result.stdout)
    exec_op = definition.op(definition.digests[1])
    assert list(exec_op.exec.meta.args) == ["sh", "-c", "echo hi > /hello"]


def test_local_sources_are_bound_to_the_session_and_their_readers_follow() -> None:
    """Each solve binds its local sources to its own session (BuildKit would otherwise serve them from
    any build in flight with the same op); the ops reading them get the new digests, the rest of the
    graph, its metadata and a source already bound stay as they were."""
    ctx = llb.local("context", include=["f.txt"])
    other = llb.local("other", session_id="theirs")
    base = llb.image("local/debian:bookworm", name="base")
    state = base.run(["cat", "/ctx/f.txt", "/o/x"], mounts=[llb.bind("/ctx", ctx), llb.bind("/o", other)], name="read")
    before = state.root().marshal(platform=AMD64).to_pb()
    after = llb.Definition.from_pb(llb.definition.bind_local_sources(before, "s3ss10n"))
    ops = {digest: (op, md) for digest, op, md in after.iter_ops()}
    sources = {d: (op, md) for d, (op, md) in ops.items() if op.WhichOneof("op") == "source"}
    locals_ = {op.source.identifier: (d, op, md) for d, (op, md) in sources.items()}
    digest, op, md = locals_["local://context"]
    assert op.source.attrs["local.session"] == "s3ss10n" and md.caps["source.local.sessionid"]
    assert locals_["local://other"][1].source.attrs["local.session"] == "theirs"
    old = set(llb.Definition.from_pb(before).digests)
    assert locals_["docker-image://docker.io/local/debian:bookworm"][0] in old  # untouched
    (read,) = [(d, o, m) for d, (o, m) in ops.items() if o.WhichOneof("op") == "exec"]
    assert read[0] not in old and digest in [i.digest for i in read[1].inputs]
    assert read[2].description["llb.customname"] == "read"
    assert [i.digest for i in ops[after.terminal][0].inputs] == [read[0]]
    plain = base.marshal(platform=AMD64).to_pb()
    assert llb.definition.bind_local_sources(plain, "s3ss10n") is plain


def test_binding_local_sources_handles_ops_in_any_order_and_long_chains() -> None:
    state = llb.scratch().file(llb.copy(llb.local("ctx"), "/", "/"))
    for i in range(3000):
        state = state.file(llb.mkfile(f"/f{i}", "x"))
    pb = state.marshal(platform=AMD64).to_pb()
    shuffled = ops_pb2.Definition()
    getattr(shuffled, "def").extend(reversed(list(getattr(pb, "def"))))
    for d, md in pb.metadata.items():
        shuffled.metadata[d].CopyFrom(md)
    bound = llb.definition.bind_local_sources(shuffled, "s")
    assert len(getattr(bound, "def")) == len(getattr(pb, "def"))
    digests = {"sha256:" + hashlib.sha256(raw).hexdigest() for raw in getattr(bound, "def")}
    for raw in getattr(bound, "def"):
        assert all(i.digest in digests for i in ops_pb2.Op.FromString(raw).inputs)
    assert set(bound.metadata) == digests
