"""The statements that write a batch, in the SQL every dialect speaks (`?` placeholders).

A batch (store/codec.py) becomes one statement per table with all its rows, parents before
children; a dialect runs them in one transaction (SQLite: executemany or a JSON array;
PostgreSQL: executemany after translating the placeholders). The upserts keep a stored value
when the new row has NULL there, except for the columns that may legitimately go back to NULL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dipeo_cli.store.codec import Batch
from dipeo_cli.store.rows import EVENT_COLUMNS, EXECUTION_COLUMNS, ITERATION_COLUMNS
from dipeo_cli.store.rows import NODE_COLUMNS as _NODE_COLUMNS

Row = tuple[Any, ...]
Statements = list[tuple[str, Sequence[Row]]]


def _keep_old(columns: str, conflict: str, table: str, replace: tuple[str, ...]) -> str:
    """An upsert in which a NULL keeps the stored value, except for the `replace` columns."""
    names = [c.strip() for c in columns.split(",")]
    keys = {c.strip() for c in conflict.split(",")}
    sets = ", ".join(
        f"{c} = excluded.{c}" if c in replace else f"{c} = COALESCE(excluded.{c}, {table}.{c})"
        for c in names
        if c not in keys
    )
    marks = ",".join("?" * len(names))
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({marks}) "
        f"ON CONFLICT({conflict}) DO UPDATE SET {sets}"
    )


UPSERT_EXECUTION = _keep_old(EXECUTION_COLUMNS, "id", "executions", ("status", "token_usage"))
UPSERT_NODE = _keep_old(
    _NODE_COLUMNS,
    "execution_id, node_id",
    "node_states",
    ("status", "started_at", "ended_at", "error", "skip_reason", "token_usage", "iterations"),
)
UPSERT_ITERATION = _keep_old(
    ITERATION_COLUMNS, "execution_id, node_id, iteration", "node_iterations", ("status",)
)
INSERT_BLOB = "INSERT INTO blobs (hash, size, data) VALUES (?,?,?) ON CONFLICT(hash) DO NOTHING"
INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"
HEARTBEAT = "UPDATE executions SET heartbeat_at = ? WHERE id = ?"
CONTROL_OUTCOME = "UPDATE controls SET outcome = ? WHERE id = ?"


# A request still pending when its execution ends is settled in the same transaction, so no
# process can take it later (request_control stores none for an execution that has ended).
SETTLE_CONTROLS = (
    "UPDATE controls SET outcome = ? "
    "WHERE execution_id = ? AND taken_at IS NULL AND outcome IS NULL"
)
FINISHED_BEFORE_TAKEN = "error: the execution finished before taking this request"
_FINAL = ("COMPLETED", "FAILED", "ABORTED")


# A new execution's nodes that have no row yet, PENDING, from the node list of its
# ExecutionStarted payload ({"nodes": [[id, label, type], ...]}, in diagram order), after the
# batch's own node rows: each dialect reads that JSON its way. `{nodes}` is the dialect's set
# of (node_id, label, type, position) rows from parameter 2.
_PENDING_NODES = (
    "INSERT INTO node_states (execution_id, node_id, label, type, status, started_at, "
    "ended_at, error, skip_reason, token_usage, iterations, position) "
    "SELECT ?, n.node_id, n.label, n.type, 'PENDING', NULL, NULL, NULL, NULL, NULL, 0, "
    "n.position FROM {nodes} WHERE true "
    "ON CONFLICT(execution_id, node_id) DO NOTHING"
)
PENDING_NODES_SQLITE = _PENDING_NODES.format(
    nodes="(SELECT json_extract(j.value, '$[0]') AS node_id, json_extract(j.value, '$[1]') "
    "AS label, json_extract(j.value, '$[2]') AS type, CAST(j.key AS INTEGER) AS position "
    "FROM json_each(?, '$.nodes') AS j) AS n"
)
PENDING_NODES_POSTGRES = _PENDING_NODES.format(
    nodes="(SELECT j.value->>0 AS node_id, j.value->>1 AS label, j.value->>2 AS type, "
    "(j.n - 1)::integer AS position FROM jsonb_array_elements((?::jsonb)->'nodes') "
    "WITH ORDINALITY AS j(value, n)) AS n"
)


def batch_statements(batch: Batch, pending_nodes: str) -> Statements:
    """A batch as (statement, rows) pairs, parents before children. `pending_nodes` is the
    dialect's PENDING_NODES_*."""
    batch.seal()
    return [
        (INSERT_BLOB, list(batch.blobs.values())),
        (UPSERT_EXECUTION, list(batch.executions.values())),
        (UPSERT_NODE, list(batch.nodes.values())),
        (pending_nodes, batch.pending_nodes()),
        (UPSERT_ITERATION, list(batch.iterations.values())),
        (INSERT_EVENT, batch.events),
        (HEARTBEAT, [(at, eid) for eid, at in batch.heartbeats.items()]),
        (CONTROL_OUTCOME, [(outcome, cid) for cid, outcome in batch.outcomes.items()]),
        (
            SETTLE_CONTROLS,
            [
                (FINISHED_BEFORE_TAKEN, row[0])
                for row in batch.executions.values()
                if row[1] in _FINAL
            ],
        ),
    ]
