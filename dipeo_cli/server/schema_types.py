"""The types, inputs, scalars and enums of `dipeo serve`'s schema (spec/dipeo-graphql.md), with
DiPeO's snake_case names, and the converters that build them: every value leaves through
`redact_json`/`redact`, so secrets are masked in queries, mutations and subscriptions alike.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NewType, cast

import strawberry
from strawberry.types.scalar import ScalarDefinition

from dipeo_cli.redact import redact, redact_json
from dipeo_cli.state import ExecutionState

# -- scalars and enums -------------------------------------------------------------------------

# NewTypes the schema maps to named scalars (StrawberryConfig.scalar_map, in build_schema).
JSONScalar = NewType("JSONScalar", object)
ExecutionID = NewType("ExecutionID", str)
NodeID = NewType("NodeID", str)
DiagramID = NewType("DiagramID", str)
DateTime = NewType("DateTime", str)


def _identity(value: Any) -> Any:
    return value


SCALARS: dict[object, ScalarDefinition] = {
    JSONScalar: strawberry.scalar(
        name="JSONScalar", description="Any JSON value.", serialize=_identity, parse_value=_identity
    ),
    ExecutionID: strawberry.scalar(name="ExecutionID", serialize=str, parse_value=str),
    NodeID: strawberry.scalar(name="NodeID", serialize=str, parse_value=str),
    DiagramID: strawberry.scalar(name="DiagramID", serialize=str, parse_value=str),
    DateTime: strawberry.scalar(
        name="DateTime", description="An ISO 8601 date and time.", serialize=str, parse_value=str
    ),
}


@strawberry.enum(name="ExecutionStatus")
class ExecutionStatus(Enum):
    """DiPeO's statuses, and the state model's STARTED."""

    STARTED = "STARTED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    SKIPPED = "SKIPPED"
    QUEUED = "QUEUED"  # recorded by `dipeo submit` / execute_diagram(queue: true)


# DiPeO's list, and every type this dipeo can run (built-in handlers and installed plugins).
DIPEO_NODE_TYPES = (
    "start",
    "person_job",
    "condition",
    "job",
    "code_job",
    "api_job",
    "endpoint",
    "db",
    "user_response",
    "notion",
    "person_batch_job",
    "hook",
)


def _node_types() -> list[str]:
    import re

    from dipeo_cli.registry import load_plugins

    names = {*DIPEO_NODE_TYPES, *load_plugins(()).types()}
    return sorted(n for n in names if re.fullmatch(r"[_a-z][_a-z0-9]*", n))


# Built from the registry when the server starts, so a checker sees it as Any.
NodeType: Any = strawberry.enum(
    cast(Any, Enum("NodeType", {t: t for t in _node_types()})), name="NodeType"
)


# -- types -------------------------------------------------------------------------------------


@strawberry.type
class TokenUsageType:
    input: int
    output: int
    cached: float | None = None
    total: float | None = None


@strawberry.type
class ExecutionStateType:
    id: str
    status: ExecutionStatus
    diagram_id: str | None
    started_at: str
    ended_at: str | None
    node_states: JSONScalar
    node_outputs: JSONScalar
    variables: JSONScalar
    token_usage: TokenUsageType
    error: str | None
    duration_seconds: float | None
    is_active: bool | None


@strawberry.type
class ExecutionResult:
    success: bool
    message: str | None = None
    error: str | None = None
    execution: ExecutionStateType | None = None
    execution_id: str | None = None


@strawberry.type
class NodeExecution:
    execution_id: ExecutionID
    node_id: NodeID
    node_type: NodeType
    status: str
    progress: str | None
    output: JSONScalar | None
    error: str | None
    tokens_used: int | None
    timestamp: DateTime


@strawberry.type
class ExecutionGraph:
    """An extension for the web monitor: the execution drawn (as `dipeo show ID --graph`);
    node `n<i>` of the drawing is the diagram's node `node_ids[i]`."""

    execution_id: ExecutionID
    mermaid: str
    dot: str
    node_ids: list[str]


@strawberry.type
class InteractivePrompt:
    execution_id: ExecutionID
    node_id: NodeID
    prompt: str
    timeout_seconds: int | None
    timestamp: DateTime


# -- inputs ------------------------------------------------------------------------------------


@strawberry.input
class ExecuteDiagramInput:
    diagram_id: DiagramID | None = None
    diagram_data: JSONScalar | None = None
    variables: JSONScalar | None = None
    debug_mode: bool = False
    max_iterations: int = 100
    timeout_seconds: int | None = None
    # record it QUEUED for a `dipeo worker` to take instead of running it in the server
    queue: bool = False


@strawberry.input
class ExecutionControlInput:
    execution_id: ExecutionID
    action: str
    node_id: NodeID | None = None


@strawberry.input
class InteractiveResponseInput:
    execution_id: ExecutionID
    node_id: NodeID
    response: str


@strawberry.input
class ExecutionFilterInput:
    diagram_id: DiagramID | None = None
    status: ExecutionStatus | None = None
    started_after: DateTime | None = None
    started_before: DateTime | None = None
    active_only: bool = False


# -- converters (the only way data leaves: redacted) ---------------------------------------------


def state_type(state: ExecutionState) -> ExecutionStateType:
    data = redact_json(state.model_dump(mode="json"))
    usage = data["token_usage"]
    return ExecutionStateType(
        id=data["id"],
        status=ExecutionStatus[data["status"]],
        diagram_id=data["diagram_id"],
        started_at=data["started_at"],
        ended_at=data["ended_at"],
        node_states=data["node_states"],
        node_outputs=data["node_outputs"],
        variables=data["variables"],
        token_usage=TokenUsageType(
            input=usage["input"],
            output=usage["output"],
            cached=usage["cached"],
            total=usage["total"],
        ),
        error=data["error"],
        duration_seconds=data["duration_seconds"],
        is_active=state.status.is_active,
    )


def execution_result(
    success: bool,
    *,
    message: str | None = None,
    error: str | None = None,
    state: ExecutionState | None = None,
) -> ExecutionResult:
    return ExecutionResult(
        success=success,
        message=redact(message) if message else message,
        error=redact(error) if error else error,
        execution=state_type(state) if state is not None else None,
        execution_id=state.id if state is not None else None,
    )


def node_execution(state: ExecutionState, event: dict[str, Any]) -> NodeExecution | None:
    nid = event["node_id"]
    node = state.node_states.get(nid)
    if node is None or node.type not in NodeType.__members__:
        return None  # a node of a plugin type this server does not know
    output = state.node_outputs.get(nid) if event["status"] == "COMPLETED" else None
    payload = event.get("payload") or {}
    error = payload.get("error") or payload.get("reason") if isinstance(payload, dict) else None
    done = sum(
        1
        for n in state.node_states.values()
        if n.status.value != "PENDING" and n.status.value != "RUNNING"
    )
    return NodeExecution(
        execution_id=ExecutionID(state.id),
        node_id=NodeID(nid),
        node_type=NodeType[node.type],
        status=event["status"],
        progress=f"{done}/{len(state.node_states)} nodes done",
        output=redact_json(output.model_dump(mode="json")) if output is not None else None,
        error=redact(error) if error else None,
        tokens_used=node.token_usage.total if node.token_usage else None,
        timestamp=DateTime(event["at"]),
    )
