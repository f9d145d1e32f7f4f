"""Following an execution that runs in another process, through the history store alone.

`follow(store, execution_id, view)` feeds a progress view (the protocol of
render/progress.py) the way `runner.Run` feeds it for an execution hosted here: `start(state)`
once, `update(state, event)` for every stored event in order (from the first one, so plain
lines tell the whole run), `stop(state)` at the end. It returns how the execution ended.

It polls the follower cursor (`events_after`) every POLL_INTERVAL seconds and re-reads the state
when events arrived. With no events it still re-reads the state every IDLE_READ seconds,
because reads repair a run whose process died: that read writes the run's final FAILED
"interrupted" event, which the cursor then delivers, so a follower never waits forever.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from dipeo_cli import events as ev
from dipeo_cli.errors import ExecutionNotFoundError
from dipeo_cli.state import ExecutionState, ExecutionStatus, NodeOutput
from dipeo_cli.store.rows import decode_event

POLL_INTERVAL = 0.2
IDLE_READ = 1.0

EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT, EXIT_ABORTED = 0, 1, 124, 130


@dataclass(frozen=True)
class Followed:
    """How a followed execution ended: its last state and the reason its ExecutionFinished
    event gave ("timeout", "interrupted" or None)."""

    state: ExecutionState
    reason: str | None = None

    @property
    def exit_code(self) -> int:
        """The execution's exit code, as `dipeo run` gives it: 0 completed, 124 timed out,
        130 aborted (on request, Ctrl-C, SIGTERM), 1 failed (also a run whose process died)."""
        status = self.state.status
        if status is ExecutionStatus.ABORTED:
            return EXIT_ABORTED
        if self.reason == "timeout":
            return EXIT_TIMEOUT
        if status is ExecutionStatus.COMPLETED:
            return EXIT_OK
        return EXIT_FAILED


async def finished_reason(store: Any, execution_id: str) -> str | None:
    """The reason recorded with an ended execution's ExecutionFinished event."""
    for stored in reversed(await store.get_events(execution_id)):
        if stored["type"] == "ExecutionFinished":
            return (stored["payload"] or {}).get("reason")
    return None


async def follow(
    store: Any,
    execution_id: str,
    view: Any,
    *,
    poll_interval: float = POLL_INTERVAL,
    clip: int | None = None,
) -> Followed:
    """Show `execution_id` on `view` until it ends (see the module docstring). `clip` is
    passed to the state reads (large values cut, for text views). Raises
    ExecutionNotFoundError when there is no such execution."""
    state = await _read(store, execution_id, clip)
    view.start(state)
    seq = 0
    reason: str | None = None
    last_read = time.monotonic()
    try:
        while True:
            stored = await store.events_after(execution_id, seq)
            if stored:
                state = await _read(store, execution_id, clip)
                last_read = time.monotonic()
                outputs = _latest_outputs(state)
                finished = False
                for item in stored:
                    seq = item["seq"]
                    event = decode_event(item, state, outputs)
                    if event is None or isinstance(event, ev.ExecutionStarted):
                        continue
                    if isinstance(event, ev.ExecutionFinished):
                        finished, reason = True, event.reason
                    view.update(state, event)
                if finished:
                    break
            elif state.status.is_final:
                # the state was read before this empty cursor read, and a final status is
                # committed with its event: nothing more will come
                break
            elif time.monotonic() - last_read >= IDLE_READ:
                state = await _read(store, execution_id, clip)  # repairs a dead run
                last_read = time.monotonic()
                continue
            await asyncio.sleep(poll_interval)
    finally:
        view.stop(state)
    return Followed(state, reason)


async def _read(store: Any, execution_id: str, clip: int | None) -> ExecutionState:
    state: ExecutionState | None = await store.get_execution(execution_id, clip=clip)
    if state is None:
        raise ExecutionNotFoundError(f"no execution {execution_id!r} in {store.where}")
    return state


def _latest_outputs(state: ExecutionState) -> dict[tuple[str, int], NodeOutput]:
    """The outputs a follower has: the latest of each node (earlier iterations' completions,
    seen when catching up, show no preview)."""
    return {
        (nid, state.node_states[nid].iterations): output
        for nid, output in state.node_outputs.items()
        if nid in state.node_states
    }
