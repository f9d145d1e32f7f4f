"""Several `dipeo run` processes share one history database: none fails, nothing is lost."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dipeo_cli.state import ExecutionStatus, NodeExecutionStatus
from dipeo_cli.store import open_store

REPO = Path(__file__).resolve().parent.parent
PROCESSES = 4
NODES = 300

WRITER = """
import asyncio, os, sys, time
from pathlib import Path
from dipeo_cli import events as ev
from dipeo_cli.state import ExecutionStatus, apply_event, create_node_output, new_state
from dipeo_cli.store import open_store

db, go_file, name, count = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])

async def main():
    store = await open_store(db)
    while not go_file.exists():  # start together, to collide as much as possible
        await asyncio.sleep(0.002)
    nodes = tuple(ev.NodeInfo(f"n{i}", f"Node {i}", "code_job") for i in range(count))
    started = ev.ExecutionStarted(name, "shared", {"writer": name}, nodes, time.time())
    state = new_state(started)
    store.record(state, started)
    for i in range(count):
        for event in (
            ev.NodeStarted(f"n{i}", 1, time.time()),
            ev.NodeCompleted(f"n{i}", create_node_output({"i": i, "by": name}), time.time()),
        ):
            apply_event(state, event)
            store.record(state, event)
        if i % 10 == 9:
            await store.flush()  # many short transactions, interleaved with the other writers
    finished = ev.ExecutionFinished(ExecutionStatus.COMPLETED, None, time.time())
    apply_event(state, finished)
    store.record(state, finished)
    await store.close()

asyncio.run(main())
"""


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A history several processes open at once: an SQLite file or a PostgreSQL database
    (which the writers also migrate at once)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_db"))
    return str(tmp_path / "shared" / "history.db")


def test_four_processes_write_one_database_at_once(tmp_path: Path, shared_db: str) -> None:
    is_file = "://" not in shared_db
    db_path = Path(shared_db)
    go_file = tmp_path / "go"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, shared_db, str(go_file), f"writer-{n}", str(NODES)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    # every writer has opened (and migrated) the database before they all start writing
    deadline = 20.0 if is_file else 0.3
    while not (is_file and db_path.exists()) and deadline > 0:
        deadline -= 0.01
        time.sleep(0.01)
    go_file.touch()
    for writer in writers:
        _, stderr = writer.communicate(timeout=60)
        assert writer.returncode == 0, stderr

    async def check() -> None:
        async with await open_store(shared_db) as store:
            runs = await store.list_executions(limit=100)
            assert sorted(r.id for r in runs) == [f"writer-{n}" for n in range(PROCESSES)]
            for run in runs:
                state = await store.get_execution(run.id)
                assert state is not None
                assert state.status is ExecutionStatus.COMPLETED
                assert len(state.node_states) == NODES
                assert all(
                    n.status is NodeExecutionStatus.COMPLETED for n in state.node_states.values()
                )
                assert state.node_outputs[f"n{NODES - 1}"].value == {"i": NODES - 1, "by": run.id}
                events = await store.get_events(run.id)
                assert [e["seq"] for e in events] == list(range(1, 2 * NODES + 3))

    asyncio.run(check())
