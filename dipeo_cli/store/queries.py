"""Reads of the history, shared by every SQL dialect (written with `?` placeholders).

Every public read first drains the writer (it sees everything recorded before it) and marks
runs whose process died as FAILED "interrupted" (store/repair.py), so that none stays RUNNING
forever.
`clip=N` replaces stored values longer than N characters by their first N characters and a
note (store/codec.py `clipped`), so that printing a huge output never loads it whole.
"""

from __future__ import annotations

import json
from typing import Any

from dipeo_cli.errors import ExecutionNotFoundError
from dipeo_cli.state import ExecutionState, ExecutionStatus, TokenUsage, apply_event, new_state
from dipeo_cli.store.base import ambiguous_message, not_found_message
from dipeo_cli.store.codec import clipped, decode_value, refs_in
from dipeo_cli.store.dialect import Row
from dipeo_cli.store.repair import Repairs
from dipeo_cli.store.rows import (
    EVENT_COLUMNS,
    EXECUTION_COLUMNS,
    ITERATION_COLUMNS,
    NODE_COLUMNS,
    decode_events,
    event_dict,
    node_from_row,
    output_from,
    state_from_row,
)

# The latest output of each node: the highest iteration that has one.
_LATEST_OUTPUTS = """
SELECT node_id, value, metadata FROM node_iterations AS i
WHERE execution_id = ? AND value IS NOT NULL AND iteration = (
    SELECT MAX(iteration) FROM node_iterations AS j
    WHERE j.execution_id = i.execution_id AND j.node_id = i.node_id AND j.value IS NOT NULL)
"""


def _like(column: str) -> str:
    return f"LOWER({column}) LIKE ? ESCAPE '\\'"


# One word of `--search` without a full-text index (large outputs, kept as blobs, are not
# looked into here).
_LIKE_ANYWHERE = (
    f"({_like('executions.diagram_id')} OR {_like('executions.diagram_path')} OR "
    f"{_like('executions.error')} OR EXISTS (SELECT 1 FROM node_states AS n WHERE "
    f"n.execution_id = executions.id AND ({_like('n.label')} OR {_like('n.error')} OR "
    f"{_like('n.skip_reason')})) OR EXISTS (SELECT 1 FROM node_iterations AS i WHERE "
    f"i.execution_id = executions.id AND ({_like('i.value')} OR {_like('i.error')})))"
)


class Queries(Repairs):
    # -- executions ------------------------------------------------------------------------

    async def get_execution(
        self, execution_id: str, *, clip: int | None = None
    ) -> ExecutionState | None:
        await self._prepare_read()
        return await self.load(execution_id, clip=clip)

    async def find_execution(self, id_or_prefix: str, *, clip: int | None = None) -> ExecutionState:
        """The execution named by an id, a unique id prefix, or "latest" (the newest one a
        user started, not a sub-diagram run). Raises ExecutionNotFoundError when nothing
        matches or the prefix is ambiguous."""
        await self._prepare_read()
        wanted = id_or_prefix.strip()
        if wanted == "latest":
            rows = await self.fetch(
                "SELECT id FROM executions WHERE parent_id IS NULL "
                "ORDER BY started_at DESC NULLS LAST, id DESC LIMIT 1"
            )
            if not rows:
                raise ExecutionNotFoundError(f"no executions recorded yet in {self.where}")
        elif not wanted:
            raise ExecutionNotFoundError("an empty execution id matches nothing")
        else:
            rows = await self.fetch("SELECT id FROM executions WHERE id = ?", (wanted,))
            if not rows:
                rows = await self.fetch(
                    f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE LOWER(id) LIKE LOWER(?) ESCAPE '\\' "
                    "ORDER BY started_at DESC NULLS LAST, id DESC LIMIT 11",
                    (_like_escape(wanted) + "%",),
                )
            if not rows:
                raise ExecutionNotFoundError(not_found_message(wanted))
            if len(rows) > 1:
                candidates = [state_from_row(row) for row in rows[:10]]
                raise ExecutionNotFoundError(
                    ambiguous_message(wanted, candidates, more=len(rows) > 10)
                )
        state = await self.load(rows[0][0], clip=clip)
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
        top: bool = False,
        since: str | None = None,
        search: str | None = None,
    ) -> list[ExecutionState]:
        """Newest first, with `node_states` but without `node_outputs`. `diagram` is a
        case-insensitive substring of the diagram id or of the stored diagram path; `top` keeps
        the executions a user started (no sub-diagram runs); `since` is an ISO time (UTC, as
        stored) the execution started at or after; `search` is text found in an execution's
        errors, outputs, node labels or diagram (`search_condition`). `limit < 0`: all."""
        await self._prepare_read()
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(ExecutionStatus(status).value)
        if diagram:
            pattern = f"%{_like_escape(diagram)}%"
            # LOWER on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not
            where.append(
                "(LOWER(diagram_id) LIKE LOWER(?) ESCAPE '\\' "
                "OR LOWER(diagram_path) LIKE LOWER(?) ESCAPE '\\')"
            )
            params += [pattern, pattern]
        if parent_id is not None:
            where.append("parent_id = ?")
            params.append(parent_id)
        if top:
            where.append("parent_id IS NULL")
        if since:
            where.append("started_at >= ?")
            params.append(since)
        if search and search.strip():
            await self.prepare_search()
            condition, values = self.search_condition(search.strip())
            where.append(condition)
            params += values
        sql = f"SELECT {EXECUTION_COLUMNS} FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_at DESC NULLS LAST, id DESC"
        if limit is not None and limit >= 0:  # no LIMIT -1 / LIMIT ALL: neither is portable
            sql += " LIMIT ?"
            params.append(int(limit))
        states = [state_from_row(row) for row in await self.fetch(sql, params)]
        by_id = {state.id: state for state in states}
        if by_id:  # node states (not outputs) too, so a listing can count completed nodes
            marks = ",".join("?" * len(by_id))
            for row in await self.fetch(
                f"SELECT {NODE_COLUMNS} FROM node_states WHERE execution_id IN ({marks}) "
                "ORDER BY execution_id, position, node_id",
                list(by_id),
            ):
                by_id[row[0]].node_states[row[1]] = node_from_row(row)
        return states

    async def load(self, execution_id: str, *, clip: int | None = None) -> ExecutionState | None:
        """One execution whole (no drain, no repair)."""
        rows = await self.fetch(
            f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
        )
        if not rows:
            return None
        row = rows[0]
        outputs = await self.fetch(_LATEST_OUTPUTS, (execution_id,))
        texts = [row[8], row[10], *(t for _, v, m in outputs for t in (v, m))]
        blobs = await self._blobs(texts, clip)
        state = state_from_row(row, blobs)
        for node in await self.fetch(
            f"SELECT {NODE_COLUMNS} FROM node_states WHERE execution_id = ? "
            "ORDER BY position, node_id",
            (execution_id,),
        ):
            state.node_states[node[1]] = node_from_row(node)
        found = {nid: output_from(value, meta, blobs) for nid, value, meta in outputs}
        for nid in state.node_states:  # in the diagram's order
            if nid in found:
                state.node_outputs[nid] = found.pop(nid)
        state.node_outputs.update(found)
        return state

    async def diagram_source(self, execution_id: str) -> str | None:
        """The diagram text the execution ran, as recorded when it started."""
        rows = await self.fetch(
            "SELECT diagram_source FROM executions WHERE id = ?", (execution_id,)
        )
        if not rows or rows[0][0] is None:
            return None
        source: str = decode_value(rows[0][0], await self._blobs([rows[0][0]], None))
        return source

    async def run_record(self, execution_id: str) -> dict[str, Any]:
        """What an execution recorded about how it ran: `diagram_path`, `diagram_source`,
        `node_fingerprints` ([node id, label, fingerprint] in diagram order) and
        `secret_variables` (names of the variables stored masked)."""
        rows = await self.fetch(
            "SELECT diagram_path, diagram_source, node_fingerprints, secret_variables "
            "FROM executions WHERE id = ?",
            (execution_id,),
        )
        if not rows:
            return {}
        path, source, fingerprints, secrets = rows[0]
        blobs = await self._blobs([source], None) if source else {}
        return {
            "diagram_path": path,
            "diagram_source": decode_value(source, blobs) if source else None,
            "node_fingerprints": json.loads(fingerprints) if fingerprints else [],
            "secret_variables": json.loads(secrets) if secrets else [],
        }

    async def get_iterations(
        self, execution_id: str, node_id: str | None = None, *, clip: int | None = None
    ) -> list[dict[str, Any]]:
        """Every iteration of every node (or of one node), in the order they started: status,
        times, error, output, token usage, `inputs` (label -> [source node id, its
        iteration]) and `input_fingerprint`."""
        await self._prepare_read()
        sql = f"SELECT {ITERATION_COLUMNS} FROM node_iterations WHERE execution_id = ?"
        params: list[Any] = [execution_id]
        if node_id is not None:
            sql += " AND node_id = ?"
            params.append(node_id)
        rows = await self.fetch(
            sql + " ORDER BY started_at NULLS FIRST, node_id, iteration", params
        )
        blobs = await self._blobs([t for row in rows for t in (row[8], row[9])], clip)
        found = []
        for row in rows:
            usage = json.loads(row[10]) if row[10] else None
            found.append(
                {
                    "node_id": row[1],
                    "iteration": row[2],
                    "label": row[3],
                    "status": row[4],
                    "started_at": row[5],
                    "ended_at": row[6],
                    "error": row[7],
                    "output": (
                        output_from(row[8], row[9], blobs).model_dump(mode="json")
                        if row[8] is not None
                        else None
                    ),
                    "token_usage": TokenUsage.model_validate(usage).model_dump() if usage else None,
                    "inputs": json.loads(row[11]) if row[11] else {},
                    "input_fingerprint": row[12],
                }
            )
        return found

    # -- the event log ---------------------------------------------------------------------

    async def get_events(self, execution_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The event log of one execution in order (from sequence number `after` on): dicts
        with `execution_id`, `seq`, `at`, `type`, `node_id`, `iteration`, `status` and
        `payload` (a dict or None)."""
        await self._prepare_read()
        return [event_dict(row) for row in await self._event_rows(execution_id, after)]

    async def events_after(self, execution_id: str, seq: int) -> list[dict[str, Any]]:
        """A follower's cursor: the events with a sequence number above `seq`, without the
        repair and drain that `get_events` does (cheap to poll)."""
        return [event_dict(row) for row in await self._event_rows(execution_id, seq)]

    async def rebuild_state(self, execution_id: str) -> ExecutionState | None:
        """The state obtained by folding the stored event log with `apply_event`."""
        await self._prepare_read()
        rows = await self.fetch(
            f"SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,)
        )
        if not rows:
            return None
        iterations = await self.fetch(
            "SELECT node_id, iteration, value, metadata FROM node_iterations "
            "WHERE execution_id = ? AND value IS NOT NULL",
            (execution_id,),
        )
        texts = [rows[0][8], rows[0][10], *(t for *_, v, m in iterations for t in (v, m))]
        blobs = await self._blobs(texts, None)
        execution = state_from_row(rows[0], blobs)
        outputs = {(nid, it): output_from(v, m, blobs) for nid, it, v, m in iterations}
        events = decode_events(await self._event_rows(execution_id, 0), execution, outputs)
        if not events or not hasattr(events[0], "nodes"):
            return None
        state = new_state(events[0])  # type: ignore[arg-type]
        for event in events[1:]:
            apply_event(state, event)
        return state

    async def _event_rows(self, execution_id: str, after: int) -> list[Row]:
        return await self.fetch(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE execution_id = ? AND seq > ? ORDER BY seq",
            (execution_id, int(after)),
        )

    async def _max_seq(self, execution_id: str) -> int:
        rows = await self.fetch(
            "SELECT MAX(seq) FROM events WHERE execution_id = ?", (execution_id,)
        )
        return int(rows[0][0] or 0)

    async def prepare_search(self) -> None:
        """Bring a dialect's search index up to date before a search (none here)."""

    def search_condition(self, text: str) -> tuple[str, list[Any]]:
        """A WHERE condition on `executions` matching `text` (case-insensitive, every word)
        in the execution's diagram and error, its node labels, errors and skip reasons, and
        its outputs as stored. Portable LIKE; a dialect with a full-text index overrides it."""
        conditions: list[str] = []
        params: list[Any] = []
        for word in text.split():
            pattern = f"%{_like_escape(word.lower())}%"
            conditions.append(_LIKE_ANYWHERE)
            params += [pattern] * _LIKE_ANYWHERE.count("?")
        return "(" + " AND ".join(conditions) + ")", params

    # -- internals -------------------------------------------------------------------------

    async def _blobs(self, texts: list[str | None], clip: int | None) -> dict[str, Any]:
        hashes = sorted({h for text in texts for h in refs_in(text)})
        if not hashes:
            return {}
        marks = ",".join("?" * len(hashes))
        if clip is None:
            rows = await self.fetch(f"SELECT hash, data FROM blobs WHERE hash IN ({marks})", hashes)
            return {h: json.loads(data) for h, data in rows}
        rows = await self.fetch(
            f"SELECT hash, size, substr(data, 1, ?) FROM blobs WHERE hash IN ({marks})",
            [int(clip), *hashes],
        )
        return {
            h: json.loads(head) if size <= clip else clipped(head, size) for h, size, head in rows
        }


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
