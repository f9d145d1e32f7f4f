"""The controls of a running Executor: what signal handlers, the store's watch task and the
server call while it runs. Each returns what it did, or raises ControlError when it cannot apply
(the execution has finished, the node already ran, is running or does not exist).

- `pause()`: the launch gate closes: no node starts, running nodes finish, the execution is
  PAUSED and the loop neither ends nor spins;
- `resume()`: the gate opens and the run goes on exactly where it was;
- `skip(node)`: a node that has not started is SKIPPED ("skipped on request"), and its
  downstream is treated as for any skipped node;
- `abort(reason)`: running nodes are cancelled (their processes killed) and end ABORTED, the
  rest SKIPPED, the execution ends ABORTED;
- `control(action, node, reason)`: one of those by the name the API and the CLI use.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dipeo_cli import events as ev
from dipeo_cli.arrows import IDLE, RUNNING, SKIPPED
from dipeo_cli.errors import ControlError

if TYPE_CHECKING:
    import asyncio
    from collections import deque
    from collections.abc import Callable, Iterable

    from dipeo_cli.arrows import ArrowState
    from dipeo_cli.graph import ExecutableGraph


class Steering:
    """Mixed into Executor, whose scheduling state these methods read and change."""

    graph: ExecutableGraph
    _emit: Callable[[ev.Event], None]
    _finished: ev.ExecutionFinished | None
    _abort_reason: str | None
    _paused: bool
    _running: dict[asyncio.Task[Any], str]
    _wakeup: asyncio.Event
    _status: dict[str, int]
    _counts: dict[str, int]
    _queued: set[str]
    _ready: deque[str]
    _arrows: ArrowState

    if TYPE_CHECKING:  # defined by Executor

        def _skip(self, nid: str, reason: str) -> None: ...
        def _recheck(self, nids: Iterable[str]) -> None: ...

    def abort(self, reason: str = "interrupted") -> str:
        """Stop the run (Ctrl-C, SIGTERM, a request): running nodes are cancelled (their
        processes killed), the rest SKIPPED, the execution ends ABORTED."""
        if self._finished is not None:
            raise ControlError("the execution has already finished")
        if self._abort_reason is None:
            self._abort_reason = reason
        for task in self._running:
            task.cancel()
        self._wakeup.set()
        return "aborting"

    def pause(self, reason: str | None = None) -> str:
        """No node starts until `resume()`; running nodes finish; the execution is PAUSED."""
        self._check_active()
        if self._paused:
            return "already paused"
        self._paused = True
        self._emit(ev.ExecutionPaused(time.time(), reason))
        return "paused"

    def resume(self) -> str:
        """Go on from exactly where the execution was paused."""
        self._check_active()
        if not self._paused:
            raise ControlError("the execution is not paused")
        self._paused = False
        self._emit(ev.ExecutionResumed(time.time()))
        self._wakeup.set()
        return "resumed"

    def skip(self, node: str) -> str:
        """Skip a node that has not started ("skipped on request"); downstream nodes are
        treated as for any skipped node. `node` is an id or a label."""
        self._check_active()
        nid = node if node in self.graph.nodes else None
        if nid is None:
            found = self.graph.node_by_label(node)
            if found is None:
                raise ControlError(f"no node '{node}' in this execution")
            nid = found.id
        label = self.graph.nodes[nid].label
        status = self._status[nid]
        if status == RUNNING:
            raise ControlError(f"node '{label}' is running; it can no longer be skipped")
        if status == SKIPPED:
            return f"node '{label}' was already skipped"
        if self._counts[nid] > 0 or status != IDLE:
            raise ControlError(f"node '{label}' already ran; it can no longer be skipped")
        if nid in self._queued:
            self._queued.discard(nid)
            self._ready.remove(nid)
        self._skip(nid, "skipped on request")
        self._recheck(self._arrows.block_outgoing(nid))
        self._wakeup.set()
        return f"skipped node '{label}'"

    def control(self, action: str, node: str | None = None, reason: str | None = None) -> str:
        """One of pause, resume, abort, skip_node (any case), as the API and CLI name them."""
        action = action.lower()
        if action == "pause":
            return self.pause(reason)
        if action == "resume":
            return self.resume()
        if action == "abort":
            return self.abort(reason or "aborted on request")
        if action in ("skip_node", "skip"):
            if not node:
                raise ControlError("skip_node needs a node")
            return self.skip(node)
        raise ControlError(f"unknown action {action!r} (pause, resume, abort, skip_node)")

    @property
    def paused(self) -> bool:
        return self._paused

    def _check_active(self) -> None:
        if self._finished is not None:
            raise ControlError("the execution has already finished")
        if self._abort_reason is not None:
            raise ControlError("the execution is being aborted")
