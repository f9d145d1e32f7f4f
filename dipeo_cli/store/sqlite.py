"""SqliteStore: the history on one SQLite file (the only module that imports aiosqlite).

What is SQLite's here: the connection (WAL, `synchronous=NORMAL`, a busy timeout), the SQL of
each statement, and committing a batch in one short `BEGIN IMMEDIATE` transaction
(store/sqlite_batch.py), retried with backoff while another process holds the lock, so several
`dipeo run` processes share one file. Events become rows in `store/codec.py`; the batching
writer is `store/writer.py`; reads and direct writes are `store/history.py`, shared by every
dialect.

`:memory:` (also `MemoryStore`) keeps the history in this process only: same code, same
behaviour, nothing on disk. A store belongs to the event loop that opened it; close it (or use
`async with`) before the loop ends.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from dipeo_cli.errors import HistoryError, HistoryMissingError
from dipeo_cli.store import sqlite_batch as batches
from dipeo_cli.store.codec import Batch
from dipeo_cli.store.history import SqlHistory
from dipeo_cli.store.migrations import INDEX_FOR_SEARCH, migrate
from dipeo_cli.store.retention import CHUNK
from dipeo_cli.store.statements import PENDING_NODES_SQLITE, Statements, batch_statements
from dipeo_cli.store.writer import BATCH_DELAY

# Several processes share the file: wait this long for the write lock inside SQLite, then keep
# retrying the batch ourselves (with backoff) for `retry_for` seconds before giving up.
BUSY_TIMEOUT = 30.0
RETRY_FOR = 120.0
MEMORY = ":memory:"


def _thread_call(db: aiosqlite.Connection) -> Callable[..., Awaitable[Any]] | None:
    """aiosqlite's call that runs a function in its database thread: not public API, so
    None where a version lacks it (the transaction then goes statement by statement)."""
    call = getattr(db, "_execute", None)
    return call if callable(call) else None


Row = tuple[Any, ...]
T = TypeVar("T")


class SqliteStore(SqlHistory):
    """The StateStore on one SQLite file. Create it with `await open_store(path)`."""

    pending_nodes = PENDING_NODES_SQLITE

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout: float = BUSY_TIMEOUT,
        retry_for: float = RETRY_FOR,
        batch_delay: float = BATCH_DELAY,
        create: bool = True,
    ) -> None:
        self.in_memory = str(path) == MEMORY
        self.create = create
        self.path = Path(path)
        where = "(in memory)" if self.in_memory else str(self.path)
        super().__init__(where=where, batch_delay=batch_delay)
        self._busy_timeout = busy_timeout
        self._retry_for = retry_for
        self._db: aiosqlite.Connection | None = None
        self.full_text = False  # the FTS5 search index exists (store/migrations.py m004)

    # -- lifecycle -------------------------------------------------------------------------

    async def _connect(self) -> None:
        """Create the parent directory, migrate the schema and connect."""
        try:
            if self.in_memory:
                # A named in-memory database, so that the migrating connection sees it too.
                target: str | Path = f"file:dipeo-{uuid.uuid4().hex}?mode=memory&cache=shared"
            else:
                if not self.create and not self.path.exists():
                    # a read must not leave an empty database (or folders) behind a typo
                    raise HistoryMissingError(f"no history database at {self.path}")
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target = self.path
            if not self.in_memory:
                await asyncio.to_thread(_prepare_database, target, self._busy_timeout)
            connection = aiosqlite.connect(
                target, timeout=self._busy_timeout, isolation_level=None, uri=self.in_memory
            )
            # aiosqlite's worker thread is not a daemon: a store left open (a crash whose
            # traceback keeps it alive) would hang the interpreter at exit. Committed rows are
            # safe either way (WAL), and an unfinished run is reported as interrupted.
            thread = getattr(connection, "_thread", None)
            if thread is not None:
                thread.daemon = True
            self._db = await connection
            if self.in_memory:  # after connecting: the database lives while a connection does
                await asyncio.to_thread(_prepare_database, target, self._busy_timeout)
            await self._db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            await self._db.execute("PRAGMA synchronous = NORMAL")
            # A page cache of 1 MiB rather than SQLite's 2: a run's writes touch the last pages
            # of a few tables, reads of old runs are served by the OS's cache as well. A
            # 10,000-node run filled the 2 MiB (1.3 MiB more at its peak) for no speed gained.
            await self._db.execute("PRAGMA cache_size = -1024")
            # Test seam: past this many pages SQLite fails with SQLITE_FULL exactly as it does
            # on a full disk (see tests/test_history_failures.py). The limit is per connection.
            max_pages = os.environ.get("DIPEO_SQLITE_MAX_PAGES", "")
            if max_pages.isdigit():
                await self._db.execute(f"PRAGMA max_page_count = {int(max_pages)}")
            found = await self._db.execute_fetchall(
                "SELECT 1 FROM sqlite_master WHERE name = 'execution_search'"
            )
            self.full_text = bool(list(found))
        except HistoryMissingError:
            raise
        except (OSError, sqlite3.Error, HistoryError) as exc:
            await self._disconnect()
            raise HistoryError(
                f"cannot open the history database {self.where}: {self.explain(exc)}"
            ) from exc

    async def _disconnect(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    # -- writing ---------------------------------------------------------------------------

    async def commit_batch(self, batch: Batch) -> None:
        async with self.write_lock():
            await self.transaction(
                batch_statements(batch, self.pending_nodes), mid_run=batch.mid_run
            )

    async def transaction(self, statements: Statements, *, mid_run: bool = False) -> None:
        """Run `statements` in one BEGIN IMMEDIATE transaction, retrying while locked.
        The caller holds the write lock. `mid_run`: committed while a run goes on
        (store/sqlite_batch.py says what changes then)."""
        db = self._require_db()
        work = batches.plan(statements, mid_run=mid_run)
        if not work:
            return
        # The whole transaction in aiosqlite's thread, in one hand-off: a hand-off per
        # statement wakes the event loop and resumes this coroutine between statements (a
        # batch of 1,000 nodes is ~45 statements; measured: the commit after a 1,000-node
        # chain took 15.4 ms that way, 11.3 ms in one hand-off).
        in_thread = _thread_call(db)

        async def attempt() -> None:
            if in_thread is not None and mid_run:
                lent = batches.Lent()
                await batches.lend_the_gil(in_thread(batches.write_all, db._conn, work, lent), lent)
            elif in_thread is not None:
                await in_thread(batches.write_all, db._conn, work, None)
            else:
                await db.execute("BEGIN IMMEDIATE")
                for sql, params, many in work:
                    if many:
                        await db.executemany(sql, params)
                    else:
                        await db.execute(sql, params)
                await db.execute("COMMIT")

        await self._retry_while_busy(attempt)

    async def claim(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """One statement returning rows in a BEGIN IMMEDIATE transaction (one writer at a time
        across processes), retried while another process holds the lock."""
        db = self._require_db()

        async def attempt() -> list[Row]:
            await db.execute("BEGIN IMMEDIATE")
            rows = list(await db.execute_fetchall(sql, params))
            await db.execute("COMMIT")
            return rows  # type: ignore[return-value]

        async with self.write_lock():
            return await self._retry_while_busy(attempt)

    async def _retry_while_busy(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, a write transaction: rolled back on any error and tried again, with
        backoff, while another process holds the lock (for `retry_for` seconds at most)."""
        deadline = time.monotonic() + self._retry_for
        delay = 0.01
        while True:
            try:
                return await attempt()
            except sqlite3.Error as exc:
                await self._rollback()
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise HistoryError(
                        f"could not write to the history database {self.where}: {self.explain(exc)}"
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

    # -- search and upkeep -----------------------------------------------------------------

    async def prepare_search(self) -> None:
        """Index the finished executions the full-text index does not hold yet (a search
        pays for indexing, not every run). Where that cannot be written now (a read-only
        file, another process writing), the search reads those executions with LIKE."""
        if not self.full_text:
            return
        try:
            async with self.write_lock():
                await self.transaction([(sql, [()]) for sql in INDEX_FOR_SEARCH])
        except HistoryError:
            pass

    def search_condition(self, text: str) -> tuple[str, list[Any]]:
        """FTS5 for the indexed executions (every word, as a prefix), LIKE for the others
        (still active, or finished since the last search could index); LIKE alone where
        SQLite lacks FTS5."""
        like, params = super().search_condition(text)
        if not self.full_text:
            return like, params
        query = " ".join('"' + word.replace('"', '""') + '"*' for word in text.split())
        return (
            "(executions.id IN (SELECT execution_id FROM execution_search "
            "WHERE execution_search MATCH ?) OR (executions.id NOT IN "
            f"(SELECT execution_id FROM search_indexed) AND {like}))",
            [query, *params],
        )

    def forget_search(self, ids: list[str]) -> list[tuple[str, list[Row]]]:
        if not self.full_text:
            return []
        return [
            (f"DELETE FROM {table} WHERE execution_id IN ({','.join('?' * len(chunk))})", [chunk])
            for chunk in (tuple(ids[i : i + CHUNK]) for i in range(0, len(ids), CHUNK))
            for table in ("execution_search", "search_indexed")
        ]

    async def reclaim_space(self) -> bool:
        """Give the pages freed by a removal back to the file system: an incremental vacuum
        when the file is set up for it, else VACUUM; then empty the WAL. False when another
        process holds the database (the space is reused by later writes instead)."""
        if self.in_memory:
            return False
        db = self._require_db()
        async with self.write_lock():
            try:
                mode = list(await db.execute_fetchall("PRAGMA auto_vacuum"))[0][0]
                if mode == 2:
                    await db.execute_fetchall("PRAGMA incremental_vacuum")
                else:
                    await db.execute("VACUUM")
                await db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
                return True
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    return False
                raise HistoryError(
                    f"could not compact the history database {self.where}: {self.explain(exc)}"
                ) from exc

    async def database_size(self) -> int | None:
        if self.in_memory:
            return None
        return sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.is_file()
        )

    # -- reading ---------------------------------------------------------------------------

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        db = self._require_db()
        try:
            # tuples (no row_factory is set), though aiosqlite's stub says sqlite3.Row
            return list(await db.execute_fetchall(sql, params))  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise HistoryError(
                f"cannot read the history database {self.where}: {self.explain(exc)}"
            ) from exc

    def explain(self, exc: BaseException) -> str:
        return _explain(self.path, exc)

    def is_unwritable(self, exc: BaseException | None) -> bool:
        return _is_unwritable(exc)

    def _require_db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise HistoryError(f"the history store {self.where} is not open")
        return self._db


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


def _prepare_database(target: str | Path, busy_timeout: float) -> None:
    """Switch the file to WAL mode and apply pending migrations (runs in a worker thread);
    refuse a database written by a newer dipeo."""
    uri = isinstance(target, str)
    db = sqlite3.connect(target, timeout=busy_timeout, isolation_level=None, uri=uri)
    try:
        deadline = time.monotonic() + RETRY_FOR
        delay = 0.01
        while True:
            try:
                if not uri:
                    db.execute("PRAGMA journal_mode = WAL")
                migrate(db)  # raises HistoryError for a database from a newer dipeo
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    finally:
        db.close()
