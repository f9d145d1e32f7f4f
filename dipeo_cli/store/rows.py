"""History rows read back: states, node states, outputs and the typed events of the log.

The inverse of `store/codec.py` (which documents the row shapes). `decode_events` turns an
execution's event rows into the events `apply_event` folds; `store/queries.py` uses it to
rebuild a state from the log.
"""

from __future__ import annotations

import json
from typing import Any

from dipeo_cli import events as ev
from dipeo_cli.state import (
    ExecutionState,
    ExecutionStatus,
    NodeExecutionStatus,
    NodeOutput,
    NodeState,
    TokenUsage,
    parse_iso,
)
from dipeo_cli.store.codec import decode_value

Row = tuple[Any, ...]

EXECUTION_COLUMNS = (
    "id, status, diagram_id, diagram_path, started_at, ended_at, duration_seconds, error, "
    "variables, token_usage, result, pid, process_start, host, parent_id, diagram_source, "
    "node_fingerprints, secret_variables, heartbeat_at, retry_of"
)
NODE_COLUMNS = (
    "execution_id, node_id, label, type, status, started_at, ended_at, error, skip_reason, "
    "token_usage, iterations, position"
)
ITERATION_COLUMNS = (
    "execution_id, node_id, iteration, label, status, started_at, ended_at, error, value, "
    "metadata, token_usage, inputs, input_fingerprint"
)
EVENT_COLUMNS = "execution_id, seq, at, type, node_id, iteration, status, payload"


def state_from_row(row: Row, blobs: dict[str, Any] | None = None) -> ExecutionState:
    """An execution row as a state without nodes; `blobs` resolves large variables/result."""
    status = ExecutionStatus(row[1])
    blobs = blobs or {}
    return ExecutionState(
        id=row[0],
        status=status,
        diagram_id=row[2],
        started_at=row[4] or "",
        ended_at=row[5],
        token_usage=TokenUsage.model_validate(_loads(row[9]) or {}),
        error=row[7],
        variables=decode_value(row[8], blobs) or {},
        duration_seconds=row[6],
        is_active=status.is_active,
        result=decode_value(row[10], blobs),
        parent_id=row[14],
        retry_of=row[19],
    )


def node_from_row(row: Row) -> NodeState:
    usage = _loads(row[9])
    return NodeState(
        status=NodeExecutionStatus(row[4]),
        started_at=row[5],
        ended_at=row[6],
        error=row[7],
        skip_reason=row[8],
        token_usage=TokenUsage.model_validate(usage) if usage is not None else None,
        label=row[2] or "",
        type=row[3] or "",
        iterations=row[10] or 0,
    )


def output_from(value: str | None, metadata: str | None, blobs: dict[str, Any]) -> NodeOutput:
    return NodeOutput(
        value=decode_value(value, blobs) or {}, metadata=decode_value(metadata, blobs) or {}
    )


def decode_events(
    rows: list[Row],
    execution: ExecutionState,
    outputs: dict[tuple[str, int], NodeOutput],
) -> list[ev.Event]:
    """An execution's stored events as typed events (what `apply_event` folds). `execution`
    (from its row) supplies the variables and result, `outputs` the output of each
    (node id, iteration)."""
    found = (decode_event(event_dict(row), execution, outputs) for row in rows)
    return [event for event in found if event is not None]


def decode_event(
    stored: dict[str, Any],
    execution: ExecutionState,
    outputs: dict[tuple[str, int], NodeOutput],
) -> ev.Event | None:
    """One event as `get_events`/`events_after` report it, typed again (None for a kind a newer
    dipeo wrote). A follower passes the state it read as `execution` and the outputs it has."""
    kind, nid, iteration, status = (
        stored["type"], stored["node_id"], stored["iteration"], stored["status"],
    )  # fmt: skip
    payload = stored["payload"] or {}
    at = parse_iso(stored["at"]) if stored["at"] else 0.0
    usage = payload.get("token_usage")
    tokens = TokenUsage.model_validate(usage) if usage else None
    if kind == "ExecutionStarted":
        return ev.ExecutionStarted(
            execution_id=execution.id,
            diagram_id=execution.diagram_id,
            variables=execution.variables,
            nodes=tuple(ev.NodeInfo(i, label, t) for i, label, t in payload.get("nodes", [])),
            at=at,
            parent_id=execution.parent_id,
            retry_of=execution.retry_of,
        )
    if kind == "NodeStarted":
        return ev.NodeStarted(nid, iteration or 0, at)
    if kind == "NodeCompleted":
        output = outputs.get((nid, iteration)) or NodeOutput()
        return ev.NodeCompleted(nid, output, at, tokens, iteration or 0)
    if kind == "NodeFailed":
        return ev.NodeFailed(
            nid, payload.get("error", ""), at, outputs.get((nid, iteration)), tokens,
            iteration or 0, aborted=status == "ABORTED",
        )  # fmt: skip
    if kind == "NodeSkipped":
        return ev.NodeSkipped(nid, payload.get("reason", ""), at)
    if kind == "NodeCapped":
        return ev.NodeCapped(nid, payload.get("max_iteration", 0), at)
    if kind == "NodeStatusChanged":
        return ev.NodeStatusChanged(nid, status, at, payload.get("error"))
    if kind == "ExecutionPaused":
        return ev.ExecutionPaused(at, payload.get("reason"))
    if kind == "ExecutionResumed":
        return ev.ExecutionResumed(at)
    if kind == "ExecutionStatusChanged":
        return ev.ExecutionStatusChanged(ExecutionStatus(status), at, payload.get("error"))
    if kind == "ExecutionFinished":
        return ev.ExecutionFinished(
            ExecutionStatus(status), payload.get("error"), at, execution.result,
            payload.get("reason"),
        )  # fmt: skip
    return None  # written by a newer dipeo: not ours to fold


def event_dict(row: Row) -> dict[str, Any]:
    """An event row as `get_events` reports it."""
    return {
        "execution_id": row[0],
        "seq": row[1],
        "at": row[2],
        "type": row[3],
        "node_id": row[4],
        "iteration": row[5],
        "status": row[6],
        "payload": _loads(row[7]),
    }


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
