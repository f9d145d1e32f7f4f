"""The StateStore contract, run against SqliteStore and (where it applies) MemoryStore."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli import events as ev
from dipeo_cli import redact
from dipeo_cli.errors import ExecutionNotFoundError, HistoryError
from dipeo_cli.state import (
    ExecutionState,
    ExecutionStatus,
    NodeExecutionStatus,
    NodeState,
    TokenUsage,
    apply_event,
    create_node_output,
    iso,
    new_state,
)
from dipeo_cli.store import MemoryStore, SqliteStore, StateStore, open_store
from dipeo_cli.store.base import INTERRUPTED_ERROR
from dipeo_cli.store.statements import INSERT_BLOB

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000.0
NODES = (
    ev.NodeInfo("start", "Start", "start"),
    ev.NodeInfo("work", "Work", "code_job"),
    ev.NodeInfo("bad", "Bad", "code_job"),
    ev.NodeInfo("end", "End", "endpoint"),
    ev.NodeInfo("loop", "Loop", "person_job"),
)

Body = Callable[[Any], Awaitable[None]]


@pytest.fixture(autouse=True)
def no_inherited_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(redact, "_registered", set())
    redact.refresh_secrets()
    yield
    redact.refresh_secrets()


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def run_with_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Body], None]:
    """Run `body(store)` in a fresh event loop against a fresh store of each kind (PostgreSQL:
    a fresh database on the test server, see tests/pgserver.py)."""
    url = request.getfixturevalue("postgres_db") if request.param == "postgres" else None

    def run(body: Body) -> None:
        async def main() -> None:
            store: Any
            if url is not None:
                store = await open_store(url)
            elif request.param == "sqlite":
                store = await open_store(tmp_path / "history.db")
            else:
                store = MemoryStore()
            async with store:
                await body(store)

        asyncio.run(main())

    return run


def run_sqlite(tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        async with await open_store(tmp_path / "history.db") as store:
            await body(store)

    asyncio.run(main())


def record_run(
    store: Any,
    execution_id: str = "exec-aaaa-0001",
    *,
    diagram_id: str | None = "demo",
    t0: float = T0,
    finish: bool = True,
    extra_output: dict[str, Any] | None = None,
    error: str = "boom",
) -> ExecutionState:
    """A whole execution made of real events: completed, failed, skipped, capped nodes."""
    started = ev.ExecutionStarted(execution_id, diagram_id, {"topic": "tests"}, NODES, t0)
    state = new_state(started)
    store.record(state, started)
    events: list[ev.Event] = [
        ev.NodeStarted("start", 1, t0 + 0.1),
        ev.NodeCompleted("start", create_node_output({"topic": "tests"}), t0 + 0.2),
        ev.NodeStarted("work", 1, t0 + 0.3),
        ev.NodeCompleted(
            "work",
            create_node_output({"text": "result", **(extra_output or {})}, {"model": "m"}),
            t0 + 0.4,
            token_usage=TokenUsage(input=3, output=2, total=5),
        ),
        ev.NodeStarted("loop", 1, t0 + 0.41),
        ev.NodeCompleted("loop", create_node_output("once"), t0 + 0.42),
        ev.NodeStarted("loop", 2, t0 + 0.43),
        ev.NodeCompleted(
            "loop",
            create_node_output("twice"),
            t0 + 0.44,
            token_usage=TokenUsage(input=1, output=1, cached=1, total=2),
        ),
        ev.NodeCapped("loop", 2, t0 + 0.45),
        ev.NodeStarted("bad", 1, t0 + 0.5),
        ev.NodeFailed("bad", error, t0 + 0.6, output=create_node_output({"error": error})),
        ev.NodeSkipped("end", "upstream node 'Bad' failed", t0 + 0.7),
    ]
    if finish:
        events.append(
            ev.ExecutionFinished(ExecutionStatus.FAILED, f"node 'Bad' failed: {error}", t0 + 0.8)
        )
    for event in events:
        apply_event(state, event)
        store.record(state, event)
    return state


def dump(state: ExecutionState | None) -> dict[str, Any]:
    assert state is not None
    return state.model_dump(mode="json")


# -- the contract, on both stores ---------------------------------------------------------


def test_both_stores_satisfy_the_protocol(run_with_store: Callable[[Body], None]) -> None:
    async def body(store: Any) -> None:
        assert isinstance(store, StateStore)

    run_with_store(body)


def test_a_recorded_execution_reads_back_whole(run_with_store: Callable[[Body], None]) -> None:
    async def body(store: Any) -> None:
        state = record_run(store)
        await store.flush()
        got = await store.get_execution(state.id)
        assert dump(got) == dump(state)
        assert got is not None
        assert got.status is ExecutionStatus.FAILED
        assert got.error == "node 'Bad' failed: boom"
        assert got.is_active is False
        assert list(got.node_states) == ["start", "work", "bad", "end", "loop"]
        work = got.node_states["work"]
        assert (work.label, work.type, work.status) == (
            "Work",
            "code_job",
            NodeExecutionStatus.COMPLETED,
        )
        assert got.node_states["bad"].error == "boom"
        assert got.node_states["end"].skip_reason == "upstream node 'Bad' failed"
        assert got.node_states["loop"].status is NodeExecutionStatus.MAXITER_REACHED
        assert got.node_states["loop"].iterations == 2
        assert got.node_outputs["work"].value == {"text": "result"}
        assert got.node_outputs["work"].metadata == {"model": "m"}
        assert got.node_outputs["bad"].value == {"error": "boom"}
        assert got.token_usage == TokenUsage(input=4, output=3, cached=1, total=7)
        assert got.variables == {"topic": "tests"}
        assert got.duration_seconds == pytest.approx(0.8)
        assert await store.get_execution("nope") is None

    run_with_store(body)


def test_a_running_execution_reads_back_running(run_with_store: Callable[[Body], None]) -> None:
    async def body(store: Any) -> None:
        state = record_run(store, finish=False)
        got = await store.get_execution(state.id)  # reads see what was recorded before them
        assert got is not None
        assert got.status is ExecutionStatus.RUNNING
        assert got.is_active is True
        assert got.ended_at is None

    run_with_store(body)


def test_a_new_execution_lists_every_node_pending_in_diagram_order(
    run_with_store: Callable[[Body], None],
) -> None:
    # The PENDING rows come from the ExecutionStarted node list in one statement per dialect
    # (statements.PENDING_NODES_*), not a row each held in the batch.
    many = tuple(ev.NodeInfo(f"n{i}", f"Node {i}", "code_job") for i in range(300))
    nodes = (*NODES, *many)

    async def body(store: Any) -> None:
        started = ev.ExecutionStarted("exec-many", "demo", {}, nodes, T0)
        state = new_state(started)
        store.record(state, started)
        batch = store._writer.batch
        assert not batch.touched and not batch.nodes and len(batch.new_nodes) == 1
        first = ev.NodeStarted("n7", 1, T0 + 0.1)  # in the same batch: its row wins
        apply_event(state, first)
        store.record(state, first)
        got = await store.get_execution("exec-many")
        assert got is not None
        assert list(got.node_states) == [n.id for n in nodes]  # positions: diagram order
        assert got.node_states["n299"] == NodeState(label="Node 299", type="code_job")
        assert got.node_states["n7"].status is NodeExecutionStatus.RUNNING
        assert sum(s.status is NodeExecutionStatus.PENDING for s in got.node_states.values()) == (
            len(nodes) - 1
        )
        assert dump(got) == dump(state)

    run_with_store(body)


def test_a_short_runs_nodes_get_their_rows_once() -> None:
    # Every node got a row in the run's one batch: no PENDING rows to write and replace.
    from dipeo_cli.store.codec import Batch, Encoder

    started = ev.ExecutionStarted("exec-short", "demo", {}, NODES[:2], T0)
    state = new_state(started)
    encoder, batch = Encoder(), Batch()
    encoder.record(batch, state, started)
    assert batch.pending_nodes() != []
    for i, node in enumerate(NODES[:2]):
        event = ev.NodeStarted(node.id, 1, T0 + i)
        apply_event(state, event)
        encoder.record(batch, state, event)
    batch.seal()
    assert batch.pending_nodes() == []
    assert [row[11] for row in batch.nodes.values()] == [0, 1]  # their positions


def test_find_accepts_latest_and_unique_prefixes(run_with_store: Callable[[Body], None]) -> None:
    async def body(store: Any) -> None:
        record_run(store, "abc-111", t0=T0)
        record_run(store, "abd-222", t0=T0 + 10)
        record_run(store, "xyz-333", t0=T0 + 5)
        assert (await store.find_execution("latest")).id == "abd-222"
        assert (await store.find_execution("xy")).id == "xyz-333"
        assert (await store.find_execution("abc")).id == "abc-111"
        found = await store.find_execution("abc-111")
        assert found.node_states["work"].label == "Work"

        with pytest.raises(ExecutionNotFoundError) as ambiguous:
            await store.find_execution("ab")
        message = str(ambiguous.value)
        assert "matches several executions" in message
        assert "abc-111" in message and "abd-222" in message and "xyz-333" not in message

        with pytest.raises(ExecutionNotFoundError, match="no execution matches 'q'"):
            await store.find_execution("q")
        with pytest.raises(ExecutionNotFoundError):
            await store.find_execution("")
        with pytest.raises(ExecutionNotFoundError, match="%"):
            await store.find_execution("%")  # LIKE wildcards are taken literally

    run_with_store(body)


def test_latest_on_an_empty_history_says_so(run_with_store: Callable[[Body], None]) -> None:
    async def body(store: Any) -> None:
        with pytest.raises(ExecutionNotFoundError, match="no executions recorded yet"):
            await store.find_execution("latest")

    run_with_store(body)


def test_list_is_newest_first_and_filters(run_with_store: Callable[[Body], None]) -> None:
    async def body(store: Any) -> None:
        record_run(store, "run-1", diagram_id="alpha", t0=T0)
        record_run(store, "run-2", diagram_id="beta", t0=T0 + 20)
        running = record_run(store, "run-3", diagram_id="alpha", t0=T0 + 10, finish=False)
        child = new_state(ev.ExecutionStarted("run-4", "gamma", {}, (), T0 + 30))
        await store.create_execution(child, diagram_path="/d/sub_flow.yaml", parent_id="run-1")

        assert [s.id for s in await store.list_executions()] == ["run-4", "run-2", "run-3", "run-1"]
        assert [s.id for s in await store.list_executions(limit=2)] == ["run-4", "run-2"]
        failed = await store.list_executions(status=ExecutionStatus.FAILED)
        assert [s.id for s in failed] == ["run-2", "run-1"]
        still_running = await store.list_executions(status=ExecutionStatus.RUNNING)
        assert [s.id for s in still_running] == ["run-4", running.id]
        assert [s.id for s in await store.list_executions(diagram="ALPH")] == ["run-3", "run-1"]
        assert [s.id for s in await store.list_executions(diagram="sub_flow")] == ["run-4"]
        assert [s.id for s in await store.list_executions(diagram="%")] == []
        assert [s.id for s in await store.list_executions(parent_id="run-1")] == ["run-4"]
        listed = (await store.list_executions(limit=1, diagram="beta"))[0]
        assert listed.status is ExecutionStatus.FAILED
        assert listed.error == "node 'Bad' failed: boom"
        assert listed.ended_at is not None

    run_with_store(body)


def test_the_event_log_keeps_every_status_change_in_order(
    run_with_store: Callable[[Body], None],
) -> None:
    async def body(store: Any) -> None:
        state = record_run(store)
        record_run(store, "other-run")
        rows = await store.get_events(state.id)
        assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
        assert {r["execution_id"] for r in rows} == {state.id}
        assert [(r["type"], r["node_id"], r["status"]) for r in rows] == [
            ("ExecutionStarted", None, "RUNNING"),
            ("NodeStarted", "start", "RUNNING"),
            ("NodeCompleted", "start", "COMPLETED"),
            ("NodeStarted", "work", "RUNNING"),
            ("NodeCompleted", "work", "COMPLETED"),
            ("NodeStarted", "loop", "RUNNING"),
            ("NodeCompleted", "loop", "COMPLETED"),
            ("NodeStarted", "loop", "RUNNING"),
            ("NodeCompleted", "loop", "COMPLETED"),
            ("NodeCapped", "loop", "MAXITER_REACHED"),
            ("NodeStarted", "bad", "RUNNING"),
            ("NodeFailed", "bad", "FAILED"),
            ("NodeSkipped", "end", "SKIPPED"),
            ("ExecutionFinished", None, "FAILED"),
        ]
        payloads = [r["payload"] for r in rows]
        assert [r["iteration"] for r in rows[5:9]] == [1, 1, 2, 2]
        assert payloads[8] == {"token_usage": {"input": 1, "output": 1, "cached": 1, "total": 2}}
        assert payloads[9] == {"max_iteration": 2}
        assert payloads[11] == {"error": "boom"}
        assert payloads[12] == {"reason": "upstream node 'Bad' failed"}
        assert payloads[13] == {"error": "node 'Bad' failed: boom"}
        assert rows[1]["at"] == iso(T0 + 0.1)
        assert rows[-1]["at"] == iso(T0 + 0.8)
        assert await store.get_events("nope") == []

    run_with_store(body)


def test_direct_status_updates_are_recorded(run_with_store: Callable[[Body], None]) -> None:
    async def body(store: Any) -> None:
        started = ev.ExecutionStarted("direct-1", "demo", {}, NODES[:2], time.time())
        state = new_state(started)
        await store.create_execution(state, diagram_path="flows/demo.yaml")
        await store.update_node_status("direct-1", "start", NodeExecutionStatus.RUNNING)
        await store.update_node_status(
            "direct-1", "start", NodeExecutionStatus.COMPLETED, create_node_output("hi")
        )
        await store.update_node_status(
            "direct-1", "work", NodeExecutionStatus.FAILED, error="it broke"
        )
        await store.update_execution_status("direct-1", ExecutionStatus.FAILED, error="it broke")

        got = await store.get_execution("direct-1")
        assert got is not None
        assert got.status is ExecutionStatus.FAILED and got.error == "it broke"
        assert got.ended_at is not None and got.duration_seconds is not None
        start = got.node_states["start"]
        assert (start.status, start.iterations, start.label) == (
            NodeExecutionStatus.COMPLETED,
            1,
            "Start",
        )
        assert start.started_at is not None and start.ended_at is not None
        assert got.node_outputs["start"].value == {"default": "hi"}
        assert got.node_states["work"].error == "it broke"
        types = [(r["seq"], r["type"]) for r in await store.get_events("direct-1")]
        assert types == [
            (1, "NodeStarted"),
            (2, "NodeCompleted"),
            (3, "NodeFailed"),
            (4, "ExecutionFinished"),
        ]
        assert [s.id for s in await store.list_executions(diagram="flows/")] == ["direct-1"]
        with pytest.raises(ExecutionNotFoundError):
            await store.update_execution_status("missing", ExecutionStatus.COMPLETED)
        with pytest.raises(ExecutionNotFoundError):
            await store.update_node_status("missing", "n", NodeExecutionStatus.RUNNING)

    run_with_store(body)


def test_create_then_record_keeps_the_diagram_path(run_with_store: Callable[[Body], None]) -> None:
    async def body(store: Any) -> None:
        started = ev.ExecutionStarted("both-1", "demo", {}, NODES, T0)
        state = new_state(started)
        await store.create_execution(state, diagram_path="/flows/both.yaml")
        store.record(state, started)
        finished = ev.ExecutionFinished(ExecutionStatus.COMPLETED, None, T0 + 1)
        apply_event(state, finished)
        store.record(state, finished)
        assert [s.id for s in await store.list_executions(diagram="both.yaml")] == ["both-1"]
        got = await store.get_execution("both-1")
        assert got is not None and got.status is ExecutionStatus.COMPLETED

    run_with_store(body)


def test_secrets_are_redacted_on_read(
    run_with_store: Callable[[Body], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-SECRET123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    redact.refresh_secrets()

    async def body(store: Any) -> None:
        state = record_run(store, extra_output={"echo": secret}, error=f"401 for key {secret}")
        got = await store.get_execution(state.id)
        assert secret not in got.model_dump_json()
        assert got.node_outputs["work"].value["echo"] == "***"
        assert got.node_states["bad"].error == "401 for key ***"
        events = await store.get_events(state.id)
        assert secret not in repr(events)

    run_with_store(body)


def test_record_after_close_is_refused(run_with_store: Callable[[Body], None]) -> None:
    async def body(store: Any) -> None:
        await store.close()
        started = ev.ExecutionStarted("late", None, {}, (), T0)
        with pytest.raises(HistoryError, match="closed"):
            store.record(new_state(started), started)

    run_with_store(body)


# -- SQLite only --------------------------------------------------------------------------


def test_history_survives_reopening_the_database(tmp_path: Path) -> None:
    recorded: list[ExecutionState] = []

    async def write(store: Any) -> None:
        recorded.append(record_run(store))

    async def read(store: Any) -> None:
        assert dump(await store.get_execution(recorded[0].id)) == dump(recorded[0])

    run_sqlite(tmp_path, write)
    run_sqlite(tmp_path, read)


def test_open_store_uses_the_data_directory(tmp_path: Path) -> None:
    async def main() -> None:
        async with await open_store() as store:
            assert store.path == tmp_path / "dipeo-home" / "history.db"

    asyncio.run(main())
    assert (tmp_path / "dipeo-home" / "history.db").is_file()


def test_an_unreadable_database_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    path.write_bytes(b"this is not a database" * 100)

    async def main() -> None:
        await open_store(path)

    with pytest.raises(HistoryError, match="cannot open the history database"):
        asyncio.run(main())


def test_secrets_never_reach_the_database_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-SECRET123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    async def body(store: Any) -> None:
        state = record_run(
            store,
            extra_output={"echo": f"key={secret}", "headers": {"Authorization": "Bearer xyz-9"}},
            error=f"401 Unauthorized for {secret}",
        )
        started = ev.ExecutionStarted("vars", None, {"api_key": "plain-key-value"}, (), T0)
        store.record(new_state(started), started)
        await store.update_node_status(
            state.id, "bad", NodeExecutionStatus.FAILED, error=f"again {secret}"
        )
        await store.update_execution_status(state.id, ExecutionStatus.FAILED, error=secret)

    run_sqlite(tmp_path, body)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("history.db*"))
    assert b"sk-test-SECRET123456" not in raw
    assert b"SECRET123456" not in raw
    assert b"Bearer xyz-9" not in raw
    assert b"plain-key-value" not in raw
    db = sqlite3.connect(tmp_path / "history.db")
    (error,) = db.execute("SELECT error FROM node_states WHERE node_id = 'bad'").fetchone()
    assert error == "again ***"
    db.close()


def test_a_run_whose_process_died_reads_back_interrupted(tmp_path: Path) -> None:
    """A real `dipeo run` process that ends mid-run, without closing anything."""
    script = f"""
import asyncio, os, sys
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from dipeo_cli import events as ev
from dipeo_cli.state import apply_event, new_state
from dipeo_cli.store import open_store

async def main():
    store = await open_store(Path(sys.argv[1]))
    nodes = (ev.NodeInfo("a", "A", "code_job"), ev.NodeInfo("b", "B", "code_job"))
    started = ev.ExecutionStarted("dead-run", "demo", {{}}, nodes, {T0})
    state = new_state(started)
    store.record(state, started)
    running = ev.NodeStarted("a", 1, {T0 + 1})
    apply_event(state, running)
    store.record(state, running)
    await store.flush()
    os._exit(0)

asyncio.run(main())
"""
    db_path = tmp_path / "history.db"
    subprocess.run([sys.executable, "-c", script, str(db_path)], check=True, timeout=30)

    async def body(store: Any) -> None:
        got = await store.find_execution("dead")
        assert got.status is ExecutionStatus.FAILED
        assert got.error == INTERRUPTED_ERROR
        assert got.is_active is False
        assert got.ended_at is not None and got.duration_seconds == pytest.approx(1.0)
        a, b = got.node_states["a"], got.node_states["b"]
        assert (a.status, a.error) == (NodeExecutionStatus.FAILED, "interrupted")
        assert (b.status, b.skip_reason) == (NodeExecutionStatus.SKIPPED, "execution interrupted")
        failed = await store.list_executions(status=ExecutionStatus.FAILED)
        assert [s.id for s in failed] == ["dead-run"]
        events = await store.get_events("dead-run")
        assert events[-1]["type"] == "ExecutionFinished"
        assert events[-1]["payload"] == {"error": INTERRUPTED_ERROR, "reason": "interrupted"}
        await store.get_execution("dead-run")  # repairing twice adds nothing
        assert len(await store.get_events("dead-run")) == len(events)

    run_sqlite(tmp_path, body)
    db = sqlite3.connect(db_path)  # the repair was written back, not only shown
    assert db.execute("SELECT status FROM executions").fetchall() == [("FAILED",)]
    statuses = db.execute("SELECT node_id, status FROM node_states ORDER BY node_id").fetchall()
    assert statuses == [("a", "FAILED"), ("b", "SKIPPED")]
    db.close()


def test_a_reused_pid_does_not_keep_a_run_alive(tmp_path: Path) -> None:
    """The recorded pid is alive, but it is another process: the start marker differs."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()

    async def write(store: Any) -> None:
        record_run(store, "exited-pid", finish=False)
        record_run(store, "reused-pid", finish=False, t0=T0 + 1)
        record_run(store, "alive", finish=False, t0=T0 + 2)

    run_sqlite(tmp_path, write)
    db = sqlite3.connect(tmp_path / "history.db")
    db.execute("UPDATE executions SET pid = ? WHERE id = 'exited-pid'", (child.pid,))
    db.execute("UPDATE executions SET process_start = 'other-process' WHERE id = 'reused-pid'")
    db.commit()
    db.close()

    async def read(store: Any) -> None:
        listed = {s.id: s for s in await store.list_executions()}
        assert listed["exited-pid"].status is ExecutionStatus.FAILED
        assert listed["reused-pid"].status is ExecutionStatus.FAILED
        assert listed["reused-pid"].error == INTERRUPTED_ERROR
        assert listed["alive"].status is ExecutionStatus.RUNNING  # this process: still alive

    run_sqlite(tmp_path, read)


def test_runs_from_another_host_are_left_alone_while_their_heartbeat_is_fresh(
    tmp_path: Path,
) -> None:
    async def write(store: Any) -> None:
        record_run(store, "remote", finish=False)

    run_sqlite(tmp_path, write)
    db = sqlite3.connect(tmp_path / "history.db")
    db.execute(
        "UPDATE executions SET host = 'some-other-host', pid = 999999999, heartbeat_at = ?",
        (iso(time.time() - 5),),
    )
    db.commit()
    db.close()

    async def read(store: Any) -> None:
        got = await store.get_execution("remote")
        assert got is not None and got.status is ExecutionStatus.RUNNING

    run_sqlite(tmp_path, read)


def test_a_locked_database_is_retried_not_failed(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    locked = threading.Event()

    def hold_the_write_lock() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(0.4)
        db.execute("COMMIT")
        db.close()

    async def main() -> None:
        store = await SqliteStore(path, busy_timeout=0.02).open()
        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        while not locked.is_set():
            await asyncio.sleep(0.005)
        try:
            state = record_run(store)
            await store.flush()  # SQLite gives up after 20 ms; the store retries the batch
        finally:
            await asyncio.to_thread(holder.join)
            await store.close()
        async with await open_store(path) as reader:
            assert dump(await reader.get_execution(state.id)) == dump(state)

    asyncio.run(main())


def test_a_failed_write_surfaces_from_flush_and_close(tmp_path: Path) -> None:
    path = tmp_path / "history.db"

    async def main() -> None:
        store = await open_store(path)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("DROP TABLE events")
        db.close()
        record_run(store)
        with pytest.raises(HistoryError, match="could not write to the history database"):
            await store.flush()
        with pytest.raises(HistoryError, match="no such table: events"):
            await store.close()
        await store.close()  # closing again is harmless

    asyncio.run(main())


def test_values_that_are_not_json_are_stored_as_text(tmp_path: Path) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "<opaque>"

    async def body(store: Any) -> None:
        state = record_run(store, extra_output={"when": datetime(2024, 1, 2), "obj": Opaque()})
        got = await store.get_execution(state.id)
        assert got.node_outputs["work"].value["when"] == "2024-01-02 00:00:00"
        assert got.node_outputs["work"].value["obj"] == "<opaque>"

    run_sqlite(tmp_path, body)


def test_recording_a_chain_batches_its_writes(tmp_path: Path) -> None:
    """Not a timing assertion: 500 nodes recorded on the hot path commit in a few batches."""
    transactions = 0
    original = SqliteStore.transaction

    async def counting(self: SqliteStore, statements: Any, **options: Any) -> None:
        nonlocal transactions
        transactions += 1
        await original(self, statements, **options)

    async def main() -> None:
        async with await open_store(tmp_path / "history.db") as store:
            store.transaction = counting.__get__(store)  # type: ignore[method-assign]
            nodes = tuple(ev.NodeInfo(f"n{i}", f"N{i}", "code_job") for i in range(500))
            started = ev.ExecutionStarted("chain", "chain", {}, nodes, time.time())
            state = new_state(started)
            store.record(state, started)
            for i in range(500):
                for event in (
                    ev.NodeStarted(f"n{i}", 1, time.time()),
                    ev.NodeCompleted(f"n{i}", create_node_output(i), time.time()),
                ):
                    apply_event(state, event)
                    store.record(state, event)
                await asyncio.sleep(0)
            await store.flush()
            assert len(await store.get_events("chain")) == 1001
            got = await store.get_execution("chain")
            assert got is not None and got.node_outputs["n499"].value == {"default": 499}

    asyncio.run(main())
    assert 1 <= transactions <= 10


def test_the_process_start_marker_tells_processes_apart() -> None:
    from dipeo_cli.store import base

    if not sys.platform.startswith("linux"):
        pytest.skip("process start markers are read from /proc")
    host = socket.gethostname()
    marker = base.own_process_marker()
    assert marker is not None and marker == base.process_marker(os.getpid())
    assert base.process_gone(os.getpid(), marker, host) is False
    assert base.process_gone(os.getpid(), "another:1", host) is True
    assert base.process_gone(os.getppid(), None, host) is False


def test_a_run_on_another_host_whose_heartbeat_stopped_reads_back_interrupted(
    run_with_store: Callable[[Body], None],
) -> None:
    """Any machine sees it FAILED, never RUNNING forever; one with a fresh heartbeat runs on."""
    stale = iso(time.time() - 120)

    async def body(store: Any) -> None:
        record_run(store, "gone", finish=False)
        record_run(store, "beating", finish=False, t0=T0 + 1)
        await store.flush()
        async with store.write_lock():
            await store.transaction(
                [
                    (
                        "UPDATE executions SET host = ?, pid = ?, heartbeat_at = ? WHERE id = ?",
                        [
                            ("ci-runner-7", 4242, stale, "gone"),
                            ("ci-runner-8", 4242, iso(time.time()), "beating"),
                        ],
                    )
                ]
            )
        gone = await store.find_execution("gone")
        assert gone.status is ExecutionStatus.FAILED
        assert gone.error == f"interrupted: no heartbeat from ci-runner-7 since {stale}"
        assert gone.node_states["end"].status is NodeExecutionStatus.SKIPPED
        events = await store.get_events("gone")
        assert events[-1]["type"] == "ExecutionFinished"
        beating = await store.find_execution("beating")
        assert beating.status is ExecutionStatus.RUNNING

    run_with_store(body)


def test_a_running_execution_writes_heartbeats(
    run_with_store: Callable[[Body], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dipeo_cli.store import watch

    monkeypatch.setattr(watch, "HEARTBEAT_EVERY", 0.0)

    async def beat(store: Any) -> float:
        rows = await store.fetch("SELECT heartbeat_at FROM executions WHERE id = ?", ("live",))
        return datetime.fromisoformat(rows[0][0]).timestamp() if rows[0][0] else 0.0

    async def body(store: Any) -> None:
        record_run(store, "live", finish=False)  # its events are from 2023
        await store.flush()
        unwatch = store.watch("live", lambda control: None)
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if abs(await beat(store) - time.time()) < 10:
                    break
            assert abs(await beat(store) - time.time()) < 10
        finally:
            unwatch()

    run_with_store(body)


def test_an_unknown_event_is_logged_not_fatal(run_with_store: Callable[[Body], None]) -> None:
    @dataclass(frozen=True)
    class NodeRetried:
        node_id: str
        at: float

    async def body(store: Any) -> None:
        state = record_run(store, finish=False)
        store.record(state, NodeRetried("work", T0 + 0.9))
        rows = await store.get_events(state.id)
        assert (rows[-1]["type"], rows[-1]["node_id"], rows[-1]["status"]) == (
            "NodeRetried",
            "work",
            "COMPLETED",
        )

    run_with_store(body)


def test_a_busy_run_killed_early_still_shows_up_interrupted(tmp_path: Path) -> None:
    """Rows wait while the loop is busy, but a new run is committed within ~0.1 s."""
    script = f"""
import asyncio, os, sys, time
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from dipeo_cli import events as ev
from dipeo_cli.state import apply_event, create_node_output, new_state
from dipeo_cli.store import open_store

async def main():
    store = await open_store(Path(sys.argv[1]))
    nodes = tuple(ev.NodeInfo(f"n{{i}}", f"N{{i}}", "code_job") for i in range(2000))
    started = ev.ExecutionStarted("busy-run", "demo", {{}}, nodes, time.time())
    state = new_state(started)
    store.record(state, started)
    import sqlite3
    end = time.monotonic() + 15.0
    next_look = time.monotonic() + 0.3
    i = 0
    while time.monotonic() < end:  # a CPU-bound loop: it never waits on I/O
        if time.monotonic() >= next_look:  # die as soon as the run is visible to others
            next_look = time.monotonic() + 0.05
            with sqlite3.connect(sys.argv[1]) as peek:
                if peek.execute("SELECT 1 FROM executions WHERE id = 'busy-run'").fetchone():
                    break
        i %= 2000
        for event in (ev.NodeStarted(f"n{{i}}", 1, time.time()),
                      ev.NodeCompleted(f"n{{i}}", create_node_output(i), time.time())):
            apply_event(state, event)
            store.record(state, event)
        i += 1
        await asyncio.sleep(0)
    os._exit(0)

asyncio.run(main())
"""
    db_path = tmp_path / "history.db"
    subprocess.run([sys.executable, "-c", script, str(db_path)], check=True, timeout=30)

    async def body(store: Any) -> None:
        got = await store.get_execution("busy-run")
        assert got is not None
        assert got.status is ExecutionStatus.FAILED
        assert got.error == INTERRUPTED_ERROR
        assert got.node_states["n0"].status is NodeExecutionStatus.COMPLETED

    run_sqlite(tmp_path, body)


def test_batches_written_while_the_loop_is_busy_round_trip_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches committed mid-run go to SQLite as multi-row INSERTs (more rows than one INSERT
    takes, so a table's rows span several); the result must be identical."""
    from dipeo_cli.store import sqlite_batch, writer

    monkeypatch.setattr(writer, "MAX_LATENCY", 0.0)
    monkeypatch.setattr(writer, "NEW_RUN_LATENCY", 0.0)
    monkeypatch.setattr(sqlite_batch, "MID_RUN_ROWS_PER_INSERT", 3)
    row_counts = []
    mid_runs: list[bool] = []
    original = SqliteStore.transaction

    async def spy(self: SqliteStore, statements: Any, *, mid_run: bool = False) -> None:
        row_counts.extend(len(rows) for _sql, rows in statements)
        mid_runs.append(mid_run)
        await original(self, statements, mid_run=mid_run)

    monkeypatch.setattr(SqliteStore, "transaction", spy)
    recorded: list[ExecutionState] = []

    async def write(store: Any) -> None:
        state = record_run(store, extra_output={"nested": {"list": [1, 2.5, None, "x"]}})
        await asyncio.sleep(0.05)  # let the writer commit while nobody flushes
        recorded.append(state)

    run_sqlite(tmp_path, write)
    assert max(row_counts) > 3
    assert mid_runs[0] is True  # committed by the writer on its own: large statements

    async def read(store: Any) -> None:
        got = await store.get_execution(recorded[0].id)
        assert dump(got) == dump(recorded[0])
        events = await store.get_events(recorded[0].id)
        assert [e["seq"] for e in events] == list(range(1, 15))
        assert events[7]["iteration"] == 2

    run_sqlite(tmp_path, read)


def test_mid_run_commits_use_few_statement_sizes_whatever_their_row_counts() -> None:
    """SQLite keeps every statement it prepared (a row of one costs ~1.3 KiB), so the rows a
    mid-run commit leaves over go in statements of a few fixed sizes (64, 32, ... 2 rows and
    a last row alone), never one of each batch's exact count; every row is written once, in
    order."""
    from dipeo_cli.store import sqlite_batch

    sql = "INSERT INTO t (a, b) VALUES (?,?)"
    sizes: set[int] = set()
    for count in range(1, 700):
        rows = [(i, f"r{i}") for i in range(count)]
        work = sqlite_batch.plan([(sql, rows)], mid_run=True)
        written: list[Any] = []
        for text, params, many in work:
            if many:
                assert text == sql
                written.extend(params)
                continue
            size = text.count("(?,?)")
            sizes.add(size)
            written.extend(zip(params[::2], params[1::2], strict=True))
        assert written == rows
        assert len(work) <= count // sqlite_batch.MID_RUN_ROWS_PER_INSERT + 7
    assert sizes == {sqlite_batch.MID_RUN_ROWS_PER_INSERT, 64, 32, 16, 8, 4, 2}


def test_the_history_keeps_a_page_cache_of_one_mib(tmp_path: Path) -> None:
    """A run's writes touch the last pages of a few tables: SQLite's default 2 MiB cache only
    added to a large run's peak memory."""

    async def check(store: Any) -> None:
        rows = await store._db.execute_fetchall("PRAGMA cache_size")
        assert list(rows) == [(-1024,)]

    run_sqlite(tmp_path, check)


def test_without_aiosqlites_thread_call_a_batch_goes_statement_by_statement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-hand-off transaction uses aiosqlite's non-public `_execute`; where a version
    lacks it, the same rows are written statement by statement."""
    from dipeo_cli.store import sqlite as sqlite_store
    from dipeo_cli.store import sqlite_batch

    monkeypatch.setattr(sqlite_store, "_thread_call", lambda db: None)
    monkeypatch.setattr(sqlite_batch, "ROWS_PER_INSERT", 3)
    recorded: list[ExecutionState] = []

    async def write(store: Any) -> None:
        recorded.append(record_run(store, extra_output={"nested": {"list": [1, 2.5, None]}}))
        await store.flush()

    run_sqlite(tmp_path, write)

    async def read(store: Any) -> None:
        got = await store.get_execution(recorded[0].id)
        assert dump(got) == dump(recorded[0])
        assert [e["seq"] for e in await store.get_events(recorded[0].id)] == list(range(1, 15))

    run_sqlite(tmp_path, read)


@pytest.mark.parametrize(
    ("lend_for", "commit_seconds", "loop_waits"), [(5.0, 0.05, True), (0.01, 0.3, False)]
)
def test_a_mid_run_commit_holds_the_event_loop_until_it_ends_or_lend_for_passes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lend_for: float,
    commit_seconds: float,
    loop_waits: bool,
) -> None:
    """While a run goes on, a commit would starve for the GIL beside the busy loop; the loop
    waits for it instead (sqlite._lend_the_gil), LEND_FOR seconds at most. A ticker on the loop
    notes whether it ever ran while the commit was under way."""
    from dipeo_cli.store import sqlite_batch

    monkeypatch.setattr(sqlite_batch, "LEND_FOR", lend_for)
    under_way = threading.Event()
    finished = threading.Event()
    write = sqlite_batch.write_now

    def slow_write(conn: sqlite3.Connection, work: Any) -> None:
        under_way.set()
        time.sleep(commit_seconds)
        write(conn, work)
        finished.set()

    monkeypatch.setattr(sqlite_batch, "write_now", slow_write)
    ticks_meanwhile = []

    async def body(store: Any) -> None:
        stop = False

        async def ticker() -> None:
            while not stop:
                ticks_meanwhile.append(under_way.is_set() and not finished.is_set())
                await asyncio.sleep(0)

        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        rows = [(f"h{i}", 1, "x") for i in range(5)]
        await store.transaction([(INSERT_BLOB, rows)], mid_run=True)
        stop = True
        await ticking
        assert len(await store.fetch("SELECT hash FROM blobs")) == 5

    run_sqlite(tmp_path, body)
    assert any(ticks_meanwhile) is not loop_waits


def test_a_mid_run_commit_queued_behind_other_work_does_not_hold_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database thread is busy (a slow read, say): the commit does not start at once, and
    # the loop goes on rather than waiting for what runs before it.
    from dipeo_cli.store import sqlite_batch

    monkeypatch.setattr(sqlite_batch, "LEND_FOR", 5.0)
    ticks = []

    async def body(store: Any) -> None:
        busy = asyncio.ensure_future(store._db._execute(time.sleep, 0.2))
        await asyncio.sleep(0)
        stop = False

        async def ticker() -> None:
            while not stop:
                ticks.append(busy.done())
                await asyncio.sleep(0.001)

        ticking = asyncio.ensure_future(ticker())
        await store.transaction([(INSERT_BLOB, [("h1", 1, "x"), ("h2", 1, "y")])], mid_run=True)
        stop = True
        await ticking
        assert len(await store.fetch("SELECT hash FROM blobs")) == 2

    run_sqlite(tmp_path, body)
    assert ticks.count(False) > 3  # the loop ran while the thread was busy before the commit


def test_the_writer_lets_go_of_a_batch_once_it_is_committed() -> None:
    # A committed batch held while the next one fills doubled what a long run kept in rows.
    import gc
    import weakref

    from dipeo_cli.store.writer import BatchWriter

    committed: list[weakref.ref[Any]] = []

    async def commit(batch: Any) -> None:
        committed.append(weakref.ref(batch))

    async def body() -> None:
        writer = BatchWriter(commit, where="test", batch_delay=0)
        writer.start()
        writer.batch.events.append(("e", 1, "t", "Kind", None, None, None, None))
        await writer.drain()
        assert len(committed) == 1
        writer.batch.events.append(("e", 2, "t", "Kind", None, None, None, None))  # filling
        gc.collect()
        assert committed[0]() is None
        await writer.stop()
        assert len(committed) == 2

    asyncio.run(body())
