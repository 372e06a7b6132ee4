"""`llb.errdetails`: the builder's account of a failure, from the grpc-status-details-bin trailer, in
the JSON form Docker 26's BuildKit sends and in the protobuf form; and what `solve` makes of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2

import llb
from llb._proto import control_pb2, errdefs_pb2, ops_pb2, status_pb2
from llb.client import _solve_error
from llb.errdetails import SourceRange, error_details, status_of
from llb.progress import ProgressTracker
from tests.llb.test_client_unit import FakeBuildkitd, _vertex_status

VERTEX = "sha256:c85c673ab557a6227298127553f312841271895277842492b7bb43e496fc6dff"
MESSAGE = 'process "sh -c echo boom; exit 3" did not complete successfully: exit code: 3'


def _json_any(name: str, value: object) -> any_pb2.Any:
    return any_pb2.Any(type_url=f"github.com/moby/buildkit/{name}+json", value=json.dumps(value).encode())


def docker26_status(message: str = MESSAGE, *, stack_frames: int = 3) -> status_pb2.Status:
    """What Docker 26.1.5's BuildKit sent for a failed exec (measured): stack traces, the vertex, the
    exit code, all JSON-encoded."""
    frame = {"Name": "github.com/moby/buildkit/solver.(*edge).execOp", "File": "solver/edge.go", "Line": 947}
    stack = {"frames": [frame] * stack_frames, "cmdline": ["dockerd"], "pid": 1, "version": "v0.0.0+unknown"}
    return status_pb2.Status(
        code=2,
        message=message,
        details=[
            _json_any("stack.Stack", stack),
            _json_any("errdefs.Vertex", {"digest": VERTEX}),
            _json_any("gatewayapi.ExitMessage", {"Code": 3}),
        ],
    )


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, message: str, status: status_pb2.Status | None = None) -> None:
        self._code, self._message, self._status = code, message, status

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return () if self._status is None else (("grpc-status-details-bin", self._status.SerializeToString()),)


def test_json_details_of_docker26() -> None:
    details = error_details(RpcError(grpc.StatusCode.UNKNOWN, "cut", docker26_status()))
    assert (details.code, details.message, details.vertex, details.exit_code) == (2, MESSAGE, VERTEX, 3)
    assert details.sources == ()


def test_protobuf_details_and_source_ranges() -> None:
    """The protobuf form (no +json suffix), with a source map's ranges; unknown types are skipped."""
    source = errdefs_pb2.Source(info=ops_pb2.SourceInfo(filename="build.envd"))
    source.ranges.add(start=ops_pb2.Position(line=4, character=4), end=ops_pb2.Position(line=4, character=30))
    status = status_pb2.Status(code=2, message="failed")
    for message, name in ((errdefs_pb2.Vertex(digest=VERTEX), "errdefs.Vertex"), (source, "errdefs.Source")):
        status.details.add(type_url=f"github.com/moby/buildkit/{name}", value=message.SerializeToString())
    status.details.add(type_url="github.com/moby/buildkit/errdefs.Solve+json", value=b'{"op": {}}')
    status.details.add(type_url="github.com/moby/buildkit/errdefs.Vertex+json", value=b"{not json")
    details = error_details(RpcError(grpc.StatusCode.UNKNOWN, "failed", status))
    assert details.vertex == VERTEX and details.exit_code is None
    assert details.sources == (SourceRange("build.envd", 4, 5, 4, 31),)
    assert str(details.sources[0]) == "build.envd:4:5"


def test_without_details_the_call_speaks_for_itself() -> None:
    """BuildKit v0.8 (Docker 20.10) sends no details."""
    exc = RpcError(grpc.StatusCode.UNKNOWN, MESSAGE)
    assert status_of(exc) == status_pb2.Status(code=2, message=MESSAGE)
    assert error_details(exc).vertex == "" and error_details(exc).exit_code is None


def test_the_builders_vertex_names_the_failed_step() -> None:
    """The failing step is the vertex the builder named, not a guess from the vertices with errors."""
    tracker = ProgressTracker()
    tracker.feed(
        control_pb2.StatusResponse(
            vertexes=[
                control_pb2.Vertex(digest="sha256:a", name="a guess", error=MESSAGE),
                control_pb2.Vertex(digest=VERTEX, name="the step", error="exit code: 3"),
            ],
            logs=[control_pb2.VertexLog(vertex=VERTEX, stream=1, msg=b"boom\n")],
        )
    )
    guessed = _solve_error(RpcError(grpc.StatusCode.UNKNOWN, MESSAGE), tracker, "docker://")
    assert isinstance(guessed, llb.ExecError) and guessed.vertex_name == "a guess"  # no details: the message
    err = _solve_error(RpcError(grpc.StatusCode.UNKNOWN, "cut", docker26_status()), tracker, "docker://")
    assert isinstance(err, llb.ExecError) and err.message == MESSAGE
    assert (err.vertex, err.vertex_name, err.exit_code, err.log_tail) == (VERTEX, "the step", 3, ("boom",))


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("grpc: received message larger than max (5243350 vs. 4194304)", True),
        ("received metadata size exceeds soft limit (12538 vs. 8192)", False),
    ],
)
def test_resource_exhausted_is_the_request_limit_only_when_it_says_so(message: str, hint: bool) -> None:
    err = _solve_error(RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, message), ProgressTracker(), "docker://")
    assert type(err) is llb.SolveError and ("at most 4 MiB" in str(err)) is hint


def test_an_error_over_grpcs_default_metadata_limit_arrives(tmp_path: Path) -> None:
    """Docker 26's BuildKit sends ~6 KB of details with a failed step; with a long command the trailers
    pass grpc's default 8 KiB limit. The step, its exit code and its log still come through."""
    long_command = "sh -c " + "; ".join(f"echo line-{i}-{'x' * 60}" for i in range(40)) + "; exit 3"
    message = f'process "{long_command}" did not complete successfully: exit code: 3'
    d = FakeBuildkitd(tmp_path)
    try:
        d.status = [_vertex_status("long step", error=message, log=b"boom\n")]
        d.status[0].vertexes[0].digest = VERTEX
        d.status[0].logs[0].vertex = VERTEX
        d.solve_error = message
        d.solve_error_details = docker26_status(message, stack_frames=250).SerializeToString()
        assert len(d.solve_error_details) > 20_000
        with llb.connect(d.address) as client, pytest.raises(llb.ExecError) as info:
            client.solve(llb.image("local/debian:bookworm").run("false", name="long step").root())
    finally:
        d.stop()
    assert (info.value.vertex_name, info.value.exit_code, info.value.vertex) == ("long step", 3, VERTEX)
    assert info.value.log_tail == ("boom",)


HISTORY_FRAMES = (
    "github.com/moby/buildkit/solver/bboltcachestorage.(*Store).Load.func1",
    "github.com/moby/buildkit/solver.(*exporter).ExportTo",
    "github.com/moby/buildkit/solver/llbsolver.(*ProvenanceCreator).Predicate",
    "github.com/moby/buildkit/solver/llbsolver.(*Solver).recordBuildHistory.func1.2",
)


def history_status() -> status_pb2.Status:
    """What Docker 26.1.5 sent for a build it exported and then failed for its history record
    (measured, frames abridged): "not found", a stack whose functions say where."""
    made = {"frames": [{"Name": "github.com/moby/buildkit/solver.init", "File": "cachestorage.go", "Line": 13}]}
    where = {"frames": [{"Name": name, "File": "x.go", "Line": 1} for name in HISTORY_FRAMES], "pid": 1}
    return status_pb2.Status(
        code=2, message="not found", details=[_json_any("stack.Stack", made), _json_any("stack.Stack", where)]
    )


@pytest.fixture
def buildkitd(tmp_path: Path) -> Iterator[FakeBuildkitd]:
    d = FakeBuildkitd(tmp_path)
    yield d
    d.stop()


def test_stack_functions_in_both_forms() -> None:
    details = error_details(RpcError(grpc.StatusCode.UNKNOWN, "not found", history_status()))
    assert details.functions == ("github.com/moby/buildkit/solver.init", *HISTORY_FRAMES)
    stack = errdefs_pb2.Stack(frames=[errdefs_pb2.Frame(Name="main.main", File="main.go", Line=3)])
    status = status_pb2.Status(code=2, message="x")
    status.details.add(type_url="github.com/moby/buildkit/stack.Stack", value=stack.SerializeToString())
    assert error_details(RpcError(grpc.StatusCode.UNKNOWN, "x", status)).functions == ("main.main",)


def test_a_build_failed_for_its_history_record_is_solved_again_unrecorded(buildkitd: FakeBuildkitd) -> None:
    """BuildKit before 0.23 exports the result, then fails the build when it cannot write the history
    record (moby/buildkit#5999). The solve is made again as an internal build, which is not recorded,
    in the same session; the result says so, and lists the vertices the first solve reported."""
    buildkitd.status = [_vertex_status("mkdir /x")]
    buildkitd.solve_error = "not found"
    buildkitd.solve_error_details = history_status().SerializeToString()
    buildkitd.internal_solves_succeed = True
    with llb.connect(buildkitd.address) as client:
        result = client.solve(llb.scratch().file(llb.mkdir("/x")))
    first, again = buildkitd.solve_requests
    assert not first.Internal and again.Internal and again.Ref != first.Ref
    assert again.Session == first.Session and len(buildkitd.session_metadata) == 1
    assert again.Definition == first.Definition
    assert result.ref == again.Ref and result.image_id == "sha256:fake"
    assert [v.name for v in result.vertices] == ["mkdir /x"]
    assert len(result.warnings) == 1 and "could not record this build in its history (not found)" in result.warnings[0]


def test_other_not_found_failures_are_not_solved_again(buildkitd: FakeBuildkitd) -> None:
    """The same message from anywhere else (a cache export, a missing blob) is the build's failure."""
    buildkitd.solve_error = "not found"
    buildkitd.solve_error_details = docker26_status("not found").SerializeToString()
    buildkitd.internal_solves_succeed = True
    with llb.connect(buildkitd.address) as client, pytest.raises(llb.SolveError, match="not found"):
        client.solve(llb.scratch().file(llb.mkdir("/x")))
    assert len(buildkitd.solve_requests) == 1
