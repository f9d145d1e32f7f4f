"""Queued executions: runs recorded by `dipeo submit` for whichever worker is free to take.

A queued run is an `executions` row with status QUEUED holding what a worker needs to run it:
the diagram's text (`diagram_source`), its path relative to the project root
(`diagram_path`) and the variables. `take_queued` hands the oldest one to exactly one caller,
however many race for it: one statement in a write transaction turns it STARTED and stamps it
with the taker's host, pid and process marker (PostgreSQL skips the rows another transaction
has locked, `FOR UPDATE SKIP LOCKED`; SQLite's `BEGIN IMMEDIATE` lets one writer at a time
in). From then on it is an ordinary active run of that process: if the worker dies before or
while running it, the usual repair (process gone on this host, no heartbeat from another)
reports it FAILED "interrupted", so nothing stays taken forever.

The run itself records the same execution id (`runner.execute(execution_id=...)`): its
ExecutionStarted upsert turns the taken row into the running one, keeping the diagram path.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from dipeo_cli.state import ExecutionStatus, iso
from dipeo_cli.store.base import hostname, own_process_marker
from dipeo_cli.store.codec import (
    Batch,
    decode_value,
    encode_map,
    encode_value,
    masked_variables,
)
from dipeo_cli.store.dialect import Dialect, Row
from dipeo_cli.store.notify import QUEUE, Subscription
from dipeo_cli.store.statements import batch_statements

QUEUE_KEY = "queue"  # the one "execution id" queue announcements carry


@dataclass(frozen=True)
class QueuedRun:
    """What a worker needs to run a queued execution."""

    id: str
    diagram_id: str | None
    diagram_path: str | None
    diagram_source: str
    variables: dict[str, Any]


class Queue(Dialect):
    """The queue half of SqlHistory (store/history.py); a dialect supplies `claim`."""

    # the row lock clause of the claiming SELECT: PostgreSQL skips rows others hold
    claim_lock = ""

    async def claim(self, sql: str, params: Any) -> list[Row]:
        """Run one statement that returns rows in a write transaction; its rows."""
        raise NotImplementedError

    async def submit(
        self,
        execution_id: str,
        *,
        diagram_source: str,
        diagram_path: str | None,
        diagram_id: str | None,
        variables: dict[str, Any],
    ) -> None:
        """Record a QUEUED execution. Raises ValueError when a variable would be stored
        masked (a secret): a worker could only run it with *** in its place."""
        secret = masked_variables(variables)
        if secret:
            raise ValueError(
                f"variable(s) {', '.join(secret)} look secret and are never stored, so a worker "
                "could not get them: give them to the workers through their environment instead"
            )
        batch = Batch()
        row = (
            execution_id,
            ExecutionStatus.QUEUED.value,
            diagram_id,
            diagram_path,
            iso(time.time()),  # started_at: when it was queued, until a worker starts it
            None,
            None,
            None,
            encode_map(variables, batch.blobs),
            '{"input":0,"output":0,"cached":null,"total":0}',
            None,
            None,
            None,
            hostname(),
            None,
            encode_value(diagram_source, batch.blobs),
            None,
            "[]",
            None,
            None,
        )
        batch.put_execution(row)
        await self.flush()
        async with self.write_lock():
            await self.transaction(
                [*batch_statements(batch, self.pending_nodes), *self.announce(QUEUE, [QUEUE_KEY])]
            )

    async def take_queued(self) -> QueuedRun | None:
        """The oldest queued execution, now taken by this process (STARTED, with this host,
        pid and heartbeat), or None when the queue is empty. Each is taken exactly once."""
        now = iso(time.time())
        rows = await self.claim(
            "UPDATE executions SET status = ?, pid = ?, process_start = ?, host = ?, "
            "heartbeat_at = ? WHERE id = (SELECT id FROM executions WHERE status = ? "
            f"ORDER BY started_at, id LIMIT 1{self.claim_lock}) AND status = ? "
            "RETURNING id, diagram_id, diagram_path, diagram_source, variables",
            (
                ExecutionStatus.STARTED.value,
                os.getpid(),
                own_process_marker(),
                hostname(),
                now,
                ExecutionStatus.QUEUED.value,
                ExecutionStatus.QUEUED.value,
            ),
        )
        if not rows:
            return None
        eid, diagram_id, path, source, variables = rows[0]
        refs: list[str | None] = [text for text in (source, variables) if text]
        blobs = await self._blobs(refs, None) if refs else {}
        return QueuedRun(
            id=eid,
            diagram_id=diagram_id,
            diagram_path=path,
            diagram_source=decode_value(source, blobs) or "",
            variables=decode_value(variables, blobs) or {},
        )

    def queue_subscription(self) -> Subscription:
        """Woken when something is submitted (PostgreSQL); elsewhere `wait` just sleeps."""
        return self.subscribe(QUEUE, [QUEUE_KEY])
