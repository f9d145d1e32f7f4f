"""The worker behind `dipeo worker`: take queued executions and run them, N at a time.

Each slot loops: take the oldest queued execution (store/queue.py gives each to exactly one
taker), compile the diagram text recorded at submit, run it with the same execution id from
the project root, and take the next. An idle slot waits for a submission (announced on
PostgreSQL, polled on SQLite). A stop (Ctrl-C, SIGTERM) aborts the runs in progress, which are
recorded ABORTED, and takes nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dipeo_cli.errors import DipeoError, HistoryError
from dipeo_cli.runner import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from dipeo_cli.state import ExecutionStatus
from dipeo_cli.store.queue import QueuedRun

POLL_INTERVAL = 0.5
# on PostgreSQL a submission wakes idle workers at once; this only covers a lost notification
NOTIFIED_POLL_INTERVAL = 5.0


class Worker:
    def __init__(
        self,
        root: Path,
        concurrency: int,
        once: bool,
        llm_mode: str | None,
        db: str | None,
        say: Callable[[str], None],
    ) -> None:
        self.root = root
        self.concurrency = concurrency
        self.once = once
        self.llm_mode = llm_mode
        self.db = db
        self.say = say
        self.stopping = asyncio.Event()
        self.running: dict[str, Any] = {}  # execution id -> its Run
        self.all_completed = True

    async def main(self) -> int:
        """Run until stopped (or, with `once`, until the queue is empty); the exit code."""
        from dipeo_cli.context import ProcessServices
        from dipeo_cli.store import open_store

        try:
            store = await open_store(self.db or None)
        except HistoryError as exc:
            self.say(f"error: {exc}")
            return 2
        services = ProcessServices()
        handled = self._handle_signals()
        try:
            await asyncio.gather(*(self._slot(store, services) for _ in range(self.concurrency)))
        finally:
            loop = asyncio.get_running_loop()
            for sig in handled:
                loop.remove_signal_handler(sig)
            await services.close()
            with contextlib.suppress(HistoryError):
                await store.close()
        if self.stopping.is_set():
            return EXIT_INTERRUPTED
        return EXIT_OK if self.all_completed else EXIT_FAILED

    def _handle_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        handled = []
        for sig, reason in (
            (signal.SIGINT, "worker interrupted"),
            (signal.SIGTERM, "worker terminated (SIGTERM)"),
        ):
            try:
                loop.add_signal_handler(sig, self.stop, reason)
                handled.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        return handled

    def stop(self, reason: str) -> None:
        """Take nothing more; abort what is running (recorded ABORTED with `reason`)."""
        from dipeo_cli.errors import ControlError

        self.stopping.set()
        for run in list(self.running.values()):
            with contextlib.suppress(ControlError):
                run.executor.abort(reason)

    async def _slot(self, store: Any, services: Any) -> None:
        interval = POLL_INTERVAL
        async with store.queue_subscription() as submitted:
            if submitted.notified:
                interval = NOTIFIED_POLL_INTERVAL
            while not self.stopping.is_set():
                try:
                    queued = await store.take_queued()
                except HistoryError as exc:  # the database is away: say so, try again later
                    self.all_completed = False
                    self.say(f"error: {exc}")
                    if self.once:
                        return
                    await self._idle(submitted, NOTIFIED_POLL_INTERVAL)
                    continue
                if queued is None:
                    if self.once:
                        return
                    await self._idle(submitted, interval)
                    continue
                await self._run(store, services, queued)

    async def _idle(self, submitted: Any, interval: float) -> None:
        stop = asyncio.ensure_future(self.stopping.wait())
        wake = asyncio.ensure_future(submitted.wait(interval))
        try:
            await asyncio.wait({stop, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stop, wake):
                task.cancel()

    async def _run(self, store: Any, services: Any, queued: QueuedRun) -> None:
        from dipeo_cli.executor import RunOptions
        from dipeo_cli.runner import execute

        name = queued.diagram_path or queued.diagram_id or "diagram"
        try:
            graph = self._compile(queued)
        except DipeoError as exc:
            # taken but not runnable here (a plugin or file this machine lacks): record why
            self.all_completed = False
            await store.update_execution_status(
                queued.id, ExecutionStatus.FAILED, error=f"cannot run {name} here: {exc}"
            )
            self.say(f"{queued.id} FAILED {name}: {exc}")
            return
        if self.stopping.is_set():  # stopped while compiling: end it rather than leave it
            await store.update_execution_status(
                queued.id, ExecutionStatus.ABORTED, error="worker stopped before running it"
            )
            return
        self.say(f"{queued.id} STARTED {name}")
        outcome = await execute(
            graph,
            store=store,
            progress=None,
            variables=queued.variables,
            options=RunOptions(),
            execution_id=queued.id,
            llm_mode=self.llm_mode,
            on_start=lambda run: self.running.__setitem__(queued.id, run),
            shared=services,
            diagram_id=queued.diagram_id,
            base=self.root,
        )
        self.running.pop(queued.id, None)
        status = outcome.state.status.value
        if status != ExecutionStatus.COMPLETED.value or outcome.history_error is not None:
            self.all_completed = False
        error = f": {outcome.state.error}" if outcome.state.error else ""
        self.say(f"{queued.id} {status} {name}{error}")

    def _compile(self, queued: QueuedRun) -> Any:
        from dipeo_cli.compiler import compile_graph
        from dipeo_cli.diagram import parse_diagram
        from dipeo_cli.graph import CompileOptions
        from dipeo_cli.registry import load_plugins

        # named by its place under this root, so its relative files resolve from there
        file = str(self.root / queued.diagram_path) if queued.diagram_path else None
        diagram = parse_diagram(queued.diagram_source, file=file, strict=False)
        graph = compile_graph(diagram, load_plugins(()), CompileOptions(llm_mode=self.llm_mode))
        graph.check_runnable()
        return graph
