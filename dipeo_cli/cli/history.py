"""`dipeo history` and `dipeo show`: read the history."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from dipeo_cli.cli import (
    SHOW_CLIP,
    STATUSES,
    DbOption,
    JsonOption,
    _color,
    _fail,
    _open_store,
    _out,
    _print_json,
    _read_history,
    app,
)

if TYPE_CHECKING:
    from dipeo_cli.state import ExecutionState


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
        from dipeo_cli.runner import history_json

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
    follow: bool = typer.Option(
        False,
        "--follow",
        "-f",
        help="Show an execution running elsewhere live until it ends, then its summary; "
        "exit with its exit code.",
    ),
    as_json: bool = JsonOption,
    db: str | None = DbOption,
) -> None:
    """Show one execution: node states, outputs, errors, token usage. With --node, that node in
    full with every iteration it ran (--json: the list of its iterations)."""
    if follow:
        if node is not None:
            _fail("--follow shows the whole execution: use it without --node")
        _follow(db, execution, as_json)
    # Text reports clip large values as they are read, so printing a huge output never loads
    # it whole; JSON is always whole.
    clip = None if as_json else SHOW_CLIP
    state, events, children, iterations = _read_history(_find(db, execution, node, clip))
    if as_json:
        from dipeo_cli.runner import show_json

        _print_json(iterations if node is not None else show_json(state, children))
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


def _node_id(state: ExecutionState, node: str) -> str:
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


def _follow(db: str | None, execution: str, as_json: bool) -> None:
    """`show --follow`: progress on stderr as `dipeo run` shows it (live table on a terminal,
    plain lines otherwise, nothing with --json), then the summary (or the JSON) on stdout;
    the exit code is the execution's."""
    from dipeo_cli.cli import _err

    try:
        state, code = _read_history(_follow_run(db, execution, as_json, _err()))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if as_json:
        from dipeo_cli.runner import show_json

        _print_json(show_json(state))
    else:
        from dipeo_cli.render import print_summary

        print_summary(state, _out(), color=_color(sys.stdout))
    raise typer.Exit(code)


async def _follow_run(db: str | None, execution: str, as_json: bool, stream: Any) -> Any:
    from pathlib import Path

    from dipeo_cli.follow import Followed, finished_reason, follow
    from dipeo_cli.render import choose_mode, open_progress
    from dipeo_cli.store import open_store

    store = await _open_store(open_store, Path(db) if db else None)
    clip = None if as_json else SHOW_CLIP
    try:
        state = await store.find_execution(execution, clip=clip)
        if state.status.is_final:  # nothing to follow: the summary at once
            followed = Followed(state, await finished_reason(store, state.id))
        else:
            view = open_progress(choose_mode(sys.stderr, as_json), stream)
            followed = await follow(store, state.id, view, clip=clip)
        return followed.state, followed.exit_code
    finally:
        await store.close()
