"""Queued runs: `dipeo submit`, `dipeo worker` (separate processes) on SQLite and PostgreSQL,
and `execute_diagram(queue: true)` in `dipeo serve`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from dipeo_cli.store import open_store
from tests.test_serve import start_server

REPO = Path(__file__).resolve().parent.parent


def env_for(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def dipeo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dipeo_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_for(),
        cwd=cwd,
    )


def worker(db: str, root: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dipeo_cli", "worker", "--db", db, "--root", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(),
    )


def sleeper(seconds: float) -> dict[str, Any]:
    """Start -> a python code job sleeping `seconds` -> a template naming variable n -> End."""
    return {
        "version": "light",
        "nodes": [
            {"label": "Start", "type": "start"},
            {
                "label": "Nap",
                "type": "code_job",
                "props": {"code": f"import time\ntime.sleep({seconds})\nresult = 1"},
            },
            {"label": "Say", "type": "template_job", "props": {"template_content": "n={{ n }}"}},
            {"label": "End", "type": "endpoint"},
        ],
        "connections": [
            {"from": "Start", "to": "Nap"},
            {"from": "Nap", "to": "Say"},
            {"from": "Say", "to": "End"},
        ],
    }


def write(root: Path, name: str, diagram: dict[str, Any]) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(diagram, sort_keys=False), encoding="utf-8")
    return path


def submit_many(db: str, root: Path, name: str, count: int) -> list[str]:
    """`count` queued runs of root/name with n = 0..count-1 (through the store: 30 `dipeo
    submit` processes would cost seconds; the CLI itself is tested below)."""
    source = (root / name).read_text(encoding="utf-8")

    async def main() -> list[str]:
        ids = []
        async with await open_store(db) as store:
            for n in range(count):
                eid = f"q{n:04d}{os.urandom(6).hex()}"
                await store.submit(
                    eid, diagram_source=source, diagram_path=name, diagram_id=name,
                    variables={"n": n},
                )  # fmt: skip
                ids.append(eid)
        return ids

    return asyncio.run(main())


def output(state: dict[str, Any], label: str) -> Any:
    nid = next(k for k, n in state["node_states"].items() if n["label"] == label)
    return state["node_outputs"][nid]["value"]["default"]


def states(db: str) -> dict[str, Any]:
    listed = dipeo("history", "--json", "--limit", "500", "--db", db)
    assert listed.returncode == 0, listed.stderr
    return {e["id"]: e for e in json.loads(listed.stdout)}


def starts_per_execution(db: str, ids: list[str]) -> Counter[str]:
    async def main() -> Counter[str]:
        counts: Counter[str] = Counter()
        async with await open_store(db) as store:
            for eid in ids:
                events = await store.get_events(eid)
                counts[eid] = sum(1 for e in events if e["type"] == "ExecutionStarted")
        return counts

    return asyncio.run(main())


def run_fleet(db: str, root: Path, workers: int, count: int) -> None:
    write(root, "jobs/nap.light.yaml", sleeper(0.1))
    ids = submit_many(db, root, "jobs/nap.light.yaml", count)
    assert {s["status"] for s in states(db).values()} == {"QUEUED"}
    procs = [worker(db, root, "--once") for _ in range(workers)]
    taken: list[list[str]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (out, err)
        taken.append([line.split()[0] for line in out.splitlines() if " STARTED " in line])
    everything = [eid for ids_of in taken for eid in ids_of]
    # each taken by exactly one worker, run once, and more than one worker did some
    assert sorted(everything) == sorted(ids)
    assert sum(1 for ids_of in taken if ids_of) >= 2, taken
    assert set(starts_per_execution(db, ids).values()) == {1}
    found = states(db)
    assert {found[eid]["status"] for eid in ids} == {"COMPLETED"}
    shown = dipeo("show", ids[7], "--json", "--db", db)
    state = json.loads(shown.stdout)
    assert output(state, "Say") == "n=7"
    assert state["diagram_id"] == "jobs/nap.light.yaml"


def test_three_workers_run_thirty_queued_executions_once_each_on_postgresql(
    postgres_db: str, tmp_path: Path
) -> None:
    run_fleet(postgres_db, tmp_path, workers=3, count=30)


def test_two_workers_share_a_queue_on_sqlite(tmp_path: Path) -> None:
    run_fleet(str(tmp_path / "history.db"), tmp_path, workers=2, count=10)


def wait_running(db: str, eid: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while states(db)[eid]["status"] != "RUNNING":
        assert time.monotonic() < deadline, states(db)[eid]
        time.sleep(0.1)


def kill_9_leaves_it_interrupted(db: str, root: Path) -> None:
    write(root, "slow.light.yaml", sleeper(20))
    write(root, "fast.light.yaml", sleeper(0))
    [slow] = submit_many(db, root, "slow.light.yaml", 1)
    doomed = worker(db, root)
    try:
        wait_running(db, slow)
    finally:
        doomed.kill()  # kill -9
        doomed.communicate(timeout=10)
    fast = submit_many(db, root, "fast.light.yaml", 3)
    survivor = worker(db, root, "--once")
    out, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, (out, err)
    found = states(db)
    assert {found[eid]["status"] for eid in fast} == {"COMPLETED"}
    assert found[slow]["status"] == "FAILED"
    assert "interrupted" in (found[slow]["error"] or "")
    assert slow not in out  # nobody took it again


def test_a_worker_killed_mid_run_leaves_its_execution_interrupted_on_postgresql(
    postgres_db: str, tmp_path: Path
) -> None:
    kill_9_leaves_it_interrupted(postgres_db, tmp_path)


def test_a_worker_killed_mid_run_leaves_its_execution_interrupted_on_sqlite(
    tmp_path: Path,
) -> None:
    kill_9_leaves_it_interrupted(str(tmp_path / "history.db"), tmp_path)


def test_sigterm_stops_the_worker_and_aborts_its_run(tmp_path: Path) -> None:
    db = str(tmp_path / "history.db")
    write(tmp_path, "slow.light.yaml", sleeper(20))
    [slow] = submit_many(db, tmp_path, "slow.light.yaml", 1)
    proc = worker(db, tmp_path)
    wait_running(db, slow)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, (out, err)
    state = states(db)[slow]
    assert state["status"] == "ABORTED" and "SIGTERM" in state["error"]


def test_submit_records_variables_and_the_path_under_the_root(tmp_path: Path) -> None:
    db = str(tmp_path / "history.db")
    project = tmp_path / "project"
    write(project, "flows/nap.light.yaml", sleeper(0))
    data = tmp_path / "vars.json"
    data.write_text('{"n": "from-file", "m": 1}')
    queued = dipeo(
        "submit", "flows/nap.light.yaml", "--inputs", str(data), "-i", "n=42", "--json",
        "--db", db, cwd=project,
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    record = json.loads(queued.stdout)
    assert record["status"] == "QUEUED"
    shown = json.loads(dipeo("show", record["id"], "--json", "--db", db).stdout)
    assert shown["status"] == "QUEUED" and shown["is_active"] is False
    assert shown["variables"] == {"n": 42, "m": 1}
    plain = dipeo("submit", str(project / "flows/nap.light.yaml"), "--root", str(project),
                  "-i", "n=1", "--db", db)  # fmt: skip
    assert plain.returncode == 0 and len(plain.stdout.strip()) == 32
    # a queued run is not active: nothing repairs it as interrupted, it waits for a worker,
    # and it takes no controls
    assert {s["status"] for s in states(db).values()} == {"QUEUED"}
    aborted = dipeo("abort", record["id"], "--db", db)
    assert aborted.returncode != 0 and "is queued, not running" in aborted.stderr
    ran = worker(db, project, "--once")
    out, err = ran.communicate(timeout=60)
    assert ran.returncode == 0, out + err
    done = json.loads(dipeo("show", record["id"], "--json", "--db", db).stdout)
    assert done["status"] == "COMPLETED"
    assert output(done, "Say") == "n=42"


def test_submit_refuses_what_a_worker_could_not_run(tmp_path: Path) -> None:
    db = str(tmp_path / "history.db")
    project = tmp_path / "project"
    write(project, "nap.light.yaml", sleeper(0))
    outside = dipeo("submit", str(project / "nap.light.yaml"), "--root", str(tmp_path / "x"))
    assert outside.returncode == 2 and "not a directory" in outside.stderr
    (tmp_path / "other").mkdir()
    elsewhere = dipeo("submit", str(project / "nap.light.yaml"), "--root", str(tmp_path / "other"))
    assert elsewhere.returncode == 2 and "outside the project root" in elsewhere.stderr
    secret = dipeo("submit", "nap.light.yaml", "-i", "api_key=sk-abcdef123456", "--db", db,
                   cwd=project)  # fmt: skip
    assert secret.returncode == 2 and "api_key" in secret.stderr
    assert "sk-abcdef123456" not in secret.stdout + secret.stderr
    write(project, "bad.light.yaml", {"version": "light", "nodes": [{"label": "x"}]})
    bad = dipeo("submit", "bad.light.yaml", "--db", db, cwd=project)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    for out in (outside, elsewhere, secret, bad):
        assert out.stderr.count("\n") <= 3 or out is bad
    assert not states(db)


def test_worker_root_resolves_the_diagrams_relative_files(tmp_path: Path) -> None:
    """Submitted from one checkout, run from another: files are read under --root."""
    db = str(tmp_path / "history.db")
    diagram = {
        "version": "light",
        "nodes": [
            {"label": "Start", "type": "start"},
            {"label": "Read", "type": "db", "props": {"operation": "read", "file": "data/in.txt"}},
            {"label": "End", "type": "endpoint"},
        ],
        "connections": [{"from": "Start", "to": "Read"}, {"from": "Read", "to": "End"}],
    }
    here, there = tmp_path / "here", tmp_path / "there"
    for root, text in ((here, "submitter's copy"), (there, "worker's copy")):
        write(root, "flows/read.light.yaml", diagram)
        (root / "data").mkdir()
        (root / "data" / "in.txt").write_text(text)
    queued = dipeo("submit", "flows/read.light.yaml", "--json", "--db", db, cwd=here)
    assert queued.returncode == 0, queued.stderr
    eid = json.loads(queued.stdout)["id"]
    ran = subprocess.run(
        [sys.executable, "-m", "dipeo_cli", "worker", "--once", "--root", str(there), "--db", db],
        capture_output=True, text=True, timeout=60, env=env_for(), cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    shown = json.loads(dipeo("show", eid, "--json", "--db", db).stdout)
    assert shown["status"] == "COMPLETED"
    assert output(shown, "Read") == "worker's copy"


EXECUTE = """
mutation($data: ExecuteDiagramInput!) {
  execute_diagram(data: $data) { success message error execution { id status is_active } }
}
"""


def test_serve_queues_an_execution_for_a_worker(tmp_path: Path) -> None:
    served = start_server(tmp_path)
    try:
        write(served.root, "nap.light.yaml", sleeper(0))
        data = {"diagram_id": "nap", "variables": {"n": 5}, "queue": True}
        result = served.call(EXECUTE, {"data": data})["execute_diagram"]
    finally:
        served.stop()
    assert result["success"], result
    assert result["execution"]["status"] == "QUEUED"
    assert result["execution"]["is_active"] is False
    db = str(served.db)
    eid = result["execution"]["id"]
    assert states(db)[eid]["status"] == "QUEUED"
    ran = worker(db, served.root, "--once")
    out, err = ran.communicate(timeout=60)
    assert ran.returncode == 0, err
    shown = json.loads(dipeo("show", eid, "--json", "--db", db).stdout)
    assert shown["status"] == "COMPLETED"
    assert output(shown, "Say") == "n=5"


@pytest.mark.parametrize("args", [["--concurrency", "0"], ["--root", "/nonexistent/dir"]])
def test_worker_options_are_checked(args: list[str], tmp_path: Path) -> None:
    out = dipeo("worker", "--once", "--db", str(tmp_path / "h.db"), *args)
    assert out.returncode == 2 and out.stderr.startswith("error: ")
