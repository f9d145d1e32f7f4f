"""Typed, frozen events: what the executor reports, in the order it happens.

The executor emits them; `state.apply_event`, the history store and the live view consume them.
Times are `time.time()` floats; the state turns them into ISO strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dipeo_cli.state import ExecutionStatus, NodeOutput, TokenUsage


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: str
    label: str
    type: str


@dataclass(frozen=True, slots=True)
class ExecutionStarted:
    execution_id: str
    diagram_id: str | None
    variables: dict[str, Any]
    nodes: tuple[NodeInfo, ...]
    at: float
    parent_id: str | None = None  # the execution that ran this one as a sub-diagram


@dataclass(frozen=True, slots=True)
class NodeStarted:
    node_id: str
    iteration: int  # 1 for the first execution of the node
    at: float


@dataclass(frozen=True, slots=True)
class NodeCompleted:
    node_id: str
    output: NodeOutput
    at: float
    token_usage: TokenUsage | None = None


@dataclass(frozen=True, slots=True)
class NodeFailed:
    node_id: str
    error: str
    at: float
    output: NodeOutput | None = None  # what flows out of the `error` port, if anything
    token_usage: TokenUsage | None = None


@dataclass(frozen=True, slots=True)
class NodeSkipped:
    node_id: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class NodeCapped:
    """The node reached its own `max_iteration` and was triggered again: it does not run."""

    node_id: str
    max_iteration: int
    at: float


@dataclass(frozen=True, slots=True)
class ExecutionFinished:
    status: ExecutionStatus
    error: str | None
    at: float
    result: Any = None
    # "timeout" / "interrupted" / None: lets the CLI pick the exit code without parsing text
    reason: str | None = field(default=None)


Event = (
    ExecutionStarted
    | NodeStarted
    | NodeCompleted
    | NodeFailed
    | NodeSkipped
    | NodeCapped
    | ExecutionFinished
)
