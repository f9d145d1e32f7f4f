"""Typed, frozen events: what the executor reports, in the order it happens.

The executor emits them; `state.apply_event`, the history store and the live view consume them.
Times are `time.time()` floats; the state turns them into ISO strings.

Each event carries everything `apply_event` needs, so that folding an execution's stored event
log rebuilds its state (`store/codec.py` writes and reads them). Terminal node events carry the
iteration they end, the output and the token usage.
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
    fingerprint: str = ""  # of the node's definition (type and properties), for retry


@dataclass(frozen=True, slots=True)
class ExecutionStarted:
    execution_id: str
    diagram_id: str | None
    variables: dict[str, Any]
    nodes: tuple[NodeInfo, ...]
    at: float
    parent_id: str | None = None  # the execution that ran this one as a sub-diagram
    diagram_source: str | None = None  # the diagram text that ran, kept with the execution
    retry_of: str | None = None  # the execution this one retries


@dataclass(frozen=True, slots=True)
class NodeStarted:
    node_id: str
    iteration: int  # 1 for the first execution of the node
    at: float
    # what the node received: its inputs by label, and for each label the (source node id,
    # source iteration) that delivered it; recorded (as a fingerprint) for retry and replay
    inputs: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    sources: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class NodeCompleted:
    node_id: str
    output: NodeOutput
    at: float
    token_usage: TokenUsage | None = None
    iteration: int = 0  # the iteration this ends; 0: the node's latest (the executor sets it)


@dataclass(frozen=True, slots=True)
class NodeFailed:
    node_id: str
    error: str
    at: float
    output: NodeOutput | None = None  # what flows out of the `error` port, if anything
    token_usage: TokenUsage | None = None
    iteration: int = 0  # the iteration this ends; 0: the node's latest (the executor sets it)
    aborted: bool = False  # cancelled by an abort while it ran: the node ends ABORTED


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
class ExecutionPaused:
    """No node starts until the execution is resumed; running nodes finish."""

    at: float
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionResumed:
    at: float


@dataclass(frozen=True, slots=True)
class NodeStatusChanged:
    """A status set directly through `StateStore.update_node_status` that no executor event
    describes (PAUSED, PENDING)."""

    node_id: str
    status: str
    at: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionStatusChanged:
    """A status set directly through `StateStore.update_execution_status` (not final)."""

    status: ExecutionStatus
    at: float
    error: str | None = None


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
    | NodeStatusChanged
    | ExecutionPaused
    | ExecutionResumed
    | ExecutionStatusChanged
    | ExecutionFinished
)
