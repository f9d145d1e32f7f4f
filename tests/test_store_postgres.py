"""The history on a real PostgreSQL server (tests/pgserver.py): what is PostgreSQL's own.

The StateStore contract itself runs over every store in tests/test_store_sqlite.py
(`run_with_store`) and tests/test_store_concurrency.py; here: migrations from an empty
database, the interrupted-run repair, the SQL translation, the password never shown, and the
CLI commands on `--db postgresql://...` and `DIPEO_DB`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dipeo_cli import events as ev
from dipeo_cli.errors import HistoryError
from dipeo_cli.state import ExecutionStatus, NodeExecutionStatus, apply_event, new_state
from dipeo_cli.store import open_store
from dipeo_cli.store.base import INTERRUPTED_ERROR
from dipeo_cli.store.migrations import MIGRATIONS
from dipeo_cli.store.postgres import to_postgres
from dipeo_cli.store.postgres_schema import POSTGRES_BODIES
from tests.pgserver import PASSWORD

REPO = Path(__file__).resolve().parent.parent
HELLO = str(REPO / "diagrams" / "hello.light.yaml")
T0 = 1_700_000_000.0


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    async def main() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(sql)]
        finally:
            await conn.close()

    return asyncio.run(main())


def env_for(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def dipeo(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dipeo_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_for(**extra),
    )


def test_placeholders_become_numbered_outside_string_literals() -> None:
    sql = "SELECT ?, '?', 'it''s ?' FROM t WHERE a LIKE ? ESCAPE '\\' AND b IN (?,?)"
    assert to_postgres(sql) == (
        "SELECT $1, '?', 'it''s ?' FROM t WHERE a LIKE $2 ESCAPE '\\' AND b IN ($3,$4)"
    )


def test_every_migration_has_a_postgresql_body() -> None:
    assert [name for name, _ in MIGRATIONS if name not in POSTGRES_BODIES] == []


def test_an_empty_database_is_migrated_once(postgres_db: str) -> None:
    async def main() -> None:
        async with await open_store(postgres_db):
            pass
        async with await open_store(postgres_db):  # a second open applies nothing
            pass

    asyncio.run(main())
    rows = query(postgres_db, "SELECT name FROM schema_migrations ORDER BY name")
    assert [r[0] for r in rows] == sorted(name for name, _ in MIGRATIONS)
    tables = query(
        postgres_db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "ORDER BY table_name",
    )
    assert [t[0] for t in tables] == [
        "blobs",
        "controls",
        "events",
        "executions",
        "node_iterations",
        "node_states",
        "schema_migrations",
    ]


def test_a_database_from_a_newer_dipeo_is_refused(postgres_db: str) -> None:
    async def main() -> None:
        async with await open_store(postgres_db):
            pass

    asyncio.run(main())
    query(postgres_db, "INSERT INTO schema_migrations VALUES ('m999_future', 'x')")
    with pytest.raises(HistoryError, match="newer dipeo.*m999_future") as caught:
        asyncio.run(main())
    assert PASSWORD not in str(caught.value)


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    url = f"postgresql://dipeo:{PASSWORD}@127.0.0.1:1/nothing"
    out = dipeo("history", "--db", url)
    assert out.returncode == 2
    assert PASSWORD not in out.stdout + out.stderr
    assert "postgresql://dipeo:***@127.0.0.1:1/nothing" in out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_run_whose_process_died_reads_back_interrupted(postgres_db: str) -> None:
    """A process that ends mid-run without closing anything: the next reader repairs it."""
    script = f"""
import asyncio, os, sys
from dipeo_cli import events as ev
from dipeo_cli.state import apply_event, new_state
from dipeo_cli.store import open_store

async def main():
    store = await open_store(sys.argv[1])
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
    subprocess.run(
        [sys.executable, "-c", script, postgres_db], check=True, timeout=30, env=env_for()
    )

    async def main() -> None:
        async with await open_store(postgres_db) as store:
            got = await store.find_execution("dead")
            assert (got.status, got.error) == (ExecutionStatus.FAILED, INTERRUPTED_ERROR)
            assert got.duration_seconds == pytest.approx(1.0)
            a, b = got.node_states["a"], got.node_states["b"]
            assert (a.status, a.error) == (NodeExecutionStatus.FAILED, "interrupted")
            assert (b.status, b.skip_reason) == (
                NodeExecutionStatus.SKIPPED,
                "execution interrupted",
            )
            events = await store.get_events("dead-run")
            assert events[-1]["type"] == "ExecutionFinished"
            assert events[-1]["payload"] == {"error": INTERRUPTED_ERROR, "reason": "interrupted"}
            await store.get_execution("dead-run")  # repairing twice adds nothing
            assert len(await store.get_events("dead-run")) == len(events)
            rebuilt = await store.rebuild_state("dead-run")
            assert rebuilt is not None and rebuilt.status is ExecutionStatus.FAILED

    asyncio.run(main())
    assert query(postgres_db, "SELECT status FROM executions") == [("FAILED",)]


def test_run_history_and_show_on_a_postgresql_history(postgres_db: str) -> None:
    """Commands from separate processes meet in one database; the password never shows."""
    ran = dipeo("run", HELLO, "--json", "--db", postgres_db)
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "COMPLETED"
    # DIPEO_DB selects the same history for a process that ran nothing
    listed = dipeo("history", "--json", DIPEO_DB=postgres_db)
    assert listed.returncode == 0, listed.stderr
    assert [e["id"] for e in json.loads(listed.stdout)] == [run["id"]]
    shown = dipeo("show", run["id"][:8], "--json", "--db", postgres_db)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["id"] == run["id"] and state["status"] == "COMPLETED"
    assert {n["status"] for n in state["node_states"].values()} == {"COMPLETED"}
    text = dipeo("show", "latest", DIPEO_DB=postgres_db)
    assert text.returncode == 0 and run["id"] in text.stdout
    for out in (ran, listed, shown, text):
        assert PASSWORD not in out.stdout + out.stderr
    stored = query(postgres_db, "SELECT * FROM executions")
    assert PASSWORD not in repr(stored)


def test_eight_concurrent_runs_share_one_postgresql_history(postgres_db: str) -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "dipeo_cli", "run", HELLO, "--json", "--db", postgres_db],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_for(),
        )
        for _ in range(8)
    ]
    ids = []
    for proc in runs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        ids.append(json.loads(out)["id"])
    listed = dipeo("history", "--json", "--limit", "20", "--db", postgres_db)
    got = json.loads(listed.stdout)
    assert sorted(e["id"] for e in got) == sorted(ids)
    assert {e["status"] for e in got} == {"COMPLETED"}


def test_events_fold_to_the_stored_state(postgres_db: str) -> None:
    async def main() -> None:
        async with await open_store(postgres_db) as store:
            nodes = (ev.NodeInfo("a", "A", "code_job"),)
            started = ev.ExecutionStarted("fold", "demo", {"x": 1.5}, nodes, T0)
            state = new_state(started)
            store.record(state, started)
            for event in (
                ev.NodeStarted("a", 1, T0 + 1),
                ev.NodeCompleted("a", state_output(), T0 + 2),
                ev.ExecutionFinished(ExecutionStatus.COMPLETED, None, T0 + 3),
            ):
                apply_event(state, event)
                store.record(state, event)
            got = await store.get_execution("fold")
            rebuilt = await store.rebuild_state("fold")
            assert got is not None and rebuilt is not None
            assert rebuilt.model_dump(mode="json") == got.model_dump(mode="json")
            assert got.node_outputs["a"].value == {"big": "x" * 5000, "n": 3}

    asyncio.run(main())


def state_output() -> Any:
    from dipeo_cli.state import create_node_output

    return create_node_output({"big": "x" * 5000, "n": 3})


def test_a_control_request_wakes_the_running_process_at_once(
    postgres_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LISTEN/NOTIFY: the watch task wakes on the request, not on its (here 30 s) poll."""
    from dipeo_cli.store import watch

    monkeypatch.setattr(watch, "NOTIFIED_POLL", 30.0)

    async def main() -> None:
        async with await open_store(postgres_db) as runner, await open_store(postgres_db) as other:
            nodes = (ev.NodeInfo("a", "A", "code_job"),)
            started = ev.ExecutionStarted("ctl", "demo", {}, nodes, T0)
            runner.record(new_state(started), started)
            await runner.flush()
            taken: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            unwatch = runner.watch("ctl", lambda c: taken.set_result(time.monotonic()) or "ok")
            await asyncio.sleep(0.3)  # the watch task is waiting on its subscription
            asked = time.monotonic()
            control_id = await other.request_control("ctl", "pause")
            got = await asyncio.wait_for(taken, 5)
            assert got - asked < 0.5
            unwatch()
            await runner.flush()
            assert (await other.control_outcome(control_id))[1] == "ok"

    asyncio.run(main())


def test_a_follower_on_another_connection_wakes_on_each_change(postgres_db: str) -> None:
    async def main() -> None:
        async with await open_store(postgres_db) as writer, await open_store(postgres_db) as reader:
            from dipeo_cli.store.notify import CHANGES

            async with reader.subscribe(CHANGES, ["live"]) as changes:
                assert changes.notified
                nodes = (ev.NodeInfo("a", "A", "code_job"),)
                started = ev.ExecutionStarted("live", "demo", {}, nodes, T0)
                state = new_state(started)
                writer.record(state, started)
                t0 = time.monotonic()
                assert await changes.wait(5.0)
                assert time.monotonic() - t0 < 0.5
                assert [e["type"] for e in await reader.events_after("live", 0)] == [
                    "ExecutionStarted"
                ]
                assert not await changes.wait(0.2)  # nothing new: no wake-up

    asyncio.run(main())


def test_on_sqlite_a_subscription_only_waits(tmp_path: Path) -> None:
    async def main() -> None:
        async with await open_store(tmp_path / "h.db") as store:
            from dipeo_cli.store.notify import CHANGES

            with_sub = store.subscribe(CHANGES, ["x"])
            assert not with_sub.notified
            assert not await with_sub.wait(0.05)
            with_sub.close()

    asyncio.run(main())


def test_the_url_password_is_masked_like_any_secret(postgres_db: str) -> None:
    """Even a value that happens to carry it is masked in the output and in the history."""
    ran = dipeo("run", HELLO, "--json", "-i", f"name={PASSWORD}", "--db", postgres_db)
    assert ran.returncode == 0, ran.stderr
    assert PASSWORD not in ran.stdout + ran.stderr
    assert "***" in json.loads(ran.stdout)["result"]
    stored = query(postgres_db, "SELECT * FROM executions") + query(
        postgres_db, "SELECT * FROM node_iterations"
    )
    stored += query(postgres_db, "SELECT * FROM events") + query(postgres_db, "SELECT * FROM blobs")
    assert PASSWORD not in repr(stored)
