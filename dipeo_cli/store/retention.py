"""Removing executions from the history, and what the history holds (shared by every dialect).

An execution is removed with everything that belongs to it: its node states, iterations,
events and control requests, the sub-diagram runs it started (recursively), and the stored
values (blobs) nothing else refers to any more. An execution that is active (STARTED,
RUNNING, PAUSED) is never removed, nor is any tree that holds one: a process is writing it.
Runs whose process died are marked FAILED first (the reads' repair), so they can go.

A dialect supplies `forget_search(ids)` (extra statements for its search index),
`reclaim_space()` (give the freed pages back to the file system) and `database_size()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dipeo_cli.state import ACTIVE_STATUSES, ExecutionState, ExecutionStatus
from dipeo_cli.store.codec import REF_KEY, refs_in
from dipeo_cli.store.dialect import Dialect, Row
from dipeo_cli.store.rows import EXECUTION_COLUMNS, state_from_row

CHUNK = 500  # ids per IN (...) list: well under every dialect's limit on parameters
# The columns that may hold a reference to a blob (store/codec.py: values stored once).
_REF_COLUMNS = {
    "executions": ("variables", "result", "diagram_source"),
    "node_iterations": ("value", "metadata"),
}


@dataclass
class Removal:
    """What a removal took (or, with dry_run, would take) away."""

    removed: list[ExecutionState] = field(default_factory=list)  # top-level ones, newest first
    children: int = 0  # sub-diagram runs removed with them
    refused: list[ExecutionState] = field(default_factory=list)  # active, or holding one
    blobs: int = 0
    reclaimed: bool = False  # the file was compacted after the removal


@dataclass
class HistoryStats:
    executions: int
    by_status: dict[str, int]
    top_level: int
    oldest: str | None
    newest: str | None
    size_bytes: int | None
    blobs: int


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]


def _marks(items: list[Any]) -> str:
    return ",".join("?" * len(items))


class Retention(Dialect):
    """Mixin of SqlHistory: `remove`, `prune`, `stats`."""

    def forget_search(self, ids: list[str]) -> list[tuple[str, list[Row]]]:
        return []

    async def reclaim_space(self) -> bool:
        return False

    async def database_size(self) -> int | None:
        return None

    # -- choosing --------------------------------------------------------------------------

    async def prune_candidates(
        self,
        *,
        before: str | None = None,
        status: ExecutionStatus | None = None,
        keep: int = 0,
    ) -> list[str]:
        """Ids of the finished top-level executions started before `before` (an ISO time as
        stored), with `status` if given, leaving out the `keep` newest of those that match
        the status."""
        await self._prepare_read()
        where = ["parent_id IS NULL"]
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(ExecutionStatus(status).value)
        rows = await self.fetch(
            "SELECT id, started_at, status FROM executions WHERE "
            + " AND ".join(where)
            + " ORDER BY started_at DESC, id DESC",
            params,
        )
        rows = rows[max(0, keep) :]
        return [
            eid
            for eid, started_at, state in rows
            if state not in ACTIVE_STATUSES and (before is None or (started_at or "") < before)
        ]

    # -- removing --------------------------------------------------------------------------

    async def remove(self, ids: list[str], *, dry_run: bool = False) -> Removal:
        """Remove these executions (full ids) and everything that belongs to them; a tree
        holding an active execution is refused whole. Then reclaim the freed space."""
        await self._prepare_read()
        result = Removal()
        doomed: list[str] = []
        for eid in dict.fromkeys(ids):
            rows = await self.fetch(
                f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?", (eid,)
            )
            if not rows:
                continue
            state = state_from_row(rows[0])
            tree = await self._tree(eid)
            active = await self.fetch(
                f"SELECT COUNT(*) FROM executions WHERE id IN ({_marks(tree)}) "
                f"AND status IN ({_marks(list(ACTIVE_STATUSES))})",
                [*tree, *ACTIVE_STATUSES],
            )
            if active[0][0]:
                result.refused.append(state)
                continue
            result.removed.append(state)
            result.children += len(tree) - 1
            doomed += [t for t in tree if t not in doomed]
        if not doomed:
            return result
        candidates = await self._blob_refs(doomed)
        if dry_run:
            result.blobs = len(candidates - await self._blob_refs_outside(doomed))
            return result
        async with self.write_lock():
            statements: list[tuple[str, list[Row]]] = []
            for chunk in _chunks(doomed):
                marks = _marks(chunk)
                for table in ("events", "controls", "node_iterations", "node_states"):
                    statements.append(
                        (f"DELETE FROM {table} WHERE execution_id IN ({marks})", [tuple(chunk)])
                    )
                statements.append((f"DELETE FROM executions WHERE id IN ({marks})", [tuple(chunk)]))
            statements += self.forget_search(doomed)
            await self.transaction(statements)
            orphans = sorted(candidates - await self._blob_refs_outside([]))
            if orphans:
                await self.transaction(
                    [
                        (f"DELETE FROM blobs WHERE hash IN ({_marks(chunk)})", [tuple(chunk)])
                        for chunk in _chunks(orphans)
                    ]
                )
            result.blobs = len(orphans)
        result.reclaimed = await self.reclaim_space()
        return result

    async def _tree(self, eid: str) -> list[str]:
        """`eid` and every execution below it (sub-diagram runs of sub-diagram runs ...)."""
        tree = [eid]
        level = [eid]
        while level:
            found: list[str] = []
            for chunk in _chunks(level):
                rows = await self.fetch(
                    f"SELECT id FROM executions WHERE parent_id IN ({_marks(chunk)})", chunk
                )
                found += [row[0] for row in rows if row[0] not in tree]
            tree += found
            level = found
        return tree

    async def _blob_refs(self, ids: list[str]) -> set[str]:
        """The blobs these executions refer to."""
        found: set[str] = set()
        for chunk in _chunks(ids):
            for table, columns in _REF_COLUMNS.items():
                key = "id" if table == "executions" else "execution_id"
                for row in await self.fetch(
                    f"SELECT {', '.join(columns)} FROM {table} WHERE {key} IN ({_marks(chunk)})",
                    chunk,
                ):
                    for text in row:
                        found.update(refs_in(text))
        return found

    async def _blob_refs_outside(self, ids: list[str]) -> set[str]:
        """The blobs referred to by the executions not in `ids` (only rows that hold a
        reference are read)."""
        found: set[str] = set()
        excluded = set(ids)
        marker = f"%{REF_KEY}%"
        for table, columns in _REF_COLUMNS.items():
            key = "id" if table == "executions" else "execution_id"
            condition = " OR ".join(f"{column} LIKE ?" for column in columns)
            for row in await self.fetch(
                f"SELECT {key}, {', '.join(columns)} FROM {table} WHERE {condition}",
                [marker] * len(columns),
            ):
                if row[0] not in excluded:
                    for text in row[1:]:
                        found.update(refs_in(text))
        return found

    # -- what is there ---------------------------------------------------------------------

    async def stats(self) -> HistoryStats:
        await self._prepare_read()
        by_status = {
            status: count
            for status, count in await self.fetch(
                "SELECT status, COUNT(*) FROM executions GROUP BY status ORDER BY status"
            )
        }
        top, oldest, newest = (
            await self.fetch(
                "SELECT COUNT(*), MIN(started_at), MAX(started_at) FROM executions "
                "WHERE parent_id IS NULL"
            )
        )[0]
        blobs = (await self.fetch("SELECT COUNT(*) FROM blobs"))[0][0]
        return HistoryStats(
            executions=sum(by_status.values()),
            by_status=by_status,
            top_level=int(top or 0),
            oldest=oldest,
            newest=newest,
            size_bytes=await self.database_size(),
            blobs=int(blobs or 0),
        )
