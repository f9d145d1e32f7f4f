"""The batching writer every SQL store runs: one task per store that commits queued rows.

`record()` (sync, on the executor's hot path) only fills `writer.batch` and calls `wake()`.
The task commits the batch through the dialect's `commit(batch)` in one transaction:

- as soon as the event loop goes quiet for `batch_delay` (it waits on I/O, as with LLM calls),
- on `drain()` (flush, close, every read),
- or when the batch gets too big (MAX_BATCH_ROWS events) or too old: MAX_LATENCY, so no row is
  held longer than 0.25 s (NEW_RUN_LATENCY when the batch holds a new execution, so that a run
  killed early still shows up, as interrupted).

A busy loop is otherwise left alone, because committing from a database thread while the event
loop runs makes both fight over the GIL (measured: a 1,000-node chain took 70 us/node writing as
it went, 50 us/node writing at the end). A commit made while the run goes on is marked
`mid_run`: SQLite then writes it in few large statements and the loop waits for it rather than
starving it of the GIL (store/sqlite_batch.py `lend_the_gil`).

A commit that fails is kept and raised as HistoryError by `raise_if_failed()` (flush, close);
later rows are dropped rather than written out of order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from dipeo_cli.errors import HistoryError
from dipeo_cli.store.codec import Batch

BATCH_DELAY = 0.002
# A batch holds its rows' text until committed: at 2,000 events (about 1,000 nodes of a busy
# chain) a 10,000-node run peaked 10 MiB lower than at 20,000, with no measurable cost in time.
MAX_BATCH_ROWS = 2_000
MAX_LATENCY = 0.25
NEW_RUN_LATENCY = 0.1

Commit = Callable[[Batch], Awaitable[None]]


class BatchWriter:
    def __init__(
        self,
        commit: Commit,
        *,
        where: str,
        batch_delay: float = BATCH_DELAY,
        describe_error: Callable[[BaseException], str] = str,
    ) -> None:
        self.batch = Batch()
        self._commit = commit
        self._where = where
        self._batch_delay = batch_delay
        self._describe_error = describe_error
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._writing = False
        self._flushing = 0
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._delay: asyncio.Future[None] | None = None
        self._stopping = False
        self.error: BaseException | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name=f"dipeo-history-writer {self._where}")

    @property
    def started(self) -> bool:
        return self._task is not None

    def wake(self) -> None:
        assert self._wake is not None
        self._wake.set()

    async def drain(self) -> None:
        """Wait until everything queued so far is committed (or the writer failed)."""
        if self._task is None:
            return
        self._flushing += 1
        if self._delay is not None:
            _resolve(self._delay)
        try:
            while (self.batch or self._writing) and not self._task.done():
                waiter = asyncio.get_running_loop().create_future()
                self._idle_waiters.append(waiter)
                self.wake()
                await asyncio.wait([waiter, self._task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._flushing -= 1

    async def stop(self) -> None:
        """Drain, then end the task. Stopping twice is harmless."""
        try:
            await self.drain()
        finally:
            self._stopping = True
            if self._task is not None:
                self.wake()
                await asyncio.gather(self._task, return_exceptions=True)

    def raise_if_failed(self) -> None:
        if self.error is not None:
            exc = self.error
            if isinstance(exc, HistoryError):  # the dialect already said what and why
                raise HistoryError(str(exc)) from exc
            raise HistoryError(
                f"could not write to the history database {self._where}: "
                f"{self._describe_error(exc)}"
            ) from exc
        if self._task is not None and self._task.done() and not self._stopping:
            raise HistoryError(f"the history writer for {self._where} stopped unexpectedly")

    # -- the task -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._wake is not None
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self.batch:
                    if self.error is not None:
                        self.batch = Batch()  # written out of order would be worse than lost
                        break
                    self._writing = True
                    if self._batch_delay:
                        await self._wait_for_quiet()
                    batch, self.batch = self.batch, Batch()
                    batch.seal()  # the node rows, as the states are now (codec.Batch)
                    batch.mid_run = not self._flushing and not self._stopping
                    try:
                        await self._commit(batch)
                    except Exception as exc:
                        self.error = exc
                    finally:
                        self._writing = False
                        # Not held while the next batch fills: both at once were a run's peak.
                        del batch
                self._notify_idle()
                if self._stopping:
                    return
        except BaseException as exc:
            if self.error is None:
                self.error = exc
            self._writing = False
            self._notify_idle()
            raise

    async def _wait_for_quiet(self) -> None:
        """Hold the batch while rows keep coming (see the module docstring)."""
        loop = asyncio.get_running_loop()
        oldest = loop.time()
        while not self._flushing and not self._stopping:
            seen = len(self.batch.events)
            latency = NEW_RUN_LATENCY if self.batch.new_run else MAX_LATENCY
            if seen >= MAX_BATCH_ROWS or loop.time() - oldest >= latency:
                return
            self._delay = waiter = loop.create_future()
            handle = loop.call_later(self._batch_delay, _resolve, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                self._delay = None
            if len(self.batch.events) == seen:
                return

    def _notify_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
