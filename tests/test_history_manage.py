"""Managing the history: `dipeo history` filters, `rm`, `prune`, `path`, `stats`, and reads
that never create a database."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dipeo_cli import events as ev
from dipeo_cli.cli import app
from dipeo_cli.cli.history import parse_duration, parse_since
from dipeo_cli.paths import default_db_path
from dipeo_cli.state import apply_event, iso, new_state
from dipeo_cli.store import open_store

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "diagrams" / "hello.light.yaml")
SUB = str(REPO / "diagrams" / "sub_diagram.light.yaml")

BIG = """\
nodes:
  - {label: Start, type: start}
  - label: Make
    type: code_job
    code: "result = 'needle ' + 'y' * 9000"
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Make}
  - {from: Make, to: End}
"""

FAILING = """\
nodes:
  - {label: Start, type: start}
  - label: Exploder
    type: code_job
    code: raise RuntimeError("quartz meltdown")
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Exploder}
  - {from: Exploder, to: End}
"""


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def listed(cli: Any, *args: str) -> list[dict]:
    result = cli("history", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def run_ok(cli: Any, *args: str) -> dict:
    result = cli("run", *args, "--json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def table_counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    try:
        return {
            t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("executions", "node_states", "node_iterations", "events", "controls", "blobs")
        }
    finally:
        con.close()


def start_active_run(db: Path | None = None) -> str:
    """An execution RUNNING in this (live) process, as `dipeo run` in another terminal."""

    async def body() -> str:
        store = await open_store(db)
        state = new_state(ev.ExecutionStarted("active-run-1", "busy", {}, (), time.time()))
        await store.create_execution(state, diagram_path="busy.yaml")
        await store.close()
        return state.id

    return asyncio.run(body())


def test_reading_commands_never_create_a_database_or_folder(cli, tmp_path):
    typo = tmp_path / "typo" / "h.db"
    for args in (["history"], ["show", "latest"], ["history", "stats"], ["history", "rm", "x"]):
        result = cli(*args, "--db", str(typo))
        assert result.exit_code == 2, (args, result.output)
        assert f"no history database at {typo}" in result.stderr
        assert "Traceback" not in result.output
    assert not (tmp_path / "typo").exists()
    # the default location: an empty history, still nothing created
    assert cli("history").stdout.strip() == "No executions recorded yet."
    assert listed(cli) == []
    assert cli("history", "stats").exit_code == 0
    assert cli("show", "latest").exit_code == 2
    assert not default_db_path().parent.exists()


def test_history_path_prints_the_database_without_creating_it(cli, tmp_path):
    assert cli("history", "path").stdout.strip() == str(default_db_path())
    assert cli("history", "path", "--db", "x/h.db").stdout.strip() == str(Path("x/h.db").absolute())
    assert not default_db_path().exists() and not Path("x").exists()


def test_limit_zero_lists_every_execution(cli):
    for _ in range(3):
        run_ok(cli, HELLO)
    assert len(listed(cli, "-n", "2")) == 2
    assert len(listed(cli, "-n", "0")) == 3


def test_top_and_parent_separate_sub_diagram_runs(cli):
    parent = run_ok(cli, SUB)
    everything = listed(cli, "-n", "0")
    top = listed(cli, "--top")
    children = listed(cli, "--parent", parent["id"][:8])
    assert [e["id"] for e in top] == [parent["id"]]
    assert len(children) == len(everything) - 1 >= 1
    assert cli("history", "--parent", "nope").exit_code == 2
    assert cli("history", "--parent", parent["id"], "--top").exit_code == 2


def test_since_takes_a_duration_or_a_date(cli):
    run_ok(cli, HELLO)
    assert len(listed(cli, "--since", "5m")) == 1
    assert len(listed(cli, "--since", "2000-01-01")) == 1
    assert listed(cli, "--since", "2999-01-01T00:00") == []
    bad = cli("history", "--since", "yesterday")
    assert bad.exit_code == 2 and "neither a duration" in bad.stderr


def test_durations_and_dates_parse():
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("2w") == 14 * 86400
    for bad in ("", "h", "3x", "3d4", "-1h"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    now = 1_700_000_000.0
    assert parse_since("2h", now) == iso(now - 7200)
    assert parse_since("2024-05-01T00:00:00+00:00", now) == "2024-05-01T00:00:00+00:00"


def test_search_finds_errors_outputs_and_labels(cli):
    Path("failing.light.yaml").write_text(FAILING, encoding="utf-8")
    Path("big.light.yaml").write_text(BIG, encoding="utf-8")
    failed = run_ok(cli, "failing.light.yaml")
    big = run_ok(cli, "big.light.yaml")
    hello = run_ok(cli, HELLO, "-i", "name=Zanzibar")

    def ids(text: str) -> list[str]:
        return [e["id"] for e in listed(cli, "--search", text)]

    assert ids("quartz meltdown") == [failed["id"]]  # an error
    assert ids("MELT") == [failed["id"]]  # any case, a word's beginning
    assert ids("Exploder") == [failed["id"]]  # a node label
    assert ids("zanzibar") == [hello["id"]]  # an output
    assert ids("needle") == [big["id"]]  # a large output, stored as a blob
    assert ids("quartz zanzibar") == []  # every word must match
    text = cli("history", "--search", "nothing-like-this").stdout
    assert "No executions match" in text


def test_runs_are_indexed_by_the_search_not_as_they_finish(cli):
    """A run pays nothing for the search index; the first search indexes what it lacks, and
    while it cannot (the file read-only, say), unindexed executions are still found."""
    Path("failing.light.yaml").write_text(FAILING, encoding="utf-8")
    failed = run_ok(cli, "failing.light.yaml")
    db = default_db_path()

    def indexed() -> list[str]:
        con = sqlite3.connect(db)
        try:
            rows = con.execute("SELECT execution_id FROM search_indexed").fetchall()
            assert con.execute("SELECT COUNT(*) FROM execution_search").fetchone()[0] == len(rows)
            return [r[0] for r in rows]
        finally:
            con.close()

    assert indexed() == []

    async def search_read_only(text: str) -> list[str]:
        store = await open_store(db)
        try:
            await store.fetch("PRAGMA query_only = ON")  # every write now fails
            return [s.id for s in await store.list_executions(search=text)]
        finally:
            await store.close()

    assert asyncio.run(search_read_only("quartz")) == [failed["id"]]  # by LIKE
    assert indexed() == []
    assert [e["id"] for e in listed(cli, "--search", "meltdown")] == [failed["id"]]
    assert indexed() == [failed["id"]]
    second = run_ok(cli, "failing.light.yaml")
    assert [e["id"] for e in listed(cli, "--search", "MELT")] == [second["id"], failed["id"]]
    assert sorted(indexed()) == sorted([failed["id"], second["id"]])


def test_search_without_fts5_falls_back_to_like(tmp_path):
    db = tmp_path / "h.db"

    async def body() -> None:
        store = await open_store(db)
        try:
            assert store.full_text  # this SQLite has FTS5
            started = ev.ExecutionStarted("e-1", "alpha", {}, (), time.time())
            state = new_state(started)
            store.record(state, started)
            finished = ev.ExecutionFinished(*_failed("quartz meltdown"))
            apply_event(state, finished)
            store.record(state, finished)
            await store.flush()
            with_fts = [s.id for s in await store.list_executions(search="quartz")]
            store.full_text = False  # as on an SQLite built without FTS5
            with_like = [s.id for s in await store.list_executions(search="QUARTZ")]
            assert with_fts == with_like == ["e-1"]
            assert await store.list_executions(search="granite") == []
        finally:
            await store.close()

    asyncio.run(body())


def _failed(error: str) -> tuple:
    from dipeo_cli.state import ExecutionStatus

    return (ExecutionStatus.FAILED, error, time.time())


def test_search_sees_a_running_execution(tmp_path):
    db = tmp_path / "h.db"
    start_active_run(db)

    async def body() -> list[str]:
        store = await open_store(db)
        try:
            return [s.id for s in await store.list_executions(search="busy")]
        finally:
            await store.close()

    assert asyncio.run(body()) == ["active-run-1"]


def test_rm_removes_an_execution_its_children_and_orphaned_values(cli):
    Path("big.light.yaml").write_text(BIG, encoding="utf-8")
    keep = run_ok(cli, HELLO)
    parent = run_ok(cli, SUB)
    big = run_ok(cli, "big.light.yaml")
    assert cli("history", "--search", "anything").exit_code == 0  # indexes all three
    db = default_db_path()
    before = table_counts(db)
    assert before["blobs"] >= 1

    result = cli("history", "rm", parent["id"][:10], big["id"])
    assert result.exit_code == 0, result.output
    assert f"removed {parent['id']}" in result.stdout
    assert "removed 2 executions and" in result.stdout and "sub-diagram run(s)" in result.stdout
    assert [e["id"] for e in listed(cli, "-n", "0")] == [keep["id"]]
    after = table_counts(db)
    assert after["blobs"] == 0  # the large output belonged to `big` only
    con = sqlite3.connect(db)
    try:
        for table in ("node_states", "node_iterations", "events", "controls"):
            left = con.execute(
                f"SELECT COUNT(*) FROM {table} WHERE execution_id != ?", (keep["id"],)
            ).fetchone()[0]
            assert left == 0, table
        indexed = con.execute("SELECT DISTINCT execution_id FROM execution_search").fetchall()
        assert indexed == [(keep["id"],)]
        marked = con.execute("SELECT execution_id FROM search_indexed").fetchall()
        assert marked == [(keep["id"],)]
    finally:
        con.close()
    assert cli("show", keep["id"]).exit_code == 0


def test_a_value_still_used_elsewhere_is_kept(cli):
    Path("big.light.yaml").write_text(BIG, encoding="utf-8")
    first = run_ok(cli, "big.light.yaml")
    second = run_ok(cli, "big.light.yaml")
    assert cli("history", "rm", first["id"]).exit_code == 0
    shown = json.loads(cli("show", second["id"], "--json").stdout)
    assert shown["result"].startswith("needle ")
    assert table_counts(default_db_path())["blobs"] >= 1


def test_rm_and_prune_never_touch_an_active_execution(cli):
    done = run_ok(cli, HELLO)
    active = start_active_run()
    result = cli("history", "rm", active, done["id"])
    assert result.exit_code == 2
    assert f"{active} is RUNNING (still active): not removed" in result.stderr
    assert f"removed {done['id']}" in result.stdout
    pruned = cli("history", "prune", "--older-than", "0s")
    assert pruned.exit_code == 0 and "removed 0 executions" in pruned.stdout
    assert [e["id"] for e in listed(cli)] == [active]


def test_prune_by_age_status_and_keep_with_dry_run(cli):
    Path("failing.light.yaml").write_text(FAILING, encoding="utf-8")
    ok = [run_ok(cli, HELLO) for _ in range(3)]
    bad = [run_ok(cli, "failing.light.yaml") for _ in range(2)]
    assert cli("history", "prune").exit_code == 2  # says what it needs

    assert "removed 0 executions" in cli("history", "prune", "--older-than", "1h").stdout
    dry = cli("history", "prune", "--older-than", "0s", "--status", "failed", "--dry-run")
    assert dry.exit_code == 0
    assert all(f"would remove {b['id']}" in dry.stdout for b in bad)
    assert len(listed(cli, "-n", "0")) == 5  # nothing removed

    removed = json.loads(
        cli("history", "prune", "--older-than", "0s", "--status", "FAILED", "--json").stdout
    )
    assert {r["id"] for r in removed["removed"]} == {b["id"] for b in bad}
    assert removed["reclaimed"] is True
    cli("history", "prune", "--keep", "1")
    assert [e["id"] for e in listed(cli, "-n", "0")] == [ok[-1]["id"]]
    bad_age = cli("history", "prune", "--older-than", "a while")
    assert bad_age.exit_code == 2 and "not a duration" in bad_age.stderr


def test_prune_gives_space_back(cli):
    Path("big.light.yaml").write_text(BIG.replace("9000", "900000"), encoding="utf-8")
    for _ in range(3):
        Path("big.light.yaml").write_text(
            BIG.replace("9000", "900000").replace("needle", f"needle{_}"), encoding="utf-8"
        )
        run_ok(cli, "big.light.yaml")
    size = json.loads(cli("history", "stats", "--json").stdout)["size_bytes"]
    assert size > 2_500_000
    assert cli("history", "prune", "--older-than", "0s").exit_code == 0
    after = json.loads(cli("history", "stats", "--json").stdout)
    assert after["executions"] == 0
    assert after["size_bytes"] < size / 5


def test_stats_counts_by_status_and_dates(cli):
    Path("failing.light.yaml").write_text(FAILING, encoding="utf-8")
    first = run_ok(cli, HELLO)
    run_ok(cli, "failing.light.yaml")
    last = run_ok(cli, SUB)
    stats = json.loads(cli("history", "stats", "--json").stdout)
    assert stats["by_status"]["FAILED"] == 1
    assert stats["top_level"] == 3 and stats["executions"] > 3
    assert stats["oldest"] == first["started_at"] and stats["newest"] == last["started_at"]
    assert stats["path"] == str(default_db_path()) and stats["size_bytes"] > 0
    text = cli("history", "stats").stdout
    assert "by status" in text and "FAILED 1" in text and "KiB" in text


def test_history_group_keeps_the_listing_options(cli):
    run_ok(cli, HELLO)
    assert cli("history", "--status", "completed", "--json").exit_code == 0
    assert cli("history", "-n", "1").exit_code == 0
    assert "rm" in cli("history", "--help").stdout
    db = str(default_db_path())
    assert cli("history", "--db", db, "stats").exit_code == 0  # --db before the command
