"""Waiting for a change in the history without polling hard.

    async with store.subscribe(CHANGES, [execution_id]) as changes:
        while True:
            new = await store.events_after(execution_id, seen)   # read first, then wait
            ...
            await changes.wait(timeout=2.0)   # returns early when the execution changed

A subscription is registered when it is made, so a change announced while its owner was
reading is not lost: the next `wait` returns at once. On PostgreSQL the writer announces each
committed batch (CHANGES) and each control request (CONTROLS) with NOTIFY, and one LISTEN
connection per store wakes the subscriptions of this process; on SQLite nothing is announced
across processes and `wait` simply sleeps for the poll interval it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType

CHANGES = "dipeo_changes"  # payload: an execution id whose events or status changed
CONTROLS = "dipeo_controls"  # payload: an execution id that has a new control request
QUEUE = "dipeo_queue"  # payload: "queue", when an execution was submitted (store/queue.py)


class Subscription:
    """Wakes when one of `execution_ids` is announced on `channel` (see the module docstring)."""

    def __init__(self, hub: Hub | None, channel: str, execution_ids: Iterable[str]) -> None:
        self._hub = hub
        self.channel = channel
        self.execution_ids = set(execution_ids)
        self._event = asyncio.Event()
        if hub is not None:
            hub.add(self)

    @property
    def notified(self) -> bool:
        """Whether changes are announced here (PostgreSQL) rather than only polled for."""
        return self._hub is not None and self._hub.listening

    def add(self, execution_id: str) -> None:
        self.execution_ids.add(execution_id)

    def discard(self, execution_id: str) -> None:
        self.execution_ids.discard(execution_id)

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Until an announcement for one of the ids arrives (True) or `timeout` passes."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._event.clear()

    def close(self) -> None:
        if self._hub is not None:
            self._hub.remove(self)
            self._hub = None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Hub:
    """The subscriptions of one store, woken by the notifications its listener receives."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.listening = False

    def add(self, subscription: Subscription) -> None:
        self._subscriptions.add(subscription)

    def remove(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def deliver(self, channel: str, execution_id: str) -> None:
        for subscription in list(self._subscriptions):
            if subscription.channel == channel and execution_id in subscription.execution_ids:
                subscription.wake()

    def wake_all(self) -> None:
        """The listener was lost: let every waiter read again rather than miss a change."""
        for subscription in list(self._subscriptions):
            subscription.wake()
