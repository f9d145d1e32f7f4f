"""Run an ExecutableGraph: schedule ready nodes concurrently, route outputs along arrows, enforce
timeouts and iteration limits, and report every status change as an event.

The executor knows nothing about SQLite, Rich or Typer: it calls `emit(event)` (synchronously,
in order) and the caller hands each event to the state, the store and the view.

The rules of what an arrow carries and when a node is ready live in `arrows.py`; this module
schedules: it launches ready nodes as tasks, sleeps until one finishes (no polling), routes its
output, and when nothing runs and nothing is ready (quiescence) either runs a node holding a value
whose missing inputs can no longer arrive, or ends the execution, skipping the nodes that never
ran with a reason.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dipeo_cli import events as ev
from dipeo_cli.arrows import CAPPED, DONE, FAILED, IDLE, RUNNING, SKIPPED, ArrowState
from dipeo_cli.context import NodeContext, NodeScopedStore, RunResources
from dipeo_cli.errors import IterationLimitError, NodeTimeoutError, describe_exception
from dipeo_cli.flow import DataFlow
from dipeo_cli.graph import ExecutableGraph, ExecutableNode
from dipeo_cli.replay import Replay
from dipeo_cli.state import ExecutionStatus, NodeOutput, create_node_output, token_usage_of
from dipeo_cli.steering import Steering

DEFAULT_MAX_ITERATIONS = 100
DEFAULT_MAX_PARALLEL = 256


@dataclass(frozen=True)
class RunOptions:
    max_iterations: int = DEFAULT_MAX_ITERATIONS  # run-wide cap for nodes without max_iteration
    timeout: float | None = None  # whole execution, seconds
    max_parallel: int = DEFAULT_MAX_PARALLEL
    continue_on_error: bool = False


class Executor(Steering, DataFlow):
    """Runs one graph. Besides `run()`, it can be steered while it runs (from signal handlers,
    the store's watch task, a server): `pause()`, `resume()`, `skip(node)`, `abort(reason)`,
    or `control(action, node, reason)`; each returns what it did or raises ControlError."""

    def __init__(
        self,
        graph: ExecutableGraph,
        *,
        execution_id: str,
        emit: Callable[[ev.Event], None],
        variables: dict[str, Any] | None = None,
        options: RunOptions | None = None,
        store: Any | None = None,
        resources: RunResources | None = None,
        diagram_id: str | None = None,
        parent_id: str | None = None,
        replay: Replay | None = None,
        retry_of: str | None = None,
    ) -> None:
        self.graph = graph
        self.replay = replay
        self.retry_of = retry_of
        self.parent_id = parent_id
        self.execution_id = execution_id
        self.variables = dict(variables or {})
        self.options = options or RunOptions()
        self.resources = resources or RunResources()
        self.diagram_id = diagram_id
        self._emit = emit
        self._scoped_store = NodeScopedStore(store)

        self._status = dict.fromkeys(graph.order, IDLE)
        self._counts = dict.fromkeys(graph.order, 0)
        self._arrows = ArrowState(graph, self._status, self._counts)
        self._outputs: dict[str, NodeOutput] = {}
        self._queued: set[str] = set()
        self._position = {nid: i for i, nid in enumerate(graph.order)}
        self._ready: deque[str] = deque()
        self._running: dict[asyncio.Task[Any], str] = {}
        self._done: deque[asyncio.Task[Any]] = deque()
        self._wakeup = asyncio.Event()
        # While the loop waits for nodes, _drain_done handles their ends (see there)
        self._waiting_for_nodes = False
        self._drain_scheduled = False
        self._drain_error: BaseException | None = None

        self._failure: tuple[str, str] | None = None  # (node id, error) that stops the run
        self._unhandled_failures: list[tuple[str, str]] = []
        self._abort_reason: str | None = None
        self._internal_error: str | None = None
        self._finished: ev.ExecutionFinished | None = None
        self._paused = False
        # launched nodes whose recorded output is applied instead of a handler call:
        # (original order, tie-breaker, node id, output), the smallest order first
        self._replays: list[tuple[int, int, str, NodeOutput]] = []
        self._tie = itertools.count()

    # -- public ---------------------------------------------------------------------------

    async def run(self) -> ev.ExecutionFinished:
        """Run the graph to the end and return the final event (also emitted)."""
        graph = self.graph
        self._emit(
            ev.ExecutionStarted(
                execution_id=self.execution_id,
                diagram_id=self.diagram_id,
                variables=self.variables,
                nodes=tuple(
                    ev.NodeInfo(
                        nid,
                        graph.nodes[nid].label,
                        graph.nodes[nid].type,
                        graph.nodes[nid].fingerprint,
                    )
                    for nid in graph.order
                ),  # fmt: skip
                at=time.time(),
                parent_id=self.parent_id,
                diagram_source=graph.diagram.source,
                retry_of=self.retry_of,
            )
        )
        reason: str | None = None
        try:
            if self.options.timeout is not None:
                async with asyncio.timeout(self.options.timeout):
                    await self._loop()
            else:
                await self._loop()
        except TimeoutError:
            reason = "timeout"
            await self._cancel_running(
                f"cancelled: execution timed out after {self.options.timeout:g} s"
            )
        except asyncio.CancelledError:
            # Cancelled from outside (the caller's task): record it as an abort, then re-raise.
            self._abort_reason = self._abort_reason or "interrupted"
            await self._cancel_running("interrupted", aborted=True)
            self._finish("interrupted")
            raise
        except Exception as exc:
            # A bug in the executor or in an event consumer: the history must still say FAILED.
            self._internal_error = f"internal error: {type(exc).__name__}: {exc}"
            await self._cancel_running(self._internal_error)
            self._finish(None)
            raise
        finally:
            await self.resources.close()
        if self._abort_reason is not None and reason is None:
            await self._cancel_running(self._abort_reason, aborted=True)
            reason = "interrupted"
        return self._finish(reason)

    # -- the loop -------------------------------------------------------------------------

    async def _loop(self) -> None:
        for nid in self.graph.start_nodes:
            if not self.graph.incoming[nid]:
                self._queue(nid)
        while self._abort_reason is None:
            if self._failure is None and not self._paused:
                self._launch_ready()
            if self._replays:
                self._complete_replay()
                continue
            if not self._running:
                if self._paused:  # the gate is closed: wait for resume, skip or abort
                    await self._wakeup.wait()
                    self._wakeup.clear()
                    continue
                if self._failure is None and self._resolve_quiescence():
                    continue
                return
            self._waiting_for_nodes = True
            try:
                await self._wakeup.wait()
            finally:
                self._waiting_for_nodes = False
            self._wakeup.clear()
            if self._drain_error is not None:
                error, self._drain_error = self._drain_error, None
                raise error
            while self._done:
                self._complete(self._done.popleft())

    def _queue(self, nid: str) -> None:
        if nid not in self._queued:
            self._queued.add(nid)
            self._ready.append(nid)

    def _launch_ready(self) -> None:
        limit = self.options.max_parallel
        while self._ready and len(self._running) < limit:
            nid = self._ready.popleft()
            self._queued.discard(nid)
            self._launch(nid)

    def _launch(self, nid: str) -> None:
        node = self.graph.nodes[nid]
        count = self._counts[nid]
        inputs = self._arrows.take_inputs(nid)
        if node.max_iteration is not None and count >= node.max_iteration:
            self._status[nid] = CAPPED
            self._emit(ev.NodeCapped(nid, node.max_iteration, time.time()))
            # While other nodes of its loop still have iterations left, a capped node passes its
            # last output on so they can finish theirs (DiPeO's debate: the optimist's 2 turns,
            # the pessimist's 3); otherwise it ends the loop quietly.
            last = self._outputs.get(nid)
            self._route(nid, last.value if last and self._loop_has_turns_left(nid) else None)
            return
        count += 1
        self._counts[nid] = count
        self._status[nid] = RUNNING
        sources = self._arrows.sources
        self._emit(ev.NodeStarted(nid, count, time.time(), inputs, sources))
        if node.max_iteration is None and count > self.options.max_iterations:
            cap = self.options.max_iterations
            self._fail(
                nid,
                str(
                    IterationLimitError(
                        f"node '{node.label}' would run more than {cap} times "
                        f"(--max-iterations {cap}); give it a max_iteration or raise the cap"
                    )
                ),
            )
            return
        if self.replay is not None:
            recorded = self.replay.recorded(node, count, inputs, sources)
            if recorded is not None:
                heapq.heappush(
                    self._replays, (recorded.order, next(self._tie), nid, recorded.output)
                )
                return
        ctx = NodeContext(
            execution_id=self.execution_id,
            node=node,
            inputs=inputs,
            variables=self.variables,
            iteration=count,
            state_store=self._scoped_store,
            resources=self.resources,
            graph=self.graph,
            outputs=self._outputs,
            counts=self._counts,
        )
        task = asyncio.get_running_loop().create_task(self._call(node, ctx))
        self._running[task] = nid
        task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[Any]) -> None:
        self._done.append(task)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain_done)

    def _drain_done(self) -> None:
        """The nodes that ended in one turn of the event loop, then the launches they allow,
        in one plain callback. Waking the loop's task for them instead cost more than a
        trivial node's own work (~1.2 us a node). The task is woken only when it has to
        decide: nothing runs, replays wait, a failure, an abort, a pause; or when it was not
        waiting for nodes (cancelling them, say), and handles the ends itself as before."""
        self._drain_scheduled = False
        if not self._waiting_for_nodes:
            self._wakeup.set()
            return
        try:
            while self._done:
                self._complete(self._done.popleft())
            if self._abort_reason is None and self._failure is None and not self._paused:
                self._launch_ready()
                if self._running and not self._replays:
                    return
        except BaseException as exc:  # raised by the loop's task, as if it had done this
            self._drain_error = exc
        self._wakeup.set()

    async def _call(self, node: ExecutableNode, ctx: NodeContext) -> Any:
        if node.timeout is None:
            return await node.spec.fn(node, ctx)
        try:
            async with asyncio.timeout(node.timeout) as scope:
                return await node.spec.fn(node, ctx)
        except TimeoutError:
            if scope.expired():
                raise NodeTimeoutError(f"timed out after {node.timeout:g} s") from None
            raise

    def _complete_replay(self) -> None:
        _, _, nid, output = heapq.heappop(self._replays)
        self._succeed(nid, output)

    def _complete(self, task: asyncio.Task[Any]) -> None:
        nid = self._running.pop(task, None)
        if nid is None:  # already handled by _cancel_running
            return
        if task.cancelled():
            self._status[nid] = FAILED
            self._emit(
                ev.NodeFailed(
                    nid,
                    self._abort_reason or "cancelled",
                    time.time(),
                    iteration=self._counts[nid],
                    aborted=self._abort_reason is not None,
                )  # fmt: skip
            )
            return
        exc = task.exception()
        if exc is not None:
            self._fail(nid, describe_exception(exc), getattr(exc, "metadata", None))
            return
        output = task.result()
        if not isinstance(output, NodeOutput):
            output = create_node_output({"default": output})
        self._succeed(nid, output)

    def _succeed(self, nid: str, output: NodeOutput) -> None:
        self._outputs[nid] = output
        self._status[nid] = DONE
        self._emit(
            ev.NodeCompleted(nid, output, time.time(), token_usage_of(output), self._counts[nid])
        )
        self._route(nid, output.value)

    def _fail(self, nid: str, error: str, metadata: dict[str, Any] | None = None) -> None:
        """Mark a node FAILED. `metadata` (e.g. a code job's captured stdout) is kept in the
        history as the node's output metadata."""
        self._status[nid] = FAILED
        has_error_port = any(e.source_port == "error" for e in self.graph.outgoing[nid])
        meta = {**(metadata or {}), "error": error}
        usage = token_usage_of(create_node_output({}, meta))  # tokens spent before the failure
        if has_error_port or self.options.continue_on_error:
            value = {"error": error}
            if not has_error_port:
                value["default"] = error
                self._unhandled_failures.append((nid, error))
            output = create_node_output(value, meta)
            self._outputs[nid] = output
            self._emit(ev.NodeFailed(nid, error, time.time(), output, usage, self._counts[nid]))
            self._route(nid, value)
            return
        failed_output = create_node_output({}, meta) if metadata else None
        self._emit(ev.NodeFailed(nid, error, time.time(), failed_output, usage, self._counts[nid]))
        if self._failure is None:
            self._failure = (nid, error)
        self._route(nid, None)

    # -- the end --------------------------------------------------------------------------

    async def _cancel_running(self, reason: str, *, aborted: bool = False) -> None:
        """Cancel the running nodes: ABORTED for an abort, FAILED (`reason`) otherwise."""
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        stopped = [nid for task in tasks if (nid := self._running.pop(task, None)) is not None]
        stopped += [nid for _, _, nid, _ in sorted(self._replays)]
        self._replays.clear()
        for nid in stopped:
            self._status[nid] = FAILED
            self._emit(
                ev.NodeFailed(
                    nid, reason, time.time(), iteration=self._counts[nid], aborted=aborted
                )
            )
        self._done.clear()

    def _skip(self, nid: str, reason: str) -> None:
        self._status[nid] = SKIPPED
        self._emit(ev.NodeSkipped(nid, reason, time.time()))

    def _finish(self, reason: str | None) -> ev.ExecutionFinished:
        if self._finished is not None:
            return self._finished
        for nid in self.graph.order:
            if self._status[nid] == IDLE and self._counts[nid] == 0:
                self._skip(nid, self._skip_reason(nid, reason))
        if self._internal_error is not None:
            status, error = ExecutionStatus.FAILED, self._internal_error
        elif reason == "timeout":
            status = ExecutionStatus.FAILED
            error = f"timed out after {self.options.timeout:g} s"
        elif reason == "interrupted":
            status, error = ExecutionStatus.ABORTED, self._abort_reason or "interrupted"
        elif self._failure is not None:
            nid, message = self._failure
            status = ExecutionStatus.FAILED
            error = f"node '{self.graph.nodes[nid].label}' failed: {message}"
        elif self._unhandled_failures:
            status = ExecutionStatus.FAILED
            error = "; ".join(
                f"node '{self.graph.nodes[nid].label}' failed: {message}"
                for nid, message in self._unhandled_failures
            )
        else:
            status, error = ExecutionStatus.COMPLETED, None
        self._finished = ev.ExecutionFinished(
            status=status, error=error, at=time.time(), result=self._result(), reason=reason
        )
        self._emit(self._finished)
        return self._finished

    def _result(self) -> Any:
        results = {}
        for nid in self.graph.order:
            node = self.graph.nodes[nid]
            if node.type == "endpoint" and self._status[nid] == DONE:
                results[node.label] = self._outputs[nid].value.get("default")
        if not results:
            return None
        if len(results) == 1:
            return next(iter(results.values()))
        return results
