"""PostgresStore: the history in a PostgreSQL database (the only module that imports asyncpg).

    async with await open_store("postgresql://user:pass@host:5432/dipeo") as store: ...

What is PostgreSQL's here: a small asyncpg connection pool (reads may run while a batch is
being written), the translation of the shared SQL's `?` placeholders into `$1, $2, ...`, and
committing a batch in one transaction with one executemany per table (asyncpg pipelines the
rows), retried when the server reports a deadlock or a serialization failure. Everything else,
the writer, the codec, reads, controls and repairs, is shared with SQLite (store/history.py).

The password in the URL is registered as a secret and masked in every message (`where`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from dipeo_cli.errors import HistoryError
from dipeo_cli.redact import mask_url_password
from dipeo_cli.store.codec import Batch
from dipeo_cli.store.history import SqlHistory
from dipeo_cli.store.notify import CHANGES, CONTROLS, QUEUE, Hub
from dipeo_cli.store.postgres_schema import migrate_postgres
from dipeo_cli.store.statements import (
    INSERT_BLOB,
    PENDING_NODES_POSTGRES,
    Statements,
    batch_statements,
)

Row = tuple[Any, ...]
POOL_SIZE = 4
CONNECT_TIMEOUT = 10.0
RETRIES = 8
# SQLSTATEs worth retrying the whole transaction for: deadlock, serialization failure.
_RETRY_STATES = {"40P01", "40001"}
# SQLSTATEs meaning "cannot be written now": disk full, read-only transaction, no privilege.
_UNWRITABLE_STATES = {"53100", "25006", "42501"}
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?")
_translated: dict[str, str] = {}


def to_postgres(sql: str) -> str:
    """`sql` with each `?` outside string literals replaced by `$1`, `$2`, ..."""
    found = _translated.get(sql)
    if found is None:
        count = 0

        def number(match: re.Match[str]) -> str:
            nonlocal count
            if match.group(0) != "?":
                return match.group(0)
            count += 1
            return f"${count}"

        found = _translated[sql] = _PLACEHOLDER.sub(number, sql)
    return found


class PostgresStore(SqlHistory):
    """The StateStore on a PostgreSQL database. Create it with `await open_store(url)`."""

    pending_nodes = PENDING_NODES_POSTGRES

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        super().__init__(where=mask_url_password(url))
        self._url = url
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Migrate the schema (one connection, under an advisory lock) and open the pool."""
        try:
            conn = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT)
            try:
                await migrate_postgres(conn)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self._url, min_size=1, max_size=self._pool_size, timeout=CONNECT_TIMEOUT
            )
            await self._listen()
        except HistoryError as exc:
            raise HistoryError(f"cannot open the history database {self.where}: {exc}") from exc
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._disconnect()
            raise HistoryError(
                f"cannot open the history database {self.where}: {self.explain(exc)}"
            ) from exc

    async def _listen(self) -> None:
        """One connection that LISTENs for announcements and wakes this process's
        subscriptions (store/notify.py)."""
        hub = self._hub = Hub()
        listener = self._listener = await asyncpg.connect(self._url, timeout=CONNECT_TIMEOUT)

        def deliver(_conn: Any, _pid: int, channel: str, payload: str) -> None:
            hub.deliver(channel, payload)

        def lost(_conn: Any) -> None:  # subscribers fall back to polling
            hub.listening = False
            hub.wake_all()

        await listener.add_listener(CHANGES, deliver)
        await listener.add_listener(CONTROLS, deliver)
        await listener.add_listener(QUEUE, deliver)
        listener.add_termination_listener(lost)
        hub.listening = True

    async def _disconnect(self) -> None:
        if self._hub is not None:
            self._hub.listening = False
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                await asyncio.wait_for(listener.close(), timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                listener.terminate()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    # -- writing ---------------------------------------------------------------------------

    async def commit_batch(self, batch: Batch) -> None:
        changed = {row[0] for row in batch.executions.values()}
        changed.update(row[0] for row in batch.events)
        async with self.write_lock():
            await self.transaction(
                [
                    *batch_statements(batch, self.pending_nodes),
                    *self.announce(CHANGES, sorted(changed)),
                ]
            )

    def announce(self, channel: str, execution_ids: list[str]) -> list[tuple[str, list[Any]]]:
        # delivered when the transaction commits, so a woken reader sees the rows
        return [("SELECT pg_notify(?, ?)", [(channel, eid) for eid in execution_ids])]

    async def transaction(self, statements: Statements) -> None:
        """Run `statements` in one transaction; retried on a deadlock or serialization failure
        (another process's batch touching the same rows). The caller holds the write lock."""
        work = []
        for sql, rows in statements:
            if not rows:
                continue
            if sql == INSERT_BLOB:  # the same order in every process: no deadlock on a hash
                rows = sorted(rows, key=lambda row: row[0])
            work.append((to_postgres(sql), rows))
        if not work:
            return
        pool = self._require_pool()
        delay = 0.01
        for attempt in range(RETRIES):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    for sql, rows in work:
                        await conn.executemany(sql, rows)
                return
            except asyncpg.PostgresError as exc:
                if exc.sqlstate not in _RETRY_STATES or attempt == RETRIES - 1:
                    raise self._write_error(exc) from exc
            except (OSError, asyncpg.InterfaceError) as exc:
                raise self._write_error(exc) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    claim_lock = " FOR UPDATE SKIP LOCKED"

    async def claim(self, sql: str, params: Any) -> list[Row]:
        """One statement returning rows, in its own transaction: with `claim_lock`, racing
        workers each lock a different queued row (or none) instead of waiting for each other."""
        pool = self._require_pool()
        async with self.write_lock():
            try:
                async with pool.acquire() as conn, conn.transaction():
                    return [tuple(row) for row in await conn.fetch(to_postgres(sql), *params)]
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise self._write_error(exc) from exc

    def _write_error(self, exc: BaseException) -> HistoryError:
        return HistoryError(
            f"could not write to the history database {self.where}: {self.explain(exc)}"
        )

    # -- reading ---------------------------------------------------------------------------

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        pool = self._require_pool()
        try:
            return [tuple(row) for row in await pool.fetch(to_postgres(sql), *params)]
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise HistoryError(
                f"cannot read the history database {self.where}: {self.explain(exc)}"
            ) from exc

    def explain(self, exc: BaseException) -> str:
        # a server's message can quote the connection string: mask it
        text = str(exc).replace(self._url, self.where) or type(exc).__name__
        if isinstance(exc, OSError | asyncio.TimeoutError) and not isinstance(
            exc, asyncpg.PostgresError
        ):
            return f"{text} (is the PostgreSQL server running and reachable?)"
        return text

    def is_unwritable(self, exc: BaseException | None) -> bool:
        return getattr(exc, "sqlstate", None) in _UNWRITABLE_STATES

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise HistoryError(f"the history store {self.where} is not open")
        return self._pool
