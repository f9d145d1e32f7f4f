"""llm_decision conditions: the question, the reply parsing, failures (a fake LLM client)."""

from __future__ import annotations

import pytest

from dipeo_cli.handlers.condition import DECISION_INSTRUCTION, parse_decision
from dipeo_cli.llm.base import LLMError
from dipeo_cli.state import ExecutionStatus, TokenUsage
from tests.executor_kit import run
from tests.test_handlers_person_job import (
    PERSONS,
    FakeLLM,
    compile_yaml,
    install_fake_llm,
    metadata,
    problems,
    run_ask,
)


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    return install_fake_llm(monkeypatch)


@pytest.mark.parametrize(
    ("reply", "decision", "reason"),
    [
        ('{"decision": true, "reasoning": "ok"}', True, "json decision"),
        ('```json\n{"decision": false}\n```', False, "json decision"),
        ('{"decision": "yes"}', True, "json decision"),
        ('{"decision": "No"}', False, "json decision"),
        ("YES. The code is valid.", True, "reply starts with 'yes'"),
        ("**No** - it fails.", False, "reply starts with 'no'"),
        ("True", True, "reply starts with 'true'"),
        ("false, sorry", False, "reply starts with 'false'"),
        (
            "Nothing wrong here; the answer is correct and tests pass.",
            True,
            "counted 2 affirmative and 0 negative words",
        ),
        (
            "It looks invalid: two checks fail, one is correct.",
            False,
            "counted 1 affirmative and 2 negative words",
        ),
        ("I cannot tell.", False, "ambiguous reply"),
        ("", False, "ambiguous reply"),
        ("Yes and no.", True, "reply starts with 'yes'"),
        ("Knowledge is not passing judgement", False, "ambiguous reply"),  # no substring matches
    ],
)
def test_reply_parsing(reply: str, decision: bool, reason: str) -> None:
    assert parse_decision(reply) == (decision, reason)


JUDGE = (
    """
nodes:
  - {label: Start, type: start, custom_data: {code: "print(1)"}}
  - label: Judge
    type: condition
    condition_type: llm_decision
    person: Critic
    judge_by: "Is {{code}} valid for {{lang}}?"
  - {label: Good, type: endpoint}
  - {label: Bad, type: endpoint}
connections:
  - {from: Start, to: Judge}
  - {from: "Judge[condtrue]", to: Good}
  - {from: "Judge[condfalse]", to: Bad}
"""
    + PERSONS
)


def test_the_judge_decides_the_branch_and_the_input_passes_on(llm: FakeLLM) -> None:
    llm.script = ["Yes, it is."]
    graph = compile_yaml(JUDGE)
    finished, recorder = run(graph, {"lang": "python"})
    assert finished.status == ExecutionStatus.COMPLETED
    assert recorder.output(graph, "Good") == {"code": "print(1)", "lang": "python"}
    assert recorder.node(graph, "Bad").skip_reason.startswith("branch not taken")
    request = llm.calls[0][1]
    assert [m.content for m in request.messages] == ["Is print(1) valid for python?"]
    assert request.system == DECISION_INSTRUCTION  # Critic has no system prompt of its own
    meta = metadata(recorder, graph, "Judge")
    assert meta["result"] is True and meta["decision_reason"] == "reply starts with 'yes'"
    assert meta["reply"] == "Yes, it is." and meta["person_id"] == "Critic"
    assert meta["token_usage"] == TokenUsage(input=10, output=2, total=12)
    assert recorder.node(graph, "Judge").token_usage.total == 12


def test_ambiguous_reply_is_false_and_says_so(llm: FakeLLM) -> None:
    llm.script = ["Hard to say."]
    graph = compile_yaml(JUDGE)
    _, recorder = run(graph)
    assert recorder.output(graph, "Bad") == {"code": "print(1)"}
    assert metadata(recorder, graph, "Judge")["decision_reason"] == "ambiguous reply"


def test_an_llm_error_fails_the_node(llm: FakeLLM) -> None:
    llm.script = [LLMError("anthropic (claude): 529 overloaded")]
    graph = compile_yaml(JUDGE)
    finished, recorder = run(graph)
    assert finished.status == ExecutionStatus.FAILED
    assert recorder.node(graph, "Judge").error == "anthropic (claude): 529 overloaded"
    assert recorder.node(graph, "Good").status == recorder.node(graph, "Bad").status == "SKIPPED"


def test_the_persons_system_prompt_comes_first(llm: FakeLLM) -> None:
    run_ask(compile_yaml(JUDGE.replace("person: Critic", "person: Writer")), label="Judge")
    assert llm.calls[0][1].system == f"You are terse.\n\n{DECISION_INSTRUCTION}"


def test_a_question_without_template_names_gets_the_input(llm: FakeLLM) -> None:
    graph = compile_yaml(JUDGE.replace('"Is {{code}} valid for {{lang}}?"', "Is this code valid?"))
    output = run_ask(graph, label="Judge", inputs={"default": '{"code": "x = 1"}'})
    assert llm.prompts() == ['Is this code valid?\n\nInput:\n{\n  "code": "x = 1"\n}']
    assert output.metadata["input_appended"] is True
    run_ask(graph, label="Judge", inputs={"draft": {"messages": [{"content": "my essay"}]}})
    assert llm.prompts()[-1] == "Is this code valid?\n\nInput:\nmy essay"


def test_memory_is_goldfish_unless_asked(llm: FakeLLM) -> None:
    text = JUDGE.replace(
        "  - label: Judge",
        "  - {label: Draft, type: person_job, person: Writer, default_prompt: draft}\n  - label: Judge",
    ).replace(
        "  - {from: Start, to: Judge}", "  - {from: Start, to: Draft}\n  - {from: Draft, to: Judge}"
    )
    run(compile_yaml(text))
    assert len(llm.calls[1][1].messages) == 1
    llm.calls.clear()
    run(
        compile_yaml(
            text.replace("person: Critic", "person: Critic\n    memorize_to: ALL_MESSAGES")
        )
    )
    assert [m.content for m in llm.calls[1][1].messages[:2]] == [
        "[to Writer]: draft",
        "[Writer]: Writer reply 1",
    ]


def test_judge_by_file(llm: FakeLLM, isolated) -> None:
    (isolated / "prompts").mkdir()
    (isolated / "prompts" / "judge.txt").write_text("Judge {{code}}", encoding="utf-8")
    text = JUDGE.replace('judge_by: "Is {{code}} valid for {{lang}}?"', "judge_by_file: judge.txt")
    run(compile_yaml(text))
    assert llm.prompts() == ["Judge print(1)"]


def test_validation_of_llm_decision() -> None:
    assert "needs judge_by (the question) or judge_by_file" in problems(
        JUDGE.replace('judge_by: "Is {{code}} valid for {{lang}}?"', "judge_by: ''")
    )
    assert "judge_by_file: prompt file 'gone.txt' not found" in problems(
        JUDGE.replace('judge_by: "Is {{code}} valid for {{lang}}?"', "judge_by_file: gone.txt")
    )
    assert "no person given" in problems(JUDGE.replace("person: Critic", "person: ''"))
    assert "judge_by: template error" in problems(JUDGE.replace("{{lang}}?", "{{#if lang}}?"))
