"""MergeOp and DiffOp: filesystems stacked as layers instead of copied onto each other.

`diff(lower, upper)` is what `upper` changed on top of `lower`; `merge([a, b, c])` stacks
filesystems, later ones on top (a path in several inputs comes from the last; a deletion in a diff
deletes). Built on the same base, diffs of independent steps merge into the image those steps
would give one after another, yet each keeps its own cache key: changing one re-runs only its
step, and a cold build runs them side by side. Needs a builder with the ``mergeop``/``diffop``
caps (BuildKit >= 0.10 with a snapshotter that supports them, e.g. Docker's containerd image store).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ._proto import ops_pb2
from .errors import InvalidGraph
from .state import MarshalContext, OpOptions, Output, State, Vertex, _check_name

__all__ = ["diff", "merge"]


@dataclass(frozen=True, slots=True, eq=False)
class MergeVertex(Vertex):
    inputs: tuple[Output, ...]
    options: OpOptions

    def dependencies(self) -> tuple[Output, ...]:
        return self.inputs

    def label(self) -> str:
        return self.options.name or f"merge of {len(self.inputs)} layers"

    def to_op(self, ctx: MarshalContext) -> tuple[ops_pb2.Op, ops_pb2.OpMetadata]:
        op = ops_pb2.Op(
            inputs=[ctx.input(o) for o in self.inputs],
            merge=ops_pb2.MergeOp(inputs=[ops_pb2.MergeInput(input=i) for i in range(len(self.inputs))]),
        )
        return op, self.options.metadata({"mergeop"})


@dataclass(frozen=True, slots=True, eq=False)
class DiffVertex(Vertex):
    lower: Output
    upper: Output | None
    options: OpOptions

    def dependencies(self) -> tuple[Output, ...]:
        return (self.lower,) if self.upper is None else (self.lower, self.upper)

    def label(self) -> str:
        return self.options.name or "diff"

    def to_op(self, ctx: MarshalContext) -> tuple[ops_pb2.Op, ops_pb2.OpMetadata]:
        inputs = [ctx.input(o) for o in self.dependencies()]
        op = ops_pb2.Op(
            inputs=inputs,
            diff=ops_pb2.DiffOp(
                lower=ops_pb2.LowerDiffInput(input=0),
                upper=ops_pb2.UpperDiffInput(input=-1 if self.upper is None else 1),
            ),
        )
        return op, self.options.metadata({"diffop"})


def _states(states: Sequence[State], what: str) -> list[State]:
    if isinstance(states, State) or not isinstance(states, Sequence):
        raise InvalidGraph(f"{what} takes a sequence of States, got {type(states).__name__}")
    for s in states:
        if not isinstance(s, State):
            raise InvalidGraph(f"{what} inputs must be States, got {type(s).__name__}")
    return list(states)


def merge(states: Sequence[State], *, name: str | None = None) -> State:
    """The filesystems of ``states`` stacked in order (later ones win); settings (env, cwd, user,
    platform, network) are the first non-scratch input's. Scratch inputs add nothing and are left
    out: no input gives scratch, one gives that input unchanged."""
    layers = [s for s in _states(states, "merge") if not s.is_scratch]
    if not layers:
        return State()
    if len(layers) == 1:
        return layers[0]
    vertex = MergeVertex(tuple(s.output for s in layers if s.output is not None), OpOptions(name=_check_name(name)))
    return layers[0].with_output(Output(vertex, 0))


def diff(lower: State, upper: State, *, name: str | None = None) -> State:
    """What ``upper`` adds, changes and deletes on top of ``lower``, with ``lower``'s settings.
    Merged onto ``lower`` it gives ``upper`` back; merged onto another state it replays the change
    there. A diff from scratch is ``upper`` itself."""
    if not isinstance(lower, State) or not isinstance(upper, State):
        raise InvalidGraph(f"diff takes two States, got {type(lower).__name__} and {type(upper).__name__}")
    if lower.output is None:
        return upper
    vertex = DiffVertex(lower.output, upper.output, OpOptions(name=_check_name(name)))
    return lower.with_output(Output(vertex, 0))
