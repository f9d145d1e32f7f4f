"""SqlHistory: the StateStore behaviour every SQL dialect shares.

A dialect subclass (SqliteStore, PostgresStore) supplies the connection (`_connect`,
`_disconnect`), `fetch(sql, params)`, `transaction(statements)` and `commit_batch(batch)`
(store/dialect.py declares them); SQL here is written with `?` placeholders. This class owns
everything else:

- the hot path: `record(state, event)` encodes the event (store/codec.py) into the writer's
  batch (store/writer.py);
- direct writes (`create_execution`, `update_execution_status`, `update_node_status`), which
  become typed events and go through the same codec, so the event log stays foldable;
- control requests (`request_control`) and, for the executions this process runs, the watch
  task that picks them up and writes heartbeats (store/watch.py);
- reads (store/queries.py), which first drain the writer and repair runs whose process died;
- removal of executions and the history's figures (store/retention.py);
- queued executions, submitted and taken by workers (store/queue.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from dipeo_cli import events as ev
from dipeo_cli.errors import ControlError, ExecutionNotFoundError, HistoryError
from dipeo_cli.redact import refresh_secrets
from dipeo_cli.state import (
    ACTIVE_STATUSES,
    ExecutionState,
    ExecutionStatus,
    NodeExecutionStatus,
    NodeOutput,
    NodeState,
    apply_event,
    iso,
)
from dipeo_cli.store.base import Control
from dipeo_cli.store.codec import Batch, Encoder, encode_map, execution_row, node_row
from dipeo_cli.store.dialect import ACTIVE_MARKS
from dipeo_cli.store.notify import CONTROLS, Hub, Subscription
from dipeo_cli.store.queries import Queries
from dipeo_cli.store.queue import Queue
from dipeo_cli.store.retention import Retention
from dipeo_cli.store.statements import batch_statements
from dipeo_cli.store.watch import Watcher
from dipeo_cli.store.writer import BATCH_DELAY, BatchWriter

CONTROL_ACTIONS = ("pause", "resume", "abort", "skip_node")


class SqlHistory(Queries, Retention, Queue):
    def __init__(self, *, where: str, batch_delay: float = BATCH_DELAY) -> None:
        self.where = where
        self._encoder = Encoder()
        self._writer = BatchWriter(
            self.commit_batch, where=where, batch_delay=batch_delay, describe_error=self.explain
        )
        self._lock: asyncio.Lock | None = None
        self._watcher = Watcher(self)
        self._closing = False
        self._closed = False
        self._hub: Hub | None = None  # set by a dialect that announces changes (PostgreSQL)

    # -- notifications (a dialect supplies the rest: store/dialect.py) ----------------------

    def subscribe(self, channel: str, execution_ids: list[str]) -> Subscription:
        """A Subscription woken when one of `execution_ids` is announced on `channel`
        (`notify.CHANGES`: new events or status; `notify.CONTROLS`: a control request)."""
        return Subscription(self._hub, channel, execution_ids)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> Self:
        """Connect (migrating the schema as needed) and start the writer."""
        refresh_secrets()
        await self._connect()
        self._lock = asyncio.Lock()
        self._writer.start()
        return self

    async def flush(self) -> None:
        """Return once every recorded row is committed; raise HistoryError if writing failed."""
        await self._writer.drain()
        self._writer.raise_if_failed()

    async def close(self) -> None:
        """Flush, stop the writer and the watch task, close the connection; raise HistoryError
        if a write failed. Closing twice is harmless."""
        if self._closed or self._closing:
            return
        self._closing = True  # no more records; what is queued is still written
        try:
            await self._watcher.stop()
            await self._writer.stop()
        finally:
            self._closed = True
            await self._disconnect()
        self._writer.raise_if_failed()

    async def __aenter__(self) -> Any:
        if self._lock is None:
            await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def write_lock(self) -> asyncio.Lock:
        if self._lock is None or self._closed:
            raise HistoryError(f"the history store {self.where} is not open")
        return self._lock

    # -- the hot path ----------------------------------------------------------------------

    def record(self, state: ExecutionState, event: ev.Event) -> None:
        """Queue the rows `event` changed; call right after `apply_event(state, event)`."""
        if self._closing or self._closed or not self._writer.started:
            raise HistoryError(f"the history store {self.where} is closed (or was never opened)")
        self._encoder.record(self._writer.batch, state, event)
        self._writer.wake()

    def queue_heartbeat(self, execution_ids: list[str]) -> None:
        if self._closed or not execution_ids:
            return
        now = iso(time.time())
        for eid in execution_ids:
            self._writer.batch.heartbeats[eid] = now
        self._writer.wake()

    def queue_outcome(self, control_id: int, outcome: str) -> None:
        if not self._closed:
            self._writer.batch.outcomes[control_id] = outcome
            self._writer.wake()

    # -- direct writes (not the hot path) --------------------------------------------------

    async def create_execution(
        self,
        state: ExecutionState,
        *,
        diagram_path: str | None = None,
        parent_id: str | None = None,
    ) -> None:
        """Store `state` whole (execution, node states, outputs); idempotent per execution id.
        Recording the ExecutionStarted event after this is harmless and keeps `diagram_path`."""
        eid = state.id
        batch = Batch()
        batch.put_execution(execution_row(state, batch.blobs, diagram_path, parent_id))
        for position, (nid, node) in enumerate(state.node_states.items()):
            batch.put_node(node_row(eid, nid, node, position))
        for nid, output in state.node_outputs.items():
            node = state.node_states.get(nid) or NodeState()
            metadata = encode_map(output.metadata, batch.blobs) if output.metadata else "{}"
            batch.put_iteration(
                (
                    eid,
                    nid,
                    node.iterations or 1,
                    node.label,
                    node.status.value,
                    node.started_at,
                    node.ended_at,
                    node.error,
                    encode_map(output.value, batch.blobs),
                    metadata,
                    None,
                    None,
                    None,
                )  # fmt: skip
            )
        await self.flush()
        async with self.write_lock():
            await self.transaction(batch_statements(batch, self.pending_nodes))
            if eid not in self._encoder.seq:
                self._encoder.seq[eid] = await self._max_seq(eid)

    async def update_execution_status(
        self, execution_id: str, status: ExecutionStatus, *, error: str | None = None
    ) -> None:
        status = ExecutionStatus(status)
        now = time.time()
        event: ev.Event
        if status.is_final:
            event = ev.ExecutionFinished(status, error, now)
        elif status is ExecutionStatus.PAUSED:
            event = ev.ExecutionPaused(now, error)
        else:
            event = ev.ExecutionStatusChanged(status, now, error)
        await self._record_direct(execution_id, event)

    async def update_node_status(
        self,
        execution_id: str,
        node_id: str,
        status: NodeExecutionStatus,
        output: NodeOutput | None = None,
        *,
        error: str | None = None,
    ) -> None:
        status = NodeExecutionStatus(status)
        now = time.time()
        state = await self._current(execution_id)
        node = state.node_states.get(node_id)
        if node is None:  # a node the executor never announced: add it, as before
            state.node_states[node_id] = node = NodeState()
        event: ev.Event
        S = NodeExecutionStatus
        if status is S.RUNNING:
            event = ev.NodeStarted(node_id, node.iterations + 1, now)
        elif status is S.COMPLETED:
            event = ev.NodeCompleted(node_id, output or NodeOutput(), now, None, node.iterations)
        elif status is S.FAILED:
            event = ev.NodeFailed(node_id, error or "", now, output, None, node.iterations)
        elif status is S.SKIPPED:
            event = ev.NodeSkipped(node_id, error or node.skip_reason or "", now)
        elif status is S.MAXITER_REACHED:
            event = ev.NodeCapped(node_id, node.iterations, now)
        else:
            event = ev.NodeStatusChanged(node_id, status.value, now, error)
        await self._record_direct(execution_id, event, state)

    async def _record_direct(
        self, execution_id: str, event: ev.Event, state: ExecutionState | None = None
    ) -> None:
        if state is None:
            state = await self._current(execution_id)
        if execution_id not in self._encoder.seq:
            self._encoder.seq[execution_id] = await self._max_seq(execution_id)
        result = state.result
        apply_event(state, event)
        state.result = result  # a direct status change keeps the result the executor set
        self.record(state, event)
        await self.flush()

    async def _current(self, execution_id: str) -> ExecutionState:
        await self.flush()
        state = await self.load(execution_id)
        if state is None:
            raise ExecutionNotFoundError(f"no execution {execution_id!r} in {self.where}")
        return state

    # -- control requests ------------------------------------------------------------------

    async def request_control(
        self,
        execution_id: str,
        action: str,
        *,
        node_id: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Ask the process running `execution_id` to pause, resume, abort or skip a node;
        returns the request's id (see `control_outcome`). Any process may ask; the executor
        running the execution picks it up within a poll interval.

        The request is stored only while the execution is active (checked in the same
        transaction), so none waits for a run that has ended: raises ExecutionNotFoundError
        when there is no such execution, ControlError when it has finished."""
        action = action.lower()
        if action not in CONTROL_ACTIONS:
            raise ValueError(f"unknown control action {action!r}")
        await self.flush()
        stamp = iso(time.time())
        async with self.write_lock():
            await self.transaction(
                [
                    (
                        "INSERT INTO controls (execution_id, action, node_id, reason, "
                        "requested_at) SELECT ?,?,?,?,? WHERE EXISTS (SELECT 1 FROM executions "
                        f"WHERE id = ? AND status IN ({ACTIVE_MARKS}))",
                        [
                            (
                                execution_id,
                                action,
                                node_id,
                                reason,
                                stamp,
                                execution_id,
                                *ACTIVE_STATUSES,
                            )
                        ],
                    ),
                    *self.announce(CONTROLS, [execution_id]),
                ]
            )
            rows = await self.fetch(
                "SELECT MAX(id) FROM controls WHERE execution_id = ? AND action = ? "
                "AND requested_at = ?",
                (execution_id, action, stamp),
            )
        if rows and rows[0][0] is not None:
            return int(rows[0][0])
        found = await self.fetch("SELECT status FROM executions WHERE id = ?", (execution_id,))
        if not found:
            raise ExecutionNotFoundError(f"no execution {execution_id!r} in {self.where}")
        if found[0][0] == ExecutionStatus.QUEUED.value:
            raise ControlError(
                f"execution {execution_id} is queued, not running: nothing to {action} "
                f"(`dipeo history rm {execution_id}` takes it off the queue)"
            )
        raise ControlError(f"execution {execution_id} has already finished ({found[0][0]})")

    async def control_outcome(self, control_id: int) -> tuple[str | None, str | None]:
        """(taken_at, outcome) of a control request; None while not taken / not settled.
        A withdrawn request has no taken_at and an outcome starting with "withdrawn"."""
        rows = await self.fetch(
            "SELECT taken_at, outcome FROM controls WHERE id = ?", (int(control_id),)
        )
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    async def withdraw_control(self, control_id: int, why: str = "nobody took it") -> bool:
        """Withdraw a request nobody has taken yet, so that it is never applied later; returns
        False when a running executor took it first (its outcome then comes as usual)."""
        outcome = f"withdrawn: {why}"
        async with self.write_lock():
            await self.transaction(
                [
                    (
                        "UPDATE controls SET outcome = ? "
                        "WHERE id = ? AND taken_at IS NULL AND outcome IS NULL",
                        [(outcome, int(control_id))],
                    )
                ]
            )
        taken_at, found = await self.control_outcome(control_id)
        return taken_at is None and found == outcome

    async def take_controls(self, execution_ids: list[str]) -> list[Control]:
        """The pending requests for these executions, marked taken (the watch task's poll).
        Marking is conditional, so a request withdrawn meanwhile (or taken elsewhere) is not
        returned."""
        marks = ",".join("?" * len(execution_ids))
        rows = await self.fetch(
            "SELECT id, execution_id, action, node_id, reason, requested_at FROM controls "
            f"WHERE taken_at IS NULL AND outcome IS NULL AND execution_id IN ({marks}) "
            "ORDER BY id",
            execution_ids,
        )
        if not rows:
            return []
        stamp = iso(time.time())
        ids = [row[0] for row in rows]
        async with self.write_lock():
            await self.transaction(
                [
                    (
                        "UPDATE controls SET taken_at = ? "
                        "WHERE id = ? AND taken_at IS NULL AND outcome IS NULL",
                        [(stamp, cid) for cid in ids],
                    )
                ]
            )
            taken = {
                row[0]
                for row in await self.fetch(
                    f"SELECT id FROM controls WHERE id IN ({','.join('?' * len(ids))}) "
                    "AND taken_at = ?",
                    [*ids, stamp],
                )
            }
        return [Control(*row) for row in rows if row[0] in taken]

    def watch(
        self, execution_id: str, on_control: Callable[[Control], str | None]
    ) -> Callable[[], None]:
        """Deliver control requests for `execution_id` to `on_control` (whose return value is
        recorded as the request's outcome) and keep its heartbeat; returns the unwatch call."""
        return self._watcher.watch(execution_id, on_control)
