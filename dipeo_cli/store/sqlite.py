"""SqliteStore: the history database (the only module that imports aiosqlite).

How writes work: `record()` (sync, on the executor's hot path) snapshots the changed rows into
in-memory batches, keyed so that a node's later status replaces its earlier one in the same
batch, and wakes the writer task. The writer commits each batch in one short `BEGIN IMMEDIATE`
transaction with one statement per table (executemany, or one JSON array read by `json_each`
while the event loop is busy), and retries the whole batch with backoff while SQLite says the
database is locked, so several `dipeo run` processes can share one file.

When: as soon as the event loop goes quiet for BATCH_DELAY (it waits on I/O), on `flush()`, or
when a batch gets too old or too big. A busy loop is left alone because a writer thread
competing for the GIL slows both sides (see `_wait_for_quiet`).

A write that fails for any other reason than a lock is kept and raised as HistoryError by
`flush()` and `close()`; later rows are dropped rather than written out of order. Every SQLite
or OS error leaves this module as a one-line HistoryError naming the file, what went wrong
and what to do (`_explain`): a full disk, a damaged file, a directory, a read-only folder.

The database runs in WAL mode with `synchronous=NORMAL` and a busy timeout. A store belongs to
the event loop that opened it; close it (or use `async with`) before the loop ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from dipeo_cli import events as ev
from dipeo_cli.errors import ExecutionNotFoundError, HistoryError
from dipeo_cli.redact import dump_redacted, redact, refresh_secrets
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
from dipeo_cli.store.base import (
    INTERRUPTED_ERROR,
    INTERRUPTED_NODE_ERROR,
    INTERRUPTED_SKIP_REASON,
    ambiguous_message,
    apply_execution_status,
    apply_node_status,
    hostname,
    node_event_type,
    not_found_message,
    own_process_marker,
    process_gone,
)
from dipeo_cli.store.migrations import migrate

# Several processes share the file: wait this long for the write lock inside SQLite, then keep
# retrying the batch ourselves (with backoff) for `retry_for` seconds before giving up.
BUSY_TIMEOUT = 30.0
RETRY_FOR = 120.0
# The writer commits once no row arrived for BATCH_DELAY seconds, when the batch is
# MAX_BATCH_ROWS events or MAX_LATENCY (NEW_RUN_LATENCY) seconds old, or on flush()
# (see _wait_for_quiet).
BATCH_DELAY = 0.002
MAX_BATCH_ROWS = 20_000
MAX_LATENCY = 1.0
NEW_RUN_LATENCY = 0.1

_EXECUTION_COLUMNS = (
    "id, status, diagram_id, diagram_path, started_at, ended_at, duration_seconds, error, "
    "variables, token_usage, result, pid, process_start, host, parent_id"
)
_UPSERT_EXECUTION = f"""
INSERT INTO executions ({_EXECUTION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT(id) DO UPDATE SET
    status = excluded.status, diagram_id = excluded.diagram_id,
    diagram_path = COALESCE(excluded.diagram_path, executions.diagram_path),
    started_at = excluded.started_at, ended_at = excluded.ended_at,
    duration_seconds = excluded.duration_seconds, error = excluded.error,
    variables = excluded.variables, token_usage = excluded.token_usage, result = excluded.result,
    pid = excluded.pid, process_start = excluded.process_start, host = excluded.host,
    parent_id = COALESCE(excluded.parent_id, executions.parent_id)
"""
_NODE_COLUMNS = (
    "execution_id, node_id, label, type, status, started_at, ended_at, error, skip_reason, "
    "token_usage, iterations"
)
_UPSERT_NODE = f"""
INSERT INTO node_states ({_NODE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT(execution_id, node_id) DO UPDATE SET
    label = excluded.label, type = excluded.type, status = excluded.status,
    started_at = excluded.started_at, ended_at = excluded.ended_at, error = excluded.error,
    skip_reason = excluded.skip_reason, token_usage = excluded.token_usage,
    iterations = excluded.iterations
"""
_UPSERT_OUTPUT = """
INSERT INTO node_outputs (execution_id, node_id, value, metadata) VALUES (?,?,?,?)
ON CONFLICT(execution_id, node_id) DO UPDATE SET
    value = excluded.value, metadata = excluded.metadata
"""
_INSERT_EVENT = """
INSERT INTO events (execution_id, seq, at, type, node_id, status, payload)
VALUES (?,?,?,?,?,?,?)
"""
_ACTIVE = ("STARTED", "RUNNING")


def _bulk_form(sql: str) -> str:
    """The same INSERT taking all rows as one JSON array of arrays: `json_each(?)`."""
    head, values = sql.split("VALUES", 1)
    count = values[: values.index(")")].count("?")
    rest = values[values.index(")") + 1 :]
    columns = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(count))
    # "WHERE true" keeps SQLite from reading ON CONFLICT as part of the SELECT (upsert docs)
    return f"{head}SELECT {columns} FROM json_each(?) WHERE true{rest}"


_BULK = {
    sql: _bulk_form(sql) for sql in (_UPSERT_EXECUTION, _UPSERT_NODE, _UPSERT_OUTPUT, _INSERT_EVENT)
}
_BULK_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

Row = tuple[Any, ...]


class SqliteStore:
    """The StateStore on one SQLite file. Create it with `await open_store(path)`."""

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        retry_for: float = RETRY_FOR,
        batch_delay: float = BATCH_DELAY,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._retry_for = retry_for
        self._batch_delay = batch_delay
        self._db: aiosqlite.Connection | None = None
        self._writer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        # the queued batch
        self._executions: dict[str, Row] = {}
        self._nodes: dict[tuple[str, str], Row] = {}
        self._outputs: dict[tuple[str, str], Row] = {}
        self._events: list[Row] = []
        self._seq: dict[str, int] = {}
        self._writing = False
        self._flushing = 0
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._delay: asyncio.Future[None] | None = None
        self._new_run = False
        self._json_each = False
        self._error: BaseException | None = None
        self._stopping = False
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> SqliteStore:
        """Create the parent directory, migrate the schema, connect and start the writer.

        Raises HistoryError when the file cannot be used: not a database, damaged, written by
        a newer dipeo (a migration this version does not know), a directory, not writable.
        """
        refresh_secrets()
        if str(self.path) == ":memory:":
            # the migrating connection and the writer's would each get their own, empty one
            raise HistoryError(
                "an in-memory database (:memory:) cannot hold a SqliteStore; use MemoryStore"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(_prepare_database, self.path, self._busy_timeout)
            connection = aiosqlite.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None
            )
            # aiosqlite's worker thread is not a daemon: a store left open (a crash whose
            # traceback keeps it alive) would hang the interpreter at exit. Committed rows are
            # safe either way (WAL), and an unfinished run is reported as interrupted.
            thread = getattr(connection, "_thread", None)
            if thread is not None:
                thread.daemon = True
            self._db = await connection
            await self._db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            await self._db.execute("PRAGMA synchronous = NORMAL")
            # Test seam: past this many pages SQLite fails with SQLITE_FULL exactly as it does
            # on a full disk (see tests/test_history_failures.py). The limit is per connection.
            max_pages = os.environ.get("DIPEO_SQLITE_MAX_PAGES", "")
            if max_pages.isdigit():
                await self._db.execute(f"PRAGMA max_page_count = {int(max_pages)}")
            try:
                await self._db.execute_fetchall(
                    "SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')"
                )
                self._json_each = True
            except sqlite3.OperationalError:  # an SQLite built without JSON functions
                self._json_each = False
        except (OSError, sqlite3.Error, HistoryError) as exc:
            if self._db is not None:
                await self._db.close()
                self._db = None
            raise HistoryError(
                f"cannot open the history database {self.path}: {_explain(self.path, exc)}"
            ) from exc
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._writer = asyncio.create_task(self._write_loop(), name="dipeo-history-writer")
        return self

    async def flush(self) -> None:
        await self._drain()
        self._raise_if_failed()

    async def close(self) -> None:
        """Flush, stop the writer and close the connection; raise HistoryError if a write
        failed. Closing twice is harmless."""
        if self._closed:
            return
        try:
            await self._drain()
        finally:
            self._closed = True
            self._stopping = True
            if self._writer is not None:
                assert self._wake is not None
                self._wake.set()
                await asyncio.gather(self._writer, return_exceptions=True)
            if self._db is not None:
                await self._db.close()
                self._db = None
        self._raise_if_failed()

    async def __aenter__(self) -> SqliteStore:
        if self._db is None:
            await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- the hot path ----------------------------------------------------------------------

    def record(self, state: ExecutionState, event: ev.Event) -> None:
        """Queue the rows `event` changed; call right after `apply_event(state, event)`."""
        if self._closed or self._wake is None:
            raise HistoryError(f"the history store {self.path} is closed (or was never opened)")
        eid = state.id
        seq = self._seq.get(eid, 0) + 1
        self._seq[eid] = seq
        kind = type(event)
        if kind is ev.NodeStarted:
            node = state.node_states[event.node_id]
            self._nodes[(eid, event.node_id)] = _node_row(eid, event.node_id, node)
            payload = f'{{"iteration":{int(event.iteration)}}}'
            self._events.append(
                (eid, seq, node.started_at, "NodeStarted", event.node_id, "RUNNING", payload)
            )
        elif kind is ev.NodeCompleted or kind is ev.NodeFailed:
            nid = event.node_id
            node = state.node_states[nid]
            self._nodes[(eid, nid)] = _node_row(eid, nid, node)
            output = event.output
            if output is not None:
                self._outputs[(eid, nid)] = _output_row(eid, nid, output)
            payload = None
            if kind is ev.NodeFailed:
                payload = dump_redacted({"error": event.error})
            self._events.append(
                (eid, seq, node.ended_at, kind.__name__, nid, _value(node.status), payload)
            )
        elif kind is ev.NodeSkipped or kind is ev.NodeCapped:
            nid = event.node_id
            node = state.node_states[nid]
            self._nodes[(eid, nid)] = _node_row(eid, nid, node)
            if kind is ev.NodeSkipped:
                payload = dump_redacted({"reason": event.reason})
            else:
                payload = f'{{"max_iteration":{int(event.max_iteration)}}}'
            self._events.append(
                (eid, seq, iso(event.at), kind.__name__, nid, _value(node.status), payload)
            )
        elif kind is ev.ExecutionStarted:
            self._new_run = True
            self._executions[eid] = _execution_row(state)
            nodes = self._nodes
            for nid, node in state.node_states.items():
                nodes[(eid, nid)] = _node_row(eid, nid, node)
            self._events.append(
                (eid, seq, state.started_at, "ExecutionStarted", None, _value(state.status), None)
            )
        elif kind is ev.ExecutionFinished:
            self._executions[eid] = _execution_row(state)
            details = {"error": event.error, "reason": event.reason}
            payload = dump_redacted({k: v for k, v in details.items() if v is not None} or None)
            self._events.append(
                (eid, seq, state.ended_at, "ExecutionFinished", None, _value(state.status), payload)
            )
        else:
            # an event this store does not know yet: log it, never fail the run over it
            nid = getattr(event, "node_id", None)
            node = state.node_states.get(nid) if nid is not None else None
            if node is not None:
                self._nodes[(eid, nid)] = _node_row(eid, nid, node)
            status = _value(node.status) if node is not None else None
            at = getattr(event, "at", None)
            self._events.append(
                (eid, seq, iso(at) if at else None, kind.__name__, nid, status, None)
            )
        self._wake.set()

    # -- direct writes (not the hot path) --------------------------------------------------

    async def create_execution(
        self,
        state: ExecutionState,
        *,
        diagram_path: str | None = None,
        parent_id: str | None = None,
    ) -> None:
        eid = state.id
        rows_nodes = [_node_row(eid, nid, node) for nid, node in state.node_states.items()]
        rows_outputs = [_output_row(eid, nid, out) for nid, out in state.node_outputs.items()]
        await self.flush()
        async with self._write_lock():
            await self._transaction(
                [
                    (_UPSERT_EXECUTION, [_execution_row(state, diagram_path, parent_id)]),
                    (_UPSERT_NODE, rows_nodes),
                    (_UPSERT_OUTPUT, rows_outputs),
                ]
            )
            if eid not in self._seq:
                self._seq[eid] = await self._max_seq(eid)

    async def update_execution_status(
        self, execution_id: str, status: ExecutionStatus, *, error: str | None = None
    ) -> None:
        await self.flush()
        async with self._write_lock():
            state = await self._load(execution_id, with_nodes=False)
            if state is None:
                raise ExecutionNotFoundError(f"no execution {execution_id!r} in {self.path}")
            now = iso(time.time())
            apply_execution_status(state, status, error, now)
            seq = await self._next_seq(execution_id)
            kind = "ExecutionFinished" if state.status.is_final else "ExecutionStatusChanged"
            payload = dump_redacted({"error": error}) if error is not None else None
            await self._transaction(
                [
                    (
                        "UPDATE executions SET status = ?, error = ?, ended_at = ?, "
                        "duration_seconds = ? WHERE id = ?",
                        [
                            (
                                state.status.value,
                                _redact_opt(state.error),
                                state.ended_at,
                                state.duration_seconds,
                                execution_id,
                            )
                        ],
                    ),
                    (
                        _INSERT_EVENT,
                        [(execution_id, seq, now, kind, None, state.status.value, payload)],
                    ),
                ]
            )

    async def update_node_status(
        self,
        execution_id: str,
        node_id: str,
        status: NodeExecutionStatus,
        output: NodeOutput | None = None,
        *,
        error: str | None = None,
    ) -> None:
        await self.flush()
        async with self._write_lock():
            if not await self._fetch("SELECT 1 FROM executions WHERE id = ?", (execution_id,)):
                raise ExecutionNotFoundError(f"no execution {execution_id!r} in {self.path}")
            rows = await self._fetch(
                f"SELECT {_NODE_COLUMNS} FROM node_states WHERE execution_id = ? AND node_id = ?",
                (execution_id, node_id),
            )
            node = _node_from_row(rows[0]) if rows else NodeState()
            now = iso(time.time())
            apply_node_status(node, status, error, now)
            seq = await self._next_seq(execution_id)
            payload = dump_redacted({"error": error}) if error is not None else None
            statements: list[tuple[str, Sequence[Row]]] = [
                (_UPSERT_NODE, [_node_row(execution_id, node_id, node)]),
                (
                    _INSERT_EVENT,
                    [
                        (
                            execution_id,
                            seq,
                            now,
                            node_event_type(node.status),
                            node_id,
                            node.status.value,
                            payload,
                        )
                    ],
                ),
            ]
            if output is not None:
                statements.append((_UPSERT_OUTPUT, [_output_row(execution_id, node_id, output)]))
            await self._transaction(statements)

    # -- reads -----------------------------------------------------------------------------

    async def get_execution(self, execution_id: str) -> ExecutionState | None:
        await self._prepare_read()
        return await self._load(execution_id)

    async def find_execution(self, id_or_prefix: str) -> ExecutionState:
        await self._prepare_read()
        wanted = id_or_prefix.strip()
        if wanted == "latest":
            rows = await self._fetch(
                "SELECT id FROM executions WHERE parent_id IS NULL "
                "ORDER BY started_at DESC, rowid DESC LIMIT 1"
            )
            if not rows:
                raise ExecutionNotFoundError(f"no executions recorded yet in {self.path}")
        elif not wanted:
            raise ExecutionNotFoundError("an empty execution id matches nothing")
        else:
            rows = await self._fetch("SELECT id FROM executions WHERE id = ?", (wanted,))
            if not rows:
                rows = await self._fetch(
                    f"SELECT {_EXECUTION_COLUMNS} FROM executions "
                    "WHERE id LIKE ? ESCAPE '\\' ORDER BY started_at DESC, rowid DESC LIMIT 11",
                    (_like_prefix(wanted),),
                )
            if not rows:
                raise ExecutionNotFoundError(not_found_message(wanted))
            if len(rows) > 1:
                candidates = [_state_from_row(row) for row in rows[:10]]
                raise ExecutionNotFoundError(
                    ambiguous_message(wanted, candidates, more=len(rows) > 10)
                )
        state = await self._load(rows[0][0])
        if state is None:  # deleted between the two queries
            raise ExecutionNotFoundError(not_found_message(wanted))
        return state

    async def list_executions(
        self,
        *,
        limit: int = 20,
        status: ExecutionStatus | None = None,
        diagram: str | None = None,
        parent_id: str | None = None,
    ) -> list[ExecutionState]:
        await self._prepare_read()
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(_value(ExecutionStatus(status)))
        if diagram:
            pattern = f"%{_like_escape(diagram)}%"
            where.append("(diagram_id LIKE ? ESCAPE '\\' OR diagram_path LIKE ? ESCAPE '\\')")
            params += [pattern, pattern]
        if parent_id is not None:
            where.append("parent_id = ?")
            params.append(parent_id)
        sql = f"SELECT {_EXECUTION_COLUMNS} FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        params.append(int(limit) if limit is not None and limit >= 0 else -1)
        states = [_state_from_row(row) for row in await self._fetch(sql, params)]
        # Node states (not outputs) too, so a listing can say how many nodes completed.
        by_id = {state.id: state for state in states}
        if by_id:
            marks = ",".join("?" * len(by_id))
            for row in await self._fetch(
                f"SELECT {_NODE_COLUMNS} FROM node_states WHERE execution_id IN ({marks}) "
                "ORDER BY rowid",
                list(by_id),
            ):
                by_id[row[0]].node_states[row[1]] = _node_from_row(row)
        return states

    async def get_events(self, execution_id: str) -> list[dict[str, Any]]:
        await self._prepare_read()
        rows = await self._fetch(
            "SELECT execution_id, seq, at, type, node_id, status, payload FROM events "
            "WHERE execution_id = ? ORDER BY seq, id",
            (execution_id,),
        )
        return [
            {
                "execution_id": row[0],
                "seq": row[1],
                "at": row[2],
                "type": row[3],
                "node_id": row[4],
                "status": row[5],
                "payload": _loads(row[6]),
            }
            for row in rows
        ]

    # -- internals: the writer -------------------------------------------------------------

    def _has_pending(self) -> bool:
        return bool(self._events or self._executions or self._nodes or self._outputs)

    async def _write_loop(self) -> None:
        assert self._wake is not None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._has_pending():
                    if self._error is not None:
                        self._take_batch()  # written out of order would be worse than lost
                        break
                    self._writing = True
                    busy = await self._wait_for_quiet() if self._batch_delay else False
                    statements = self._take_batch()
                    try:
                        async with self._write_lock():
                            await self._transaction(statements, bulk=busy)
                    except Exception as exc:
                        self._error = exc
                    finally:
                        self._writing = False
                self._notify_idle()
                if self._stopping:
                    return
        except BaseException as exc:
            if self._error is None:
                self._error = exc
            self._writing = False
            self._notify_idle()
            raise

    async def _wait_for_quiet(self) -> bool:
        """Hold the batch while the executor keeps producing rows.

        Committing from aiosqlite's thread while the event loop is busy makes both fight over
        the GIL (measured: a 1,000-node chain took 70 us/node writing as it went, 50 us/node
        writing at the end). So rows are held until no new one arrived for `batch_delay`
        seconds (the loop is waiting on I/O, as with LLM calls), a flush is requested, the
        batch reaches MAX_BATCH_ROWS, or its oldest row is MAX_LATENCY seconds old
        (NEW_RUN_LATENCY when it holds a new run, so that a run killed early still shows up,
        as interrupted; committing it at once cost a 1,000-node chain 12 us/node).
        Returns True when the loop is still busy (the batch is written in bulk).
        """
        loop = asyncio.get_running_loop()
        oldest = loop.time()
        while not self._flushing and not self._stopping:
            seen = len(self._events)
            latency = NEW_RUN_LATENCY if self._new_run else MAX_LATENCY
            if seen >= MAX_BATCH_ROWS or loop.time() - oldest >= latency:
                return True
            self._delay = waiter = loop.create_future()
            handle = loop.call_later(self._batch_delay, _resolve, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self._delay = None
            if len(self._events) == seen:
                return False
        return False

    def _take_batch(self) -> list[tuple[str, Sequence[Row]]]:
        statements: list[tuple[str, Sequence[Row]]] = [
            (_UPSERT_EXECUTION, list(self._executions.values())),
            (_UPSERT_NODE, list(self._nodes.values())),
            (_UPSERT_OUTPUT, list(self._outputs.values())),
            (_INSERT_EVENT, self._events),
        ]
        self._executions = {}
        self._nodes = {}
        self._outputs = {}
        self._events = []
        self._new_run = False
        return statements

    def _notify_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _drain(self) -> None:
        """Wait until everything recorded so far is committed (or the writer failed)."""
        if self._writer is None:
            return
        self._flushing += 1
        if self._delay is not None:
            _resolve(self._delay)
        try:
            while (self._has_pending() or self._writing) and not self._writer.done():
                waiter = asyncio.get_running_loop().create_future()
                self._idle_waiters.append(waiter)
                assert self._wake is not None
                self._wake.set()
                await asyncio.wait([waiter, self._writer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._flushing -= 1

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            exc = self._error
            if isinstance(exc, HistoryError):  # raised by _transaction, already explained
                raise HistoryError(str(exc)) from exc
            raise HistoryError(
                f"could not write to the history database {self.path}: {_explain(self.path, exc)}"
            ) from exc
        if self._writer is not None and self._writer.done() and not self._stopping:
            raise HistoryError(f"the history writer for {self.path} stopped unexpectedly")

    def _write_lock(self) -> asyncio.Lock:
        if self._lock is None or self._db is None:
            raise HistoryError(f"the history store {self.path} is not open")
        return self._lock

    async def _transaction(
        self, statements: Iterable[tuple[str, Sequence[Row]]], *, bulk: bool = False
    ) -> None:
        """Run `statements` in one BEGIN IMMEDIATE transaction, retrying while locked.
        The caller holds the write lock.

        `bulk` (used while the event loop is busy) sends each table's rows as one JSON array
        read by `json_each`, so SQLite inserts them without taking the GIL once per row;
        executemany is faster when nothing competes for the GIL (measured 2.5 vs 4 us/row).
        """
        db = self._db
        assert db is not None
        work: list[tuple[str, Sequence[Any], bool]] = []
        for sql, rows in statements:
            if not rows:
                continue
            bulk_sql = _BULK.get(sql) if bulk and self._json_each and len(rows) > 1 else None
            if bulk_sql is not None:
                try:
                    work.append((bulk_sql, (_BULK_ENCODER.encode(rows),), False))
                    continue
                except ValueError:  # NaN or infinity in a row: JSON cannot carry it
                    pass
            work.append((sql, rows, True))
        if not work:
            return
        deadline = time.monotonic() + self._retry_for
        delay = 0.01
        while True:
            try:
                await db.execute("BEGIN IMMEDIATE")
                for sql, params, many in work:
                    if many:
                        await db.executemany(sql, params)
                    else:
                        await db.execute(sql, params)
                await db.execute("COMMIT")
                return
            except sqlite3.Error as exc:
                await self._rollback()
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise HistoryError(
                        f"could not write to the history database {self.path}: "
                        f"{_explain(self.path, exc)}"
                    ) from exc
            except BaseException:
                await self._rollback()
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _rollback(self) -> None:
        db = self._db
        if db is not None and db.in_transaction:
            try:
                await db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    # -- internals: reads ------------------------------------------------------------------

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        db = self._db
        if db is None:
            raise HistoryError(f"the history store {self.path} is not open")
        try:
            return list(await db.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise HistoryError(
                f"cannot read the history database {self.path}: {_explain(self.path, exc)}"
            ) from exc

    async def _prepare_read(self) -> None:
        """Reads see everything recorded before them, and never a dead run as RUNNING."""
        await self._drain()
        await self._repair_interrupted()

    async def _load(self, execution_id: str, *, with_nodes: bool = True) -> ExecutionState | None:
        rows = await self._fetch(
            f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
        )
        if not rows:
            return None
        state = _state_from_row(rows[0])
        if with_nodes:
            for row in await self._fetch(
                f"SELECT {_NODE_COLUMNS} FROM node_states WHERE execution_id = ? ORDER BY rowid",
                (execution_id,),
            ):
                state.node_states[row[1]] = _node_from_row(row)
            for nid, value, metadata in await self._fetch(
                "SELECT node_id, value, metadata FROM node_outputs "
                "WHERE execution_id = ? ORDER BY rowid",
                (execution_id,),
            ):
                state.node_outputs[nid] = NodeOutput(
                    value=_loads(value) or {}, metadata=_loads(metadata) or {}
                )
        return state

    async def _max_seq(self, execution_id: str) -> int:
        rows = await self._fetch(
            "SELECT MAX(seq) FROM events WHERE execution_id = ?", (execution_id,)
        )
        return int(rows[0][0] or 0)

    async def _next_seq(self, execution_id: str) -> int:
        if execution_id not in self._seq:
            current = await self._max_seq(execution_id)
            self._seq[execution_id] = max(current, self._seq.get(execution_id, 0))
        self._seq[execution_id] += 1
        return self._seq[execution_id]

    async def _repair_interrupted(self) -> None:
        """Mark runs whose process is gone as FAILED, in the database too.

        Best effort: when the file cannot be written (a full disk, a read-only copy), reads
        go on and show those runs as they were stored."""
        try:
            await self._mark_interrupted()
        except HistoryError as exc:
            if not _is_unwritable(exc.__cause__):
                raise

    async def _mark_interrupted(self) -> None:
        rows = await self._fetch(
            "SELECT id, pid, process_start, host, started_at FROM executions "
            "WHERE status IN (?, ?)",
            _ACTIVE,
        )
        dead = [row for row in rows if process_gone(row[1], row[2], row[3])]
        if not dead:
            return
        async with self._write_lock():
            for eid, _pid, _marker, _host, started_at in dead:
                last = await self._fetch(
                    "SELECT MAX(at) FROM events WHERE execution_id = ?", (eid,)
                )
                ended_at = last[0][0] or started_at or iso(time.time())
                duration = None
                if started_at:
                    duration = round(max(0.0, parse_iso(ended_at) - parse_iso(started_at)), 6)
                payload = json.dumps({"error": INTERRUPTED_ERROR, "reason": "interrupted"})
                await self._transaction(
                    [
                        (
                            "INSERT INTO events (execution_id, seq, at, type, node_id, status, "
                            "payload) SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, "
                            "'ExecutionFinished', NULL, 'FAILED', ? FROM events "
                            "WHERE execution_id = ? AND EXISTS (SELECT 1 FROM executions "
                            "WHERE id = ? AND status IN ('STARTED', 'RUNNING'))",
                            [(eid, ended_at, payload, eid, eid)],
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
                            "duration_seconds = ? WHERE id = ? AND status IN ('STARTED', 'RUNNING')",
                            [(INTERRUPTED_ERROR, ended_at, duration, eid)],
                        ),
                    ]
                )


# -- rows ----------------------------------------------------------------------------------


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _value(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


def _redact_opt(text: str | None) -> str | None:
    return redact(text) if text else text


def _dump_opt(obj: Any) -> str | None:
    return None if obj is None else dump_redacted(obj)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _node_row(eid: str, nid: str, node: NodeState) -> Row:
    usage = node.token_usage
    return (
        eid,
        nid,
        node.label,
        node.type,
        _value(node.status),
        node.started_at,
        node.ended_at,
        redact(node.error) if node.error else node.error,
        redact(node.skip_reason) if node.skip_reason else node.skip_reason,
        usage.model_dump_json() if usage is not None else None,
        node.iterations,
    )


def _output_row(eid: str, nid: str, output: NodeOutput) -> Row:
    metadata = output.metadata
    return (
        eid,
        nid,
        dump_redacted(output.value),
        dump_redacted(metadata) if metadata else "{}",
    )


def _execution_row(
    state: ExecutionState, diagram_path: str | None = None, parent_id: str | None = None
) -> Row:
    return (
        state.id,
        _value(state.status),
        state.diagram_id,
        diagram_path,
        state.started_at,
        state.ended_at,
        state.duration_seconds,
        _redact_opt(state.error),
        dump_redacted(state.variables),
        state.token_usage.model_dump_json(),
        _dump_opt(state.result),
        os.getpid(),
        own_process_marker(),
        hostname(),
        parent_id or state.parent_id,
    )


def _state_from_row(row: Row) -> ExecutionState:
    (eid, status, diagram_id, _path, started_at, ended_at, duration, error, variables,
     token_usage, result, _pid, _marker, _host, parent_id) = row  # fmt: skip
    status = ExecutionStatus(status)
    return ExecutionState(
        id=eid,
        status=status,
        diagram_id=diagram_id,
        started_at=started_at or "",
        ended_at=ended_at,
        token_usage=TokenUsage.model_validate(_loads(token_usage) or {}),
        error=error,
        variables=_loads(variables) or {},
        duration_seconds=duration,
        is_active=not status.is_final,
        result=_loads(result),
        parent_id=parent_id,
    )


def _node_from_row(row: Row) -> NodeState:
    (_eid, _nid, label, type_, status, started_at, ended_at, error, skip_reason, token_usage,
     iterations) = row  # fmt: skip
    usage = _loads(token_usage)
    return NodeState(
        status=NodeExecutionStatus(status),
        started_at=started_at,
        ended_at=ended_at,
        error=error,
        skip_reason=skip_reason,
        token_usage=TokenUsage.model_validate(usage) if usage is not None else None,
        label=label or "",
        type=type_ or "",
        iterations=iterations or 0,
    )


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like_prefix(text: str) -> str:
    return _like_escape(text) + "%"


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(exc).lower()
    return "locked" in message or "busy" in message


# What to do about an SQLite error that is not a passing lock, by primary result code.
_DAMAGED = (
    "the file is damaged or is not a dipeo history: move it aside (dipeo then starts a new "
    "one) or use another file"
)
_ADVICE = {
    sqlite3.SQLITE_FULL: "free some space (the executions already recorded are intact)",
    sqlite3.SQLITE_CORRUPT: _DAMAGED,
    sqlite3.SQLITE_NOTADB: _DAMAGED,
    sqlite3.SQLITE_READONLY: "check that the file and its directory are writable",
    sqlite3.SQLITE_PERM: "check that the file and its directory are writable",
    sqlite3.SQLITE_CANTOPEN: "check that its directory exists and is writable",
    sqlite3.SQLITE_IOERR: "the disk or file system failed; check it",
}


def _explain(path: Path, exc: BaseException) -> str:
    """One line: what went wrong with the history file at `path`, and what to do about it."""
    if isinstance(exc, sqlite3.Error):
        if path.is_dir():
            return "it is a directory; give the path of a database file"
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        advice = _ADVICE.get(code)
        return f"{exc}; {advice}" if advice else str(exc)
    if isinstance(exc, OSError):
        # mkdir of the parent: a file in the way, or a folder we may not write in
        blocker = next((p for p in path.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            return f"{blocker} is not a directory"
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where} (check that its directory exists and is writable)"
    return str(exc)


def _is_unwritable(exc: BaseException | None) -> bool:
    """True for an error that says the file cannot be written now, not that it is broken."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    return code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM)


def _prepare_database(path: Path, busy_timeout: float) -> None:
    """Switch the file to WAL mode and apply pending migrations (runs in a worker thread)."""
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        deadline = time.monotonic() + RETRY_FOR
        delay = 0.01
        while True:
            try:
                db.execute("PRAGMA journal_mode = WAL")
                migrate(db)
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    finally:
        db.close()
