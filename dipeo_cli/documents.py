"""The JSON documents the CLI prints: one builder per command, one set of conventions.

Every document is an object that carries `schema_version` (an int; bumped when a key changes
meaning or goes away, not when one is added). Commands that print a list (`history --json`,
`show --node X --json`) print a list of such objects, each with its own `schema_version`, so
that a script can read one record without the rest.

Token usage is always an object with the same four integer keys (`input`, `output`, `cached`,
`total`), zeros when no LLM ran: never `null` in one place and `0` in another.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dipeo_cli.state import ExecutionState, TokenUsage

SCHEMA_VERSION = 2
NODE_STATUSES = (
    "PENDING",
    "RUNNING",
    "PAUSED",
    "COMPLETED",
    "FAILED",
    "SKIPPED",
    "MAXITER_REACHED",
    "ABORTED",
)


def token_usage_json(usage: TokenUsage | dict[str, Any] | None) -> dict[str, int]:
    """`{input, output, cached, total}`, all ints, whatever form the usage was kept in."""
    if usage is None:
        found: dict[str, Any] = {}
    elif isinstance(usage, dict):
        found = usage
    else:
        found = usage.model_dump()
    return {key: int(found.get(key) or 0) for key in ("input", "output", "cached", "total")}


def node_counts(state: ExecutionState) -> dict[str, int]:
    """How many nodes ended in each status (every status key present, zeros included)."""
    counts = dict.fromkeys(NODE_STATUSES, 0)
    for node in state.node_states.values():
        status = node.status.value
        counts[status] = counts.get(status, 0) + 1
    return counts


def run_json(state: ExecutionState) -> dict[str, Any]:
    """The `run --json` object (a stable contract: see README)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "id": state.id,
        "status": state.status.value,
        "diagram_id": state.diagram_id,
        "started_at": state.started_at,
        "ended_at": state.ended_at,
        "duration_seconds": state.duration_seconds,
        "error": state.error,
        "result": state.result,
        # extension: the labels of the endpoints that produced `result`, in diagram order
        "result_from": [
            node.label or node_id
            for node_id, node in state.node_states.items()
            if node.type == "endpoint" and node.status.value == "COMPLETED"
        ],
        "token_usage": token_usage_json(state.token_usage),
    }


def history_json(state: ExecutionState) -> dict[str, Any]:
    """One `history --json` record: the run object without its result, plus where it came from
    (`parent_id`: the execution that ran it as a sub-diagram; `retry_of`: the execution it
    retried) and its node counts by status."""
    data = run_json(state)
    data.pop("result")
    data.pop("result_from")
    data["parent_id"] = state.parent_id
    data["retry_of"] = state.retry_of
    data["node_counts"] = node_counts(state)
    return data


def show_json(state: ExecutionState, children: Sequence[ExecutionState] = ()) -> dict[str, Any]:
    """The whole state, plus the ids of the executions it ran as sub-diagrams (oldest first)."""
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    data.update(state.model_dump(mode="json"))
    data["token_usage"] = token_usage_json(state.token_usage)
    for node_state in data["node_states"].values():
        node_state["token_usage"] = token_usage_json(node_state.get("token_usage"))
    data["children"] = [child.id for child in children]
    return data


def iteration_json(iteration: dict[str, Any]) -> dict[str, Any]:
    """One record of `show --node X --json` (one iteration of the node)."""
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **iteration}
    data["token_usage"] = token_usage_json(iteration.get("token_usage"))
    return data


def validate_json(
    file: str,
    *,
    problems: Sequence[Any] = (),
    graph: Any = None,
    warnings: Sequence[Any] = (),
) -> dict[str, Any]:
    """The `validate --json` object: the same keys whether the diagram is valid or not
    (`format`, `node_count`, `arrow_count` are null when it did not compile)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "valid": graph is not None and not problems,
        "file": file,
        "format": graph.diagram.format if graph is not None else None,
        "node_count": len(graph.nodes) if graph is not None else None,
        "arrow_count": len(graph.edges) if graph is not None else None,
        "problems": [{"message": p.message, "where": p.where, "line": p.line} for p in problems],
        "warnings": [{"message": w.message, "where": w.where, "line": w.line} for w in warnings],
    }
