"""`dipeo history` and `dipeo show`: read the history."""

from __future__ import annotations

import sys
from typing import Any

import typer

from dipeo_cli.cli import (
    SHOW_CLIP,
    STATUSES,
    DbOption,
    GraphOption,
    JsonOption,
    _color,
    _fail,
    _graph_kind,
    _open_store,
    _out,
    _print_json,
    _read_history,
    app,
)


@app.command()
def history(
    limit: int = typer.Option(
        20, "--limit", "-n", min=1, help="Show at most this many executions."
    ),
    status: str | None = typer.Option(None, "--status", help="Only executions with this status."),
    diagram: str | None = typer.Option(
        None, "--diagram", help="Only executions of diagrams whose path contains this."
    ),
    as_json: bool = JsonOption,
    db: str | None = DbOption,
) -> None:
    """List past executions, newest first."""
    from dipeo_cli.state import ExecutionStatus

    wanted = None
    if status is not None:
        if status.upper() not in STATUSES:
            _fail(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
        wanted = ExecutionStatus(status.upper())
    states = _read_history(_list(db, limit, wanted, diagram))
    if as_json:
        from dipeo_cli.documents import history_json

        _print_json([history_json(s) for s in states])
        return
    from dipeo_cli.render import print_history

    print_history(states, _out(), color=_color(sys.stdout))


async def _list(db: str | None, limit: int, status: Any, diagram: str | None) -> Any:
    from pathlib import Path

    from dipeo_cli.store import open_store

    store = await _open_store(open_store, Path(db) if db else None)
    try:
        return await store.list_executions(limit=limit, status=status, diagram=diagram)
    finally:
        await store.close()


@app.command()
def show(
    execution: str = typer.Argument(
        "latest", help="Execution id, a unique prefix of one, or 'latest'."
    ),
    node: str | None = typer.Option(None, "--node", help="Only this node (label or id), in full."),
    as_json: bool = JsonOption,
    db: str | None = DbOption,
    picture: str | None = GraphOption,
) -> None:
    """Show one execution: node states, outputs, errors, token usage. With --node, that node in
    full with every iteration it ran (--json: the list of its iterations). With --graph, the
    diagram it ran as a picture, each node coloured by its status."""
    kind = _graph_kind(picture, as_json)
    if kind is not None:
        from dipeo_cli.render.graph import render_picture

        _out().write(render_picture(_read_history(_picture(db, execution)), kind))
        return
    # Text reports clip large values as they are read, so printing a huge output never loads
    # it whole; JSON is always whole.
    clip = None if as_json else SHOW_CLIP
    state, events, children, iterations = _read_history(_find(db, execution, node, clip))
    if as_json:
        from dipeo_cli.documents import iteration_json, show_json

        if node is not None:
            _print_json([iteration_json(it) for it in iterations])
        else:
            _print_json(show_json(state, children))
        return
    from dipeo_cli.render import print_execution

    try:
        print_execution(
            state,
            _out(),
            color=_color(sys.stdout),
            node=node,
            events=events,
            children=children,
            iterations=iterations,
        )
    except KeyError as exc:
        _fail(str(exc.args[0]) if exc.args else str(exc))


def _node_id(state: Any, node: str) -> str:
    if node in state.node_states:
        return node
    for node_id, node_state in state.node_states.items():
        if node_state.label == node:
            return node_id
    labels = ", ".join(sorted(s.label for s in state.node_states.values()))
    _fail(f"no node '{node}' in execution {state.id} (nodes: {labels})")


async def _find(db: str | None, execution: str, node: str | None, clip: int | None) -> Any:
    from pathlib import Path

    from dipeo_cli.store import open_store

    store = await _open_store(open_store, Path(db) if db else None)
    try:
        state = await store.find_execution(execution, clip=clip)
        events = await store.get_events(state.id)
        children = await store.list_executions(limit=-1, parent_id=state.id)
        iterations = None
        if node is not None:
            node_id = _node_id(state, node)
            iterations = [
                {"execution_id": state.id, **it}
                for it in await store.get_iterations(state.id, node_id, clip=clip)
            ]
        return state, events, children[::-1], iterations
    finally:
        await store.close()


async def _picture(db: str | None, execution: str) -> Any:
    """The execution drawn over the diagram it ran (its recorded source, parsed and compiled
    again); nodes only when the source is missing or no longer reads."""
    from pathlib import Path

    from dipeo_cli.render.graph import picture_of_state
    from dipeo_cli.store import open_store

    store = await _open_store(open_store, Path(db) if db else None)
    try:
        state = await store.find_execution(execution, clip=SHOW_CLIP)
        source = await store.diagram_source(state.id)
    finally:
        await store.close()
    if source is None:
        return picture_of_state(state)
    return _picture_of_source(source, state) or picture_of_state(state)


def _picture_of_source(source: str, state: Any) -> Any:
    from dipeo_cli.diagram import parse_diagram
    from dipeo_cli.errors import DipeoError
    from dipeo_cli.graph import CompileOptions, compile_graph
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
