"""A tiny kit for executor tests: build graphs from compact arrow strings with test handlers
whose behaviour is a Python function in the node's props (no loader, no built-in handlers)."""

from __future__ import annotations

import asyncio
import inspect
import re
from typing import Any

from dipeo_cli import events as ev
from dipeo_cli.compiler import compile_graph
from dipeo_cli.context import RunResources
from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode
from dipeo_cli.executor import Executor, RunOptions
from dipeo_cli.graph import ExecutableGraph
from dipeo_cli.registry import HandlerRegistry, HandlerSpec
from dipeo_cli.state import ExecutionState, NodeOutput, apply_event, create_node_output, new_state


def _passthrough(inputs: dict[str, Any]) -> Any:
    return next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)


async def _start(node: Any, ctx: Any) -> Any:
    return create_node_output({"default": {**node.props.get("custom_data", {}), **ctx.variables}})


async def _fn(node: Any, ctx: Any) -> Any:
    result = node.props["fn"](ctx)
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, NodeOutput):
        return result
    return create_node_output({"default": result})


async def _branch(node: Any, ctx: Any) -> Any:
    taken = node.props["test"](ctx)
    port = "condtrue" if taken else "condfalse"
    return create_node_output({port: _passthrough(ctx.inputs)}, {"result": taken})


async def _endpoint(node: Any, ctx: Any) -> Any:
    return create_node_output({"default": _passthrough(ctx.inputs)})


def registry() -> HandlerRegistry:
    reg = HandlerRegistry()
    reg.register(HandlerSpec("start", _start, inputs=()))
    reg.register(HandlerSpec("fn", _fn))
    reg.register(HandlerSpec("branch", _branch, outputs=("condtrue", "condfalse")))
    reg.register(HandlerSpec("endpoint", _endpoint, outputs=()))
    return reg


ARROW = re.compile(
    r"^(?P<src>[^\[\]]+?)(?:\[(?P<port>\w+)\])?\s*->\s*(?P<dst>[^\[\]:]+?)(?:\[(?P<handle>\w+)\])?"
    r"(?:\s*:\s*(?P<label>\w+))?$"
)


def build(nodes: dict[str, tuple[str, dict[str, Any]]], arrows: list[str]) -> ExecutableGraph:
    """nodes: label -> (type, props); arrows: "A -> B", "C[condfalse] -> B[first] : label"."""
    labels = list(nodes)
    diagram_nodes = [
        DiagramNode(id=f"node_{i}", type=kind, label=label, props=props)
        for i, (label, (kind, props)) in enumerate(nodes.items())
    ]
    ids = {label: f"node_{i}" for i, label in enumerate(labels)}
    diagram_arrows = []
    for i, text in enumerate(arrows):
        m = ARROW.match(text.strip())
        assert m, text
        diagram_arrows.append(
            DiagramArrow(
                id=f"arrow_{i}",
                source=ids[m["src"].strip()],
                target=ids[m["dst"].strip()],
                source_handle=m["port"] or "default",
                target_handle=m["handle"] or "default",
                label=m["label"],
                written_as=text,
            )
        )
    return compile_graph(Diagram(nodes=diagram_nodes, arrows=diagram_arrows), registry())


class Recorder:
    """Collects events and the state they build, like the CLI does."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []
        self.state: ExecutionState | None = None

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)
        if isinstance(event, ev.ExecutionStarted):
            self.state = new_state(event)
        else:
            assert self.state is not None
            apply_event(self.state, event)

    def node(self, graph: ExecutableGraph, label: str) -> Any:
        node = graph.node_by_label(label)
        assert node is not None and self.state is not None
        return self.state.node_states[node.id]

    def output(self, graph: ExecutableGraph, label: str) -> Any:
        node = graph.node_by_label(label)
        assert node is not None and self.state is not None
        out = self.state.node_outputs.get(node.id)
        return None if out is None else out.value.get("default")

    def started(self, graph: ExecutableGraph) -> list[str]:
        labels = {nid: n.label for nid, n in graph.nodes.items()}
        return [labels[e.node_id] for e in self.events if isinstance(e, ev.NodeStarted)]


def run(
    graph: ExecutableGraph,
    variables: dict[str, Any] | None = None,
    *,
    resources: RunResources | None = None,
    **options: Any,
) -> tuple[ev.ExecutionFinished, Recorder]:
    recorder = Recorder()

    async def main() -> ev.ExecutionFinished:
        executor = Executor(
            graph,
            execution_id="test",
            emit=recorder,
            variables=variables,
            options=RunOptions(**options),
            resources=resources,
        )
        return await executor.run()

    return asyncio.run(main()), recorder
