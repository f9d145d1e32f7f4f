"""`dipeo retry ID`: run an execution's diagram again, replaying what completed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dipeo_cli.cli import DbOption, JsonOption, _err, _fail, _fail_invalid, _open_store, root


@root.command()
def retry(
    execution: str = typer.Argument(
        ..., metavar="ID", help="Execution to retry: an id, a unique prefix of one, or 'latest'."
    ),
    from_label: str | None = typer.Option(
        None,
        "--from",
        metavar="LABEL",
        help="Run this node (every iteration) and everything downstream live; replay the rest.",
    ),
    run_all: bool = typer.Option(
        False, "--all", help="Run everything live (a plain re-run with the same inputs)."
    ),
    input_data: str | None = typer.Option(
        None, "--input-data", metavar="JSON", help="Override variables with a JSON object."
    ),
    inputs: str | None = typer.Option(
        None, "--inputs", metavar="FILE", help="Override variables from a JSON or YAML file."
    ),
    var: list[str] | None = typer.Option(
        None, "-i", "--var", metavar="KEY=VALUE", help="Override one variable (repeatable)."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", metavar="SECONDS", help="Fail the execution after this many seconds."
    ),
    plugin: list[str] | None = typer.Option(
        None, "--plugin", metavar="FILE_OR_MODULE", help="Handler plugin (repeatable)."
    ),
    as_json: bool = JsonOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; only the summary."),
    db: str | None = DbOption,
) -> None:
    """Start a new execution of the same diagram with the same variables. Node executions that
    completed in the original are replayed (not run again: their files, HTTP calls and hooks
    do not happen again) while their definition and inputs are unchanged; the first that
    failed or never ran, and everything after it, runs live."""
    import asyncio

    from dipeo_cli.cli.run import _run, report
    from dipeo_cli.errors import DiagramError, DipeoError
    from dipeo_cli.executor import RunOptions
    from dipeo_cli.runner import parse_variables

    if from_label is not None and run_all:
        _fail("use either --from or --all, not both")
    if timeout is not None and timeout <= 0:
        _fail("--timeout must be greater than 0")
    try:
        overrides = parse_variables(input_data, inputs, var)
        plan = asyncio.run(_plan(db, execution, overrides, from_label, run_all, plugin or []))
    except DiagramError as exc:
        _fail_invalid(exc.file or execution, exc)
    except (DipeoError, ValueError) as exc:
        _fail(str(exc))
    print(plan.describe(), file=_err())
    options = RunOptions(timeout=timeout)

    async def replaying(store: Any) -> dict[str, Any]:
        return {"replay": plan.replay, "retry_of": plan.original.id}

    outcome = asyncio.run(
        _run(plan.graph, plan.variables, options, db, quiet, None, None, replaying)
    )
    report(outcome, db, as_json)


async def _plan(
    db: str | None,
    execution: str,
    overrides: dict[str, Any],
    from_label: str | None,
    run_all: bool,
    plugins: list[str],
) -> Any:
    from dipeo_cli.compiler import compile_graph
    from dipeo_cli.diagram import load_diagram, parse_diagram
    from dipeo_cli.registry import load_plugins
    from dipeo_cli.retry import plan_retry, retry_variables

    store = await _open_store(db)
    try:
        original = await store.find_execution(execution)
        record = await store.run_record(original.id)
        iterations = await store.get_iterations(original.id)
        events = await store.get_events(original.id)
    finally:
        await store.close()
    registry = load_plugins(tuple(plugins))
    path = original.diagram_id
    if path and Path(path).is_file():
        diagram = load_diagram(path, strict=False)
        diagram_from = f"diagram {path}"
    elif record.get("diagram_source"):
        diagram = parse_diagram(record["diagram_source"], file=path, strict=False)
        diagram_from = f"the diagram recorded with it ({path or 'inline'} is gone)"
    else:
        raise ValueError(
            f"execution {original.id} kept no diagram source and {path or 'its diagram'} "
            "is gone: nothing to retry"
        )
    graph = compile_graph(diagram, registry)
    variables = retry_variables(original, record.get("secret_variables") or [], overrides)
    return plan_retry(
        original,
        graph,
        iterations=iterations,
        events=events,
        record=record,
        variables=variables,
        diagram_from=diagram_from,
        from_label=from_label,
        run_all=run_all,
    )
