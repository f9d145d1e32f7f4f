"""`dipeo history rm / prune / path / stats`: manage the history.

Removal never touches an active execution (STARTED, RUNNING, PAUSED) nor a tree holding one,
and says what it removed; the store does the work (store/retention.py).
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from dipeo_cli.cli import (
    EXIT_USAGE,
    DbOption,
    JsonOption,
    StatusOption,
    _fail,
    _print_json,
    _read_history,
    complete_execution_ids,
)
from dipeo_cli.cli.history import _open_reader, _status_value, history_app, parse_duration


def _db(ctx: typer.Context, db: str | None) -> str | None:
    """This command's --db, else the one given to `dipeo history` before the command."""
    if db is not None:
        return db
    return (ctx.obj or {}).get("db")


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@history_app.command("path")
def history_path(ctx: typer.Context, db: str | None = DbOption) -> None:
    """Print the path of the history database (it may not exist yet)."""
    from pathlib import Path

    from dipeo_cli.paths import default_db_path

    chosen = _db(ctx, db)
    print(Path(chosen).absolute() if chosen else default_db_path())


@history_app.command("stats")
def history_stats(
    ctx: typer.Context, as_json: bool = JsonOption, db: str | None = DbOption
) -> None:
    """Counts by status, database size, oldest and newest execution."""
    stats = _read_history(_stats(_db(ctx, db)))
    data = {
        "path": stats.get("path"),
        "executions": stats.get("executions", 0),
        "top_level": stats.get("top_level", 0),
        "by_status": stats.get("by_status", {}),
        "size_bytes": stats.get("size_bytes"),
        "blobs": stats.get("blobs", 0),
        "oldest": stats.get("oldest"),
        "newest": stats.get("newest"),
    }
    if as_json:
        _print_json(data)
        return
    by_status = ", ".join(f"{k} {v}" for k, v in data["by_status"].items()) or "none"
    children = data["executions"] - data["top_level"]
    lines = [
        ("database", f"{data['path']} ({_size(data['size_bytes'])})"),
        ("executions", f"{data['executions']} ({children} sub-diagram runs)"),
        ("by status", by_status),
        ("oldest", _when(data["oldest"])),
        ("newest", _when(data["newest"])),
    ]
    for key, value in lines:
        print(f"{key:<11} {value}")


def _when(text: str | None) -> str:
    if not text:
        return "-"
    from datetime import datetime

    return datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M:%S")


async def _stats(db: str | None) -> dict[str, Any]:
    import dataclasses

    from dipeo_cli.paths import default_db_path

    store = await _open_reader(db)
    if store is None:
        return {"path": str(default_db_path()), "size_bytes": 0}
    try:
        stats = dataclasses.asdict(await store.stats())
        return {"path": store.where, **stats}
    finally:
        await store.close()


@history_app.command("rm")
def history_rm(
    ctx: typer.Context,
    executions: list[str] = typer.Argument(
        ...,
        metavar="ID",
        help="Executions to remove: ids or unique prefixes (their sub-diagram runs go too).",
        autocompletion=complete_execution_ids,
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; remove nothing."),
    as_json: bool = JsonOption,
    db: str | None = DbOption,
) -> None:
    """Remove executions with everything that belongs to them, then reclaim the space.
    Active executions (STARTED, RUNNING, PAUSED) are refused (exit 2)."""
    removal = _read_history(_remove(_db(ctx, db), ids=executions, dry_run=dry_run))
    _report(removal, dry_run, as_json)


@history_app.command("prune")
def history_prune(
    ctx: typer.Context,
    older_than: str | None = typer.Option(
        None,
        "--older-than",
        metavar="AGE",
        help="Remove executions started longer ago than AGE (30m, 12h, 30d, 2w).",
    ),
    status: str | None = StatusOption,
    keep: int = typer.Option(
        0,
        "--keep",
        metavar="N",
        help="Keep the N newest matching executions whatever their age.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; remove nothing."),
    as_json: bool = JsonOption,
    db: str | None = DbOption,
) -> None:
    """Remove old executions (with their sub-diagram runs), then reclaim the space. Active
    executions are never removed."""
    import time

    from dipeo_cli.state import iso

    if older_than is None and keep == 0:
        _fail("prune needs --older-than AGE or --keep N (or both)")
    before = None
    if older_than is not None:
        try:
            before = iso(time.time() - parse_duration(older_than))
        except ValueError:
            _fail(f"--older-than {older_than!r} is not a duration (like 30m, 12h, 30d, 2w)")
    wanted = _status_value(status)
    removal = _read_history(_remove(_db(ctx, db), prune=(before, wanted, keep), dry_run=dry_run))
    _report(removal, dry_run, as_json)


async def _remove(
    db: str | None,
    *,
    ids: list[str] | None = None,
    prune: tuple[Any, Any, int] | None = None,
    dry_run: bool,
) -> Any:
    store = await _open_reader(db)
    if store is None:  # no history yet: nothing to remove
        from dipeo_cli.store.retention import Removal

        if ids:
            _fail(f"no execution matches {ids[0]!r} (nothing recorded yet)")
        return Removal()
    try:
        if ids is not None:
            full = [(await store.find_execution(item)).id for item in ids]
        else:
            before, status, keep = prune or (None, None, 0)
            full = await store.prune_candidates(before=before, status=status, keep=keep)
        return await store.remove(full, dry_run=dry_run)
    finally:
        await store.close()


def _report(removal: Any, dry_run: bool, as_json: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    if as_json:
        _print_json(
            {
                "dry_run": dry_run,
                "removed": [
                    {"id": s.id, "status": s.status.value, "diagram_id": s.diagram_id}
                    for s in removal.removed
                ],
                "children": removal.children,
                "blobs": removal.blobs,
                "refused": [{"id": s.id, "status": s.status.value} for s in removal.refused],
                "reclaimed": removal.reclaimed,
            }
        )
    else:
        for state in removal.removed:
            print(f"{verb} {state.id}  {state.status.value:<9} {state.diagram_id or ''}")
        children = f" and {removal.children} sub-diagram run(s)" if removal.children else ""
        blobs = f", {removal.blobs} stored value(s)" if removal.blobs else ""
        count = len(removal.removed)
        print(f"{verb} {count} execution{'s' * (count != 1)}{children}{blobs}")
        if removal.reclaimed:
            print("space reclaimed (database compacted)")
    for state in removal.refused:
        print(
            f"error: {state.id} is {state.status.value} (still active): not removed",
            file=sys.stderr,
        )
    if removal.refused:
        raise typer.Exit(EXIT_USAGE)
