"""The history keeps everything a run did and can rebuild it: every iteration of every node
(with where its inputs came from), each value stored once, the diagram source and
fingerprints, unique event sequence numbers, and an event log whose fold is the state."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli.executor import RunOptions
from dipeo_cli.render import QuietProgress as Quiet
from dipeo_cli.runner import execute, prepare
from dipeo_cli.store import MemoryStore, open_store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli() -> Any:
    from typer.testing import CliRunner

    from dipeo_cli.cli import app

    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


EXAMPLES = REPO / "diagrams"


def run_file(
    path: Path | str,
    db: Path | None,
    variables: dict[str, Any] | None = None,
    *,
    llm_mode: str | None = None,
    answers: dict[str, list[str]] | None = None,
) -> Any:
    async def main() -> Any:
        graph = prepare(str(path), llm_mode=llm_mode)
        store = await open_store(db) if db is not None else await MemoryStore().open()
        async with store:
            outcome = await execute(
                graph,
                store=store,
                progress=Quiet(),
                variables=variables or {},
                options=RunOptions(),
                llm_mode=llm_mode,
                answers=answers,
            )
            live = outcome.state.model_dump(mode="json")
            stored = await store.get_execution(outcome.state.id)
            folded = await store.rebuild_state(outcome.state.id)
            return outcome, live, stored, folded, store

    return asyncio.run(main())


def test_every_iteration_of_a_loop_is_kept_with_its_inputs(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    outcome, *_ = run_file(EXAMPLES / "debate.light.yaml", db)
    eid = outcome.state.id

    async def read() -> Any:
        async with await open_store(db) as store:
            optimist = next(
                nid for nid, n in outcome.state.node_states.items() if n.label == "Optimist"
            )
            return await store.get_iterations(eid, optimist), await store.get_iterations(eid)

    turns, everything = asyncio.run(read())
    assert [t["iteration"] for t in turns] == [1, 2]
    assert all(t["status"] == "COMPLETED" and t["label"] == "Optimist" for t in turns)
    texts = [t["output"]["value"]["default"] for t in turns]
    assert len(set(texts)) == 2, "each turn keeps its own answer"
    start = next(nid for nid, n in outcome.state.node_states.items() if n.label == "Start")
    check = next(nid for nid, n in outcome.state.node_states.items() if n.label == "Done?")
    assert list(turns[0]["inputs"].values()) == [[start, 1]]  # fed by Start's only run
    assert list(turns[1]["inputs"].values()) == [[check, 1]]  # by the condition's first pass
    assert all(t["input_fingerprint"] for t in turns)
    assert len(everything) == sum(n.iterations for n in outcome.state.node_states.values())
    # the state keeps the spec's meaning: the last output
    assert outcome.state.node_outputs[turns[1]["node_id"]].value["default"] == texts[1]


def test_show_node_lists_every_iteration(tmp_path: Path, cli: Any) -> None:
    db = tmp_path / "h.db"
    run_file(EXAMPLES / "debate.light.yaml", db)
    listed = json.loads(
        cli("show", "latest", "--db", str(db), "--node", "Pessimist", "--json").stdout
    )
    assert [it["iteration"] for it in listed] == [1, 2]
    assert {it["label"] for it in listed} == {"Pessimist"}
    text = cli("show", "latest", "--db", str(db), "--node", "Pessimist").stdout
    assert "iterations (2):" in text and "#1" in text and "#2" in text


def test_a_large_value_is_stored_once_and_show_clips_it(tmp_path: Path, cli: Any) -> None:
    size = 3_000_000
    diagram = tmp_path / "big.light.yaml"
    diagram.write_text(
        "nodes:\n"
        "  - {label: Start, type: start}\n"
        "  - label: Make\n"
        "    type: code_job\n"
        "    language: python\n"
        f"    code: \"result = 'x' * {size}\"\n"
        "  - {label: End, type: endpoint}\n"
        "connections:\n"
        "  - {from: Start, to: Make}\n"
        "  - {from: Make, to: End}\n",
        encoding="utf-8",
    )
    db = tmp_path / "h.db"
    outcome, *_ = run_file(diagram, db)
    assert outcome.state.result == "x" * size
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("h.db*"))
    assert on_disk < 1.5 * size, f"the value was written more than once ({on_disk:,} bytes)"
    connection = sqlite3.connect(db)
    assert connection.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 1
    connection.close()
    shown = cli("show", "latest", "--db", str(db))
    assert shown.exit_code == 0 and len(shown.stdout) < 200_000
    assert "characters in all" in shown.stdout
    [whole] = json.loads(cli("show", "latest", "--db", str(db), "--node", "End", "--json").stdout)
    assert whole["output"]["value"]["default"] == "x" * size


def test_the_execution_keeps_its_source_fingerprints_and_masked_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dipeo_cli import redact

    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-very-secret-123")
    redact.refresh_secrets()
    db = tmp_path / "h.db"
    hello = EXAMPLES / "hello.light.yaml"
    outcome, *_ = run_file(hello, db, {"name": "Ada", "auth": "tok-very-secret-123"})

    async def read() -> Any:
        async with await open_store(db) as store:
            return await store.diagram_source(outcome.state.id)

    assert asyncio.run(read()) == hello.read_text(encoding="utf-8")
    connection = sqlite3.connect(db)
    fingerprints, masked = connection.execute(
        "SELECT node_fingerprints, secret_variables FROM executions"
    ).fetchone()
    connection.close()
    listed = json.loads(fingerprints)
    assert [label for _id, label, _fp in listed] == ["Start", "Greet", "End"]
    assert all(len(fp) == 32 for *_, fp in listed)
    assert json.loads(masked) == ["auth"]
    # the same definition gives the same fingerprint in another run
    again, *_ = run_file(hello, db)
    connection = sqlite3.connect(db)
    rows = connection.execute("SELECT node_fingerprints FROM executions").fetchall()
    connection.close()
    assert rows[0] == rows[1]


def test_event_sequence_numbers_are_unique_and_followers_read_from_a_cursor(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.db"
    outcome, *_ = run_file(EXAMPLES / "countdown.light.yaml", db)
    eid = outcome.state.id
    connection = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError):
        connection.execute(
            "INSERT INTO events (execution_id, seq, type) VALUES (?, 1, 'Duplicate')", (eid,)
        )
    connection.close()

    async def follow() -> Any:
        async with await open_store(db) as store:
            everything = await store.get_events(eid)
            tail = await store.events_after(eid, everything[4]["seq"])
            return everything, tail

    everything, tail = asyncio.run(follow())
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert tail == everything[5:]


def examples() -> list[Path]:
    """Every example diagram that runs offline without a terminal or a server."""
    skip = {"api_call", "ask"}  # a local HTTP server; a question (answered below instead)
    found = [p for p in sorted(EXAMPLES.glob("*.light.yaml")) if p.name.split(".")[0] not in skip]
    found += sorted((REPO / "tests" / "conformance" / "diagrams").glob("*.light.yaml"))
    return found


@pytest.mark.parametrize("path", examples(), ids=lambda p: p.name)
def test_folding_the_stored_event_log_gives_the_state_show_reports(
    path: Path, tmp_path: Path
) -> None:
    if path.name.startswith("code_languages") and shutil.which("node") is None:
        pytest.skip("its javascript node needs node")
    work = tmp_path / "copy"
    shutil.copytree(path.parent, work)
    answers = {}
    outcome, live, stored, folded, _ = run_file(
        work / path.name, tmp_path / "h.db", answers=answers
    )
    assert stored is not None and folded is not None
    stored_json = stored.model_dump(mode="json")
    assert folded.model_dump(mode="json") == stored_json
    assert stored_json == live


def test_three_runs_in_one_process_at_once_each_with_its_own_history(
    tmp_path: Path, llm_server: Any
) -> None:
    person = tmp_path / "ask.light.yaml"
    person.write_text(
        "persons:\n"
        "  P: {service: openai, model: gpt-test, api_key_id: TEST_KEY, base_url: "
        f"'{llm_server.openai_base_url}'}}\n"
        "nodes:\n"
        "  - {label: Start, type: start}\n"
        "  - {label: Ask, type: person_job, person: P, default_prompt: 'say {{word}}'}\n"
        "  - {label: End, type: endpoint}\n"
        "connections:\n"
        "  - {from: Start, to: Ask}\n"
        "  - {from: Ask, to: End}\n",
        encoding="utf-8",
    )
    db = tmp_path / "h.db"

    async def main() -> Any:
        async with await open_store(db) as store:

            async def one(word: str, mode: str | None) -> Any:
                graph = prepare(str(person), llm_mode=mode)
                return await execute(
                    graph,
                    store=store,
                    progress=Quiet(),
                    variables={"word": word},
                    options=RunOptions(),
                    llm_mode=mode,
                )

            outcomes = await asyncio.gather(one("a", "mock"), one("b", None), one("c", "mock"))
            stored = [await store.get_execution(o.state.id) for o in outcomes]
            folded = [await store.rebuild_state(o.state.id) for o in outcomes]
            return outcomes, stored, folded

    import os

    os.environ["TEST_KEY"] = "sk-test-key-0123456789"
    try:
        outcomes, stored, folded = asyncio.run(main())
    finally:
        del os.environ["TEST_KEY"]
    results = [s.result for s in stored]
    assert results == ["mock reply #1 to: say a", "reply #1 to: say b", "mock reply #1 to: say c"]
    assert [r.last_user_text for r in llm_server.requests] == ["say b"]
    for outcome, state, rebuilt in zip(outcomes, stored, folded, strict=True):
        assert state.model_dump(mode="json") == outcome.state.model_dump(mode="json")
        assert rebuilt.model_dump(mode="json") == state.model_dump(mode="json")


ABORTED_RUN = """\
version: light
nodes:
  - {label: Start, type: start}
  - {label: Nap, type: code_job, language: python, code: "import time\\ntime.sleep(30)"}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Nap}
  - {from: Nap, to: End}
"""


def test_an_aborted_node_is_aborted_in_the_state_the_store_and_the_fold(tmp_path: Path) -> None:
    """An abort request ends the node it cancels ABORTED (not FAILED), and the stored event
    log folds to exactly that state."""
    from dipeo_cli import events as ev

    path = tmp_path / "nap.light.yaml"
    path.write_text(ABORTED_RUN, encoding="utf-8")

    class AbortWhenNapStarts(Quiet):
        def __init__(self, store: Any) -> None:
            self.store, self.sent = store, False

        def update(self, state: Any, event: Any) -> None:
            if isinstance(event, ev.NodeStarted) and not self.sent:
                if state.node_states[event.node_id].label == "Nap":
                    self.sent = True
                    asyncio.get_running_loop().create_task(
                        self.store.request_control(state.id, "abort", reason="enough")
                    )

    async def main() -> Any:
        async with await open_store(tmp_path / "h.db") as store:
            outcome = await execute(
                prepare(str(path)),
                store=store,
                progress=AbortWhenNapStarts(store),
                variables={},
                options=RunOptions(),
            )
            stored = await store.get_execution(outcome.state.id)
            folded = await store.rebuild_state(outcome.state.id)
            events = await store.get_events(outcome.state.id)
            return outcome.state, stored, folded, events

    live, stored, folded, events = asyncio.run(main())
    nodes = {node.label: node for node in live.node_states.values()}
    assert live.status.value == "ABORTED"
    assert nodes["Nap"].status.value == "ABORTED" and "enough" in (nodes["Nap"].error or "")
    assert nodes["End"].status.value == "SKIPPED"
    assert stored is not None and folded is not None
    assert folded.model_dump(mode="json") == stored.model_dump(mode="json")
    assert stored.model_dump(mode="json") == live.model_dump(mode="json")
    assert [e["status"] for e in events if e["type"] == "NodeFailed"] == ["ABORTED"]
