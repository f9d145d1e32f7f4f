"""The one mapping between executor events and history rows, shared by every SQL store.

`Encoder.record(batch, state, event)` turns one event (right after `apply_event`) into rows of
a `Batch`; a store's writer commits batches. The reading side (`state_from_row`,
`node_from_row`, `decode_events`) turns rows back into states and events, so that folding an
execution's event log with `apply_event` gives the state the store reports.

Row shapes (column order of the SQL statements in the dialect modules):

    execution  id, status, diagram_id, diagram_path, started_at, ended_at, duration_seconds,
               error, variables, token_usage, result, pid, process_start, host, parent_id,
               diagram_source, node_fingerprints, secret_variables, heartbeat_at
    node       execution_id, node_id, label, type, status, started_at, ended_at, error,
               skip_reason, token_usage, iterations, position
    iteration  execution_id, node_id, iteration, label, status, started_at, ended_at, error,
               value, metadata, token_usage, inputs, input_fingerprint
    blob       hash, size, data
    event      execution_id, seq, at, type, node_id, iteration, status, payload

Values are stored once: a JSON value (an output port, a metadata entry, the result, the
variables) whose text is longer than INLINE_LIMIT goes to `blobs`, keyed by the SHA-256 of its
(redacted) text, and the row holds `{"$dipeo_value": hash}` in its place; the same value written
by a node, an endpoint and the execution result is one blob. Everything stored is redacted.
A `None` column in an execution, node or iteration row means "unchanged" (the dialects upsert
with COALESCE, and `Batch` merges rows the same way).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from dipeo_cli import events as ev
from dipeo_cli.redact import dump_redacted, redact, redact_json
from dipeo_cli.state import (
    ExecutionState,
    ExecutionStatus,
    NodeExecutionStatus,
    NodeOutput,
    NodeState,
    TokenUsage,
    iso,
    parse_iso,
)
from dipeo_cli.store.base import hostname, own_process_marker

INLINE_LIMIT = 4096  # characters of JSON text kept in a row; longer values become blobs
REF_KEY = "$dipeo_value"

Row = tuple[Any, ...]
ExecKey = str
NodeKey = tuple[str, str]
IterKey = tuple[str, str, int]


@dataclass
class Batch:
    """Rows waiting for the writer. Later rows for the same key are merged into earlier ones
    (a None column keeps the earlier value), so a node's RUNNING and COMPLETED in one batch
    cost one upsert."""

    executions: dict[ExecKey, Row] = field(default_factory=dict)
    nodes: dict[NodeKey, Row] = field(default_factory=dict)
    iterations: dict[IterKey, Row] = field(default_factory=dict)
    blobs: dict[str, Row] = field(default_factory=dict)
    events: list[Row] = field(default_factory=list)
    heartbeats: dict[str, str] = field(default_factory=dict)  # execution id -> time
    outcomes: dict[int, str] = field(default_factory=dict)  # control request id -> outcome
    new_run: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.events
            or self.executions
            or self.nodes
            or self.iterations
            or self.heartbeats
            or self.outcomes
        )

    def put_execution(self, row: Row) -> None:
        _put(self.executions, row[0], row)

    def put_node(self, row: Row) -> None:
        # a node row is a whole snapshot (an error may be cleared); only its position stays
        key = (row[0], row[1])
        old = self.nodes.get(key)
        if old is not None and row[11] is None and old[11] is not None:
            row = (*row[:11], old[11])
        self.nodes[key] = row

    def put_iteration(self, row: Row) -> None:
        _put(self.iterations, (row[0], row[1], row[2]), row)


def _put(table: dict[Any, Row], key: Any, row: Row) -> None:
    old = table.get(key)
    table[key] = (
        row if old is None else tuple(o if n is None else n for o, n in zip(old, row, strict=True))
    )


# -- values ----------------------------------------------------------------------------------


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON value (keys sorted, secrets masked)."""
    text = json.dumps(redact_json(obj), sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and REF_KEY in value


def encode_value(value: Any, blobs: dict[str, Row]) -> str:
    """JSON text for a row: the value itself, or a reference to its blob."""
    text = dump_redacted(value)
    if len(text) <= INLINE_LIMIT and not _is_ref(value):
        return text
    return _blob_ref(text, blobs)


def encode_map(mapping: dict[str, Any], blobs: dict[str, Row]) -> str:
    """JSON text of a dict whose large entries (output ports, metadata keys) are blobs."""
    text = dump_redacted(mapping)
    if len(text) <= INLINE_LIMIT and not any(_is_ref(v) for v in mapping.values()):
        return text
    parts = []
    for key, value in mapping.items():
        part = dump_redacted(value)
        if len(part) > INLINE_LIMIT or _is_ref(value):
            part = _blob_ref(part, blobs)
        parts.append(f"{json.dumps(redact(str(key)), ensure_ascii=False)}:{part}")
    return "{" + ",".join(parts) + "}"


def _blob_ref(text: str, blobs: dict[str, Row]) -> str:
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    blobs[digest] = (digest, len(text), text)
    return f'{{"{REF_KEY}":"{digest}"}}'


def refs_in(text: str | None) -> list[str]:
    """The blob hashes a stored value refers to (cheap: no parsing when there are none)."""
    if not text or REF_KEY not in text:
        return []
    found: list[str] = []
    _collect(json.loads(text), found)
    return found


def _collect(value: Any, found: list[str]) -> None:
    if _is_ref(value):
        found.append(value[REF_KEY])
    elif isinstance(value, dict):
        for item in value.values():
            if _is_ref(item):
                found.append(item[REF_KEY])


def decode_value(text: str | None, blobs: dict[str, Any]) -> Any:
    """A stored value with its blob references replaced by what `blobs` holds for them
    (the whole value, or a clipped stand-in when the reader asked for one)."""
    if text is None:
        return None
    value = json.loads(text)
    if REF_KEY not in text:
        return value
    if _is_ref(value):
        return blobs.get(value[REF_KEY])
    if isinstance(value, dict):
        return {k: blobs.get(v[REF_KEY]) if _is_ref(v) else v for k, v in value.items()}
    return value


def clipped(head: str, size: int) -> str:
    """What a reader that asked for clipped values sees instead of a large one."""
    return f"{head}… [{size:,} characters in all; `--json` with --node gives the whole value]"


# -- encoding events -------------------------------------------------------------------------

_EXECUTION_EVENTS = (
    ev.ExecutionFinished,
    ev.ExecutionPaused,
    ev.ExecutionResumed,
    ev.ExecutionStatusChanged,
)


class Encoder:
    """Turns events into rows. Keeps, per execution running in this process, the next event
    sequence number (this process is the only writer of those) and the nodes' positions."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}
        self._positions: dict[str, dict[str, int]] = {}

    def next_seq(self, execution_id: str) -> int:
        seq = self.seq.get(execution_id, 0) + 1
        self.seq[execution_id] = seq
        return seq

    def record(self, batch: Batch, state: ExecutionState, event: ev.Event) -> None:
        eid = state.id
        seq = self.next_seq(eid)
        kind = type(event)
        events = batch.events
        if kind is ev.NodeStarted:
            nid = event.node_id
            node = state.node_states[nid]
            batch.put_node(self._node_row(eid, nid, node))
            it = event.iteration
            inputs = None
            if event.sources:
                inputs = dump_redacted({label: [src, n] for label, src, n in event.sources})
            fp = fingerprint(event.inputs) if event.inputs is not None else None
            batch.put_iteration(
                (
                    eid,
                    nid,
                    it,
                    node.label,
                    "RUNNING",
                    node.started_at,
                    None,
                    None,
                    None,
                    None,
                    None,
                    inputs,
                    fp,
                )  # fmt: skip
            )
            events.append((eid, seq, node.started_at, "NodeStarted", nid, it, "RUNNING", None))
        elif kind is ev.NodeCompleted or kind is ev.NodeFailed:
            nid = event.node_id
            node = state.node_states[nid]
            batch.put_node(self._node_row(eid, nid, node))
            output = event.output
            usage = event.token_usage
            usage_json = (
                usage.model_dump_json() if usage is not None and not usage.is_empty else None
            )
            payload: dict[str, Any] = {}
            if usage_json is not None:
                payload["token_usage"] = usage.model_dump()  # type: ignore[union-attr]
            error = None
            if kind is ev.NodeFailed:
                error = redact(event.error)
                payload["error"] = error
            value = metadata = None
            if output is not None:
                blobs = batch.blobs
                value = encode_map(output.value, blobs)
                metadata = encode_map(output.metadata, blobs) if output.metadata else "{}"
            status = node.status.value
            it = event.iteration or node.iterations or 1
            batch.put_iteration(
                (
                    eid,
                    nid,
                    it,
                    node.label,
                    status,
                    None,
                    node.ended_at,
                    error,
                    value,
                    metadata,
                    usage_json,
                    None,
                    None,
                )  # fmt: skip
            )
            events.append(
                (
                    eid,
                    seq,
                    node.ended_at,
                    kind.__name__,
                    nid,
                    it,
                    status,
                    dump_redacted(payload) if payload else None,
                )  # fmt: skip
            )
        elif kind is ev.NodeSkipped or kind is ev.NodeCapped or kind is ev.NodeStatusChanged:
            nid = event.node_id
            node = state.node_states[nid]
            batch.put_node(self._node_row(eid, nid, node))
            if kind is ev.NodeSkipped:
                payload_text: str | None = dump_redacted({"reason": event.reason})
            elif kind is ev.NodeCapped:
                payload_text = f'{{"max_iteration":{int(event.max_iteration)}}}'
            else:
                payload_text = dump_redacted({"error": event.error}) if event.error else None
            events.append(
                (
                    eid,
                    seq,
                    iso(event.at),
                    kind.__name__,
                    nid,
                    None,
                    node.status.value,
                    payload_text,
                )  # fmt: skip
            )
        elif kind is ev.ExecutionStarted:
            batch.new_run = True
            self._positions[eid] = positions = {}
            for i, info in enumerate(event.nodes):
                positions[info.id] = i
            batch.put_execution(self._start_row(state, event, batch.blobs))
            for nid, node in state.node_states.items():
                batch.put_node(self._node_row(eid, nid, node))
            nodes = [[n.id, n.label, n.type] for n in event.nodes]
            events.append(
                (
                    eid,
                    seq,
                    state.started_at,
                    "ExecutionStarted",
                    None,
                    None,
                    state.status.value,
                    dump_redacted({"nodes": nodes}),
                )  # fmt: skip
            )
        elif kind in _EXECUTION_EVENTS:
            batch.put_execution(execution_row(state, batch.blobs))
            payload = {}
            if kind is ev.ExecutionFinished:
                payload = {"error": event.error, "reason": event.reason}
                self._positions.pop(eid, None)
                at = state.ended_at
            elif kind is ev.ExecutionPaused:
                payload = {"reason": event.reason}
                at = iso(event.at)
            else:
                payload = {"error": getattr(event, "error", None)}
                at = iso(event.at) if hasattr(event, "at") else None
            payload = {k: v for k, v in payload.items() if v is not None}
            events.append(
                (
                    eid,
                    seq,
                    at,
                    kind.__name__,
                    None,
                    None,
                    state.status.value,
                    dump_redacted(payload) if payload else None,
                )  # fmt: skip
            )
        else:
            # an event this codec does not know (a plugin's, a newer dipeo's): log it with the
            # node it names, never fail the run over it
            nid = getattr(event, "node_id", None)
            node = state.node_states.get(nid) if nid is not None else None
            if node is not None:
                batch.put_node(self._node_row(eid, nid, node))
            at_value = getattr(event, "at", None)
            status = node.status.value if node is not None else None
            at_text = iso(at_value) if at_value else None
            events.append((eid, seq, at_text, kind.__name__, nid, None, status, None))

    def _node_row(self, eid: str, nid: str, node: NodeState) -> Row:
        positions = self._positions.get(eid)
        return node_row(eid, nid, node, positions.get(nid) if positions else None)

    def _start_row(self, state: ExecutionState, event: ev.ExecutionStarted, blobs: dict) -> Row:
        row = list(execution_row(state, blobs))
        if event.diagram_source is not None:
            row[15] = encode_value(event.diagram_source, blobs)
        row[16] = json.dumps([[n.id, n.label, n.fingerprint] for n in event.nodes])
        row[17] = json.dumps(masked_variables(state.variables))
        row[18] = state.started_at
        return tuple(row)


def masked_variables(variables: dict[str, Any]) -> list[str]:
    """Names of the variables whose value the history keeps masked (a secret, or a
    credential-named key), so that a later retry can ask for them instead of passing *** on."""
    masked = []
    for name, value in variables.items():
        if redact_json({name: value}) != {name: value}:
            masked.append(name)
    return masked


def node_row(eid: str, nid: str, node: NodeState, position: int | None = None) -> Row:
    usage = node.token_usage
    return (
        eid,
        nid,
        node.label,
        node.type,
        node.status.value,
        node.started_at,
        node.ended_at,
        redact(node.error) if node.error else node.error,
        redact(node.skip_reason) if node.skip_reason else node.skip_reason,
        usage.model_dump_json() if usage is not None else None,
        node.iterations,
        position,
    )


def execution_row(
    state: ExecutionState,
    blobs: dict[str, Row],
    diagram_path: str | None = None,
    parent_id: str | None = None,
) -> Row:
    return (
        state.id,
        state.status.value,
        state.diagram_id,
        diagram_path,
        state.started_at,
        state.ended_at,
        state.duration_seconds,
        redact(state.error) if state.error else state.error,
        encode_map(state.variables, blobs),
        state.token_usage.model_dump_json(),
        encode_value(state.result, blobs),
        os.getpid(),
        own_process_marker(),
        hostname(),
        parent_id or state.parent_id,
        None,
        None,
        None,
        None,
    )


# -- decoding --------------------------------------------------------------------------------

EXECUTION_COLUMNS = (
    "id, status, diagram_id, diagram_path, started_at, ended_at, duration_seconds, error, "
    "variables, token_usage, result, pid, process_start, host, parent_id, diagram_source, "
    "node_fingerprints, secret_variables, heartbeat_at"
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
    found: list[ev.Event] = []
    for _eid, _seq, at_text, kind, nid, iteration, status, payload_text in rows:
        payload = _loads(payload_text) or {}
        at = parse_iso(at_text) if at_text else 0.0
        usage = payload.get("token_usage")
        tokens = TokenUsage.model_validate(usage) if usage else None
        event: ev.Event
        if kind == "ExecutionStarted":
            event = ev.ExecutionStarted(
                execution_id=execution.id,
                diagram_id=execution.diagram_id,
                variables=execution.variables,
                nodes=tuple(ev.NodeInfo(i, label, t) for i, label, t in payload.get("nodes", [])),
                at=at,
                parent_id=execution.parent_id,
            )
        elif kind == "NodeStarted":
            event = ev.NodeStarted(nid, iteration or 0, at)
        elif kind == "NodeCompleted":
            output = outputs.get((nid, iteration)) or NodeOutput()
            event = ev.NodeCompleted(nid, output, at, tokens, iteration or 0)
        elif kind == "NodeFailed":
            event = ev.NodeFailed(
                nid, payload.get("error", ""), at, outputs.get((nid, iteration)), tokens,
                iteration or 0,
            )  # fmt: skip
        elif kind == "NodeSkipped":
            event = ev.NodeSkipped(nid, payload.get("reason", ""), at)
        elif kind == "NodeCapped":
            event = ev.NodeCapped(nid, payload.get("max_iteration", 0), at)
        elif kind == "NodeStatusChanged":
            event = ev.NodeStatusChanged(nid, status, at, payload.get("error"))
        elif kind == "ExecutionPaused":
            event = ev.ExecutionPaused(at, payload.get("reason"))
        elif kind == "ExecutionResumed":
            event = ev.ExecutionResumed(at)
        elif kind == "ExecutionStatusChanged":
            event = ev.ExecutionStatusChanged(ExecutionStatus(status), at, payload.get("error"))
        elif kind == "ExecutionFinished":
            event = ev.ExecutionFinished(
                ExecutionStatus(status), payload.get("error"), at, execution.result,
                payload.get("reason"),
            )  # fmt: skip
        else:
            continue  # written by a newer dipeo: not ours to fold
        found.append(event)
    return found


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
