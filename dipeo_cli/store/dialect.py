"""The one base of SqlHistory (store/history.py) and of its parts (Queries and its Repairs,
Retention, Queue).

It declares, once, what a SQL dialect supplies (SqliteStore, PostgresStore: the connection
and the statements run on it; SQL is written with `?` placeholders) and the few methods one
part calls on another, so that each part type-checks on its own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from dipeo_cli.state import ACTIVE_STATUSES

if TYPE_CHECKING:
    from dipeo_cli.store.codec import Batch
    from dipeo_cli.store.notify import Subscription

Row = tuple[Any, ...]
# `status IN (...)` of the active statuses, with ACTIVE_STATUSES as its parameters
ACTIVE_MARKS = ",".join("?" * len(ACTIVE_STATUSES))


class Dialect:
    where: str  # the database as messages name it (a path, a URL without its password)
    # the statement writing a new execution's PENDING node rows (statements.PENDING_NODES_*)
    pending_nodes: str

    # -- what a dialect supplies -----------------------------------------------------------

    async def _connect(self) -> None:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError

    async def commit_batch(self, batch: Batch) -> None:
        raise NotImplementedError

    async def transaction(self, statements: Any) -> None:
        """Run (statement, rows) pairs in one write transaction; the caller holds the write
        lock."""
        raise NotImplementedError

    async def fetch(self, sql: str, params: Any = ()) -> list[Row]:
        raise NotImplementedError

    def explain(self, exc: BaseException) -> str:
        """One line: what went wrong with the database, and what to do about it."""
        return str(exc)

    def is_unwritable(self, exc: BaseException | None) -> bool:
        """Whether `exc` says the database cannot be written now (full, read-only)."""
        return False

    def announce(self, channel: str, execution_ids: list[str]) -> list[tuple[str, list[Any]]]:
        """Statements that announce, when their transaction commits, that these executions
        changed on `channel` (store/notify.py); none where the dialect cannot announce."""
        return []

    # -- what SqlHistory, Queries and Repairs provide to the other parts -----------------

    async def flush(self) -> None:
        raise NotImplementedError

    def write_lock(self) -> asyncio.Lock:
        raise NotImplementedError

    def subscribe(self, channel: str, execution_ids: list[str]) -> Subscription:
        raise NotImplementedError

    async def _prepare_read(self) -> None:
        raise NotImplementedError

    async def _blobs(self, texts: list[str | None], clip: int | None) -> dict[str, Any]:
        raise NotImplementedError
