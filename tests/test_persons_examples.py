"""DiPeO's own person examples (simple_iter, debate) run against a local server that speaks the
OpenAI protocol, through the real `openai` client: the calls, prompts and files users expect."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dipeo_cli.cli import app
from tests.conftest import SHARED_DIAGRAMS

EXAMPLES = SHARED_DIAGRAMS / "examples"


def run(*args: str):
    return CliRunner().invoke(app, ["run", *args, "--json"], catch_exceptions=False)


def test_simple_iter_says_hi_three_times_then_answers_and_writes_the_file(llm_server):
    result = run(str(EXAMPLES / "simple_diagrams" / "simple_iter.light.yaml"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    requests = llm_server.requests
    assert [r.last_user_text for r in requests] == ["say hi"] * 3 + ["How many times did you respond?"]
    assert all(r.body["model"] == "gpt-5-nano-2025-08-07" for r in requests)
    # printer remembers ALL_MESSAGES: its third call carries the first two exchanges
    assert [m["role"] for m in requests[2].messages][-5:] == ["user", "assistant", "user", "assistant", "user"]
    # the file holds ask's answer, which is also the run's result
    saved = Path("files/results/total.txt").read_text(encoding="utf-8")
    assert saved.strip() == data["result"] == "reply #4 to: How many times did you respond?"
    assert data["token_usage"]["total"] > 0
    shown = json.loads(CliRunner().invoke(app, ["show", data["id"], "--json"]).stdout)
    states = {s["label"]: s for s in shown["node_states"].values()}
    assert states["printer"]["iterations"] == 3 and states["ask"]["iterations"] == 1
    assert states["printer"]["token_usage"]["total"] > 0


def test_debate_takes_its_turns_and_saves_the_verdict(llm_server):
    Path("files/uploads").mkdir(parents=True)
    Path("files/uploads/questions.txt").write_text("Should cities ban cars?\n", encoding="utf-8")
    result = run(str(EXAMPLES / "light_diagrams" / "debate.light.yaml"))
    assert result.exit_code == 0, result.output
    requests = llm_server.requests
    # Optimist max_iteration 2, Pessimist 3, the judge once
    assert len(requests) == 6
    systems = [r.system or "" for r in requests]
    assert sum("enthusiasm" in s for s in systems) == 2
    assert sum("skepticism" in s for s in systems) == 3
    assert "impartial debate judge" in systems[-1]
    assert "Should cities ban cars?" in requests[0].last_user_text
    verdict = Path("files/results/output.txt").read_text(encoding="utf-8")
    assert verdict.strip() == json.loads(result.stdout)["result"]
    assert verdict.startswith("reply #6")


def test_a_missing_key_fails_validation_and_names_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["validate", str(EXAMPLES / "simple_diagrams" / "simple_iter.light.yaml")])
    assert result.exit_code == 2
    assert "OPENAI_API_KEY" in result.stderr and "APIKEY_52609F" in result.stderr


def test_mock_llm_runs_the_example_offline_and_marks_it(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run(str(EXAMPLES / "simple_diagrams" / "simple_iter.light.yaml"), "--llm", "mock")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["result"].startswith("mock reply #4 to: How many times did you respond?")
    shown = json.loads(CliRunner().invoke(app, ["show", data["id"], "--json"]).stdout)
    metas = [o["metadata"] for o in shown["node_outputs"].values() if "model" in o["metadata"]]
    assert metas and all(m.get("mock") is True for m in metas)
