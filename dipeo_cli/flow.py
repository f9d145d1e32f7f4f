"""How a finished node's output moves on, mixed into Executor: delivered along its arrows, the
nodes that became ready queued in diagram order, those that can no longer run skipped (and their
downstream with them), and, when nothing runs and nothing is ready, the nodes chosen that hold a
value whose missing inputs can no longer arrive. The rules themselves (what an arrow carries,
when a node is ready or dead) are arrows.py's; this is the executor's use of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dipeo_cli.arrows import IDLE, RUNNING, SKIPPED, ArrowState, reachable

if TYPE_CHECKING:
    from dipeo_cli.graph import ExecutableGraph


class DataFlow:
    """Mixed into Executor, whose scheduling state these methods read and change."""

    graph: ExecutableGraph
    _arrows: ArrowState
    _status: dict[str, int]
    _counts: dict[str, int]
    _queued: set[str]
    _position: dict[str, int]
    _failure: tuple[str, str] | None

    if TYPE_CHECKING:  # defined by Executor

        def _queue(self, nid: str) -> None: ...
        def _skip(self, nid: str, reason: str) -> None: ...

    def _route(self, nid: str, value: dict[str, Any] | None) -> None:
        """Deliver a finished node's output along its arrows, then re-check the readiness of the
        nodes that may have become ready (or dead) and of the node itself."""
        touched = self._arrows.deliver(nid, value)
        if len(touched) > 1:  # siblings that become ready together start in diagram order
            position = self._position
            touched = sorted(set(touched), key=position.__getitem__)
        self._recheck([*touched, nid])

    def _recheck(self, nids: Iterable[str]) -> None:
        # First in, first out: nodes are queued in the order they were found, so siblings
        # start in the order the caller gave (the diagram's), not in reverse.
        work = deque(nids)
        while work:
            nid = work.popleft()
            status = self._status[nid]
            if status in (RUNNING, SKIPPED) or nid in self._queued:
                continue
            if self._arrows.is_ready(nid):
                self._queue(nid)
            elif status == IDLE and self._counts[nid] == 0 and self._arrows.is_dead(nid):
                self._skip(nid, self._skip_reason(nid))
                work.extend(self._arrows.block_outgoing(nid))

    def _resolve_quiescence(self) -> bool:
        """Nothing runs and nothing is ready. Run nodes holding a pending value whose missing
        inputs can no longer arrive (their sources cannot become ready). Return True if any
        node was queued."""
        candidates = [
            nid
            for nid in self.graph.order
            if self._status[nid] not in (RUNNING, SKIPPED) and self._arrows.holds_input(nid)
        ]
        if not candidates:
            return False
        # A candidate must not wait on a value that another candidate could still produce.
        downstream = reachable(self.graph, candidates)
        chosen = []
        for nid in candidates:
            if not any(src in downstream for src in self._arrows.missing_sources(nid)):
                chosen.append(nid)
        for nid in chosen or candidates[:1]:
            self._queue(nid)
        return True

    def _skip_reason(self, nid: str, ending: str | None = None) -> str:
        failed = self.graph.nodes[self._failure[0]].label if self._failure else None
        return self._arrows.skip_reason(nid, failed, ending)

    def _loop_has_turns_left(self, nid: str) -> bool:
        """Whether another node of `nid`'s loop has a max_iteration it has not reached."""
        if nid not in self.graph.in_a_loop:
            return False
        loop = self.graph.loop_of[nid]
        for other, node in self.graph.nodes.items():
            if other != nid and self.graph.loop_of[other] == loop and node.max_iteration:
                if self._counts[other] < node.max_iteration:
                    return True
        return False
