"""The execution state model: ExecutionState, NodeState, NodeOutput, TokenUsage and the enums.

These names, fields and status values are public API (see the execution state model spec):
handler authors, `dipeo show --json` consumers and the history database depend on them.
Extensions over the spec are marked "extension" and listed in CHANGELOG.md.

`apply_event` is the only place that turns executor events into state changes; the CLI, the
history store and the live view all see the same state because they all go through it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dipeo_cli import events as ev
from dipeo_cli.prebuilt import prebuilt


class ExecutionStatus(StrEnum):
    """Where an execution is: STARTED, RUNNING, PAUSED while active; COMPLETED, FAILED or
    ABORTED once final (`is_final`). A run whose process died is FAILED ("interrupted").

    QUEUED (an extension of the state model) is a run `dipeo submit` recorded for a worker to
    take: neither active (no process works on it, so it is never repaired as interrupted and
    takes no controls) nor final. A worker that takes it turns it STARTED."""

    STARTED = "STARTED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    QUEUED = "QUEUED"  # an extension: last, so the model's statuses keep their order

    @property
    def is_final(self) -> bool:
        return self in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.ABORTED)

    @property
    def is_active(self) -> bool:
        """STARTED, RUNNING or PAUSED: a process is (or should be) working on it."""
        return not self.is_final and self is not ExecutionStatus.QUEUED


ACTIVE_STATUSES = tuple(s.value for s in ExecutionStatus if s.is_active)


class NodeExecutionStatus(StrEnum):
    """Where one node is. PENDING until it first runs; COMPLETED, FAILED, SKIPPED (with a
    `skip_reason`) or MAXITER_REACHED at the end, or ABORTED when an abort (Ctrl-C, the abort
    control) cancelled it while it ran. A node in a loop goes back to RUNNING on each
    iteration; its status is that of its last one."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    # The node hit its own `max_iteration` and declined to run again: a normal end state.
    MAXITER_REACHED = "MAXITER_REACHED"
    # An extension: cancelled by an abort while it ran (a timeout or a dead process: FAILED).
    ABORTED = "ABORTED"


class TokenUsage(BaseModel):
    """LLM tokens: `input`, `output`, `cached` (None when the provider does not say) and
    `total`. Usages add up with `+`; a node's is the sum over its calls and iterations, an
    execution's the sum over its nodes. JSON documents always write all four keys as ints."""

    model_config = ConfigDict(defer_build=True)

    input: int = 0
    output: int = 0
    cached: int | None = None
    total: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        cached = None
        if self.cached is not None or other.cached is not None:
            cached = (self.cached or 0) + (other.cached or 0)
        return TokenUsage(
            input=self.input + other.input,
            output=self.output + other.output,
            cached=cached,
            total=self.total + other.total,
        )

    @property
    def is_empty(self) -> bool:
        return self.total == 0 and self.input == 0 and self.output == 0


class NodeOutput(BaseModel):
    """The one output format of every node type.

    `value` holds the data, keyed by output port ("default", "condtrue", "error", ...);
    `metadata` holds everything that is not data (timings, tokens, files written, ...).
    """

    model_config = ConfigDict(defer_build=True)

    value: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


def create_node_output(value: Any = None, metadata: dict[str, Any] | None = None) -> NodeOutput:
    """Build a NodeOutput. A value that is not a dict becomes the `default` port's value."""
    if not isinstance(value, dict):
        value = {"default": value}
    return prebuilt(NodeOutput, {"value": value, "metadata": dict(metadata or {})})


class NodeState(BaseModel):
    """One node of an execution: its status, its last iteration's start and end (ISO 8601
    UTC), `error` when it failed, `skip_reason` when skipped, its token usage (None when it
    made no LLM call), how the diagram names it (`label`, `type`) and how often it ran
    (`iterations`)."""

    model_config = ConfigDict(defer_build=True)

    status: NodeExecutionStatus = NodeExecutionStatus.PENDING
    started_at: str | None = None
    ended_at: str | None = None
    error: str | None = None
    skip_reason: str | None = None
    token_usage: TokenUsage | None = None
    # extensions: how the diagram names the node, and how often it ran
    label: str = ""
    type: str = ""
    iterations: int = 0


# A NodeState before its node runs: every field, for prebuilt (a run makes one per node).
_PENDING_NODE: dict[str, Any] = {
    "status": NodeExecutionStatus.PENDING,
    "started_at": None,
    "ended_at": None,
    "error": None,
    "skip_reason": None,
    "token_usage": None,
    "label": "",
    "type": "",
    "iterations": 0,
}


class ExecutionState(BaseModel):
    """One execution as the history holds it: its status, times, `node_states` (every node,
    in diagram order), `node_outputs` (the last output of each node that produced one), summed
    `token_usage`, the `variables` it ran with, its `error` when it failed and its `result`
    (the endpoint value; a dict by endpoint label when several produced one). `parent_id` is
    set for a sub-diagram run. Folding the execution's events with `apply_event` rebuilds it.
    """

    model_config = ConfigDict(validate_assignment=False, defer_build=True)

    id: str
    status: ExecutionStatus = ExecutionStatus.STARTED
    diagram_id: str | None = None
    started_at: str
    ended_at: str | None = None
    node_states: dict[str, NodeState] = Field(default_factory=dict)
    node_outputs: dict[str, NodeOutput] = Field(default_factory=dict)
    token_usage: TokenUsage = Field(default_factory=TokenUsage)
    error: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    duration_seconds: float | None = None
    is_active: bool | None = True
    # extension: the endpoint value (or a dict by endpoint label when there are several)
    result: Any = None
    # extension: the execution that ran this one as a sub-diagram
    parent_id: str | None = None
    # extension: the execution this one retries (`dipeo retry`)
    retry_of: str | None = None


def iso(timestamp: float) -> str:
    """An ISO 8601 UTC time with microseconds, the format every stored time uses: what
    `datetime.fromtimestamp(timestamp, UTC).isoformat()` gives, at half its cost (a run
    formats two times per node), by reusing the text of the last whole second."""
    second = timestamp // 1
    micro = round((timestamp - second) * 1e6)  # as datetime rounds: the fraction times 1e6
    if second != _last_second[0] or not 0 < micro < 1_000_000:
        if not 0 < micro < 1_000_000:  # no ".000000" in isoformat; or a carry into the second
            return datetime.fromtimestamp(timestamp, UTC).isoformat()
        _last_second[:] = [second, datetime.fromtimestamp(second, UTC).isoformat()[:19]]
    return f"{_last_second[1]}.{micro:06d}+00:00"


_last_second: list[Any] = [None, ""]


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def new_state(event: ev.ExecutionStarted) -> ExecutionState:
    """The state right after an ExecutionStarted event."""
    state = prebuilt(
        ExecutionState,
        {
            "id": event.execution_id,
            "status": ExecutionStatus.RUNNING,
            "diagram_id": event.diagram_id,
            "started_at": iso(event.at),
            "ended_at": None,
            "node_states": {},
            "node_outputs": {},
            "token_usage": prebuilt(
                TokenUsage, {"input": 0, "output": 0, "cached": None, "total": 0}
            ),
            "error": None,
            "variables": dict(event.variables),
            "duration_seconds": None,
            "is_active": True,
            "result": None,
            "parent_id": event.parent_id,
            "retry_of": event.retry_of,
        },
    )
    for node in event.nodes:
        state.node_states[node.id] = prebuilt(
            NodeState, {**_PENDING_NODE, "label": node.label, "type": node.type}
        )
    return state


_STARTED_FIELDS = ("status", "started_at", "ended_at", "iterations")
_COMPLETED_FIELDS = ("status", "ended_at", "error")


def apply_event(state: ExecutionState, event: ev.Event) -> None:
    """Apply one executor event to the state, in place. No I/O."""
    # The two events of every node set their fields in the instance's __dict__ and mark them
    # set, which is all pydantic's __setattr__ does for a model that neither validates
    # assignment nor has frozen or private fields, at a quarter of its cost (~0.5 us a node).
    if isinstance(event, ev.NodeStarted):
        node = state.node_states[event.node_id]
        fields = node.__dict__
        fields["status"] = NodeExecutionStatus.RUNNING
        fields["started_at"] = iso(event.at)
        fields["ended_at"] = None
        fields["iterations"] = event.iteration
        node.__pydantic_fields_set__.update(_STARTED_FIELDS)
    elif isinstance(event, ev.NodeCompleted):
        node = state.node_states[event.node_id]
        fields = node.__dict__
        fields["status"] = NodeExecutionStatus.COMPLETED
        fields["ended_at"] = iso(event.at)
        fields["error"] = None
        node.__pydantic_fields_set__.update(_COMPLETED_FIELDS)
        state.node_outputs[event.node_id] = event.output
        _add_tokens(state, node, event.token_usage)
    elif isinstance(event, ev.NodeFailed):
        node = state.node_states[event.node_id]
        node.status = NodeExecutionStatus.ABORTED if event.aborted else NodeExecutionStatus.FAILED
        node.ended_at = iso(event.at)
        node.error = event.error
        if event.output is not None:
            state.node_outputs[event.node_id] = event.output
        _add_tokens(state, node, event.token_usage)
    elif isinstance(event, ev.NodeSkipped):
        node = state.node_states[event.node_id]
        node.status = NodeExecutionStatus.SKIPPED
        node.skip_reason = event.reason
    elif isinstance(event, ev.NodeCapped):
        node = state.node_states[event.node_id]
        node.status = NodeExecutionStatus.MAXITER_REACHED
    elif isinstance(event, ev.ExecutionPaused):
        state.status = ExecutionStatus.PAUSED
    elif isinstance(event, ev.ExecutionResumed):
        state.status = ExecutionStatus.RUNNING
    elif isinstance(event, ev.NodeStatusChanged):
        node = state.node_states[event.node_id]
        node.status = NodeExecutionStatus(event.status)
        if event.error is not None:
            node.error = event.error
    elif isinstance(event, ev.ExecutionStatusChanged):
        state.status = ExecutionStatus(event.status)
        if event.error is not None:
            state.error = event.error
        state.is_active = state.status.is_active
    elif isinstance(event, ev.ExecutionFinished):
        state.status = event.status
        state.error = event.error
        state.result = event.result
        state.ended_at = iso(event.at)
        # from the ISO times, so that a state rebuilt from the stored log says the same
        state.duration_seconds = round(parse_iso(state.ended_at) - parse_iso(state.started_at), 6)
        state.is_active = False


def _add_tokens(state: ExecutionState, node: NodeState, usage: TokenUsage | None) -> None:
    if usage is None or usage.is_empty:
        return
    node.token_usage = usage if node.token_usage is None else node.token_usage + usage
    state.token_usage = state.token_usage + usage


def nodes_named(state: ExecutionState, name: str) -> list[str]:
    """The ids of the nodes `name` names in `state`: an id, else every node with that label
    (exactly, then ignoring case); [] when there is none. `show --node`, `skip` and the live
    details all resolve a user's node name here."""
    if name in state.node_states:
        return [name]
    for folded in (False, True):
        wanted = name.casefold() if folded else name
        found = [
            node_id
            for node_id, node in state.node_states.items()
            if (node.label.casefold() if folded else node.label) == wanted
        ]
        if found:
            return found
    return []


def no_such_node(state: ExecutionState, name: str) -> str:
    """What to say when `nodes_named` finds nothing: the nodes there are, in diagram order."""
    labels = ", ".join(node.label or node_id for node_id, node in state.node_states.items())
    return f"no node '{name}' in execution {state.id} (nodes: {labels or 'none'})"


def token_usage_of(output: NodeOutput) -> TokenUsage | None:
    usage = output.metadata.get("token_usage") if output.metadata else None
    if usage is None or isinstance(usage, TokenUsage):
        return usage
    if isinstance(usage, dict):
        return TokenUsage.model_validate(usage)
    return None
