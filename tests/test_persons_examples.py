"""DiPeO's own person examples (simple_iter, debate) run against a local server that speaks the
OpenAI protocol, through the real `openai` client: the calls, prompts and files users expect."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dipeo_cli.cli import app
from tests.conftest import DIPEO_EXAMPLES, needs_examples

pytestmark = needs_examples

EXAMPLES = DIPEO_EXAMPLES / "examples"


def run(*args: str):
    return CliRunner().invoke(app, ["run", *args, "--json"], catch_exceptions=False)


def test_simple_iter_says_hi_three_times_then_answers_and_writes_the_file(llm_server):
    result = run(str(EXAMPLES / "simple_diagrams" / "simple_iter.light.yaml"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    requests = llm_server.requests
    assert [r.last_user_text for r in requests] == ["say hi"] * 3 + [
        "How many times did you respond?"
    ]
    assert all(r.body["model"] == "gpt-5-nano-2025-08-07" for r in requests)
    # printer remembers ALL_MESSAGES, and ask ("remember all") too: each call carries every
    # exchange before it, in order, its own replies as the assistant's
    history: list[dict] = []
    for n, request in enumerate(requests, start=1):
        prompt = "say hi" if n <= 3 else "How many times did you respond?"
        assert request.messages == [*history, {"role": "user", "content": prompt}]
        assert request.system is None  # the person has no system prompt
        history += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": f"reply #{n} to: {prompt}"},
        ]
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


def test_a_missing_key_is_a_validation_warning_naming_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = str(EXAMPLES / "simple_diagrams" / "simple_iter.light.yaml")
    result = CliRunner().invoke(app, ["validate", path])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr
    assert "OPENAI_API_KEY" in result.stderr and "APIKEY_52609F" in result.stderr
    strict = CliRunner().invoke(app, ["validate", path, "--strict"])
    assert strict.exit_code == 2 and "OPENAI_API_KEY" in strict.stderr


def test_mock_llm_runs_the_example_offline_and_marks_it(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = run(str(EXAMPLES / "simple_diagrams" / "simple_iter.light.yaml"), "--llm", "mock")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["result"].startswith("mock reply #4 to: How many times did you respond?")
    shown = json.loads(CliRunner().invoke(app, ["show", data["id"], "--json"]).stdout)
    metas = [o["metadata"] for o in shown["node_outputs"].values() if "model" in o["metadata"]]
    assert metas and all(m.get("mock") is True for m in metas)


def test_keys_from_the_key_file_never_reach_the_history_or_any_output(llm_server, monkeypatch):
    key = "sk-from-keyfile-9c1e7a5f2bXYZ"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    Path("files").mkdir()
    Path("files/apikeys.json").write_text(
        json.dumps({"APIKEY_52609F": {"label": "mine", "service": "openai", "key": key}})
    )
    diagram = str(EXAMPLES / "simple_diagrams" / "simple_iter.light.yaml")
    outputs = [run(diagram).output, CliRunner().invoke(app, ["run", diagram]).output]
    assert llm_server.requests[0].headers["authorization"] == f"Bearer {key}"  # it was used
    for args in (
        ["show", "latest"],
        ["show", "latest", "--json"],
        ["history"],
        ["history", "--json"],
    ):
        outputs.append(CliRunner().invoke(app, args).output)
    assert all(key not in text for text in outputs)
    from dipeo_cli.paths import data_dir

    for path in data_dir().glob("history.db*"):
        assert key.encode() not in path.read_bytes()


CLAUDE = """\
persons:
  Critic:
    service: claude
    model: claude-test-model
    system_prompt: You are terse.
nodes:
  - {label: Start, type: start, custom_data: {topic: tea}}
  - label: Review
    type: person_job
    person: Critic
    first_only_prompt: "Review {{topic}}."
    default_prompt: Again, shorter.
    max_iteration: 2
    memorize_to: GOLDFISH
  - {label: Check, type: condition, condition_type: detect_max_iterations}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Review}
  - {from: Review, to: Check}
  - {from: "Check[condfalse]", to: Review}
  - {from: "Check[condtrue]", to: End}
"""


def test_an_anthropic_person_through_the_official_client(llm_server):
    Path("claude.light.yaml").write_text(CLAUDE, encoding="utf-8")
    result = run("claude.light.yaml")
    assert result.exit_code == 0, result.output
    first, second = llm_server.requests
    assert first.path == second.path == "/v1/messages"
    assert first.system == second.system == "You are terse."
    # first execution: first_only_prompt, templated; then default_prompt; GOLDFISH: no history
    assert first.messages == [{"role": "user", "content": "Review tea."}]
    assert second.messages == [{"role": "user", "content": "Again, shorter."}]
    data = json.loads(result.stdout)
    assert data["result"] == "reply #2 to: Again, shorter."
    assert data["token_usage"]["total"] > 0


JUDGED = """\
persons:
  Judge: {service: openai, model: judge-model}
nodes:
  - {label: Start, type: start, custom_data: {essay: "Tea is great."}}
  - label: Good?
    type: condition
    condition_type: llm_decision
    person: Judge
    judge_by: "Is this essay convincing? {{essay}}"
  - {label: Yes, type: endpoint}
  - {label: No, type: endpoint}
connections:
  - {from: Start, to: Good?}
  - {from: "Good?[condtrue]", to: Yes}
  - {from: "Good?[condfalse]", to: No}
"""


def test_llm_decision_follows_the_judges_reply(llm_server):
    Path("judged.light.yaml").write_text(JUDGED, encoding="utf-8")
    llm_server.reply("Yes, clearly.", '{"decision": false}')
    first = json.loads(run("judged.light.yaml").stdout)
    second = json.loads(run("judged.light.yaml").stdout)
    assert first["result"] == {"essay": "Tea is great."}  # the Yes endpoint ran
    shown = json.loads(CliRunner().invoke(app, ["show", second["id"], "--json"]).stdout)
    states = {s["label"]: s["status"] for s in shown["node_states"].values()}
    assert states["No"] == "COMPLETED" and states["Yes"] == "SKIPPED"
    assert "Is this essay convincing? Tea is great." in llm_server.requests[0].last_user_text
