"""The history store: the StateStore protocol and its implementations.

    from dipeo_cli.store import open_store
    async with await open_store() as store:      # the default database, migrated
        store.record(state, event)                # after each apply_event(state, event)

`SqliteStore` (store/sqlite.py, the default) and `MemoryStore` load on first use, so importing
this package costs nothing on the `dipeo --help` path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dipeo_cli.store.base import StateStore

if TYPE_CHECKING:
    from dipeo_cli.store.memory import MemoryStore
    from dipeo_cli.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "SqliteStore", "StateStore", "open_store"]

MEMORY = ":memory:"


async def open_store(path: Path | None = None) -> SqliteStore | MemoryStore:
    """Open (creating and migrating as needed) the history database at `path`, by default
    `paths.default_db_path()`. Raises HistoryError when it cannot be opened.

    `:memory:` gives a MemoryStore: a history that ends with the process."""
    from dipeo_cli.paths import default_db_path
    from dipeo_cli.store.sqlite import SqliteStore

    if path is not None and str(path) == MEMORY:
        from dipeo_cli.store.memory import MemoryStore

        return MemoryStore()
    return await SqliteStore(path if path is not None else default_db_path()).open()


def __getattr__(name: str) -> Any:
    if name == "SqliteStore":
        from dipeo_cli.store.sqlite import SqliteStore

        return SqliteStore
    if name == "MemoryStore":
        from dipeo_cli.store.memory import MemoryStore

        return MemoryStore
    raise AttributeError(f"module 'dipeo_cli.store' has no attribute {name!r}")
