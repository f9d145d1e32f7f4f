"""The one LLM call point (dipeo_cli.llm.call): the full record of every call in the node's
metadata (never the key), the replay seam, and `llm_mode` as a per-run value."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.context import RunResources
from dipeo_cli.errors import NodeError
from dipeo_cli.executor import RunOptions
from dipeo_cli.llm.base import LLMReply
from dipeo_cli.llm.call import CallIdentity
from dipeo_cli.render import QuietProgress as Quiet
from dipeo_cli.runner import execute, prepare
from dipeo_cli.state import TokenUsage
from dipeo_cli.store.memory import MemoryStore
from tests.llm_server import OPENAI_TEST_KEY
from tests.test_handlers_person_job import FakeLLM, compile_yaml, one_node, run_ask

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}

DIAGRAM = f"""\
persons:
  Writer:
    service: openai
    model: gpt-test
    system_prompt: You are terse.
  Critic:
    service: openai
    model: gpt-critic
nodes:
  - label: Start
    type: start
    custom_data: {{topic: tea, items: [green, black]}}
  - {{label: First, type: person_job, person: Writer, default_prompt: "Name a {{{{topic}}}}"}}
  - label: Second
    type: person_job
    person: Writer
    default_prompt: Describe it
    text_format: {json.dumps(SCHEMA)}
  - label: Batch
    type: person_job
    person: Writer
    batch: true
    memorize_to: GOLDFISH
    default_prompt: "Say {{{{item}}}}"
  - label: Panel
    type: person_batch_job
    person_ids: [Writer, Critic]
    memorize_to: GOLDFISH
    prompt: "Opinion on {{{{topic}}}}"
  - label: Judge
    type: condition
    condition_type: llm_decision
    person: Critic
    judge_by: "Is {{{{topic}}}} good?"
  - {{label: Yes, type: endpoint}}
  - {{label: No, type: endpoint}}
connections:
  - {{from: Start, to: First}}
  - {{from: First, to: Second}}
  - {{from: Start, to: Batch}}
  - {{from: Second, to: Batch, label: after}}
  - {{from: Start, to: Panel}}
  - {{from: Batch, to: Panel, label: after}}
  - {{from: Start, to: Judge}}
  - {{from: Panel, to: Judge, label: after}}
  - {{from: "Judge[condtrue]", to: Yes}}
  - {{from: "Judge[condfalse]", to: No}}
"""


def history_bytes() -> bytes:
    home = Path(os.environ["DIPEO_HOME"])
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


@pytest.fixture
def recorded(llm_server: Any) -> dict[str, dict[str, Any]]:
    """Run DIAGRAM against the local server; the metadata of each node by label, as `show
    --json` reports it from the history."""
    Path("d.light.yaml").write_text(DIAGRAM, encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "d.light.yaml", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["id"]
    shown = CliRunner().invoke(app, ["show", run_id, "--json"])
    state = json.loads(shown.stdout)
    assert OPENAI_TEST_KEY not in shown.stdout
    labels = {nid: s["label"] for nid, s in state["node_states"].items()}
    return {labels[nid]: out["metadata"] for nid, out in state["node_outputs"].items()}


def test_person_job_records_the_full_request_and_reply(recorded: dict[str, Any]) -> None:
    [call] = recorded["Second"]["llm_calls"]
    assert call["call"] == 1 and call["batch_index"] is None and call["replayed"] is False
    assert call["person_id"] == "Writer"
    request = call["request"]
    assert request["system"] == "You are terse."
    assert request["model"] == "gpt-test" and request["service"] == "openai"
    assert request["response_schema"] == SCHEMA and request["schema_name"] == "response"
    assert request["messages"] == [
        {"role": "user", "content": "Name a tea"},
        {"role": "assistant", "content": "reply #1 to: Name a tea"},
        {"role": "user", "content": "Describe it"},
    ]
    reply = call["reply"]
    assert reply["structured"] == {"name": ""} and json.loads(reply["text"]) == {"name": ""}
    assert reply["model"] == "gpt-test" and reply["mock"] is False
    assert reply["token_usage"]["total"] > 0 and reply["latency_ms"] >= 0
    # the summary keys stay as they were
    assert recorded["Second"]["prompt"] == "Describe it"
    assert recorded["Second"]["model"] == "gpt-test"


def test_batch_items_and_person_batch_job_calls_carry_their_batch_index(
    recorded: dict[str, Any],
) -> None:
    batch = recorded["Batch"]["llm_calls"]
    assert [(c["call"], c["batch_index"]) for c in batch] == [(1, 0), (2, 1)]
    assert [c["request"]["messages"] for c in batch] == [
        [{"role": "user", "content": "Say green"}],
        [{"role": "user", "content": "Say black"}],
    ]
    assert all(c["request"]["system"] == "You are terse." for c in batch)
    panel = recorded["Panel"]["llm_calls"]
    assert [(c["batch_index"], c["person_id"], c["request"]["model"]) for c in panel] == [
        (0, "Writer", "gpt-test"),
        (1, "Critic", "gpt-critic"),
    ]
    assert panel[1]["request"]["system"] is None
    assert panel[0]["request"]["messages"][-1]["content"].startswith("Opinion on tea")
    assert all(c["reply"]["text"].startswith("reply #") for c in batch + panel)


def test_llm_decision_records_its_question_and_instruction(recorded: dict[str, Any]) -> None:
    from dipeo_cli.handlers.condition import DECISION_INSTRUCTION

    [call] = recorded["Judge"]["llm_calls"]
    assert call["request"]["system"] == DECISION_INSTRUCTION
    assert call["request"]["messages"] == [{"role": "user", "content": "Is tea good?"}]
    assert call["reply"]["text"] == recorded["Judge"]["reply"]


def test_the_key_is_in_no_record_and_not_in_the_database(recorded: dict[str, Any]) -> None:
    text = json.dumps(recorded)
    assert OPENAI_TEST_KEY not in text and "api_key" not in text
    assert OPENAI_TEST_KEY.encode() not in history_bytes()
    assert b"llm_calls" in history_bytes()  # the records are there, without the key


# -- the replay seam ----------------------------------------------------------------------------


class FakeReplayer:
    """Answers the calls whose number is in `answers`; records what it was asked."""

    def __init__(self, answers: dict[int, Any]) -> None:
        self.answers = answers
        self.asked: list[tuple[CallIdentity, dict[str, Any]]] = []

    async def reply_for(self, call: CallIdentity, request: dict[str, Any]) -> LLMReply | None:
        self.asked.append((call, request))
        answer = self.answers.get(call.call)
        if isinstance(answer, BaseException):
            raise answer
        if answer is None:
            return None
        return LLMReply(text=answer, usage=TokenUsage(), model="recorded", latency_ms=1.0)


def test_a_replayer_answers_before_the_client_is_called(llm: FakeLLM) -> None:
    graph = compile_yaml(one_node("batch: true, default_prompt: 'Say {{item}}'"))
    replayer = FakeReplayer({1: "recorded green"})
    out = run_ask(
        graph,
        inputs={"default": {"items": ["green", "black"]}},
        iteration=2,
        resources=RunResources(llm_replay=replayer),
    )
    assert out.value["default"] == ["recorded green", "Writer reply 1"]
    assert len(llm.calls) == 1  # only the call the replayer did not answer went out
    identities = [call for call, _ in replayer.asked]
    assert [(c.node_label, c.iteration, c.batch_index, c.call) for c in identities] == [
        ("Ask", 2, 0, 1),
        ("Ask", 2, 1, 2),
    ]
    assert identities[0].person_id == "Writer" and identities[0].execution_id == "exec-test"
    calls = out.metadata["llm_calls"]
    assert replayer.asked[0][1] == calls[0]["request"]  # the request exactly as recorded
    assert [c["replayed"] for c in calls] == [True, False]
    assert calls[0]["reply"]["text"] == "recorded green"


def test_a_replayer_error_fails_the_node_with_the_call_recorded(llm: FakeLLM) -> None:
    replayer = FakeReplayer({1: NodeError("the prompt changed: -hi +ho")})
    graph = compile_yaml(one_node("default_prompt: hi"))
    with pytest.raises(NodeError, match="the prompt changed") as caught:
        run_ask(graph, resources=RunResources(llm_replay=replayer))
    [call] = caught.value.metadata["llm_calls"]
    assert call["reply"] is None and call["error"] == "the prompt changed: -hi +ho"
    assert llm.calls == []


# -- llm_mode is per run ------------------------------------------------------------------------


def test_two_runs_at_once_one_mock_one_live_each_get_their_own_answers(llm_server: Any) -> None:
    Path("d.light.yaml").write_text(one_node("default_prompt: 'hello {{topic}}'"), encoding="utf-8")

    async def both() -> list[Any]:
        async def one(mode: str | None) -> Any:
            graph = prepare("d.light.yaml", llm_mode=mode)
            async with MemoryStore() as store:
                return await execute(
                    graph,
                    store=store,
                    progress=Quiet(),
                    variables={"topic": "tea"},
                    options=RunOptions(),
                    llm_mode=mode,
                )

        return await asyncio.gather(one("mock"), one(None))

    mock, live = asyncio.run(both())
    assert "DIPEO_LLM" not in os.environ

    def ask_output(outcome: Any) -> Any:
        [out] = [o for o in outcome.state.node_outputs.values() if "llm_calls" in o.metadata]
        return out

    mocked, called = ask_output(mock), ask_output(live)
    assert mocked.value["default"] == "mock reply #1 to: hello tea"
    assert called.value["default"] == "reply #1 to: hello tea"
    assert mocked.metadata["mock"] is True and called.metadata["mock"] is False
    assert mocked.metadata["llm_calls"][0]["request"]["service"] == "mock"
    assert called.metadata["llm_calls"][0]["request"]["service"] == "openai"
    assert [r.last_user_text for r in llm_server.requests] == ["hello tea"]  # the live run only


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    from tests.test_handlers_person_job import install_fake_llm

    return install_fake_llm(monkeypatch)
