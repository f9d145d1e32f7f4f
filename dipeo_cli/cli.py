"""The `dipeo` command: the only module that imports Typer.

A thin translator: parse options, call the runner/store/renderer, map errors to exit codes.
Heavy modules are imported inside the commands so that `dipeo --help` stays fast.

Exit codes: 0 completed, 1 execution failed, 2 invalid usage or invalid diagram (nothing ran),
124 timed out, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import typer

from dipeo_cli import __version__

app = typer.Typer(
    name="dipeo",
    help="Run DiPeO diagrams from the command line and keep a history of every execution.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_USAGE = 2
SHOW_CLIP = 64 * 1024  # characters of a stored value `dipeo show` reads for its text report
MEMORY_DB = ":memory:"  # --db :memory: keeps the history in the process only
STATUSES = ("STARTED", "RUNNING", "COMPLETED", "FAILED", "ABORTED")

DbOption = typer.Option(
    None,
    "--db",
    help="History database file (default: $DIPEO_HOME/history.db; :memory: keeps nothing).",
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def _version(value: bool) -> None:
    if value:
        print(f"dipeo {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Run DiPeO diagrams from the command line and keep a history of every execution."""


def _out() -> Any:
    from dipeo_cli.redact import RedactingStream

    return RedactingStream(sys.stdout)


def _err() -> Any:
    from dipeo_cli.redact import RedactingStream

    return RedactingStream(sys.stderr)


def _color(stream: Any) -> bool:
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    from dipeo_cli.redact import redact

    print(f"error: {redact(message)}", file=sys.stderr)
    raise typer.Exit(code)


def _fail_invalid(diagram: str, exc: Any) -> NoReturn:
    _fail(f"{diagram} is not valid ({len(exc.problems)} problem(s)):\n{exc}")


def _format_flag(light: bool, native: bool, readable: bool) -> str | None:
    chosen = [
        name for name, on in (("light", light), ("native", native), ("readable", readable)) if on
    ]
    if len(chosen) > 1:
        _fail("use only one of --light, --native, --readable")
    return chosen[0] if chosen else None


def _guarded(prepare: Any, diagram: str, **options: Any) -> Any:
    """`prepare(diagram, ...)` (load + compile); an exception that is not one of ours is a bug,
    reported as one "internal error" line with exit 2 (nothing ran), never a traceback."""
    from dipeo_cli.errors import DipeoError

    try:
        return prepare(diagram, **options)
    except (DipeoError, typer.Exit):
        raise
    except Exception as exc:
        lines = str(exc).strip().splitlines() or [""]
        _fail(f"internal error while loading {diagram}: {type(exc).__name__}: {lines[0][:500]}")


def _print_json(data: Any) -> None:
    from dipeo_cli.redact import redact_json

    sys.stdout.write(json.dumps(redact_json(data), indent=2, ensure_ascii=False, default=str))
    sys.stdout.write("\n")


@app.command()
def run(
    diagram: str = typer.Argument(
        ..., help="Diagram file: light YAML, native JSON or readable YAML."
    ),
    input_data: str | None = typer.Option(None, "--input-data", help="Variables as a JSON object."),
    inputs: str | None = typer.Option(None, "--inputs", help="Variables from a JSON or YAML file."),
    var: list[str] | None = typer.Option(
        None, "-i", "--var", help="One variable, key=value (repeatable; JSON values accepted)."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", help="Fail the execution after this many seconds (exit 124)."
    ),
    max_iterations: int = typer.Option(
        100,
        "--max-iterations",
        min=1,
        help="Most executions of one node without its own max_iteration.",
    ),
    max_parallel: int = typer.Option(
        256, "--max-parallel", min=1, help="Most nodes running at once."
    ),
    continue_on_error: bool = typer.Option(
        False,
        "--continue-on-error",
        help="A failing node passes its error on as output instead of stopping the run.",
    ),
    plugin: list[str] | None = typer.Option(
        None, "--plugin", help="Handler plugin: a .py file or a module name (repeatable)."
    ),
    light: bool = typer.Option(False, "--light", help="Read the file as light YAML."),
    native: bool = typer.Option(False, "--native", help="Read the file as native JSON."),
    readable: bool = typer.Option(False, "--readable", help="Read the file as readable YAML."),
    as_json: bool = JsonOption,
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No progress; only the summary (or JSON)."
    ),
    db: str | None = DbOption,
    answer: list[str] | None = typer.Option(
        None,
        "--answer",
        help="Answer for a user_response node, LABEL=TEXT (repeatable; used in order).",
    ),
    llm: str | None = typer.Option(
        None,
        "--llm",
        help="'mock': answer every LLM call offline and deterministically (marked in the history).",
    ),
) -> None:
    """Validate, run and record a diagram, showing every node's status live."""
    from dipeo_cli.errors import DiagramError, DipeoError
    from dipeo_cli.executor import RunOptions
    from dipeo_cli.handlers.user_response import parse_answers
    from dipeo_cli.llm import choose_llm_mode
    from dipeo_cli.runner import parse_variables, prepare

    if timeout is not None and timeout <= 0:
        _fail("--timeout must be greater than 0")
    fmt = _format_flag(light, native, readable)
    try:
        llm_mode = choose_llm_mode(llm)  # --llm, else $DIPEO_LLM; a per-run value from here on
        variables = parse_variables(input_data, inputs, var)
        graph = _guarded(
            prepare, diagram, format=fmt, plugins=tuple(plugin or ()), llm_mode=llm_mode
        )
        answers = parse_answers(answer, graph)
    except DiagramError as exc:
        _fail_invalid(diagram, exc)
    except DipeoError as exc:
        _fail(str(exc))
    options = RunOptions(
        max_iterations=max_iterations,
        timeout=timeout,
        max_parallel=max_parallel,
        continue_on_error=continue_on_error,
    )
    import asyncio

    outcome = asyncio.run(_run(graph, variables, options, db, quiet, answers, llm_mode))
    state = outcome.state
    if as_json:
        from dipeo_cli.runner import run_json

        _print_json(run_json(state))
    else:
        from dipeo_cli.render import print_summary

        recorded = outcome.history_error is None and db != MEMORY_DB
        print_summary(state, _out(), color=_color(sys.stdout), recorded=recorded)
    if outcome.history_error is not None:
        # the result above stands; the history, which scripts and `dipeo show` rely on, does not
        print(
            f"error: execution {state.id} was not recorded: {outcome.history_error}",
            file=_err(),
        )
    elif db == MEMORY_DB:
        print(f"note: execution {state.id} is not kept (--db {MEMORY_DB})", file=_err())
    raise typer.Exit(outcome.exit_code)


async def _run(
    graph: Any,
    variables: dict[str, Any],
    options: Any,
    db: str | None,
    quiet: bool,
    answers: dict[str, list[str]] | None = None,
    llm_mode: str | None = None,
) -> Any:
    import asyncio
    import contextlib
    import dataclasses
    from pathlib import Path

    from dipeo_cli.errors import HistoryError
    from dipeo_cli.render import choose_mode, open_progress
    from dipeo_cli.runner import execute
    from dipeo_cli.store import open_store

    store = await _open_store(open_store, Path(db) if db else None)
    progress = open_progress(choose_mode(sys.stderr, quiet), _err())
    handled: list[Any] = []
    try:
        outcome = await execute(
            graph,
            store=store,
            progress=progress,
            variables=variables,
            options=options,
            answers=answers,
            on_start=lambda run: handled.extend(_abort_on_signals(run)),
            llm_mode=llm_mode,
        )
    except BaseException:
        with contextlib.suppress(HistoryError):  # the error on its way out says more
            await store.close()
        raise
    finally:
        loop = asyncio.get_running_loop()
        for sig in handled:
            loop.remove_signal_handler(sig)
    try:
        await store.close()
    except HistoryError as exc:  # the same failure execute() reported, or a new one
        if outcome.history_error is None:
            outcome = dataclasses.replace(outcome, history_error=exc)
    return outcome


def _abort_on_signals(run: Any) -> list[Any]:
    """This process runs one execution: Ctrl-C and SIGTERM abort it (recorded ABORTED)."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    handled = []
    for sig, reason in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated (SIGTERM)")):
        try:
            loop.add_signal_handler(sig, _abort_quietly, run.executor, reason)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or a platform without signal support
    return handled


def _abort_quietly(executor: Any, reason: str) -> None:
    from dipeo_cli.errors import ControlError

    try:
        executor.abort(reason)
    except ControlError:
        pass  # already finished: nothing to stop


async def _open_store(open_store: Any, path: Any) -> Any:
    from dipeo_cli.errors import HistoryError

    try:
        return await open_store(path)
    except HistoryError as exc:
        _fail(str(exc))


def _read_history(reader: Any) -> Any:
    """asyncio.run(reader): a history that cannot be read is one line and exit 2."""
    import asyncio

    from dipeo_cli.errors import HistoryError

    try:
        return asyncio.run(reader)
    except HistoryError as exc:
        _fail(str(exc))


@app.command()
def validate(
    diagram: str = typer.Argument(..., help="Diagram file to check."),
    plugin: list[str] | None = typer.Option(None, "--plugin", help="Handler plugin (repeatable)."),
    light: bool = typer.Option(False, "--light"),
    native: bool = typer.Option(False, "--native"),
    readable: bool = typer.Option(False, "--readable"),
    as_json: bool = JsonOption,
) -> None:
    """Check a diagram without running it; report every problem at once (exit 2 if any)."""
    from dipeo_cli.errors import DiagramError, DipeoError
    from dipeo_cli.llm import choose_llm_mode
    from dipeo_cli.runner import prepare

    fmt = _format_flag(light, native, readable)
    try:
        graph = _guarded(
            prepare,
            diagram,
            format=fmt,
            plugins=tuple(plugin or ()),
            llm_mode=choose_llm_mode(None),  # $DIPEO_LLM=mock: persons checked as mock ones
        )
    except DiagramError as exc:
        if as_json:
            _print_json(
                {
                    "valid": False,
                    "file": diagram,
                    "problems": [
                        {"message": p.message, "where": p.where, "line": p.line}
                        for p in exc.problems
                    ],
                }
            )
            raise typer.Exit(EXIT_USAGE) from None
        _fail_invalid(diagram, exc)
    except DipeoError as exc:
        _fail(str(exc))
    summary = {
        "valid": True,
        "file": diagram,
        "problems": [],
        "node_count": len(graph.nodes),
        "arrow_count": len(graph.edges),
        "format": graph.diagram.format,
    }
    if as_json:
        _print_json(summary)
    else:
        print(
            f"{diagram}: valid {graph.diagram.format} diagram, {len(graph.nodes)} nodes, {len(graph.edges)} arrows"
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
    as_json: bool = JsonOption,
    db: str | None = DbOption,
) -> None:
    """Show one execution: node states, outputs, errors, token usage. With --node, that node in
    full with every iteration it ran (--json: the list of its iterations)."""
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


def main() -> None:
    app()  # click turns a closed stdout (EPIPE) into exit 1 without a traceback


if __name__ == "__main__":
    main()
