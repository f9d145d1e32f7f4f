"""The history database schema, as named, ordered, append-only migrations.

Each migration is registered with `@migration`, in the order it must run, and has a body per
SQL dialect: the decorated function is SQLite's (it gets an `sqlite3.Connection`); its
PostgreSQL body, a list of statements under the same name, is in store/postgres_schema.py
(a test fails when one is missing). `migrate` applies the
ones a database lacks, each in its own transaction together with its row in
`schema_migrations`, so a database is never left half-migrated and two processes migrating the
same file at once apply each migration exactly once. A database that lists a migration this
version does not know was written by a newer dipeo: `unknown_migrations` names them, and the
store refuses it rather than use it silently.

Never edit or reorder a migration that has been released: add a new one at the end. A
database holding a migration this version does not know (written by a newer dipeo) is refused
with HistoryError rather than used.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from dipeo_cli.errors import HistoryError

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration, named after the function."""
    name = fn.__name__
    if any(existing == name for existing, _ in MIGRATIONS):
        raise ValueError(f"migration {name!r} is registered twice")
    MIGRATIONS.append((name, fn))
    return fn


def unknown_migrations(db: sqlite3.Connection) -> list[str]:
    """Migrations recorded in `db` that this version of dipeo does not have."""
    known = {name for name, _ in MIGRATIONS}
    return [name for name in applied_migrations(db) if name not in known]


def applied_migrations(db: sqlite3.Connection) -> list[str]:
    """Names of the migrations applied to `db`, in the order they were applied."""
    if not _has_table(db, "schema_migrations"):
        return []
    rows = db.execute("SELECT name FROM schema_migrations ORDER BY rowid").fetchall()
    return [name for (name,) in rows]


def migrate(db: sqlite3.Connection, *, stop_after: str | None = None) -> list[str]:
    """Apply the pending migrations to `db` (opened with `isolation_level=None`).

    Returns the names applied now. `stop_after` stops after that migration (tests use it to
    build an old database). Each migration runs in a `BEGIN IMMEDIATE` transaction and checks
    again inside it that no other process applied it meanwhile. Raises HistoryError, before
    changing anything, when `db` holds a migration this version does not know.
    """
    if stop_after is not None and all(name != stop_after for name, _ in MIGRATIONS):
        raise ValueError(f"unknown migration {stop_after!r}")
    applied_before = applied_migrations(db)
    unknown = unknown_migrations(db)
    if unknown:
        # its schema has changes this version cannot see: writing to it could lose data
        raise HistoryError(
            f"it was written by a newer dipeo (migrations this version does not know: "
            f"{', '.join(unknown)}); upgrade dipeo or use another history file"
        )
    done = set(applied_before)
    applied: list[str] = []
    for name, fn in MIGRATIONS:
        if name not in done:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(name TEXT PRIMARY KEY, applied_at TEXT)"
                )
                already = db.execute(
                    "SELECT 1 FROM schema_migrations WHERE name = ?", (name,)
                ).fetchone()
                if not already:
                    fn(db)
                    db.execute(
                        "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                        (name, datetime.now(UTC).isoformat()),
                    )
                    applied.append(name)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        if name == stop_after:
            break
    return applied


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE executions (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            diagram_id TEXT,
            diagram_path TEXT,
            started_at TEXT,
            ended_at TEXT,
            duration_seconds REAL,
            error TEXT,
            variables TEXT,
            token_usage TEXT,
            result TEXT,
            pid INTEGER,
            process_start TEXT,
            host TEXT
        )
        """
    )
    db.execute(
        """
        CREATE TABLE node_states (
            execution_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            label TEXT,
            type TEXT,
            status TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT,
            error TEXT,
            skip_reason TEXT,
            token_usage TEXT,
            iterations INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (execution_id, node_id)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE node_outputs (
            execution_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            value TEXT,
            metadata TEXT,
            PRIMARY KEY (execution_id, node_id)
        )
        """
    )
    db.execute(
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            execution_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at TEXT,
            type TEXT NOT NULL,
            node_id TEXT,
            status TEXT,
            payload TEXT
        )
        """
    )
    db.execute("CREATE INDEX idx_executions_started_at ON executions (started_at)")
    db.execute("CREATE INDEX idx_executions_status ON executions (status)")
    db.execute("CREATE INDEX idx_events_execution_seq ON events (execution_id, seq)")


@migration
def m002_parent_execution(db: sqlite3.Connection) -> None:
    """Sub-diagram runs point at the execution that started them."""
    db.execute("ALTER TABLE executions ADD COLUMN parent_id TEXT")
    db.execute("CREATE INDEX idx_executions_parent_id ON executions (parent_id)")


@migration
def m003_iterations_and_controls(db: sqlite3.Connection) -> None:
    """Every iteration of every node is kept (output, metadata, inputs' provenance and
    fingerprint); large values are stored once by content (`blobs`); executions keep their
    diagram source, node fingerprints, masked variable names and a heartbeat; control requests
    (pause, resume, abort, skip) are rows; event sequence numbers are unique per execution."""
    db.execute(
        """
        CREATE TABLE node_iterations (
            execution_id TEXT NOT NULL,
            node_id TEXT NOT NULL,
            iteration INTEGER NOT NULL,
            label TEXT,
            status TEXT NOT NULL,
            started_at TEXT,
            ended_at TEXT,
            error TEXT,
            value TEXT,
            metadata TEXT,
            token_usage TEXT,
            inputs TEXT,
            input_fingerprint TEXT,
            PRIMARY KEY (execution_id, node_id, iteration)
        )
        """
    )
    db.execute(
        "CREATE TABLE blobs (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, data TEXT NOT NULL)"
    )
    db.execute(
        """
        CREATE TABLE controls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            execution_id TEXT NOT NULL,
            action TEXT NOT NULL,
            node_id TEXT,
            reason TEXT,
            requested_at TEXT NOT NULL,
            taken_at TEXT,
            outcome TEXT
        )
        """
    )
    db.execute("CREATE INDEX idx_controls_pending ON controls (execution_id, taken_at)")
    for column in ("diagram_source", "node_fingerprints", "secret_variables", "heartbeat_at"):
        db.execute(f"ALTER TABLE executions ADD COLUMN {column} TEXT")
    db.execute("ALTER TABLE node_states ADD COLUMN position INTEGER")
    db.execute("ALTER TABLE events ADD COLUMN iteration INTEGER")
    # The outputs kept so far become the last iteration of their node.
    db.execute(
        """
        INSERT INTO node_iterations (execution_id, node_id, iteration, label, status, started_at,
            ended_at, error, value, metadata, token_usage)
        SELECT o.execution_id, o.node_id, MAX(COALESCE(s.iterations, 0), 1), s.label,
            COALESCE(s.status, 'COMPLETED'), s.started_at, s.ended_at, s.error, o.value,
            o.metadata, s.token_usage
        FROM node_outputs o LEFT JOIN node_states s
            ON s.execution_id = o.execution_id AND s.node_id = o.node_id
        """
    )
    db.execute("DROP TABLE node_outputs")
    db.execute("UPDATE node_states SET position = rowid")
    # Another process writing a status change could duplicate a seq: number them again, in
    # the order they were written, before the constraint goes on.
    db.execute("CREATE TEMP TABLE renumbered (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL)")
    db.execute(
        "INSERT INTO renumbered SELECT id, ROW_NUMBER() OVER "
        "(PARTITION BY execution_id ORDER BY seq, id) FROM events"
    )
    db.execute("UPDATE events SET seq = (SELECT seq FROM renumbered WHERE id = events.id)")
    db.execute("DROP TABLE renumbered")
    db.execute("DROP INDEX idx_events_execution_seq")
    db.execute("CREATE UNIQUE INDEX idx_events_execution_seq ON events (execution_id, seq)")


@migration
def m004_retry_of(db: sqlite3.Connection) -> None:
    """An execution started by `dipeo retry` points at the one it retries."""
    db.execute("ALTER TABLE executions ADD COLUMN retry_of TEXT")


# What `dipeo history --search` looks through, gathered when an execution finishes (its
# ExecutionFinished event is written after its node rows in the same batch): the diagram, the
# errors, the node labels, skip reasons and every output (of a large one, kept as a blob, its
# first 4 KiB: the index must not store every large value a second time).
SEARCH_BODY = """
    COALESCE((SELECT COALESCE(diagram_id, '') || ' ' || COALESCE(diagram_path, '') || ' ' ||
        COALESCE(error, '') FROM executions WHERE id = {eid}), '')
    || ' ' || COALESCE({payload}, '')
    || ' ' || COALESCE((SELECT group_concat(COALESCE(label, '') || ' ' || COALESCE(error, '')
        || ' ' || COALESCE(skip_reason, ''), ' ') FROM node_states WHERE execution_id = {eid}), '')
    || ' ' || COALESCE((SELECT group_concat(COALESCE(error, '') || ' ' || COALESCE(value, ''),
        ' ') FROM node_iterations WHERE execution_id = {eid}), '')
    || ' ' || COALESCE((SELECT group_concat(substr(b.data, 1, 4096), ' ') FROM blobs AS b WHERE b.hash IN (
        SELECT json_extract(j.value, '$."$dipeo_value"') FROM node_iterations AS i,
        json_each(i.value) AS j WHERE i.execution_id = {eid} AND json_valid(i.value)
        AND j.type = 'object')), '')
"""


@migration
def m005_search_index(db: sqlite3.Connection) -> None:
    """Full-text search over finished executions (FTS5), filled by a trigger when an execution
    finishes. An SQLite built without FTS5 gets no index; `--search` then uses LIKE."""
    try:
        db.execute("CREATE VIRTUAL TABLE execution_search USING fts5(execution_id UNINDEXED, body)")
    except sqlite3.OperationalError as exc:
        if "fts5" not in str(exc).lower():
            raise
        return
    body = SEARCH_BODY.format(eid="new.execution_id", payload="new.payload")
    db.execute(
        "CREATE TRIGGER execution_search_on_finish AFTER INSERT ON events "
        "WHEN new.type = 'ExecutionFinished' BEGIN "
        f"INSERT INTO execution_search (execution_id, body) SELECT new.execution_id, {body}; END"
    )
    # the executions finished before this migration
    body = SEARCH_BODY.format(eid="x.id", payload="NULL")
    db.execute(
        "INSERT INTO execution_search (execution_id, body) "
        f"SELECT x.id, {body} FROM executions AS x "
        "WHERE x.status IN ('COMPLETED', 'FAILED', 'ABORTED')"
    )


# Finished executions are indexed for `--search` by the search itself (SqliteStore
# .index_for_search), not by a trigger when they finish: the trigger's tokenizing and JSON
# reading cost a run ~3 us per node (a 1,000-node chain), paid by every run and needed only
# by the rare search. `search_indexed` lists the executions the index holds.
INDEX_FOR_SEARCH = [
    "INSERT INTO execution_search (execution_id, body) SELECT x.id, "
    + SEARCH_BODY.format(
        eid="x.id",
        payload="(SELECT e.payload FROM events AS e WHERE e.execution_id = x.id "
        "AND e.type = 'ExecutionFinished' ORDER BY e.seq DESC LIMIT 1)",
    )
    + " FROM executions AS x WHERE x.status IN ('COMPLETED', 'FAILED', 'ABORTED') "
    "AND x.id NOT IN (SELECT execution_id FROM search_indexed)",
    "INSERT INTO search_indexed (execution_id) SELECT x.id FROM executions AS x "
    "WHERE x.status IN ('COMPLETED', 'FAILED', 'ABORTED') "
    "AND x.id NOT IN (SELECT execution_id FROM search_indexed)",
]


@migration
def m006_search_index_on_demand(db: sqlite3.Connection) -> None:
    """The search index is filled when a search runs, no longer by a trigger as each
    execution finishes (INDEX_FOR_SEARCH)."""
    if not _has_table(db, "execution_search"):  # an SQLite without FTS5: `--search` uses LIKE
        return
    db.execute("DROP TRIGGER IF EXISTS execution_search_on_finish")
    db.execute("CREATE TABLE search_indexed (execution_id TEXT PRIMARY KEY) WITHOUT ROWID")
    db.execute(
        "INSERT OR IGNORE INTO search_indexed (execution_id) "
        "SELECT execution_id FROM execution_search"
    )
