"""The watch task a store runs beside its writer, for the executions this process runs.

Every POLL_INTERVAL it takes the control requests other processes left for those executions
(pause, resume, abort, skip a node: rows in the store) and hands each to the execution's
handler, recording what the handler answered as the request's outcome; every HEARTBEAT_EVERY it
queues a heartbeat for them through the writer. It runs only while some execution is watched,
and a poll that finds nothing costs one indexed read. Where the store announces control
requests (PostgreSQL's NOTIFY, store/notify.py), it wakes on the announcement instead and polls
only every NOTIFIED_POLL, as a safety net.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dipeo_cli.store.notify import CONTROLS, Subscription

if TYPE_CHECKING:
    from dipeo_cli.store.base import Control
    from dipeo_cli.store.history import SqlHistory

POLL_INTERVAL = 0.25
NOTIFIED_POLL = 1.0
HEARTBEAT_EVERY = 2.0

Handler = Callable[["Control"], "str | None"]


class Watcher:
    def __init__(self, store: SqlHistory, *, poll_interval: float = POLL_INTERVAL) -> None:
        self._store = store
        self._poll_interval = poll_interval
        self._handlers: dict[str, Handler] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_beat = 0.0
        self._subscription: Subscription | None = None

    def watch(self, execution_id: str, handler: Handler) -> Callable[[], None]:
        self._handlers[execution_id] = handler
        if self._subscription is not None:
            self._subscription.add(execution_id)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="dipeo-history-watch"
            )

        def unwatch() -> None:
            if self._handlers.get(execution_id) is handler:
                del self._handlers[execution_id]
                if self._subscription is not None:
                    self._subscription.discard(execution_id)

        return unwatch

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        self._last_beat = time.monotonic()
        self._subscription = self._store.subscribe(CONTROLS, list(self._handlers))
        try:
            await self._loop()
        finally:
            if self._subscription is not None:
                self._subscription.close()
                self._subscription = None

    async def _loop(self) -> None:
        while self._handlers:
            subscription = self._subscription
            if subscription is not None and subscription.notified:
                await subscription.wait(NOTIFIED_POLL)
            else:
                await asyncio.sleep(self._poll_interval)
            watched = list(self._handlers)
            if not watched:
                break
            try:
                requests = await self._store.take_controls(watched)
            except Exception:
                continue  # a busy or failing database: the writer reports write errors
            for request in requests:
                handler = self._handlers.get(request.execution_id)
                if handler is None:
                    outcome: str | None = "error: the execution is no longer running here"
                else:
                    try:
                        outcome = handler(request)
                    except Exception as exc:
                        outcome = f"error: {exc}"
                self._store.queue_outcome(request.id, outcome or "done")
            now = time.monotonic()
            if now - self._last_beat >= HEARTBEAT_EVERY:
                self._last_beat = now
                self._store.queue_heartbeat(list(self._handlers))
