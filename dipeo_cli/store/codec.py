"""The one mapping between executor events and history rows, shared by every SQL store.

`Encoder.record(batch, state, event)` turns one event (right after `apply_event`) into rows of
a `Batch`; a store's writer commits batches (store/statements.py). The reading side,
store/rows.py, turns rows back into states and events, so that folding an execution's event
log with `apply_event` gives the state the store reports.

Row shapes (the column order of store/rows.py's `*_COLUMNS`):

    execution  id, status, diagram_id, diagram_path, started_at, ended_at, duration_seconds,
               error, variables, token_usage, result, pid, process_start, host, parent_id,
               diagram_source, node_fingerprints, secret_variables, heartbeat_at, retry_of
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
from dipeo_cli.redact import compact_json, dump_redacted, redact, redact_json
from dipeo_cli.state import (
    ExecutionState,
    NodeState,
    iso,
)
from dipeo_cli.store.base import hostname, own_process_marker

_dump_json = compact_json(str)
INLINE_LIMIT = 4096  # characters of JSON text kept in a row; longer values become blobs
REF_KEY = "$dipeo_value"

Row = tuple[Any, ...]
# an event's (at, node_id, iteration, status, payload), before the payload is encoded
# (the payload may be its JSON text already)
EventRow = tuple[str | None, str | None, int | None, str | None, dict[str, Any] | str | None]
ExecKey = str
NodeKey = tuple[str, str]
IterKey = tuple[str, str, int]


@dataclass
class Batch:
    """Rows waiting for the writer. Later rows for the same key are merged into earlier ones
    (a None column keeps the earlier value), so a node's RUNNING and COMPLETED in one batch
    cost one upsert.

    A node's row is a snapshot of its state: the events only note which nodes they touched
    (`touch`), and `seal()` (when the writer takes the batch, before anything else can change
    the states) builds each touched node's row once, however many events it had."""

    executions: dict[ExecKey, Row] = field(default_factory=dict)
    nodes: dict[NodeKey, Row] = field(default_factory=dict)
    iterations: dict[IterKey, Row] = field(default_factory=dict)
    blobs: dict[str, Row] = field(default_factory=dict)
    events: list[Row] = field(default_factory=list)
    heartbeats: dict[str, str] = field(default_factory=dict)  # execution id -> time
    outcomes: dict[int, str] = field(default_factory=dict)  # control request id -> outcome
    touched: dict[NodeKey, NodeState] = field(default_factory=dict)
    # A new execution's nodes: the ExecutionStarted payload's JSON text (statements.PENDING_
    # NODES_* writes the PENDING rows of the nodes no event touched from it, in one statement
    # rather than a row each) and each node's position, for the touched nodes' rows.
    new_nodes: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    new_run: bool = False
    mid_run: bool = False  # committed while the run goes on, not by a flush or a close

    def __bool__(self) -> bool:
        return bool(
            self.events
            or self.new_nodes
            or self.executions
            or self.nodes
            or self.touched
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

    def touch(self, eid: str, nid: str, node: NodeState) -> None:
        """The node's row is to be written as its state is when the batch is sealed."""
        self.touched[(eid, nid)] = node

    def seal(self) -> None:
        """Build the rows of the touched nodes from their states as they are now."""
        new_nodes = self.new_nodes
        for (eid, nid), node in self.touched.items():
            new = new_nodes.get(eid) if new_nodes else None
            self.put_node(node_row(eid, nid, node, new[1].get(nid) if new else None))
        self.touched.clear()

    def pending_nodes(self) -> list[tuple[str, str]]:
        """(execution id, node list text) of the new executions whose nodes did not all get
        a row in this batch (a short run's nodes all do: their PENDING rows would be written
        only to be replaced)."""
        pending = []
        for eid, (text, positions) in self.new_nodes.items():
            if any((eid, nid) not in self.nodes for nid in positions):
                pending.append((eid, text))
        return pending

    def put_iteration(self, row: Row) -> None:
        _put(self.iterations, (row[0], row[1], row[2]), row)


def _put(table: dict[Any, Row], key: Any, row: Row) -> None:
    old = table.get(key)
    table[key] = (
        row if old is None else tuple(o if n is None else n for o, n in zip(old, row, strict=True))
    )


# -- values ----------------------------------------------------------------------------------


def fingerprint(obj: Any) -> str:
    """A short, stable hash of a JSON value as the history stores it (secrets masked). Key order
    counts: the same diagram builds the same inputs in the same order."""
    text = dump_redacted(obj)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _is_ref(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and REF_KEY in value


def encode_value(value: Any, blobs: dict[str, Row]) -> str:
    """JSON text for a row: the value itself, or a reference to its blob."""
    text = dump_redacted(value)
    if len(text) <= INLINE_LIMIT and REF_KEY not in text:
        return text
    return _blob_ref(text, blobs)


def encode_map(mapping: dict[str, Any], blobs: dict[str, Row]) -> str:
    """JSON text of a dict whose large entries (output ports, metadata keys) are blobs."""
    text = dump_redacted(mapping)
    if len(text) <= INLINE_LIMIT and REF_KEY not in text:  # no value that looks like a reference
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
    """What a reader that asked for clipped values sees instead of a large one: a note first
    (so that a report cutting the text further still shows it), then the first characters of
    the value's JSON text."""
    return (
        f"[{size:,} characters in all; `dipeo show ID --node LABEL --json` prints the whole "
        f"value] {head}…"
    )


# -- encoding events -------------------------------------------------------------------------

_EXECUTION_EVENTS = (
    ev.ExecutionFinished,
    ev.ExecutionPaused,
    ev.ExecutionResumed,
    ev.ExecutionStatusChanged,
)


class Encoder:
    """Turns events into rows. Keeps, per execution running in this process, the next event
    sequence number (this process is the only writer of those). A node's position is written
    with its PENDING row (Batch.new_nodes); later rows leave it as stored."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}

    def next_seq(self, execution_id: str) -> int:
        seq = self.seq.get(execution_id, 0) + 1
        self.seq[execution_id] = seq
        return seq

    def record(self, batch: Batch, state: ExecutionState, event: ev.Event) -> None:
        eid = state.id
        seq = self.next_seq(eid)
        # isinstance, which mypy narrows (events are final dataclasses, never subclassed)
        row: EventRow
        if isinstance(event, ev.NodeStarted):
            row = self._node_started(batch, state, event)
        elif isinstance(event, (ev.NodeCompleted, ev.NodeFailed)):
            row = self._node_ended(batch, state, event)
        elif isinstance(event, (ev.NodeSkipped, ev.NodeCapped, ev.NodeStatusChanged)):
            node = state.node_states[event.node_id]
            batch.touch(eid, event.node_id, node)
            payload: dict[str, Any]
            if isinstance(event, ev.NodeSkipped):
                payload = {"reason": event.reason}
            elif isinstance(event, ev.NodeCapped):
                payload = {"max_iteration": event.max_iteration}
            else:
                payload = {"error": event.error}
            row = (iso(event.at), event.node_id, None, node.status.value, payload)
        elif isinstance(event, ev.ExecutionStarted):
            row = self._execution_started(batch, state, event)
        elif isinstance(event, _EXECUTION_EVENTS):
            batch.put_execution(execution_row(state, batch.blobs))
            if isinstance(event, ev.ExecutionFinished):
                at = state.ended_at
                payload = {"error": event.error, "reason": event.reason}
            else:
                at = iso(event.at)
                payload = {"reason": getattr(event, "reason", None)}
                payload["error"] = getattr(event, "error", None)
            row = (at, None, None, state.status.value, payload)
        else:
            # an event this codec does not know (a plugin's, a newer dipeo's): log it with the
            # node it names, never fail the run over it
            nid = getattr(event, "node_id", None)
            node_state = state.node_states.get(nid) if nid is not None else None
            if node_state is not None:
                batch.touch(eid, nid, node_state)
            at_value = getattr(event, "at", None)
            status = node_state.status.value if node_state is not None else None
            row = (iso(at_value) if at_value else None, nid, None, status, None)
        at_text, nid, iteration, status, values = row
        if isinstance(values, str):  # encoded already
            text: str | None = values
        else:
            if values:
                values = {k: v for k, v in values.items() if v is not None}
            text = dump_redacted(values) if values else None
        kind = type(event).__name__
        batch.events.append((eid, seq, at_text, kind, nid, iteration, status, text))

    def _node_started(self, batch: Batch, state: ExecutionState, event: ev.NodeStarted) -> EventRow:
        eid, nid, it = state.id, event.node_id, event.iteration
        node = state.node_states[nid]
        batch.touch(eid, nid, node)
        inputs = None
        if event.sources:  # labels and node ids: nothing to mask, no walk needed
            inputs = _dump_json({label: [src, n] for label, src, n in event.sources})
        fp = fingerprint(event.inputs) if event.inputs is not None else None
        batch.iterations[(eid, nid, it)] = (
            eid, nid, it, node.label, "RUNNING", node.started_at, None, None, None, None, None,
            inputs, fp,
        )  # fmt: skip
        return (node.started_at, nid, it, "RUNNING", None)

    def _node_ended(
        self, batch: Batch, state: ExecutionState, event: ev.NodeCompleted | ev.NodeFailed
    ) -> EventRow:
        eid, nid = state.id, event.node_id
        node = state.node_states[nid]
        batch.touch(eid, nid, node)
        usage = event.token_usage
        payload: dict[str, Any] = {}
        usage_text = None
        if usage is not None and not usage.is_empty:
            payload["token_usage"] = usage.model_dump()
            usage_text = usage.model_dump_json()
        error = None
        if isinstance(event, ev.NodeFailed):
            payload["error"] = error = redact(event.error)
        value = metadata = None
        if event.output is not None:
            value = encode_map(event.output.value, batch.blobs)
            metadata = (
                encode_map(event.output.metadata, batch.blobs) if event.output.metadata else "{}"
            )
        it = event.iteration or node.iterations or 1
        status = node.status.value
        # what NodeStarted put in this batch (when, the inputs) stays; a None keeps the stored
        # value (the upsert's COALESCE) when the start was committed in an earlier batch
        key = (eid, nid, it)
        started = batch.iterations.get(key)
        started_at, inputs, fp = (started[5], started[11], started[12]) if started else (None,) * 3
        batch.iterations[key] = (
            eid, nid, it, node.label, status, started_at, node.ended_at, error, value, metadata,
            usage_text, inputs, fp,
        )  # fmt: skip
        return (node.ended_at, nid, it, status, payload)

    def _execution_started(
        self, batch: Batch, state: ExecutionState, event: ev.ExecutionStarted
    ) -> EventRow:
        eid = state.id
        batch.new_run = True
        batch.put_execution(self._start_row(state, event, batch.blobs))
        # ids, labels and types: no value to walk for secrets, so mask the text once
        nodes = redact(_dump_json({"nodes": [[n.id, n.label, n.type] for n in event.nodes]}))
        # Every node's PENDING row comes from this text in one statement: a row each, for a
        # 10,000-node diagram, was 10,000 tuples held until the commit and hundreds of
        # statements in a commit made while the run keeps the GIL busy.
        batch.new_nodes[eid] = (nodes, {info.id: i for i, info in enumerate(event.nodes)})
        return (state.started_at, None, None, state.status.value, nodes)

    def _start_row(
        self, state: ExecutionState, event: ev.ExecutionStarted, blobs: dict[str, Any]
    ) -> Row:
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
        state.retry_of,
    )
