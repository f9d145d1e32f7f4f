"""`dipeo run` and `dipeo validate`: load, compile, run and record a diagram."""

from __future__ import annotations

import sys
from typing import Any

import typer

from dipeo_cli.cli import (
    EXIT_USAGE,
    MEMORY_DB,
    DbOption,
    GraphOption,
    InputDataOption,
    InputsOption,
    JsonOption,
    VarOption,
    _color,
    _err,
    _fail,
    _fail_invalid,
    _format_flag,
    _graph_kind,
    _open_store,
    _out,
    _prepare,
    _print_json,
    complete_diagram_files,
    root,
)

LLM_MODES = ("mock",)
PluginOption = typer.Option(
    None,
    "--plugin",
    metavar="FILE|MODULE",
    help="Handler plugin: a .py file or a module name (repeatable).",
)


@root.command()
def run(
    diagram: str = typer.Argument(
        ...,
        metavar="DIAGRAM",
        help="Diagram file: light YAML, native JSON or readable YAML; - for standard input.",
        autocompletion=complete_diagram_files,
    ),
    input_data: str | None = InputDataOption,
    inputs: str | None = InputsOption,
    var: list[str] | None = VarOption,
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        metavar="SECONDS",
        help="Fail the execution after SECONDS (exit 124).",
    ),
    max_iterations: int = typer.Option(
        100,
        "--max-iterations",
        metavar="N",
        help="Most executions of one node without its own max_iteration (N >= 1).",
    ),
    max_parallel: int = typer.Option(
        256, "--max-parallel", metavar="N", help="Most nodes running at once (N >= 1)."
    ),
    continue_on_error: bool = typer.Option(
        False,
        "--continue-on-error",
        help="A failing node passes its error on as output instead of stopping the run.",
    ),
    plugin: list[str] | None = PluginOption,
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
        metavar="LABEL=TEXT",
        help="Answer for the user_response node LABEL (repeatable; used in order).",
    ),
    llm: str | None = typer.Option(
        None,
        "--llm",
        metavar="MODE",
        help="MODE is one of: mock (answer every LLM call offline and deterministically, "
        "marked in the history).",
        autocompletion=lambda incomplete: [m for m in LLM_MODES if m.startswith(incomplete)],
    ),
    replay: str | None = typer.Option(
        None,
        "--replay",
        metavar="ID",
        help="Answer LLM and HTTP calls from execution ID's recording (no network, no key); "
        "a call whose request changed fails with a diff.",
    ),
    replay_loose: bool = typer.Option(
        False,
        "--replay-loose",
        help="With --replay: use recorded answers even if the request changed.",
    ),
) -> None:
    """Validate, run and record a diagram, showing every node's status live."""
    from dipeo_cli.errors import DiagramError, DipeoError
    from dipeo_cli.executor import RunOptions
    from dipeo_cli.llm.mode import choose_llm_mode
    from dipeo_cli.runner import parse_variables

    if timeout is not None and timeout <= 0:
        _fail("--timeout must be greater than 0")
    if max_iterations < 1 or max_parallel < 1:
        _fail("--max-iterations and --max-parallel must be at least 1")
    fmt = _format_flag(light, native, readable)
    if replay_loose and replay is None:
        _fail("--replay-loose needs --replay ID")
    if replay is not None and llm is not None:
        _fail("use either --replay or --llm, not both")
    try:
        # --llm, else $DIPEO_LLM; a per-run value from here on. "replay": persons need no key.
        llm_mode = "replay" if replay is not None else choose_llm_mode(llm)
        variables = parse_variables(input_data, inputs, var)
        graph = _prepare(diagram, format=fmt, plugins=tuple(plugin or ()), llm_mode=llm_mode)
        answers = _answers(answer, graph)
        graph.check_runnable()  # validate warns about these; a run cannot start
    except DiagramError as exc:
        _fail_invalid(diagram, exc)
    except DipeoError as exc:
        _fail(str(exc))
    from dipeo_cli.lint import for_run

    _print_warnings(diagram, [w for w in for_run(graph, variables) if not w.blocks_run])
    options = RunOptions(
        max_iterations=max_iterations,
        timeout=timeout,
        max_parallel=max_parallel,
        continue_on_error=continue_on_error,
    )
    import asyncio

    extra = _replayers(replay, replay_loose) if replay is not None else None
    outcome = asyncio.run(
        _run(
            graph,
            variables,
            options,
            db,
            quiet,
            answers,
            llm_mode,
            extra,
            diagram_id=_diagram_id(diagram),
        )  # fmt: skip
    )
    report(outcome, db, as_json)


def _answers(pairs: list[str] | None, graph: Any) -> dict[str, list[str]]:
    """--answer values by node; the user_response handler is loaded only when there are some."""
    if not pairs:
        return {}
    from dipeo_cli.handlers.user_response import parse_answers

    return parse_answers(pairs, graph)


def _replayers(execution: str, loose: bool) -> Any:
    """What answers calls from execution `execution`'s recording (read from the run's store)."""

    async def load(store: Any) -> dict[str, Any]:
        from dipeo_cli.errors import ExecutionNotFoundError
        from dipeo_cli.recording import HttpReplay, LLMReplay, Recording

        try:
            original = await store.find_execution(execution)
        except ExecutionNotFoundError as exc:
            _fail(f"--replay: {exc}")
        recording = Recording(original.id, await store.get_iterations(original.id))
        return {
            "llm_replay": LLMReplay(recording, loose=loose),
            "http_replay": HttpReplay(recording, loose=loose),
        }

    return load


def report(outcome: Any, db: str | None, as_json: bool) -> None:
    """Print how a run ended (JSON or the summary), then exit with its code."""
    state = outcome.state
    if as_json:
        from dipeo_cli.documents import run_json

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
    extra: Any = None,
    diagram_id: str | None = None,
) -> Any:
    """Open the history, run, close it. `extra(store)` gives more `execute` arguments (the
    replayers of --replay, a retry's replay), read from the same store."""
    import asyncio
    import contextlib
    import dataclasses

    from dipeo_cli.context import ProcessServices
    from dipeo_cli.errors import HistoryError
    from dipeo_cli.render import choose_mode, open_progress
    from dipeo_cli.runner import execute

    store = await _open_store(db)
    try:
        more = await extra(store) if extra is not None else {}
    except BaseException:
        with contextlib.suppress(HistoryError):
            await store.close()
        raise
    progress = open_progress(choose_mode(sys.stderr, quiet), _err())
    handled: list[Any] = []
    services = ProcessServices()  # this process hosts one execution; its pool closes with it
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
            shared=services,
            diagram_id=diagram_id,
            **more,
        )
    except BaseException:
        with contextlib.suppress(HistoryError):  # the error on its way out says more
            await store.close()
        raise
    finally:
        loop = asyncio.get_running_loop()
        for sig in handled:
            loop.remove_signal_handler(sig)
        await services.close()
    try:
        await store.close()
    except HistoryError as exc:  # the same failure execute() reported, or a new one
        if outcome.history_error is None:
            outcome = dataclasses.replace(outcome, history_error=exc)
    return outcome


def _diagram_id(diagram: str) -> str | None:
    """How the history names a diagram read from standard input (None: by its file)."""
    from dipeo_cli.diagram import STDIN
    from dipeo_cli.diagram.detect import STDIN_NAME

    return STDIN_NAME if diagram == STDIN else None


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


def _print_warnings(diagram: str, warnings: list[Any]) -> None:
    from dipeo_cli.redact import redact

    for item in warnings:
        print(f"warning: {redact(item.render(diagram))}", file=sys.stderr)


@root.command()
def validate(
    diagram: str = typer.Argument(
        ...,
        metavar="DIAGRAM",
        help="Diagram file to check.",
        autocompletion=complete_diagram_files,
    ),
    plugin: list[str] | None = PluginOption,
    light: bool = typer.Option(False, "--light", help="Read the file as light YAML."),
    native: bool = typer.Option(False, "--native", help="Read the file as native JSON."),
    readable: bool = typer.Option(False, "--readable", help="Read the file as readable YAML."),
    as_json: bool = JsonOption,
    picture: str | None = GraphOption,
    strict: bool = typer.Option(
        False, "--strict", help="Warnings (a missing API key, an unknown property) are errors."
    ),
    llm: str | None = typer.Option(
        None, "--llm", help="'mock': check persons as mock ones (no key needed), as `run` does."
    ),
) -> None:
    """Check a diagram without running it; report every problem at once (exit 2 if any).
    With --graph, print the valid diagram as a Mermaid flowchart or a Graphviz DOT graph.

    Warnings (a missing API key, an unknown property, an input that is lost) are printed on
    stderr and do not fail unless --strict."""
    from dipeo_cli.errors import DiagramError, DipeoError
    from dipeo_cli.llm.mode import choose_llm_mode

    fmt = _format_flag(light, native, readable)
    kind = _graph_kind(picture, as_json)
    try:
        graph = _prepare(
            diagram,
            format=fmt,
            plugins=tuple(plugin or ()),
            llm_mode=choose_llm_mode(llm),  # --llm, else $DIPEO_LLM
        )
        if strict and graph.warnings:
            raise DiagramError([w.as_error() for w in graph.warnings], graph.diagram.file)
    except DiagramError as exc:
        if as_json:
            from dipeo_cli.documents import validate_json

            _print_json(validate_json(diagram, problems=exc.problems, warnings=exc.warnings))
            raise typer.Exit(EXIT_USAGE) from None
        _print_warnings(diagram, exc.warnings)
        _fail_invalid(diagram, exc)
    except DipeoError as exc:
        _fail(str(exc))
    if kind is not None:
        from dipeo_cli.render.graph import picture_of_graph, render_picture

        _print_warnings(diagram, graph.warnings)
        _out().write(render_picture(picture_of_graph(graph), kind))
        return
    if as_json:
        from dipeo_cli.documents import validate_json

        _print_json(validate_json(diagram, graph=graph, warnings=graph.warnings))
        return
    _print_warnings(diagram, graph.warnings)
    print(
        f"{diagram}: valid {graph.diagram.format} diagram, {len(graph.nodes)} nodes, "
        f"{len(graph.edges)} arrows"
        + (f", {len(graph.warnings)} warning(s)" if graph.warnings else "")
    )
