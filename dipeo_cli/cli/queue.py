"""`dipeo submit` and `dipeo worker`: queued runs that any machine sharing the history takes.

`submit` checks the diagram and records a QUEUED execution (its text, its path relative to the
project root, the variables); `worker` takes queued executions one at a time per slot
(store/queue.py hands each to exactly one worker) and runs each from its `--root` with the
same execution id, recorded like any run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from dipeo_cli.cli import (
    DbOption,
    InputDataOption,
    InputsOption,
    JsonOption,
    VarOption,
    _fail,
    _fail_invalid,
    _open_store,
    _prepare,
    _print_json,
    complete_diagram_files,
    root,
)

RootOption = typer.Option(
    None,
    "--root",
    metavar="DIR",
    help="Project root: diagram paths are recorded relative to it (default: the current "
    "directory).",
)


def _root(root: str | None) -> Path:
    chosen = Path(root).expanduser() if root else Path.cwd()
    if not chosen.is_dir():
        _fail(f"--root {root}: not a directory")
    return chosen.resolve()


@root.command()
def submit(
    diagram: str = typer.Argument(
        ...,
        metavar="DIAGRAM",
        help="Diagram file under the project root.",
        autocompletion=complete_diagram_files,
    ),
    input_data: str | None = InputDataOption,
    inputs: str | None = InputsOption,
    var: list[str] | None = VarOption,
    root: str | None = RootOption,
    as_json: bool = JsonOption,
    db: str | None = DbOption,
) -> None:
    """Queue a run of DIAGRAM for a `dipeo worker` (on any machine sharing the history);
    print its execution id. The diagram is checked and its text recorded now."""
    from dipeo_cli.errors import DiagramError, DipeoError
    from dipeo_cli.runner import parse_variables

    base = _root(root)
    if diagram == "-":
        _fail("submit needs a diagram file (a worker runs it from its --root)")
    path = Path(diagram).expanduser()
    absolute = (path if path.is_absolute() else Path.cwd() / path).resolve()
    if not absolute.is_relative_to(base):
        _fail(f"{diagram} is outside the project root {base} (see --root)")
    relative = absolute.relative_to(base).as_posix()
    try:
        variables = parse_variables(input_data, inputs, var)
        graph = _prepare(diagram)
        graph.check_runnable()
    except DiagramError as exc:
        _fail_invalid(diagram, exc)
    except DipeoError as exc:
        _fail(str(exc))
    import asyncio

    from dipeo_cli.runner import new_execution_id

    execution_id = new_execution_id()
    asyncio.run(_submit(db, execution_id, graph.diagram.source or "", relative, variables))
    if as_json:
        _print_json({"id": execution_id, "status": "QUEUED"})
    else:
        print(execution_id)


async def _submit(
    db: str | None, execution_id: str, source: str, relative: str, variables: dict[str, Any]
) -> None:
    from dipeo_cli.errors import HistoryError

    store = await _open_store(db)
    try:
        await store.submit(
            execution_id,
            diagram_source=source,
            diagram_path=relative,
            diagram_id=relative,
            variables=variables,
        )
    except (ValueError, HistoryError) as exc:
        _fail(str(exc))
    finally:
        await store.close()


@root.command()
def worker(
    root: str | None = RootOption,
    concurrency: int = typer.Option(
        1, "--concurrency", metavar="N", help="Run up to N queued executions at once (N >= 1)."
    ),
    once: bool = typer.Option(
        False, "--once", help="Exit when the queue is empty instead of waiting for more."
    ),
    llm: str | None = typer.Option(
        None, "--llm", metavar="MODE", help="mock: answer every LLM call offline (as `run`)."
    ),
    db: str | None = DbOption,
) -> None:
    """Take queued executions (see `dipeo submit`) and run them from --root, each recorded
    like any run. Ctrl-C or SIGTERM stops the worker: its running executions end ABORTED.
    Exit code: 0 when every execution it ran completed, 1 otherwise, 130 when stopped."""
    from dipeo_cli.errors import DipeoError
    from dipeo_cli.llm import choose_llm_mode

    if concurrency < 1:
        _fail("--concurrency must be at least 1")
    base = _root(root)
    try:
        llm_mode = choose_llm_mode(llm)
    except DipeoError as exc:
        _fail(str(exc))
    import asyncio

    from dipeo_cli.worker import Worker

    code = asyncio.run(Worker(base, concurrency, once, llm_mode, db, _announce).main())
    raise typer.Exit(code)


def _announce(line: str) -> None:
    from dipeo_cli.redact import redact

    print(redact(line), flush=True)
    sys.stdout.flush()
