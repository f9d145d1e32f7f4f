"""The `dipeo` command: the only package that imports Typer.

A thin translator: parse options, call the runner/store/renderer, map errors to exit codes.
Heavy modules are imported inside the commands so that `dipeo --help` stays fast.

The commands come in families, one module each (see FAMILIES), that register on `root` when
imported. `main` loads only the family of the command it runs; `app` is `root` with every
family loaded (what tests and `CliRunner` use).

Exit codes: 0 completed, 1 execution failed, 2 invalid usage or invalid diagram (nothing ran),
124 timed out, 130 interrupted.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from typing import Any, NoReturn

import typer

from dipeo_cli import __version__
from dipeo_cli.cli.helptext import PlainHelpGroup

root = typer.Typer(  # the `dipeo` command; the family modules register their commands on it
    name="dipeo",
    cls=PlainHelpGroup,
    help="Run DiPeO diagrams from the command line and keep a history of every execution.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_USAGE = 2
SHOW_CLIP = 64 * 1024  # characters of a stored value `dipeo show` reads for its text report
MEMORY_DB = ":memory:"  # --db :memory: keeps the history in the process only
STATUSES = ("QUEUED", "STARTED", "RUNNING", "PAUSED", "COMPLETED", "FAILED", "ABORTED")


def complete_execution_ids(incomplete: str) -> list[tuple[str, str]]:
    """Shell completion: ids of the default history's executions that start with
    `incomplete`, newest first, each with its status and diagram. Cheap (one indexed query on
    a read-only connection, no migration, no repair) and never failing: nothing on error."""
    found = [("latest", "the newest execution")] if "latest".startswith(incomplete) else []
    try:
        import sqlite3

        from dipeo_cli.paths import default_db_path

        path = default_db_path()
        if not path.is_file():
            return found
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.2)
        try:
            rows = db.execute(
                "SELECT id, status, diagram_id FROM executions WHERE id LIKE ? "
                "ORDER BY started_at DESC LIMIT 50",
                (incomplete.replace("%", "").replace("_", "") + "%",),
            ).fetchall()
        finally:
            db.close()
        return found + [(eid, f"{status} {diagram or ''}".strip()) for eid, status, diagram in rows]
    except Exception:
        return found


def complete_diagram_files(incomplete: str) -> list[str]:
    """Shell completion: diagram files (*.yaml, *.yml, *.json) and folders under the
    directory `incomplete` points into."""
    try:
        from pathlib import Path

        folder, _, stem = incomplete.rpartition("/")
        base = Path(folder or ".")
        found = []
        for entry in sorted(base.iterdir()):
            if not entry.name.startswith(stem) or entry.name.startswith("."):
                continue
            shown = f"{folder}/{entry.name}" if folder else entry.name
            if entry.is_dir():
                found.append(shown + "/")
            elif entry.suffix.lower() in (".yaml", ".yml", ".json"):
                found.append(shown)
        return found
    except Exception:
        return []


def complete_statuses(incomplete: str) -> list[str]:
    return [s for s in STATUSES if s.startswith(incomplete.upper())]


DbOption = typer.Option(
    None,
    "--db",
    metavar="PATH|URL",
    help=(
        "History: a database file, or postgresql://user:pass@host:port/db for a shared one "
        "(default: $DIPEO_DB, else $DIPEO_HOME/history.db; :memory: keeps nothing)."
    ),
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
# The execution variables, as `run` and `submit` take them (file, then JSON, then pairs).
InputDataOption = typer.Option(
    None, "--input-data", metavar="JSON", help="Variables as a JSON object."
)
InputsOption = typer.Option(
    None, "--inputs", metavar="FILE", help="Variables from a JSON or YAML file."
)
VarOption = typer.Option(
    None,
    "-i",
    "--var",
    metavar="KEY=VALUE",
    help="One variable (repeatable; JSON values accepted).",
)
StatusOption = typer.Option(
    None,
    "--status",
    metavar="STATUS",
    help=f"Only executions with STATUS: one of {', '.join(STATUSES)} (any case).",
    autocompletion=complete_statuses,
)
GRAPH_KINDS = ("mermaid", "dot")
GraphOption = typer.Option(
    None,
    "--graph",
    metavar="mermaid|dot",
    help="Print the diagram as a Mermaid flowchart or a Graphviz DOT graph.",
)


def _version(value: bool) -> None:
    if value:
        print(f"dipeo {__version__}")
        raise typer.Exit()


@root.callback()
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
    diagram = "<stdin>" if diagram == "-" else diagram
    _fail(f"{diagram} is not valid ({len(exc.problems)} problem(s)):\n{exc}")


def _format_flag(light: bool, native: bool, readable: bool) -> str | None:
    chosen = [
        name for name, on in (("light", light), ("native", native), ("readable", readable)) if on
    ]
    if len(chosen) > 1:
        _fail("use only one of --light, --native, --readable")
    return chosen[0] if chosen else None


def _graph_kind(kind: str | None, as_json: bool) -> str | None:
    """The --graph value checked (mermaid or dot), or None."""
    if kind is None:
        return None
    if as_json:
        _fail("use either --graph or --json, not both")
    if kind.lower() not in GRAPH_KINDS:
        _fail(f"--graph must be one of {', '.join(GRAPH_KINDS)}, got {kind!r}")
    return kind.lower()


def _prepare(diagram: str, **options: Any) -> Any:
    """`runner.prepare(diagram, ...)` (load + compile); an exception that is not one of ours is
    a bug, reported as one "internal error" line with exit 2 (nothing ran), never a traceback."""
    from dipeo_cli.errors import DipeoError
    from dipeo_cli.runner import prepare

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


async def _open_store(db: Any) -> Any:
    """The history `--db` names (created if need be; None or "": the default one); one line
    and exit 2 when it cannot be opened."""
    from dipeo_cli.errors import HistoryError, UsageError
    from dipeo_cli.store import open_store

    try:
        return await open_store(db or None)
    except (HistoryError, UsageError) as exc:  # a bad URL is a UsageError
        _fail(str(exc))


def _read_history(reader: Any) -> Any:
    """asyncio.run(reader): a history that cannot be read is one line and exit 2."""
    import asyncio

    from dipeo_cli.errors import HistoryError

    try:
        return asyncio.run(reader)
    except HistoryError as exc:
        _fail(str(exc))


# The command families: a module each, which registers its commands on `root` when imported,
# in the order `dipeo --help` lists them; and the family (modules) of each command. A process
# runs one command, so `main` loads that command's family alone: Typer builds every registered
# command on each call (it inspects each function and builds a pydantic adapter per option), and
# the other families' commands were 7 ms of a 200 ms `dipeo run`. tests/test_layering.py checks
# that each command is registered by the modules named here.
FAMILY_MODULES = ("run", "history", "retention", "retry", "control", "convert", "queue", "serve")
FAMILIES: dict[str, tuple[str, ...]] = {
    "run": ("run",),
    "validate": ("run",),
    "history": ("history", "retention"),
    "show": ("history",),
    "retry": ("retry",),
    "pause": ("control",),
    "resume": ("control",),
    "abort": ("control",),
    "skip": ("control",),
    "convert": ("convert",),
    "submit": ("queue",),
    "worker": ("queue",),
    "serve": ("serve",),
}


def load_commands(argv: list[str] | None = None) -> typer.Typer:
    """`root` with the family of the command `argv` starts with registered, or every family:
    without argv, for an option or an unknown command first (the top-level help, "No such
    command" with its suggestion), and for shell completion (which lists the commands)."""
    from dipeo_cli.launch import completion_requested

    modules: tuple[str, ...] = FAMILY_MODULES
    if argv and argv[0] in FAMILIES and not completion_requested():
        modules = FAMILIES[argv[0]]
    for name in modules:
        importlib.import_module(f"dipeo_cli.cli.{name}")
    return root


def __getattr__(name: str) -> Any:
    if name == "app":  # every command, as `dipeo` has them
        return load_commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    load_commands(sys.argv[1:])
    root()  # click turns a closed stdout (EPIPE) into exit 1 without a traceback


if __name__ == "__main__":
    main()
