"""The history survives a bad disk: a full disk, a damaged file, a newer schema, a path that is
not a usable file. Each gives one line on stderr and an exit code, never a traceback, and
leaves earlier executions readable."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.store.migrations import migrate

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "diagrams" / "hello.light.yaml")
DIPEO = Path(sys.executable).with_name("dipeo")


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        # catch_exceptions=False: a traceback fails the test instead of becoming exit 1
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def dipeo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(DIPEO), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def one_error_line(stderr: str) -> str:
    """The single `error: ...` line on stderr (progress lines may precede it)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


def filled_history(path: Path, cli, runs: int = 3) -> list[str]:
    ids = []
    for _ in range(runs):
        result = cli("run", HELLO, "--json", "--db", str(path))
        assert result.exit_code == 0, result.output
        ids.append(json.loads(result.stdout)["id"])
    return ids


# -- a full disk ---------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_full_disk_prints_the_result_one_line_and_keeps_earlier_runs(tmp_path: Path, cli):
    # SQLite's max_page_count makes the pager fail with SQLITE_FULL ("database or disk is
    # full") exactly where a full disk does; DIPEO_SQLITE_MAX_PAGES sets it on the writer's
    # connection, in a real `dipeo` process.
    db = tmp_path / "history.db"
    earlier = filled_history(db, cli)
    pages = sqlite3.connect(db).execute("PRAGMA page_count").fetchone()[0]
    full = {"DIPEO_SQLITE_MAX_PAGES": str(pages)}
    inputs = tmp_path / "big.json"
    inputs.write_text(json.dumps({"name": "x" * 200_000}), encoding="utf-8")

    out = dipeo("run", HELLO, "--db", str(db), "--inputs", str(inputs), "--json", env=full)

    assert out.returncode == 1, out.stderr
    assert json.loads(out.stdout)["result"] == "Hello, " + "x" * 200_000 + "!"
    line = one_error_line(out.stderr)
    assert "was not recorded" in line and str(db) in line and "disk is full" in line
    # the disk is still full: reading the history works all the same
    listed = dipeo("history", "--json", "--db", str(db), env=full)
    assert listed.returncode == 0, listed.stderr
    assert [e["id"] for e in json.loads(listed.stdout)] == earlier[::-1]
    shown = dipeo("show", earlier[0], "--json", "--db", str(db), env=full)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["result"] == "Hello, world!"
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_full_disk_in_process_gives_the_same_line(tmp_path: Path, cli, monkeypatch) -> None:
    db = tmp_path / "history.db"
    filled_history(db, cli, runs=1)
    pages = sqlite3.connect(db).execute("PRAGMA page_count").fetchone()[0]
    monkeypatch.setenv("DIPEO_SQLITE_MAX_PAGES", str(pages))
    inputs = tmp_path / "big.json"
    inputs.write_text(json.dumps({"name": "y" * 100_000}), encoding="utf-8")
    result = cli("run", HELLO, "--db", str(db), "--inputs", str(inputs), "--quiet")
    assert result.exit_code == 1
    assert "Hello, yyy" in result.stdout
    assert "database or disk is full" in one_error_line(result.stderr)


# -- a damaged file ------------------------------------------------------------------------


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(12_288))


def truncated(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(8192)


def a_bad_page(path: Path) -> None:
    with open(path, "r+b") as f:  # one page of rows: found by the first read or write of it
        f.seek(3 * 4096)
        f.write(b"\xff" * 4096)


def bad_pages(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:  # every page but the first (the header and the schema)
        f.seek(4096)
        f.write(b"\xff" * (size - 4096))


@pytest.mark.parametrize("damage", [garbage, truncated, a_bad_page, bad_pages])
@pytest.mark.parametrize("command", ["history", "show"])
def test_a_damaged_history_is_one_line_naming_the_file_exit_2(
    tmp_path: Path, cli, damage, command
) -> None:
    db = tmp_path / "history.db"
    filled_history(db, cli)
    damage(db)
    result = cli(command, "--db", str(db))
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert str(db) in line and "move it aside" in line


@pytest.mark.parametrize("damage", [garbage, truncated, a_bad_page, bad_pages])
def test_running_on_a_damaged_history_is_one_line_naming_the_file(
    tmp_path: Path, cli, damage
) -> None:
    db = tmp_path / "history.db"
    filled_history(db, cli)
    damage(db)
    result = cli("run", HELLO, "--db", str(db))
    line = one_error_line(result.stderr)
    assert str(db) in line and "move it aside" in line
    if result.exit_code == 2:  # found when opening: nothing ran
        assert "Hello, world!" not in result.stdout
    else:  # found when writing: the run happened, its result is shown, it was not kept
        assert result.exit_code == 1
        assert "Hello, world!" in result.stdout
        assert "was not recorded" in line


def test_a_history_from_a_newer_dipeo_is_refused(tmp_path: Path, cli) -> None:
    db = tmp_path / "history.db"
    filled_history(db, cli, runs=1)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_migrations (name) VALUES ('m999_from_the_future')")
    for args in (("run", HELLO), ("history",), ("show",)):
        result = cli(*args, "--db", str(db))
        assert result.exit_code == 2, args
        line = one_error_line(result.stderr)
        assert str(db) in line and "newer dipeo" in line and "m999_from_the_future" in line
    count = sqlite3.connect(db).execute("SELECT count(*) FROM executions").fetchone()[0]
    assert count == 1  # the refused run wrote nothing


def test_migrate_refuses_a_schema_it_does_not_know(tmp_path: Path) -> None:
    from dipeo_cli.errors import HistoryError

    db = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    migrate(db)
    db.execute("INSERT INTO schema_migrations (name) VALUES ('m999_from_the_future')")
    with pytest.raises(HistoryError, match="newer dipeo.*m999_from_the_future"):
        migrate(db)


# -- paths that are not a usable file ------------------------------------------------------


def test_db_memory_runs_and_says_the_run_is_not_kept(cli) -> None:
    result = cli("run", HELLO, "--db", ":memory:")
    assert result.exit_code == 0, result.output
    assert "Hello, world!" in result.stdout
    assert "not kept" in result.stderr and "Traceback" not in result.stderr
    assert "dipeo show" not in result.stdout  # it would find nothing
    assert not Path(":memory:").exists()
    listed = cli("history", "--json", "--db", ":memory:")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []


def test_a_directory_as_the_history_is_one_line(tmp_path: Path, cli) -> None:
    for args in (("run", HELLO), ("history",), ("show",)):
        result = cli(*args, "--db", str(tmp_path))
        assert result.exit_code == 2, args
        line = one_error_line(result.stderr)
        assert str(tmp_path) in line and "is a directory" in line
        assert "Hello, world!" not in result.stdout


def test_a_history_under_a_regular_file_is_one_line(tmp_path: Path, cli) -> None:
    (tmp_path / "plain").write_text("x")
    db = tmp_path / "plain" / "history.db"
    result = cli("run", HELLO, "--db", str(db))
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert str(db) in line and "not a directory" in line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_a_history_in_a_read_only_directory_is_one_line(tmp_path: Path, cli) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = cli("run", HELLO, "--db", str(folder / "history.db"))
    finally:
        folder.chmod(0o755)
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert str(folder / "history.db") in line and "writable" in line


def test_reading_a_full_history_with_a_dead_run_still_works(tmp_path: Path, cli, monkeypatch):
    # Reads mark runs whose process died as interrupted, in the file too; on a full disk that
    # write fails and the read goes on (the run is marked once there is room again).
    db = tmp_path / "history.db"
    [done] = filled_history(db, cli, runs=1)
    gone = subprocess.Popen(["true"])
    gone.wait()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO executions (id, status, started_at, pid, host) VALUES (?,?,?,?,?)",
            ("dead", "RUNNING", "2024-01-01T00:00:00+00:00", gone.pid, socket.gethostname()),
        )
        conn.executemany(  # marking these SKIPPED needs more pages than the file has
            "INSERT INTO node_states (execution_id, node_id, status) VALUES ('dead', ?, ?)",
            [(f"n{i}", "PENDING") for i in range(3000)],
        )
    pages = sqlite3.connect(db).execute("PRAGMA page_count").fetchone()[0]
    monkeypatch.setenv("DIPEO_SQLITE_MAX_PAGES", str(pages))
    listed = cli("history", "--json", "--db", str(db))
    assert listed.exit_code == 0, listed.output
    assert {e["id"] for e in json.loads(listed.stdout)} == {done, "dead"}
    assert cli("show", done, "--db", str(db)).exit_code == 0
    monkeypatch.delenv("DIPEO_SQLITE_MAX_PAGES")
    [dead] = [
        e for e in json.loads(cli("history", "--json", "--db", str(db)).stdout) if e["id"] == "dead"
    ]
    assert dead["status"] == "FAILED"  # room again: now it is marked
