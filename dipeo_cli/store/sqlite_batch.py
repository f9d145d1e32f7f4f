"""How SqliteStore writes a batch: the statements as multi-row INSERTs, the whole transaction
in aiosqlite's database thread in one hand-off, and, for a commit made while a run goes on, few
large statements and an event loop that waits for them (`lend_the_gil`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

Work = list[tuple[str, Any, bool]]  # (sql, its parameters, executemany or not)

# Rows per multi-row INSERT: one statement binds ROWS_PER_INSERT rows at once and steps them
# without the GIL, where executemany takes the GIL back for every row and a JSON array read by
# json_each parses every value again (measured on a 1,000-node chain's batch: 7.5 us/node of
# database CPU, against 9.5 with executemany and 14.3 with json_each). Each process prepares
# the statement once: a 100-row one costs ~160 us to prepare, more than a 50-node run's whole
# insert saves, while 20 rows is as fast per row at 1,000 rows and cheap to prepare. The rows
# left over (fewer than ROWS_PER_INSERT) go through executemany: a statement of their exact
# count would be prepared anew for nearly every batch.
ROWS_PER_INSERT = 20
# A commit made while a run goes on needs the GIL back between its statements, which the busy
# loop rarely gives up (see lend_the_gil): it uses few large statements, so that it needs the
# GIL few times. Measured on a 10,000-node chain, with the loop lending the GIL: 44-47 us/node
# at 250 rows, 47-52 at 20, and the same at 128 as at 250 (at 64: 49-51).
# The statements stay prepared (SQLite's statement cache), and a prepared row costs ~1.3 KiB:
# the rows left over go in statements of 64, 32, ... 2 rows (their count's binary digits), so
# that a table has at most six sizes of them. A statement of each leftover's exact count (as
# before) left up to 128 large statements alive: with 250-row statements, 1.7 MiB more of a
# 10,000-node run's peak.
MID_RUN_ROWS_PER_INSERT = 128
# How long the event loop waits for a mid-run commit at most, and for it to start (see
# lend_the_gil).
LEND_FOR = 0.05
STARTS_WITHIN = 0.002


class Lent:
    """What a transaction lent the GIL tells the event loop: it started, it ended."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.done = threading.Event()


def write_all(conn: sqlite3.Connection, work: Work, lent: Lent | None) -> None:
    """Run `work` in one BEGIN IMMEDIATE transaction on `conn` (in the database thread);
    roll back on any error. `lent` (see lend_the_gil) hears when it starts and ends."""
    if lent is not None:
        lent.started.set()
    try:
        write_now(conn, work)
    finally:
        if lent is not None:
            lent.done.set()


def write_now(conn: sqlite3.Connection, work: Work) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, params, many in work:
            if many:
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


@lru_cache(maxsize=64)  # one text per statement and chunk size, as SQLite caches it
def multi_row(sql: str, count: int) -> str:
    """`INSERT ... VALUES (?,...) rest` taking `count` rows: `VALUES (?,...),(?,...) rest`."""
    head, values = sql.split(" VALUES ", 1)
    marks, rest = values.split(")", 1)
    return f"{head} VALUES {','.join([marks + ')'] * count)}{rest}"


async def lend_the_gil(commit: Awaitable[None], lent: Lent) -> None:
    """Await `commit`, a transaction sent to the database thread while a run goes on, after
    blocking this thread (the event loop's) while it runs, for LEND_FOR seconds at most.

    A busy event loop lets go of the GIL at every turn (its poll of the sockets) and takes it
    back within microseconds, so a thread waiting for the GIL is woken each time too late and
    waits again, and a commit that needs the GIL between its statements could wait hundreds
    of milliseconds while the run's rows piled up behind it. Blocking here costs the loop
    nothing it would not lose to that contention: the commit runs at full speed meanwhile.
    A commit that takes longer (another process holds the lock, a slow disk) goes on after
    LEND_FOR without the loop waiting for it, and one that did not start at once (the thread
    was busy) is awaited as usual."""
    pending = asyncio.ensure_future(commit)
    await asyncio.sleep(0)  # `pending` runs up to its wait: the transaction is queued
    if lent.started.wait(STARTS_WITHIN):
        lent.done.wait(LEND_FOR)
    await pending


def plan(statements: Sequence[tuple[str, Sequence[Any]]], *, mid_run: bool) -> Work:
    """The work of one transaction: INSERTs of several rows as multi-row INSERTs
    (ROWS_PER_INSERT, or MID_RUN_ROWS_PER_INSERT), the rest through executemany (mid-run:
    in statements of 64, 32, ... 2 rows, and a last single row through executemany)."""
    size = MID_RUN_ROWS_PER_INSERT if mid_run else ROWS_PER_INSERT
    work: Work = []
    for sql, rows in statements:
        if not rows:
            continue
        if len(rows) == 1 or " VALUES (" not in sql:
            work.append((sql, rows, True))
            continue
        full = len(rows) - len(rows) % size
        for i in range(0, full, size):
            work.append(
                (multi_row(sql, size), list(chain.from_iterable(rows[i : i + size])), False)
            )
        rest = rows[full:]
        if mid_run:  # few statements (their preparation needs no GIL), of few sizes
            while len(rest) > 1:
                count = 1 << (len(rest).bit_length() - 1)
                work.append((multi_row(sql, count), list(chain.from_iterable(rest[:count])), False))
                rest = rest[count:]
        if rest:
            work.append((sql, rest, True))
    return work
