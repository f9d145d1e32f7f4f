"""MemoryStore: the StateStore kept in this process only (tests, `--no-history`).

It behaves like SqliteStore as far as a caller can see: values go through the same redaction
and JSON round trip, reads return copies, and the event log has the same rows. A memory store
never holds an interrupted run: it ends with its process.
"""

from __future__ import annotations

import json
import time
from types import TracebackType
from typing import Any

from dipeo_cli import events as ev
from dipeo_cli.errors import ExecutionNotFoundError, HistoryError
from dipeo_cli.redact import dump_redacted, redact
from dipeo_cli.state import (
    ExecutionState,
    ExecutionStatus,
    NodeExecutionStatus,
    NodeOutput,
    NodeState,
    iso,
)
from dipeo_cli.store.base import (
    ambiguous_message,
    apply_execution_status,
    apply_node_status,
    node_event_type,
    not_found_message,
)


class MemoryStore:
    def __init__(self) -> None:
        self._states: dict[str, ExecutionState] = {}
        self._meta: dict[str, dict[str, Any]] = {}  # diagram_path, parent_id, order
        self._events: dict[str, list[dict[str, Any]]] = {}
        self._order = 0
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        self._closed = True

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- writes ----------------------------------------------------------------------------

    def record(self, state: ExecutionState, event: ev.Event) -> None:
        if self._closed:
            raise HistoryError("the history store is closed (record() after close())")
        eid = state.id
        kind = type(event)
        if kind is ev.ExecutionStarted:
            self._put(_copy_state(state))
            self._log(eid, state.started_at, "ExecutionStarted", None, state.status, None)
            return
        stored = self._states.get(eid)
        if stored is None:
            stored = self._put(_copy_state(state))
        if kind is ev.ExecutionFinished:
            _copy_top_level(state, stored)
            details = {"error": event.error, "reason": event.reason}
            payload = {k: v for k, v in details.items() if v is not None} or None
            self._log(eid, state.ended_at, "ExecutionFinished", None, state.status, payload)
            return
        if not isinstance(
            event, (ev.NodeStarted, ev.NodeCompleted, ev.NodeFailed, ev.NodeSkipped, ev.NodeCapped)
        ):
            # an event this store does not know yet: log it, never fail the run over it
            nid = getattr(event, "node_id", None)
            known = state.node_states.get(nid) if nid is not None else None
            if known is not None:
                stored.node_states[nid] = _copy_node(known)
            at = getattr(event, "at", None)
            status = known.status if known is not None else None
            self._log(eid, iso(at) if at else None, kind.__name__, nid, status, None)
            return
        nid = event.node_id
        node = state.node_states[nid]
        stored.node_states[nid] = _copy_node(node)
        payload: dict[str, Any] | None = None
        at: str | None
        if isinstance(event, ev.NodeStarted):
            at, payload = node.started_at, {"iteration": event.iteration}
        elif isinstance(event, (ev.NodeCompleted, ev.NodeFailed)):
            at = node.ended_at
            if event.output is not None:
                stored.node_outputs[nid] = _copy_output(event.output)
            if isinstance(event, ev.NodeFailed):
                payload = {"error": event.error}
        elif isinstance(event, ev.NodeSkipped):
            at, payload = iso(event.at), {"reason": event.reason}
        else:
            at, payload = iso(event.at), {"max_iteration": event.max_iteration}
        self._log(eid, at, kind.__name__, nid, node.status, payload)

    async def create_execution(
        self,
        state: ExecutionState,
        *,
        diagram_path: str | None = None,
        parent_id: str | None = None,
    ) -> None:
        self._put(_copy_state(state), diagram_path=diagram_path, parent_id=parent_id)

    async def update_execution_status(
        self, execution_id: str, status: ExecutionStatus, *, error: str | None = None
    ) -> None:
        state = self._states.get(execution_id)
        if state is None:
            raise ExecutionNotFoundError(f"no execution {execution_id!r} in memory")
        now = iso(time.time())
        apply_execution_status(state, status, redact(error) if error else error, now)
        kind = "ExecutionFinished" if state.status.is_final else "ExecutionStatusChanged"
        payload = {"error": error} if error is not None else None
        self._log(execution_id, now, kind, None, state.status, payload)

    async def update_node_status(
        self,
        execution_id: str,
        node_id: str,
        status: NodeExecutionStatus,
        output: NodeOutput | None = None,
        *,
        error: str | None = None,
    ) -> None:
        state = self._states.get(execution_id)
        if state is None:
            raise ExecutionNotFoundError(f"no execution {execution_id!r} in memory")
        node = state.node_states.setdefault(node_id, NodeState())
        now = iso(time.time())
        apply_node_status(node, status, redact(error) if error else error, now)
        if output is not None:
            state.node_outputs[node_id] = _copy_output(output)
        payload = {"error": error} if error is not None else None
        self._log(execution_id, now, node_event_type(node.status), node_id, node.status, payload)

    # -- reads -----------------------------------------------------------------------------

    async def get_execution(self, execution_id: str) -> ExecutionState | None:
        state = self._states.get(execution_id)
        return state.model_copy(deep=True) if state is not None else None

    async def find_execution(self, id_or_prefix: str) -> ExecutionState:
        wanted = id_or_prefix.strip()
        if wanted == "latest":
            top_level = [s for s in self._states.values() if not self._meta[s.id]["parent_id"]]
            newest = self._newest_first(top_level)
            if not newest:
                raise ExecutionNotFoundError("no executions recorded yet in memory")
            return newest[0].model_copy(deep=True)
        if not wanted:
            raise ExecutionNotFoundError("an empty execution id matches nothing")
        if wanted in self._states:
            return self._states[wanted].model_copy(deep=True)
        matches = self._newest_first([s for s in self._states.values() if s.id.startswith(wanted)])
        if not matches:
            raise ExecutionNotFoundError(not_found_message(wanted))
        if len(matches) > 1:
            raise ExecutionNotFoundError(
                ambiguous_message(wanted, matches[:10], more=len(matches) > 10)
            )
        return matches[0].model_copy(deep=True)

    async def list_executions(
        self,
        *,
        limit: int = 20,
        status: ExecutionStatus | None = None,
        diagram: str | None = None,
        parent_id: str | None = None,
    ) -> list[ExecutionState]:
        wanted_status = ExecutionStatus(status) if status is not None else None
        needle = diagram.lower() if diagram else None
        found = []
        for state in self._states.values():
            meta = self._meta[state.id]
            if wanted_status is not None and state.status != wanted_status:
                continue
            if needle is not None and not (
                needle in (state.diagram_id or "").lower()
                or needle in (meta["diagram_path"] or "").lower()
            ):
                continue
            if parent_id is not None and meta["parent_id"] != parent_id:
                continue
            found.append(state)
        found = self._newest_first(found)
        if limit is not None and limit >= 0:
            found = found[:limit]
        return [
            s.model_copy(update={"node_states": {}, "node_outputs": {}}).model_copy(deep=True)
            for s in found
        ]

    async def get_events(self, execution_id: str) -> list[dict[str, Any]]:
        return [dict(row) for row in self._events.get(execution_id, [])]

    # -- internals -------------------------------------------------------------------------

    def _put(
        self,
        state: ExecutionState,
        *,
        diagram_path: str | None = None,
        parent_id: str | None = None,
    ) -> ExecutionState:
        previous = self._meta.get(state.id)
        parent_id = parent_id or state.parent_id
        if previous is None:
            self._order += 1
            self._meta[state.id] = {
                "diagram_path": diagram_path,
                "parent_id": parent_id,
                "order": self._order,
            }
        else:
            previous["diagram_path"] = diagram_path or previous["diagram_path"]
            previous["parent_id"] = parent_id or previous["parent_id"]
        self._states[state.id] = state
        return state

    def _newest_first(self, states: list[ExecutionState]) -> list[ExecutionState]:
        return sorted(
            states,
            key=lambda s: (s.started_at, self._meta[s.id]["order"]),
            reverse=True,
        )

    def _log(
        self,
        eid: str,
        at: str | None,
        kind: str,
        node_id: str | None,
        status: Any,
        payload: dict[str, Any] | None,
    ) -> None:
        rows = self._events.setdefault(eid, [])
        rows.append(
            {
                "execution_id": eid,
                "seq": len(rows) + 1,
                "at": at,
                "type": kind,
                "node_id": node_id,
                "status": getattr(status, "value", status),
                "payload": _round_trip(payload),
            }
        )


def _round_trip(obj: Any) -> Any:
    """What the SQLite store would give back: redacted, through JSON."""
    return None if obj is None else json.loads(dump_redacted(obj))


def _copy_node(node: NodeState) -> NodeState:
    # shallow is enough: every field is immutable or replaced (never mutated) by apply_event
    copy = node.model_copy()
    if copy.error:
        copy.error = redact(copy.error)
    if copy.skip_reason:
        copy.skip_reason = redact(copy.skip_reason)
    return copy


def _copy_output(output: NodeOutput) -> NodeOutput:
    return NodeOutput(
        value=_round_trip(output.value) or {}, metadata=_round_trip(output.metadata) or {}
    )


def _copy_top_level(source: ExecutionState, target: ExecutionState) -> None:
    target.status = source.status
    target.diagram_id = source.diagram_id
    target.started_at = source.started_at
    target.ended_at = source.ended_at
    target.token_usage = source.token_usage.model_copy()
    target.error = redact(source.error) if source.error else source.error
    target.variables = _round_trip(source.variables) or {}
    target.duration_seconds = source.duration_seconds
    target.is_active = source.is_active
    target.result = _round_trip(source.result)


def _copy_state(state: ExecutionState) -> ExecutionState:
    copy = ExecutionState(id=state.id, started_at=state.started_at)
    _copy_top_level(state, copy)
    copy.node_states = {nid: _copy_node(node) for nid, node in state.node_states.items()}
    copy.node_outputs = {nid: _copy_output(out) for nid, out in state.node_outputs.items()}
    return copy
