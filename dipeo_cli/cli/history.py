"""`dipeo history` and `dipeo show`: read the history."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from dipeo_cli.cli import (
    SHOW_CLIP,
    STATUSES,
    DbOption,
    GraphOption,
    JsonOption,
    StatusOption,
    _color,
    _fail,
    _graph_kind,
    _out,
    _print_json,
    _read_history,
    complete_execution_ids,
    root,
)
from dipeo_cli.cli.helptext import PlainHelpGroup

history_app = typer.Typer(
    name="history",
    help="List past executions, newest first (rm, prune, path, stats manage the history).",
    cls=PlainHelpGroup,
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
root.add_typer(history_app, name="history")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

if TYPE_CHECKING:
    from dipeo_cli.state import ExecutionState


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `90s`, `30m`, `2h`, `7d`, `2w` or `1h30m`; ValueError
    otherwise."""
    import re

    compact = text.strip().lower().replace(" ", "")
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw])", compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(text)
    return sum(float(n) * _UNITS[u] for n, u in parts)


def parse_since(text: str, now: float) -> str:
    """The ISO time (UTC, as stored) that `--since TEXT` names: a duration back from `now`,
    or an ISO date or time (local time unless it says otherwise)."""
    from datetime import datetime

    from dipeo_cli.state import iso

    try:
        return iso(now - parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        _fail(
            f"--since {text!r} is neither a duration (like 30m, 2h, 7d) nor a date "
            "(like 2024-05-01 or 2024-05-01T12:00)"
        )
    return iso(moment.timestamp())  # a naive time is local, as the user reads it


def _status_value(status: str | None) -> Any:
    from dipeo_cli.state import ExecutionStatus

    if status is None:
        return None
    if status.upper() not in STATUSES:
        _fail(f"--status must be one of {', '.join(STATUSES)}, got {status!r}")
    return ExecutionStatus(status.upper())


@history_app.callback()
def history(
    ctx: typer.Context,
    limit: int = typer.Option(
        20,
        "--limit",
        "-n",
        metavar="N",
        help="Show at most N executions (0: all of them).",
    ),
    status: str | None = StatusOption,
    diagram: str | None = typer.Option(
        None,
        "--diagram",
        metavar="TEXT",
        help="Only executions of diagrams whose name or path contains TEXT.",
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="WHEN",
        help="Only executions started since WHEN: a duration back from now (30m, 2h, 7d) "
        "or a date (2024-05-01, 2024-05-01T12:00).",
    ),
    parent: str | None = typer.Option(
        None,
        "--parent",
        metavar="ID",
        help="Only the sub-diagram runs started by execution ID (an id or unique prefix).",
        autocompletion=complete_execution_ids,
    ),
    top: bool = typer.Option(
        False, "--top", help="Only executions a user started (no sub-diagram runs)."
    ),
    search: str | None = typer.Option(
        None,
        "--search",
        metavar="TEXT",
        help="Only executions whose errors, outputs, node labels or diagram contain every "
        "word of TEXT (full-text).",
    ),
    wide: bool = typer.Option(
        False, "--wide", help="Never cut diagram names or errors to fit the terminal."
    ),
    as_json: bool = JsonOption,
    db: str | None = DbOption,
) -> None:
    """List past executions, newest first; `dipeo history COMMAND` manages the history."""
    if limit < 0:
        _fail("--limit must be 0 (all) or more")
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"db": db}  # `dipeo history --db X rm ID` works as `rm ID --db X`
        return
    import time

    wanted = _status_value(status)
    after = parse_since(since, time.time()) if since else None
    if parent is not None and top:
        _fail("use only one of --parent and --top")
    query = {
        "limit": limit if limit > 0 else -1,
        "status": wanted,
        "diagram": diagram,
        "since": after,
        "top": top,
        "search": search,
    }
    states = _read_history(_list(db, query, parent))
    if as_json:
        from dipeo_cli.documents import history_json

        _print_json([history_json(s) for s in states])
        return
    from dipeo_cli.render import print_history

    filtered = any(query[k] for k in ("status", "diagram", "since", "top", "search")) or bool(
        parent
    )
    print_history(states, _out(), color=_color(sys.stdout), wide=wide, filtered=filtered)


async def _list(db: str | None, query: dict[str, Any], parent: str | None) -> Any:
    store = await _open_reader(db)
    if store is None:
        return []
    try:
        if parent is not None:
            query["parent_id"] = (await store.find_execution(parent)).id
        return await store.list_executions(**query)
    finally:
        await store.close()


async def _open_reader(db: str | None) -> Any:
    """The history to read, never created: None when the default one does not exist yet
    (nothing recorded), one line and exit 2 when `--db` names a missing file."""
    from dipeo_cli.errors import DipeoError, HistoryMissingError
    from dipeo_cli.store import open_store

    try:
        return await open_store(db or None, create=False)
    except HistoryMissingError as exc:
        if db is None:
            return None
        _fail(f"{exc} (check the --db path; `dipeo run` creates a history)")
    except DipeoError as exc:  # HistoryError, UsageError: one line, exit 2
        _fail(str(exc))


@root.command()
def show(
    execution: str = typer.Argument(
        "latest",
        metavar="ID",
        help="Execution id, a unique prefix of one, or 'latest'.",
        autocompletion=complete_execution_ids,
    ),
    node: str | None = typer.Option(
        None, "--node", metavar="LABEL", help="Only node LABEL (or node id), in full."
    ),
    follow: bool = typer.Option(
        False,
        "--follow",
        "-f",
        help="Show an execution running elsewhere live until it ends, then its summary; "
        "exit with its exit code.",
    ),
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
    if follow:
        if node is not None:
            _fail("--follow shows the whole execution: use it without --node")
        _follow(db, execution, as_json)
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


def _node_id(state: ExecutionState, node: str) -> str:
    from dipeo_cli.state import no_such_node, nodes_named

    found = nodes_named(state, node)
    if not found:
        _fail(no_such_node(state, node))
    return found[0]


async def _find(db: str | None, execution: str, node: str | None, clip: int | None) -> Any:
    store = await _open_reader(db)
    if store is None:
        from dipeo_cli.paths import default_db_path

        what = "" if execution == "latest" else f"no execution {execution!r}: "
        _fail(f"{what}no executions recorded yet in {default_db_path()}")
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
        from dipeo_cli.documents import show_json

        _print_json(show_json(state))
    else:
        from dipeo_cli.render import print_summary

        print_summary(state, _out(), color=_color(sys.stdout))
    raise typer.Exit(code)


async def _follow_run(db: str | None, execution: str, as_json: bool, stream: Any) -> Any:

    from dipeo_cli.follow import Followed, finished_reason, follow
    from dipeo_cli.render import choose_mode, open_progress

    store = await _open_reader(db)
    if store is None:
        _fail(f"no execution {execution!r}: no executions recorded yet")
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


async def _picture(db: str | None, execution: str) -> Any:
    """The execution drawn over the diagram it ran (dipeo_cli/picture.py)."""
    from dipeo_cli.picture import picture_of_execution

    store = await _open_reader(db)
    if store is None:
        _fail(f"no execution {execution!r}: no executions recorded yet")
    try:
        state = await store.find_execution(execution, clip=SHOW_CLIP)
        return await picture_of_execution(store, state)
    finally:
        await store.close()
