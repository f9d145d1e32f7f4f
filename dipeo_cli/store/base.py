"""The StateStore protocol: what the executor and the CLI need from a history backend.

Two ways in:
- `record(state, event)` is the executor's hot path. It is synchronous and never waits: it
  snapshots what the event changed (call it right after `apply_event(state, event)`) and queues
  rows for the store's writer. `flush()` returns once everything recorded is durable.
- the async methods (`create_execution`, `update_execution_status`, `update_node_status`) are
  for callers without an event stream (handlers in DiPeO's original style, tools, tests). They
  are applied in order after everything recorded before them.

Reads (`get_execution`, `find_execution`, `list_executions`, `get_events`) see everything
recorded before the call. A run whose process died is reported FAILED ("interrupted"), never
RUNNING forever. Nothing secret is stored (see `dipeo_cli.redact`).

Implementations: `SqliteStore` (the default, `store/sqlite.py`) and `MemoryStore`.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from dipeo_cli.events import Event
    from dipeo_cli.state import (
        ExecutionState,
        ExecutionStatus,
        NodeExecutionStatus,
        NodeOutput,
        NodeState,
    )

INTERRUPTED_ERROR = "interrupted (the dipeo process ended without finishing this run)"
INTERRUPTED_NODE_ERROR = "interrupted"
INTERRUPTED_SKIP_REASON = "execution interrupted"


@runtime_checkable
class StateStore(Protocol):
    async def create_execution(
        self, state: ExecutionState, *, diagram_path: str | None = None
    ) -> None:
        """Store `state` whole (execution, node states, outputs); idempotent per execution id.

        Recording the ExecutionStarted event after this is harmless and keeps `diagram_path`.
        """
        ...

    async def update_execution_status(
        self, execution_id: str, status: ExecutionStatus, *, error: str | None = None
    ) -> None: ...

    async def update_node_status(
        self,
        execution_id: str,
        node_id: str,
        status: NodeExecutionStatus,
        output: NodeOutput | None = None,
        *,
        error: str | None = None,
    ) -> None: ...

    async def get_execution(self, execution_id: str) -> ExecutionState | None: ...

    async def find_execution(self, id_or_prefix: str) -> ExecutionState:
        """The execution named by an id, a unique id prefix, or "latest" (the newest).

        Raises ExecutionNotFoundError when nothing matches or the prefix is ambiguous.
        """
        ...

    async def list_executions(
        self,
        *,
        limit: int = 20,
        status: ExecutionStatus | None = None,
        diagram: str | None = None,
        parent_id: str | None = None,
    ) -> list[ExecutionState]:
        """Newest first. `node_states` may be empty. `diagram` is a case-insensitive
        substring of the diagram id or of the stored diagram path."""
        ...

    async def get_events(self, execution_id: str) -> list[dict]:
        """The event log of one execution in order: dicts with `execution_id`, `seq`, `at`,
        `type`, `node_id`, `status` and `payload` (a dict or None)."""
        ...

    def record(self, state: ExecutionState, event: Event) -> None: ...

    async def flush(self) -> None:
        """Return once every recorded row is committed; raise HistoryError if writing failed."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> StateStore: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def node_event_type(status: NodeExecutionStatus) -> str:
    """The event-log type for a direct `update_node_status` call."""
    return _NODE_EVENT_TYPES.get(getattr(status, "value", status), "NodeStatusChanged")


_NODE_EVENT_TYPES = {
    "RUNNING": "NodeStarted",
    "COMPLETED": "NodeCompleted",
    "FAILED": "NodeFailed",
    "SKIPPED": "NodeSkipped",
    "MAXITER_REACHED": "NodeCapped",
}


def apply_node_status(
    node: NodeState, status: NodeExecutionStatus, error: str | None, now: str
) -> None:
    """What a direct `update_node_status(status, error=...)` call does to a NodeState.

    RUNNING starts a new run of the node (started_at, iterations + 1); COMPLETED and FAILED end
    it; for SKIPPED the `error` argument is the skip reason.
    """
    from dipeo_cli.state import NodeExecutionStatus as S

    status = S(status)
    node.status = status
    if status is S.RUNNING:
        node.started_at = now
        node.ended_at = None
        node.error = None
        node.iterations += 1
    elif status in (S.COMPLETED, S.FAILED):
        node.ended_at = now
        node.error = error if status is S.FAILED else None
    elif status is S.SKIPPED:
        if error is not None:
            node.skip_reason = error
    elif error is not None:
        node.error = error


def apply_execution_status(
    state: ExecutionState, status: ExecutionStatus, error: str | None, now: str
) -> None:
    """What a direct `update_execution_status(status, error=...)` call does to the state."""
    from dipeo_cli.state import ExecutionStatus as S
    from dipeo_cli.state import parse_iso

    status = S(status)
    state.status = status
    if error is not None:
        state.error = error
    state.is_active = not status.is_final
    if status.is_final:
        state.ended_at = now
        if state.started_at:
            state.duration_seconds = round(parse_iso(now) - parse_iso(state.started_at), 6)


def ambiguous_message(wanted: str, candidates: list[ExecutionState], more: bool) -> str:
    """The ExecutionNotFoundError text for a prefix that matches several executions."""
    listing = "\n".join(
        f"  {s.id}  {getattr(s.status, 'value', s.status)}  {s.diagram_id or '-'}  {s.started_at}"
        for s in candidates
    )
    return f"{wanted!r} matches several executions; give more of the id:\n{listing}" + (
        "\n  ..." if more else ""
    )


def not_found_message(wanted: str) -> str:
    return f"no execution matches {wanted!r} (see `dipeo history` for the ids)"
