"""`dipeo retry ID`: a new execution of the same diagram that replays what completed.

The history keeps every iteration of every node with a fingerprint of its definition and of
the inputs it received. A retry runs the same diagram with the same variables; at each launch
the executor asks `RetryReplay.recorded` (the replay seam, dipeo_cli/replay.py) whether the
original's output stands in for the handler call. It does when

- the node is not live: not changed since the original run (its definition's fingerprint,
  matched by label, since light and readable diagrams number nodes by position), not the
  `--from` node, and not downstream of one of those or of a node that ran live in this retry;
- the original completed that iteration of the node;
- the inputs the node receives now have the fingerprint the original's had.

Otherwise the node runs live, and so does everything downstream of it from then on. So the
first node execution that failed, was interrupted or never ran, and what depends on it, runs
live; a loop that failed in its third round replays rounds one and two. A replayed node does
not run: its files, HTTP calls and hooks do not happen again (at-least-once for the node that
failed). Replayed outputs carry `replayed_from` in their metadata and spend no tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dipeo_cli.arrows import reachable
from dipeo_cli.graph import ExecutableGraph, ExecutableNode
from dipeo_cli.replay import Recorded
from dipeo_cli.state import ExecutionState, create_node_output
from dipeo_cli.store.codec import fingerprint


@dataclass
class _Iteration:
    value: dict[str, Any]
    metadata: dict[str, Any]
    input_fingerprint: str | None
    order: int


@dataclass
class RetryReplay:
    """The Replay a retry runs with (module docstring)."""

    original_id: str
    graph: ExecutableGraph
    completed: dict[tuple[str, int], _Iteration]
    live: set[str] = field(default_factory=set)  # node ids that run live from now on
    replayed: int = 0

    def recorded(
        self,
        node: ExecutableNode,
        iteration: int,
        inputs: dict[str, Any],
        sources: tuple[tuple[str, str, int], ...],
    ) -> Recorded | None:
        if node.id in self.live:
            return None
        found = self.completed.get((node.label, iteration))
        if found is None or found.input_fingerprint != fingerprint(inputs):
            self.go_live([node.id])
            return None
        metadata = dict(found.metadata)
        spent = metadata.pop("token_usage", None)
        if spent:
            metadata["replayed_token_usage"] = spent  # what the original paid; nothing now
        metadata["replayed_from"] = self.original_id
        self.replayed += 1
        return Recorded(create_node_output(found.value, metadata), found.order)

    def go_live(self, node_ids: list[str]) -> None:
        """These nodes, and everything downstream of them, run live."""
        self.live.update(node_ids)
        self.live.update(reachable(self.graph, node_ids))


@dataclass
class RetryPlan:
    original: ExecutionState
    graph: ExecutableGraph
    variables: dict[str, Any]
    replay: RetryReplay
    diagram_from: str  # where the diagram that runs came from, for the plan's first line
    replayable: list[str]  # labels of nodes with recorded iterations that may be replayed
    live: list[tuple[str, str]]  # (label, why) of the nodes that will run

    def describe(self) -> str:
        lines = [f"retrying execution {self.original.id} ({self.diagram_from})"]
        lines.append(
            "will replay: " + (", ".join(self.replayable) if self.replayable else "nothing")
        )
        if self.live:
            lines.append("will run: " + "; ".join(f"{label} ({why})" for label, why in self.live))
        return "\n".join(lines)


def plan_retry(
    original: ExecutionState,
    graph: ExecutableGraph,
    *,
    iterations: list[dict[str, Any]],
    events: list[dict[str, Any]],
    record: dict[str, Any],
    variables: dict[str, Any],
    diagram_from: str,
    from_label: str | None = None,
    run_all: bool = False,
) -> RetryPlan:
    """Decide what a retry of `original` replays and what it runs. Raises ValueError (the CLI
    turns it into a usage error) for an unknown `--from` label."""
    order = {
        (e["node_id"], e["iteration"]): e["seq"] for e in events if e["type"] == "NodeCompleted"
    }
    completed: dict[tuple[str, int], _Iteration] = {}
    for it in iterations:
        if it["status"] != "COMPLETED" or it.get("output") is None:
            continue
        known = original.node_states.get(it["node_id"])
        label = it.get("label") or (known.label if known else "") or it["node_id"]
        completed[(label, it["iteration"])] = _Iteration(
            value=it["output"].get("value") or {},
            metadata=it["output"].get("metadata") or {},
            input_fingerprint=it.get("input_fingerprint"),
            order=order.get((it["node_id"], it["iteration"]), 0),
        )
    replay = RetryReplay(original.id, graph, completed)
    reasons: dict[str, str] = {}
    if run_all:
        reasons = {nid: "--all" for nid in graph.order}
    else:
        before = {label: fp for _id, label, fp in record.get("node_fingerprints") or ()}
        for nid in graph.order:
            node = graph.nodes[nid]
            if node.label not in before:
                reasons[nid] = "new since the original run"
            elif before[node.label] != node.fingerprint:
                reasons[nid] = "changed since the original run"
        if from_label is not None:
            chosen = graph.node_by_label(from_label) or graph.nodes.get(from_label)
            if chosen is None:
                labels = ", ".join(graph.nodes[n].label for n in graph.order)
                raise ValueError(f"--from: no node '{from_label}' in the diagram ({labels})")
            reasons[chosen.id] = "--from"
    roots = list(reasons)
    replay.go_live(roots)
    done_labels = {label for label, _ in completed}
    live: list[tuple[str, str]] = []
    replayable: list[str] = []
    for nid in graph.order:
        node = graph.nodes[nid]
        if nid in replay.live:
            why = reasons.get(nid) or _downstream_of(graph, nid, roots)
            live.append((node.label, why))
        elif node.label in done_labels:
            replayable.append(node.label)
            state = _original_state(original, node.label)
            if state is not None and state.status.value != "COMPLETED":
                live.append((node.label, _status_reason(state)))
        else:
            state = _original_state(original, node.label)
            live.append((node.label, _status_reason(state) if state else "never ran"))
    return RetryPlan(original, graph, variables, replay, diagram_from, replayable, live)


def _original_state(original: ExecutionState, label: str) -> Any:
    for node in original.node_states.values():
        if node.label == label:
            return node
    return None


def _status_reason(node: Any) -> str:
    status = str(node.status.value)
    if status == "FAILED":
        error = (node.error or "").strip().splitlines()
        return f"failed: {error[0][:80]}" if error else "failed"
    if status == "SKIPPED":
        return f"never ran: {node.skip_reason}" if node.skip_reason else "never ran"
    if status in ("PENDING", "RUNNING"):
        return "never finished"
    return status.lower()


def _downstream_of(graph: ExecutableGraph, nid: str, roots: list[str]) -> str:
    for root in roots:
        if nid in reachable(graph, [root]):
            return f"downstream of {graph.nodes[root].label}"
    return "live"


def retry_variables(
    original: ExecutionState, masked: list[str], overrides: dict[str, Any]
) -> dict[str, Any]:
    """The original's variables with `overrides` applied. A variable the history kept masked
    (a secret) must be given again: raises ValueError naming it."""
    variables = {**original.variables, **overrides}
    missing = [name for name in masked if name not in overrides]
    if missing:
        names = ", ".join(missing)
        flags = " ".join(f"-i {name}=..." for name in missing)
        raise ValueError(
            f"variable(s) {names} held a secret, which the history does not keep: pass them "
            f"again ({flags})"
        )
    return variables
