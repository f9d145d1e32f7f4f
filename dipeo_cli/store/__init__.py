"""The history store: the StateStore protocol and its implementations.

    from dipeo_cli.store import open_store
    async with await open_store() as store:      # the default database, migrated
        store.record(state, event)                # after each apply_event(state, event)

`SqliteStore` (store/sqlite.py, the default), `PostgresStore` (store/postgres.py, for a
`postgresql://` URL) and `MemoryStore` load on first use, so importing this package costs nothing
on the `dipeo --help` path (asyncpg is imported only when a PostgreSQL URL is opened).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dipeo_cli.store.base import StateStore

if TYPE_CHECKING:
    from dipeo_cli.store.history import SqlHistory
    from dipeo_cli.store.memory import MemoryStore
    from dipeo_cli.store.postgres import PostgresStore
    from dipeo_cli.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "PostgresStore", "SqliteStore", "StateStore", "open_store"]


async def open_store(target: str | Path | None = None, *, create: bool = True) -> SqlHistory:
    """Open (creating and migrating as needed) the history named by `target`: a file path,
    `sqlite:///PATH`, `:memory:` (this process only), `postgresql://user:pass@host:port/db`
    (or `postgres://`), or None for `paths.default_db()` (`$DIPEO_DB`, else the default file).

    `create=False` (the read-only commands) never creates a file or a folder: a database file
    that does not exist raises HistoryMissingError. Raises HistoryError when it cannot be
    opened, UsageError for a URL it cannot serve."""
    from dipeo_cli.paths import default_db
    from dipeo_cli.store.sqlite import MEMORY, SqliteStore

    if target is None:
        target = default_db()
    text = str(target)
    if isinstance(target, str) and "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() == "sqlite":
            # sqlite:///abs/path, sqlite://rel
            return await SqliteStore(rest or MEMORY, create=create).open()
        if scheme.lower() in ("postgresql", "postgres"):
            from dipeo_cli.store.postgres import PostgresStore

            return await PostgresStore(text).open()
        from dipeo_cli.errors import UsageError
        from dipeo_cli.redact import mask_url_password

        raise UsageError(
            f"--db {mask_url_password(text)}: unsupported history URL scheme {scheme!r} "
            "(use a file path, sqlite:///PATH, :memory: or postgresql://...)"
        )
    if text == MEMORY:
        return await SqliteStore(MEMORY).open()
    return await SqliteStore(Path(target), create=create).open()


def __getattr__(name: str) -> Any:
    if name == "SqliteStore":
        from dipeo_cli.store.sqlite import SqliteStore

        return SqliteStore
    if name == "MemoryStore":
        from dipeo_cli.store.memory import MemoryStore

        return MemoryStore
    if name == "PostgresStore":
        from dipeo_cli.store.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'dipeo_cli.store' has no attribute {name!r}")
