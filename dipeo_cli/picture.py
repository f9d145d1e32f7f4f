"""The picture of an execution: its recorded diagram parsed and compiled again (loops dashed),
each node coloured by its status; nodes only when the source is missing or no longer reads.
`dipeo show ID --graph` and the web monitor (`dipeo serve`) draw it."""

from __future__ import annotations

from typing import Any

from dipeo_cli.render.graph import Picture, picture_of_state
from dipeo_cli.state import ExecutionState


async def picture_of_execution(store: Any, state: ExecutionState) -> Picture:
    source = await store.diagram_source(state.id)
    if source is None:
        return picture_of_state(state)
    return picture_of_source(source, state) or picture_of_state(state)


def picture_of_source(source: str, state: ExecutionState) -> Picture | None:
    from dipeo_cli.compiler import compile_graph
    from dipeo_cli.diagram import parse_diagram
    from dipeo_cli.errors import DipeoError
    from dipeo_cli.graph import CompileOptions
    from dipeo_cli.registry import load_plugins
    from dipeo_cli.render.graph import picture_of_diagram, picture_of_graph

    try:
        diagram = parse_diagram(source, file=state.diagram_id, strict=False)
    except DipeoError:
        return None
    try:
        # mock persons: drawing a run must not need the API key it ran with
        graph = compile_graph(diagram, load_plugins(()), CompileOptions(llm_mode="mock"))
    except DipeoError:  # a plugin type, a file that moved: draw it without loop detection
        return picture_of_diagram(diagram, state)
    return picture_of_graph(graph, state)
