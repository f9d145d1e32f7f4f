"""Following an execution through the history store, wherever it runs.

The subscriptions read the store, so a run hosted by the server and a `dipeo run` in another
process on the same history are followed the same way: the event log is polled with the cheap
`events_after` cursor every POLL_INTERVAL, and the state is re-read when events arrive (and
every RECHECK_EVERY anyway, so that a run whose process died is seen ending, as interrupted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from dipeo_cli.state import ExecutionState

POLL_INTERVAL = 0.1  # a change reaches subscribers within this plus the writer's latency
RECHECK_EVERY = 2.0


async def follow(
    store: Any, execution_id: str, *, replay: bool = False
) -> AsyncIterator[tuple[ExecutionState, list[dict[str, Any]]]]:
    """Yield (state, new events): the current state at once (with every event so far when
    `replay`, else none), then the state after each batch of new events; stop after the
    final state."""
    events = await store.events_after(execution_id, 0)
    seq = events[-1]["seq"] if events else 0
    state = await store.get_execution(execution_id)
    if state is None:
        return
    if state.status.is_final:
        events = await store.events_after(execution_id, 0)
    yield state, events if replay else []
    last_read = time.monotonic()
    while not state.status.is_final:
        await asyncio.sleep(POLL_INTERVAL)
        events = await store.events_after(execution_id, seq)
        if not events and time.monotonic() - last_read < RECHECK_EVERY:
            continue
        previous = state.status
        fresh = await store.get_execution(execution_id)
        last_read = time.monotonic()
        if fresh is None:  # removed from the history meanwhile
            return
        state = fresh
        if events:
            seq = events[-1]["seq"]
        if state.status.is_final:  # the events that ended it, committed after the read above
            events += await store.events_after(execution_id, seq)
        elif not events and state.status == previous:
            continue
        yield state, events
