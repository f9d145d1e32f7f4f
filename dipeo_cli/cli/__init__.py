"""The `dipeo` command: the only package that imports Typer.

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


def main() -> None:
    app()  # click turns a closed stdout (EPIPE) into exit 1 without a traceback


# The command families register themselves on `app` (one module each; heavy imports stay
# inside the commands, so `dipeo --help` stays fast).
from dipeo_cli.cli import history as _history  # noqa: E402, F401
from dipeo_cli.cli import retry as _retry  # noqa: E402, F401
from dipeo_cli.cli import run as _run  # noqa: E402, F401
from dipeo_cli.cli import serve as _serve  # noqa: E402, F401

# isort: split
# (after run and history, so that `dipeo --help` lists those first)
from dipeo_cli.cli import control as _control  # noqa: E402, F401

if __name__ == "__main__":
    main()
