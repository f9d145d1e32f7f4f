"""Runs whose process died, marked FAILED ("interrupted") before every read of the history, so
that none stays RUNNING forever: on this host when the process is gone, from another host when
its heartbeat is too old. Shared by every SQL dialect (store/queries.py reads after it).
"""

from __future__ import annotations

import json
import time

from dipeo_cli.errors import HistoryError
from dipeo_cli.state import ACTIVE_STATUSES, iso, parse_iso
from dipeo_cli.store.base import (
    INTERRUPTED_ERROR,
    INTERRUPTED_NODE_ERROR,
    INTERRUPTED_SKIP_REASON,
    heartbeat_timeout,
    hostname,
    no_heartbeat_error,
    process_gone,
)
from dipeo_cli.store.dialect import ACTIVE_MARKS, Dialect
from dipeo_cli.store.notify import CHANGES
from dipeo_cli.store.rows import EVENT_COLUMNS


class Repairs(Dialect):
    async def _prepare_read(self) -> None:
        """What every read does first: drain the writer, then mark dead runs."""
        await self.flush()
        await self._repair_interrupted()

    async def _repair_interrupted(self) -> None:
        """Mark runs whose process is gone as FAILED, in the database too. Best effort: when
        the file cannot be written (a full disk, a read-only copy), reads go on and show those
        runs as they were stored."""
        try:
            await self._repair_dead_runs()
        except HistoryError as exc:
            if not self.is_unwritable(exc.__cause__):
                raise

    async def _repair_dead_runs(self) -> None:
        """On this host a run is dead when its process is; a run from another host, when its
        heartbeat (or, before the first one, its start) is older than `heartbeat_timeout()`."""
        rows = await self.fetch(
            "SELECT id, pid, process_start, host, started_at, heartbeat_at FROM executions "
            f"WHERE status IN ({ACTIVE_MARKS})",
            ACTIVE_STATUSES,
        )
        stale_before = time.time() - heartbeat_timeout()
        for eid, pid, marker, host, started_at, beat in rows:
            if process_gone(pid, marker, host):
                await self._mark_interrupted(eid, started_at, INTERRUPTED_ERROR)
            elif host != hostname():
                last = beat or started_at
                if last and _seconds(last) < stale_before:
                    await self._mark_interrupted(eid, started_at, no_heartbeat_error(host, last))

    async def _mark_interrupted(self, eid: str, started_at: str | None, error: str) -> None:
        async with self.write_lock():
            last = await self.fetch("SELECT MAX(at) FROM events WHERE execution_id = ?", (eid,))
            ended_at = last[0][0] or started_at or iso(time.time())
            duration = None
            if started_at:
                duration = round(max(0.0, parse_iso(ended_at) - parse_iso(started_at)), 6)
            payload = json.dumps({"error": error, "reason": "interrupted"})
            active = f"status IN ({ACTIVE_MARKS})"
            await self.transaction(
                [
                    (
                        f"INSERT INTO events ({EVENT_COLUMNS}) SELECT ?, "
                        "COALESCE(MAX(seq), 0) + 1, ?, 'ExecutionFinished', NULL, NULL, "
                        "'FAILED', ? FROM events WHERE execution_id = ? AND EXISTS "
                        f"(SELECT 1 FROM executions WHERE id = ? AND {active})",
                        [(eid, ended_at, payload, eid, eid, *ACTIVE_STATUSES)],
                    ),
                    (
                        "UPDATE node_iterations SET status = 'FAILED', error = ?, "
                        "ended_at = COALESCE(ended_at, ?) "
                        "WHERE execution_id = ? AND status IN ('RUNNING', 'PAUSED')",
                        [(INTERRUPTED_NODE_ERROR, ended_at, eid)],
                    ),
                    (
                        "UPDATE node_states SET status = 'FAILED', error = ?, "
                        "ended_at = COALESCE(ended_at, ?) "
                        "WHERE execution_id = ? AND status IN ('RUNNING', 'PAUSED')",
                        [(INTERRUPTED_NODE_ERROR, ended_at, eid)],
                    ),
                    (
                        "UPDATE node_states SET status = 'SKIPPED', skip_reason = ? "
                        "WHERE execution_id = ? AND status = 'PENDING'",
                        [(INTERRUPTED_SKIP_REASON, eid)],
                    ),
                    (
                        "UPDATE executions SET status = 'FAILED', error = ?, ended_at = ?, "
                        f"duration_seconds = ? WHERE id = ? AND {active}",
                        [(error, ended_at, duration, eid, *ACTIVE_STATUSES)],
                    ),
                    (  # nothing will take them now
                        "UPDATE controls SET outcome = ? "
                        "WHERE execution_id = ? AND taken_at IS NULL AND outcome IS NULL",
                        [("error: the execution was interrupted before taking this request", eid)],
                    ),
                    *self.announce(CHANGES, [eid]),
                ]
            )


def _seconds(stamp: str) -> float:
    try:
        return parse_iso(stamp)
    except ValueError:
        return time.time()  # unreadable: never a reason to fail someone else's run
