from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

from dipeo_cli.store import migrations, open_store
from dipeo_cli.store.migrations import MIGRATIONS, applied_migrations, migrate


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def test_migrations_are_named_in_order() -> None:
    names = [name for name, _ in MIGRATIONS]
    assert names[:2] == ["m001_initial", "m002_parent_execution"]
    assert all(re.fullmatch(r"m\d{3}_[a-z0-9_]+", name) for name in names)
    assert names == sorted(names)


def tables(db: sqlite3.Connection) -> set[str]:
    return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_a_fresh_database_gets_every_migration(tmp_path: Path) -> None:
    db = connect(tmp_path / "h.db")
    assert migrate(db) == [name for name, _ in MIGRATIONS]
    assert applied_migrations(db) == [name for name, _ in MIGRATIONS]
    assert "parent_id" in columns(db, "executions")
    assert columns(db, "events") == [
        "id", "execution_id", "seq", "at", "type", "node_id", "status", "payload", "iteration",
    ]  # fmt: skip
    assert "node_outputs" not in tables(db)  # outputs live in node_iterations since m003
    assert {"node_iterations", "blobs", "controls"} <= tables(db)
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {
        "idx_executions_started_at",
        "idx_executions_status",
        "idx_events_execution_seq",
        "idx_executions_parent_id",
    } <= indexes
    assert migrate(db) == []


def test_an_m001_database_is_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = connect(path)
    assert migrate(db, stop_after="m001_initial") == ["m001_initial"]
    assert "parent_id" not in columns(db, "executions")
    db.execute(
        "INSERT INTO executions (id, status, diagram_id, started_at, ended_at, pid, host) "
        "VALUES ('old-run', 'COMPLETED', 'old-diagram', '2024-01-01T00:00:00+00:00', "
        "'2024-01-01T00:00:01+00:00', 1, 'elsewhere')"
    )
    first_applied_at = db.execute("SELECT applied_at FROM schema_migrations").fetchall()
    db.close()

    async def reopen() -> None:
        async with await open_store(path) as store:
            state = await store.get_execution("old-run")
            assert state is not None
            assert state.diagram_id == "old-diagram"
            assert state.status.value == "COMPLETED"
            children = await store.list_executions(parent_id="old-run")
            assert children == []

    asyncio.run(reopen())
    db = connect(path)
    assert applied_migrations(db) == [name for name, _ in MIGRATIONS]
    assert "parent_id" in columns(db, "executions")
    rows = db.execute("SELECT applied_at FROM schema_migrations WHERE name = 'm001_initial'")
    assert rows.fetchall() == first_applied_at
    db.close()


def test_a_failing_migration_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def m999_broken(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("broken migration")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, ("m999_broken", m999_broken)])
    db = connect(tmp_path / "h.db")
    with pytest.raises(RuntimeError, match="broken migration"):
        migrations.migrate(db)
    assert "m999_broken" not in applied_migrations(db)
    assert applied_migrations(db) == [name for name, _ in MIGRATIONS]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "half_done" not in tables


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):

        @migrations.migration
        def m001_initial(db: sqlite3.Connection) -> None: ...


def test_an_m005_index_is_kept_and_its_trigger_dropped(tmp_path: Path) -> None:
    """m006: what the finish trigger indexed stays indexed (and searchable); nothing is
    indexed as a run finishes any more."""
    path = tmp_path / "old.db"
    db = connect(path)
    migrate(db, stop_after="m005_search_index")
    if "execution_search" not in tables(db):
        pytest.skip("this SQLite has no FTS5")
    db.execute(
        "INSERT INTO executions (id, status, diagram_id, started_at, error) VALUES "
        "('old-run', 'FAILED', 'old-diagram', '2024-01-01T00:00:00+00:00', 'quartz meltdown')"
    )
    db.execute(
        "INSERT INTO events (execution_id, seq, at, type, status) "
        "VALUES ('old-run', 1, '2024-01-01T00:00:01+00:00', 'ExecutionFinished', 'FAILED')"
    )
    assert db.execute("SELECT execution_id FROM execution_search").fetchall() == [("old-run",)]
    assert migrate(db) == ["m006_search_index_on_demand"]
    assert db.execute("SELECT execution_id FROM search_indexed").fetchall() == [("old-run",)]
    triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    assert triggers == []
    db.close()

    async def search() -> list[str]:
        async with await open_store(path) as store:
            return [s.id for s in await store.list_executions(search="meltdown")]

    assert asyncio.run(search()) == ["old-run"]
    db = connect(path)
    assert db.execute("SELECT COUNT(*) FROM execution_search").fetchone() == (1,)  # not twice
    db.close()
