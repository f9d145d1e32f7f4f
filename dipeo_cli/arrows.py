"""What travels on arrows, and when a node may run: the rules of DESIGN.md §2, without asyncio.

Each arrow (an `Edge`) holds at most one *pending* value (delivered, not yet consumed) and keeps
its *last* value. An arrow is *blocked* when its source's latest execution did not deliver on its
port (a condition branch not taken, a failed or capped source), and *blocked for good* when, in
addition, the source can never run again.

A node's *required* arrows: on its first execution every incoming arrow except those that close
a loop; on later executions the non-`first` arrows from inside its own loop (or, for a node
downstream of a loop, the arrows from nodes that repeat). Arrows from outside reuse their last
value. A node is ready when at least one required arrow is pending and every other one is
pending or blocked for good; it is dead (it can never run) when its first-execution arrows are
all blocked for good.

The executor owns the node outcomes (`status`, `counts`) and shares them with `ArrowState`.
"""

from __future__ import annotations

import json
from typing import Any

from dipeo_cli.graph import Edge, ExecutableGraph
from dipeo_cli.values import to_text

# What the scheduler knows of a node (the full NodeState lives in state.py).
IDLE, RUNNING, DONE, FAILED, SKIPPED, CAPPED = range(6)


def convert(value: Any, content_type: str | None) -> Any:
    """Apply an arrow's content_type to the value it carries."""
    if content_type is None or content_type == "variable":
        return value
    if content_type == "raw_text":
        if isinstance(value, dict) and "messages" in value and "last_message" in value:
            value = value["last_message"]  # a person's conversation, as text: its last reply
        return to_text(value)
    if content_type in ("object", "json"):
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return {"text": value}  # DiPeO's rule: an object arrow always carries an object
        return value
    if content_type == "conversation_state":
        if isinstance(value, dict) and "messages" in value:
            return value
        if isinstance(value, list):
            return {"messages": value}
        return {"messages": [{"role": "assistant", "content": to_text(value)}]}
    return value


class ArrowState:
    """The values on every arrow of one execution, and the readiness rules that read them."""

    def __init__(self, graph: ExecutableGraph, status: dict[str, int], counts: dict[str, int]):
        self.graph = graph
        self._status = status
        self._counts = counts
        n = len(graph.edges)
        self._pending: list[Any] = [None] * n
        self._has_pending = [False] * n
        self._last: list[Any] = [None] * n
        self._has_last = [False] * n
        self._seq = [0] * n  # delivery order, so that the latest value wins per label
        self._from = [0] * n  # which iteration of the source delivered the pending/last value
        # (label, source node id, source iteration) of the inputs the last take_inputs gave
        self.sources: tuple[tuple[str, str, int], ...] = ()
        self._blocked = [False] * n
        self._delivery = 0
        # The required arrows of each node's first and later executions: the node's incoming
        # tuple itself, or () when that is what they are (as they mostly are), so that a large
        # graph holds no copy per node.
        self._first: dict[str, tuple[Edge, ...]] = {}
        self._later: dict[str, tuple[Edge, ...]] = {}
        for nid in graph.order:
            incoming = graph.incoming[nid]
            self._first[nid] = _subset(incoming, [e for e in incoming if not e.closes_loop])
            if nid in graph.in_a_loop:
                later = [e for e in incoming if e.in_loop and e.target_handle != "first"]
            else:
                later = [
                    e
                    for e in incoming
                    if e.source in graph.repeating and e.target_handle != "first"
                ]
            self._later[nid] = _subset(incoming, later)

    def required(self, nid: str) -> tuple[Edge, ...]:
        return self._first[nid] if self._counts[nid] == 0 else self._later[nid]

    # -- delivering and consuming ---------------------------------------------------------

    def deliver(self, nid: str, value: dict[str, Any] | None) -> list[str]:
        """Put a finished node's output on its outgoing arrows (an arrow whose port is not in
        `value` is blocked); return the nodes whose readiness may have changed."""
        touched = []
        for edge in self.graph.outgoing[nid]:
            i = edge.index
            if value is not None and edge.source_port in value:
                self._delivery += 1
                converted = convert(value[edge.source_port], edge.content_type)
                self._pending[i] = converted
                self._has_pending[i] = True
                self._last[i] = converted
                self._has_last[i] = True
                self._seq[i] = self._delivery
                self._from[i] = self._counts[nid]
                self._blocked[i] = False
            else:
                self._blocked[i] = True
            touched.append(edge.target)
        return touched

    def block_outgoing(self, nid: str) -> list[str]:
        """A node that will never run: block its arrows; return their targets."""
        for edge in self.graph.outgoing[nid]:
            self._blocked[edge.index] = True
        return [edge.target for edge in self.graph.outgoing[nid]]

    def take_inputs(self, nid: str) -> dict[str, Any]:
        """Consume the node's pending values and reuse last values where the rules say so:
        a dict keyed by arrow label, the most recent delivery winning per label. Sets
        `sources` to where each of them came from."""
        incoming = self.graph.incoming[nid]
        if not incoming:
            self.sources = ()
            return {}
        later = self._counts[nid] > 0  # `first` arrows serve the first execution only
        has_pending, pending, seq = self._has_pending, self._pending, self._seq
        if len(incoming) == 1:
            edge = incoming[0]
            i = edge.index
            if has_pending[i]:
                has_pending[i] = False
                value, pending[i] = pending[i], None
                if later and edge.target_handle == "first":
                    self.sources = ()
                    return {}
            elif self._has_last[i] and not (later and edge.target_handle == "first"):
                value = self._last[i]
            else:
                self.sources = ()
                return {}
            self.sources = ((edge.variable, edge.source, self._from[i]),)
            return {edge.variable: value}
        found: list[tuple[int, str, Any, Edge]] = []
        for edge in incoming:
            i = edge.index
            if has_pending[i]:
                has_pending[i] = False
                if not (later and edge.target_handle == "first"):
                    found.append((seq[i], edge.variable, pending[i], edge))
                pending[i] = None
            elif self._has_last[i] and not (later and edge.target_handle == "first"):
                found.append((seq[i], edge.variable, self._last[i], edge))
        found.sort(key=lambda item: item[0])
        inputs: dict[str, Any] = {}
        sources: dict[str, tuple[str, str, int]] = {}
        for _, variable, value, edge in found:
            inputs[variable] = value
            sources[variable] = (variable, edge.source, self._from[edge.index])
        self.sources = tuple(sources.values())
        return inputs

    # -- readiness ------------------------------------------------------------------------

    def _blocked_for_good(self, edge: Edge) -> bool:
        return self._blocked[edge.index] and (
            edge.source not in self.graph.repeating or self._status[edge.source] == SKIPPED
        )

    def is_ready(self, nid: str) -> bool:
        edges = self.required(nid)
        if not edges:
            return False
        any_pending = False
        for edge in edges:
            if self._has_pending[edge.index]:
                any_pending = True
            elif not self._blocked_for_good(edge):
                return False
        return any_pending

    def is_dead(self, nid: str) -> bool:
        edges = self._first[nid]
        if not edges:
            return False
        return all(not self._has_pending[e.index] and self._blocked_for_good(e) for e in edges)

    def holds_input(self, nid: str) -> bool:
        """Whether a required arrow of the node holds a value (a candidate at quiescence)."""
        return any(self._has_pending[e.index] for e in self.required(nid))

    def missing_sources(self, nid: str) -> list[str]:
        return [e.source for e in self.required(nid) if not self._has_pending[e.index]]

    def skip_reason(self, nid: str, failed: str | None, ending: str | None) -> str:
        """Why a node never ran, from what its missing inputs' sources did (most telling first),
        else from how the execution ended. `failed` labels the node that stopped the run."""
        if not self.graph.incoming[nid]:
            return "no arrow leads to this node"
        if ending == "timeout":
            return "execution timed out"
        if ending == "interrupted":
            return "execution interrupted"
        reasons: list[tuple[int, str]] = []
        for edge in self._first[nid]:
            if self._has_pending[edge.index]:
                continue
            source = self.graph.nodes[edge.source].label
            status = self._status[edge.source]
            if status == FAILED:
                reasons.append((0, f"upstream node '{source}' failed"))
            elif status == DONE and self._blocked[edge.index]:
                reasons.append(
                    (1, f"branch not taken ('{source}' did not choose {edge.source_port})")
                )
            elif status == CAPPED:
                reasons.append((2, f"upstream node '{source}' reached its max_iteration"))
            elif status == SKIPPED:
                reasons.append((3, f"upstream node '{source}' was skipped"))
            elif failed is None:  # a source still idle only explains it on a clean end
                reasons.append((4, f"waited for input from '{source}' that never came"))
        if reasons:
            return min(reasons)[1]
        if failed is not None:
            return f"execution stopped: node '{failed}' failed"
        return "never became ready"


def _subset(edges: tuple[Edge, ...], kept: list[Edge]) -> tuple[Edge, ...]:
    """`kept` (some of `edges`, in order) as a tuple, `edges` itself when it kept them all."""
    return edges if len(kept) == len(edges) else tuple(kept)


def reachable(graph: ExecutableGraph, seeds: list[str]) -> set[str]:
    """Nodes strictly downstream of any seed (a seed reached from another seed counts)."""
    seen: set[str] = set()
    todo = [e.target for s in seeds for e in graph.outgoing[s]]
    while todo:
        nid = todo.pop()
        if nid in seen:
            continue
        seen.add(nid)
        todo.extend(e.target for e in graph.outgoing[nid])
    return seen
