"""MemoryStore: the history kept in this process only (tests, `--db :memory:`).

It is the SQLite store on a private in-memory database: the same codec, writer and queries,
so it behaves exactly like the file store, and nothing reaches the disk.
"""

from __future__ import annotations

from dipeo_cli.store.sqlite import MEMORY, SqliteStore


class MemoryStore(SqliteStore):
    def __init__(self) -> None:
        super().__init__(MEMORY)
