"""Helpers for testing handlers and small diagrams, as dipeo's own tests do.

    from dipeo_cli.testing import run_handler, run_diagram

    def test_shout():
        output = run_handler("shout", {"suffix": "!"}, inputs={"default": "hi"})
        assert output.value == {"default": "HI!"}

    def test_shout_in_a_diagram():
        state = run_diagram('''
            nodes:
              - {label: Start, type: start, custom_data: {text: hi}}
              - {label: Shout, type: shout}
              - {label: End, type: endpoint}
            connections: [{from: Start, to: Shout}, {from: Shout, to: End}]
        ''')
        assert state.status.value == "COMPLETED" and state.result == "HI"

Handlers registered with `@node_handler` by an imported module are found, and so are plugins
named in `plugins` (files or modules, as `--plugin` takes them). Nothing is written to a
history: these run in memory, in a fresh event loop (call them from synchronous tests; from an
async test, use `arun_handler` / `arun_diagram`). Properties are validated as `dipeo validate`
does, so a bad property raises `DiagramError` before the handler is called; what the handler
raises, `run_handler` raises.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dipeo_cli.compiler import compile_graph
from dipeo_cli.context import NodeContext, NodeScopedStore, RunResources
from dipeo_cli.diagram import load_diagram, parse_diagram
from dipeo_cli.diagram.model import Diagram, DiagramNode
from dipeo_cli.events import Event
from dipeo_cli.executor import RunOptions
from dipeo_cli.graph import CompileOptions, ExecutableGraph
from dipeo_cli.registry import load_plugins
from dipeo_cli.runner import Run
from dipeo_cli.state import ExecutionState, NodeOutput

__all__ = [
    "RecordingProgress",
    "arun_diagram",
    "arun_handler",
    "compile_diagram",
    "run_diagram",
    "run_handler",
]


class RecordingProgress:
    """A progress view that shows nothing and keeps every event it is given (`events`), and the
    final state (`state`), for assertions on what happened in which order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.state: ExecutionState | None = None

    def start(self, state: ExecutionState) -> None:
        self.state = state

    def update(self, state: ExecutionState, event: Event) -> None:
        self.events.append(event)

    def stop(self, state: ExecutionState) -> None:
        self.state = state


def compile_diagram(
    diagram: str | Path | Diagram,
    *,
    plugins: tuple[str, ...] = (),
    llm_mode: str | None = None,
) -> ExecutableGraph:
    """Load (a path, or diagram text in any format) and compile, raising `DiagramError` with
    every problem. Text is told from a path by a line break or a leading `{`."""
    if isinstance(diagram, str) and ("\n" in diagram or diagram.lstrip().startswith("{")):
        import textwrap

        diagram = parse_diagram(textwrap.dedent(diagram), file=None)
    elif not isinstance(diagram, Diagram):
        diagram = load_diagram(diagram)
    return compile_graph(diagram, load_plugins(plugins), CompileOptions(llm_mode=llm_mode))


async def arun_handler(
    node_type: str,
    props: dict[str, Any] | None = None,
    *,
    inputs: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    iteration: int = 1,
    plugins: tuple[str, ...] = (),
    base_dir: str | Path | None = None,
    llm_mode: str | None = None,
) -> NodeOutput:
    """Call the handler of `node_type` once on a node with `props`, as the executor would on
    its `iteration`-th execution with `inputs` (keyed by arrow label) and `variables`. Relative
    paths are taken from `base_dir` (default: the working directory)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    nodes = [DiagramNode(id="node", type=node_type, label="Node", props=dict(props or {}))]
    if node_type != "start":
        nodes.insert(0, DiagramNode(id="start", type="start", label="Start"))
    graph = compile_graph(
        Diagram(nodes=nodes), load_plugins(plugins), CompileOptions(llm_mode=llm_mode)
    )
    node = graph.nodes["node"]
    resources = RunResources(base_dir=base, diagram_dir=base, llm_mode=llm_mode)
    ctx = NodeContext(
        execution_id="test",
        node=node,
        inputs=dict(inputs or {}),
        variables=dict(variables or {}),
        iteration=iteration,
        state_store=NodeScopedStore(None),
        resources=resources,
        graph=graph,
        outputs={},
        counts={nid: 0 for nid in graph.nodes} | {"node": iteration - 1},
    )
    try:
        output = await node.spec.fn(node, ctx)
    finally:
        await resources.close()
    if not isinstance(output, NodeOutput):  # as the executor does with a bare return value
        from dipeo_cli.state import create_node_output

        output = create_node_output({"default": output})
    return output


def run_handler(node_type: str, props: dict[str, Any] | None = None, **kwargs: Any) -> NodeOutput:
    """`arun_handler` in a fresh event loop."""
    return asyncio.run(arun_handler(node_type, props, **kwargs))


async def arun_diagram(
    diagram: str | Path | Diagram,
    *,
    variables: dict[str, Any] | None = None,
    llm_mode: str | None = None,
    plugins: tuple[str, ...] = (),
    options: RunOptions | None = None,
    progress: Any = None,
    base_dir: str | Path | None = None,
) -> ExecutionState:
    """Run a diagram (a path, text in any format, or a `Diagram`) to the end and return its
    final state: `status`, `result`, `node_states`, `node_outputs`, `error`. A failed run is a
    state with status FAILED, not an exception; an invalid diagram raises `DiagramError`.
    `llm_mode="mock"` answers every LLM call offline, as `--llm mock` does."""
    graph = compile_diagram(diagram, plugins=plugins, llm_mode=llm_mode)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    file = graph.diagram.file
    resources = RunResources(
        base_dir=base,
        diagram_dir=Path(file).resolve().parent if file else base,
        llm_mode=llm_mode,
        options=options or RunOptions(),
    )
    run = Run(
        graph,
        store=None,
        resources=resources,
        variables=dict(variables or {}),
        options=options or RunOptions(),
        progress=progress,
    )
    try:
        outcome = await run.run()
    finally:
        await resources.close()
    return outcome.state


def run_diagram(diagram: str | Path | Diagram, **kwargs: Any) -> ExecutionState:
    """`arun_diagram` in a fresh event loop."""
    return asyncio.run(arun_diagram(diagram, **kwargs))
