"""person_job and person_batch_job, against a fake LLM client that records every request.

`llm` (the fixture) replaces where the handlers get their persons resolved and their client
(`dipeo_cli.llm.persons.resolve_config` and `.open_client`), so nothing here touches a network.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli import registry
from dipeo_cli.compiler import compile_graph
from dipeo_cli.context import RunResources
from dipeo_cli.diagram import parse_diagram
from dipeo_cli.errors import DiagramError
from dipeo_cli.graph import CompileOptions, ExecutableGraph
from dipeo_cli.handlers import person_job
from dipeo_cli.llm import persons
from dipeo_cli.llm.base import LLMError, LLMReply, LLMRequest, PersonConfig
from dipeo_cli.state import ExecutionStatus, NodeExecutionStatus, TokenUsage
from tests.executor_kit import run
from tests.test_handlers_props import call, make_ctx

REGISTRY = registry.load_builtin_handlers()

PERSONS = """
persons:
  Writer:
    service: openai
    model: gpt-test
    system_prompt: You are terse.
  Critic:
    service: openai
    model: gpt-test
"""


class Structured:
    """A scripted reply with a structured answer."""

    def __init__(self, value: Any) -> None:
        self.value = value


class FakeLLM:
    """Records (person id, LLMRequest) per call. Replies: the scripted ones in order, then
    `answer(person_id, request)` when set (may be async; may raise), else "<person> reply <n>"."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, LLMRequest]] = []
        self.script: list[Any] = []
        self.answer: Callable[[str, LLMRequest], Any] | None = None
        self.resolved: list[str] = []

    def resolve(self, person: Any, base_dir: Path, llm_mode: str | None = None) -> PersonConfig:
        self.resolved.append(person.id)
        return PersonConfig(
            person_id=person.id,
            label=person.label,
            service="openai",
            provider="openai",
            model=person.model,
            api_key="sk-test-key-123456",
            system_prompt=person.system_prompt,
        )

    def open(self, config: PersonConfig, resources: Any) -> Any:
        fake = self

        class Client:
            async def complete(self, request: LLMRequest) -> LLMReply:
                return await fake.complete(config, request)

        return Client()

    async def complete(self, config: PersonConfig, request: LLMRequest) -> LLMReply:
        self.calls.append((config.person_id, request))
        n = len(self.calls)
        if self.script:
            answer = self.script.pop(0)
        elif self.answer is not None:
            answer = self.answer(config.person_id, request)
            if inspect.isawaitable(answer):
                answer = await answer
        else:
            answer = f"{config.person_id} reply {n}"
        if isinstance(answer, BaseException):
            raise answer
        structured = answer.value if isinstance(answer, Structured) else None
        text = json.dumps(structured) if structured is not None else str(answer)
        return LLMReply(
            text=text,
            usage=TokenUsage(input=10, output=2, total=12),
            model=f"{config.model}-2025",
            latency_ms=5.0,
            structured=structured,
        )

    def prompts(self) -> list[str]:
        return [request.messages[-1].content for _, request in self.calls]


def install_fake_llm(monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    fake = FakeLLM()
    monkeypatch.setattr(persons, "resolve_config", fake.resolve)
    monkeypatch.setattr(persons, "open_client", fake.open)
    return fake


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> FakeLLM:
    return install_fake_llm(monkeypatch)


def compile_yaml(
    text: str, name: str = "d.light.yaml", llm_mode: str | None = None
) -> ExecutableGraph:
    path = Path(name).absolute()
    options = CompileOptions(llm_mode=llm_mode)
    return compile_graph(parse_diagram(text, file=str(path)), REGISTRY, options)


def problems(text: str) -> str:
    with pytest.raises(DiagramError) as caught:
        compile_yaml(text)
    return str(caught.value)


def one_node(props: str, persons: str = PERSONS) -> str:
    """A diagram: Start -> Ask (person_job with `props`, YAML flow mapping body)."""
    return (
        "nodes:\n"
        "  - {label: Start, type: start}\n"
        f"  - {{label: Ask, type: person_job, person: Writer, {props}}}\n"
        "connections:\n"
        "  - {from: Start, to: Ask}\n" + persons
    )


def run_ask(graph: ExecutableGraph, label: str = "Ask", **kwargs: Any) -> Any:
    async def go() -> Any:
        ctx = make_ctx(graph, label, **kwargs)
        try:
            return await call(ctx)
        finally:
            await ctx.resources.close()

    return asyncio.run(go())


def metadata(recorder: Any, graph: ExecutableGraph, label: str) -> dict[str, Any]:
    node = graph.node_by_label(label)
    assert node is not None and recorder.state is not None
    return recorder.state.node_outputs[node.id].metadata


LOOP = (
    """
nodes:
  - {label: Start, type: start, custom_data: {topic: cats}}
  - label: Writer
    type: person_job
    person: Writer
    first_only_prompt: "Write about {{topic}}"
    default_prompt: "Improve it"
    max_iteration: 3
  - {label: Check, type: condition, condition_type: detect_max_iterations}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Writer}
  - {from: Writer, to: Check}
  - {from: "Check[condfalse]", to: Writer}
  - {from: "Check[condtrue]", to: End}
"""
    + PERSONS
)


# -- prompts, iterations, system prompt, memory -------------------------------------------------


def test_loop_makes_max_iteration_calls_first_with_first_only_prompt(llm: FakeLLM) -> None:
    graph = compile_yaml(LOOP)
    finished, recorder = run(graph)
    assert finished.status == ExecutionStatus.COMPLETED
    assert llm.prompts() == ["Write about cats", "Improve it", "Improve it"]
    assert recorder.output(graph, "End") == "Writer reply 3"
    # the default memory is the whole conversation: own replies as the assistant's
    second = llm.calls[1][1]
    assert [(m.role, m.content) for m in second.messages] == [
        ("user", "Write about cats"),
        ("assistant", "Writer reply 1"),
        ("user", "Improve it"),
    ]
    assert llm.resolved == ["Writer", "Writer"]  # at validation, then once for the whole run


def test_system_prompt_is_sent(llm: FakeLLM) -> None:
    run(compile_yaml(LOOP))
    assert {request.system for _, request in llm.calls} == {"You are terse."}


def test_token_usage_model_and_latency_per_node_summed_over_iterations(llm: FakeLLM) -> None:
    graph = compile_yaml(LOOP)
    _, recorder = run(graph)
    state = recorder.node(graph, "Writer")
    assert state.token_usage == TokenUsage(input=30, output=6, total=36)
    assert recorder.state.token_usage.total == 36
    meta = metadata(recorder, graph, "Writer")
    assert meta["model"] == "gpt-test-2025" and meta["latency_ms"] == 5.0
    assert meta["person_id"] == "Writer" and meta["service"] == "openai"
    assert meta["token_usage"] == TokenUsage(input=10, output=2, total=12)  # the last call
    assert meta["prompt"] == "Improve it" and meta["memory"] == 4 and meta["mock"] is False


def test_goldfish_sends_only_the_prompt(llm: FakeLLM) -> None:
    run(
        compile_yaml(
            LOOP.replace("max_iteration: 3", "max_iteration: 3\n    memorize_to: GOLDFISH")
        )
    )
    assert [len(request.messages) for _, request in llm.calls] == [1, 1, 1]


def test_at_most_caps_the_history(llm: FakeLLM) -> None:
    run(compile_yaml(LOOP.replace("max_iteration: 3", "max_iteration: 3\n    at_most: 1")))
    third = llm.calls[2][1]
    assert [(m.role, m.content) for m in third.messages] == [
        ("assistant", "Writer reply 2"),
        ("user", "Improve it"),
    ]


TEMPLATES = (
    """
nodes:
  - {label: Start, type: start, custom_data: {topic: cats, n: 1}}
  - label: Ask
    type: person_job
    person: Writer
    default_prompt: "{{topic}} {{n}} {{extra.k}} {{who}} {{missing}}"
connections:
  - {from: Start, to: Ask}
"""
    + PERSONS
)


def test_template_values_inputs_spread_labels_and_variables_win(llm: FakeLLM) -> None:
    graph = compile_yaml(TEMPLATES)
    output = run_ask(
        graph,
        inputs={"default": {"default": {"topic": "cats", "n": 1}}, "extra": '{"k": "v"}'},
        variables={"n": 2, "who": "Ada"},
    )
    assert llm.prompts() == ["cats 2 v Ada {{missing}}"]
    assert output.metadata["prompt_warnings"] == ["unknown variable 'missing' left as written"]


def test_conversation_inputs_give_messages_and_last_message(llm: FakeLLM) -> None:
    text = TEMPLATES.replace(
        '"{{topic}} {{n}} {{extra.k}} {{who}} {{missing}}"',
        '"{{debate_last_message}}|{{last_message}}"',
    )
    convo = {"messages": [{"content": "first"}, {"content": "second"}], "last_message": "second"}
    run_ask(compile_yaml(text), inputs={"debate": convo, "default": convo})
    assert llm.prompts() == ["second|second"]


def test_first_only_prompt_alias_prompt_and_camel_case(llm: FakeLLM) -> None:
    graph = compile_yaml(one_node('prompt: "hi {{topic}}", defaultPrompt: again'))
    run_ask(graph, inputs={"default": {"topic": "x"}})
    run_ask(graph, inputs={"default": {"topic": "x"}}, iteration=2)
    assert llm.prompts() == ["hi x", "again"]


def test_later_execution_without_default_prompt_makes_no_call(llm: FakeLLM) -> None:
    graph = compile_yaml(one_node('first_only_prompt: "hi"'))
    output = run_ask(graph, inputs={"default": "x"}, iteration=2)
    assert llm.calls == [] and output.value == {"default": ""}
    assert output.metadata["skipped_call"] == "the prompt is empty"


def test_an_input_labelled_prompt_is_the_prompt_when_the_node_has_none(llm: FakeLLM) -> None:
    text = (
        "nodes:\n  - {label: Start, type: start}\n  - {label: Ask, type: person_job, person: Writer}\n"
        "connections:\n  - {from: Start, to: Ask, label: prompt}\n" + PERSONS
    )
    run_ask(compile_yaml(text), inputs={"prompt": "say {{word}}"}, variables={"word": "hi"})
    assert llm.prompts() == ["say hi"]


def test_no_prompt_at_all_is_a_validation_error() -> None:
    assert "no prompt: set default_prompt or first_only_prompt" in problems(
        one_node("memorize_to: GOLDFISH")
    )


def test_prompt_files_are_found_in_dipeos_places(llm: FakeLLM, isolated: Path) -> None:
    (isolated / "prompts").mkdir()
    (isolated / "prompts" / "ask.txt").write_text("from {{topic}}", encoding="utf-8")
    (isolated / "files" / "prompts").mkdir(parents=True)
    (isolated / "files" / "prompts" / "first.txt").write_text("first {{topic}}", encoding="utf-8")
    graph = compile_yaml(one_node("prompt_file: ask.txt, first_prompt_file: first.txt"))
    run_ask(graph, inputs={"default": {"topic": "t"}})
    run_ask(graph, inputs={"default": {"topic": "t"}}, iteration=2)
    assert llm.prompts() == ["first t", "from t"]


def test_missing_prompt_file_or_template_error_is_a_validation_error(isolated: Path) -> None:
    message = problems(one_node("prompt_file: nowhere.txt"))
    assert "prompt file 'nowhere.txt' not found (looked in" in message
    assert str(isolated / "prompts" / "nowhere.txt") in message
    assert "is never closed" in problems(one_node('default_prompt: "{{#if x}} open"'))


def test_unknown_person_is_a_validation_error_and_tools_a_warning() -> None:
    message = problems(one_node("default_prompt: hi").replace("person: Writer", "person: Nobody"))
    assert "node 'Ask': person 'Nobody' is not defined (persons: Critic, Writer)" in message
    graph = compile_yaml(one_node("default_prompt: hi, tools: [websearch]"), llm_mode="mock")
    assert [w.where for w in graph.warnings] == ["node 'Ask'"]
    assert (
        "tools (web search, image generation, ...) are not supported" in graph.warnings[0].message
    )
    assert "ignore_person: person 'Ghost' is not defined" in problems(
        one_node("default_prompt: hi, ignore_person: 'Critic, Ghost'")
    )


def test_person_found_by_id_or_label(llm: FakeLLM) -> None:
    persons = "persons:\n  Writer:\n    id: person_7\n    service: openai\n"
    run_ask(compile_yaml(one_node("default_prompt: hi", persons)))
    run_ask(
        compile_yaml(
            one_node("default_prompt: hi", persons).replace("person: Writer", "person: person_7")
        )
    )
    assert [person for person, _ in llm.calls] == ["person_7", "person_7"]


def test_missing_key_is_a_warning_that_blocks_a_run_and_mock_needs_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    graph = compile_yaml(one_node("default_prompt: hi"))
    (warned,) = graph.warnings
    assert warned.is_warning and warned.blocks_run
    rendered = warned.render(None)
    assert "node 'Ask': person 'Writer': no API key for openai: set OPENAI_API_KEY" in rendered
    assert [p.message for p in graph.run_blockers()] == [warned.message]
    with pytest.raises(DiagramError) as refused:  # what run, submit and a worker do with it
        graph.check_runnable()
    assert [p.message for p in refused.value.problems] == [warned.message]
    assert refused.value.file == graph.diagram.file
    mock = compile_yaml(one_node("default_prompt: hi"), llm_mode="mock")
    assert mock.warnings == []
    mock.check_runnable()


def test_mock_llm_answers_offline_and_is_marked() -> None:
    graph = compile_yaml(LOOP, llm_mode="mock")
    finished, recorder = run(graph, resources=RunResources(llm_mode="mock"))
    assert finished.status == ExecutionStatus.COMPLETED
    assert recorder.output(graph, "End") == "mock reply #3 to: Improve it"
    assert metadata(recorder, graph, "Writer")["mock"] is True


def test_llm_error_fails_the_node_with_the_providers_message(llm: FakeLLM) -> None:
    llm.script = [LLMError("openai (gpt-test): 401 invalid api key")]
    graph = compile_yaml(LOOP)
    finished, recorder = run(graph)
    assert finished.status == ExecutionStatus.FAILED
    assert recorder.node(graph, "Writer").error == "openai (gpt-test): 401 invalid api key"


# -- conversation_state arrows ------------------------------------------------------------------

DEBATE = (
    """
nodes:
  - {label: Start, type: start, custom_data: {topic: cars}}
  - {label: Optimist, type: person_job, person: Writer, default_prompt: "Argue for {{topic}}"}
  - {label: Pessimist, type: person_job, person: Critic, default_prompt: "Argue against it"}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Optimist}
  - {from: Optimist, to: Pessimist, content_type: conversation_state}
  - {from: Pessimist, to: End, content_type: raw_text}
"""
    + PERSONS
)


def test_conversation_state_output_and_what_the_next_person_sees(llm: FakeLLM) -> None:
    graph = compile_yaml(DEBATE)
    finished, recorder = run(graph)
    assert finished.status == ExecutionStatus.COMPLETED
    node = graph.node_by_label("Optimist")
    value = recorder.state.node_outputs[node.id].value["default"]
    assert value["last_message"] == "Writer reply 1"
    assert value["person_id"] == "Writer" and value["model"] == "gpt-test-2025"
    assert [(m["kind"], m["role"], m["content"]) for m in value["messages"]] == [
        ("prompt", "user", "Argue for cars"),
        ("reply", "assistant", "Writer reply 1"),
    ]
    # the messages arrived twice (conversation and arrow) but are sent once, labelled
    critic = llm.calls[1][1]
    assert [(m.role, m.content) for m in critic.messages] == [
        ("user", "[to Writer]: Argue for cars"),
        ("user", "[Writer]: Writer reply 1"),
        ("user", "Argue against it"),
    ]
    assert recorder.output(graph, "End") == "Critic reply 2"


def test_conversation_state_input_from_elsewhere_joins_the_conversation(llm: FakeLLM) -> None:
    graph = compile_yaml(one_node("default_prompt: go"))
    convo = {"messages": [{"role": "assistant", "content": "outside"}]}
    run_ask(graph, inputs={"default": convo})
    assert [(m.role, m.content) for m in llm.calls[0][1].messages] == [
        ("user", "[Start]: outside"),
        ("user", "go"),
    ]


def test_ignore_person_hides_their_messages(llm: FakeLLM) -> None:
    text = DEBATE.replace(
        'default_prompt: "Argue against it"',
        'default_prompt: "Argue against it", ignore_person: Writer',
    )
    run(compile_yaml(text))
    assert [m.content for m in llm.calls[1][1].messages] == ["Argue against it"]


# -- structured output --------------------------------------------------------------------------

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def test_text_format_asks_for_structured_output(llm: FakeLLM) -> None:
    graph = compile_yaml(one_node(f"default_prompt: who, text_format: {json.dumps(SCHEMA)}"))
    llm.script = [Structured({"name": "Ada"}), '```json\n{"name": "Bo"}\n```', "not json"]
    assert run_ask(graph).value == {"default": {"name": "Ada"}}
    assert llm.calls[0][1].response_schema == SCHEMA
    assert run_ask(graph).value == {"default": {"name": "Bo"}}  # JSON text is accepted too
    with pytest.raises(Exception, match="the reply is not the JSON text_format asks for"):
        run_ask(graph)


def test_text_format_as_yaml_text_and_file(llm: FakeLLM, isolated: Path) -> None:
    (isolated / "schema.json").write_text(json.dumps(SCHEMA), encoding="utf-8")
    graph = compile_yaml(one_node("default_prompt: who, text_format_file: schema.json"))
    llm.script = [Structured({"name": "Ada"})]
    run_ask(graph)
    assert llm.calls[0][1].response_schema == SCHEMA
    graph = compile_yaml(
        one_node(
            'default_prompt: who, text_format: "type: object\\nproperties: {a: {type: integer}}"'
        )
    )
    assert graph.node_by_label("Ask").config.text_format == {  # type: ignore[union-attr]
        "type": "object",
        "properties": {"a": {"type": "integer"}},
    }


def test_text_format_checks_python_syntax_and_rejects_non_schemas(isolated: Path) -> None:
    pydantic = '"class Person(BaseModel):\\n    name: str =\\n"'
    assert "text_format: SyntaxError: invalid syntax (line 2: name: str =)" in problems(
        one_node(f"default_prompt: x, text_format: {pydantic}")
    )
    assert "must be a JSON schema with 'type' and 'properties' (got keys: name, age)" in problems(
        one_node("default_prompt: x, text_format: {name: str, age: int}")
    )
    assert "is not a valid JSON schema" in problems(
        one_node("default_prompt: x, text_format: {type: 5}")
    )
    (isolated / "models.py").write_text("class M(BaseModel):\n    x: int(\n", encoding="utf-8")
    assert "text_format_file models.py: SyntaxError" in problems(
        one_node("default_prompt: x, text_format_file: models.py")
    )
    assert "text_format_file 'gone.json' not found" in problems(
        one_node("default_prompt: x, text_format_file: gone.json")
    )


def test_structured_output_with_a_conversation_arrow(llm: FakeLLM) -> None:
    text = DEBATE.replace(
        'default_prompt: "Argue for {{topic}}"',
        f'default_prompt: "Argue", text_format: {json.dumps(SCHEMA)}',
    )
    llm.script = [Structured({"name": "Ada"})]
    graph = compile_yaml(text)
    _, recorder = run(graph)
    value = recorder.state.node_outputs[graph.node_by_label("Optimist").id].value["default"]
    assert value["structured"] == {"name": "Ada"} and value["last_message"] == '{"name": "Ada"}'


# -- batch --------------------------------------------------------------------------------------


def batch_node(extra: str = "") -> str:
    return one_node(
        f'default_prompt: "{{{{index}}}}: {{{{name}}}} ({{{{item.name}}}})", batch: true{extra}'
    )


def test_batch_results_keep_input_order_under_concurrency(llm: FakeLLM) -> None:
    async def slow_first(person: str, request: LLMRequest) -> str:
        prompt = request.messages[-1].content
        await asyncio.sleep(0.03 if prompt.startswith("0") else 0.0)
        return prompt.upper()

    llm.answer = slow_first
    items = [{"name": "a"}, {"name": "b"}, {"name": "c"}]
    output = run_ask(compile_yaml(batch_node()), inputs={"default": {"items": items}})
    assert output.value == {"default": ["0: A (A)", "1: B (B)", "2: C (C)"]}
    assert output.metadata["batch_size"] == 3 and output.metadata["succeeded"] == 3
    assert output.metadata["token_usage"] == TokenUsage(input=30, output=6, total=36)


def test_batch_runs_at_most_max_concurrent_at_once(llm: FakeLLM) -> None:
    running: list[int] = [0]
    peak: list[int] = [0]

    async def count(person: str, request: LLMRequest) -> str:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await asyncio.sleep(0.005)
        running[0] -= 1
        return "ok"

    llm.answer = count
    graph = compile_yaml(batch_node(", max_concurrent: 2, batch_input_key: rows"))
    output = run_ask(graph, inputs={"rows": json.dumps([{"name": str(i)} for i in range(6)])})
    assert output.value["default"] == ["ok"] * 6 and peak[0] == 2
    peak[0] = 0
    run_ask(
        compile_yaml(batch_node(", batch_parallel: false")),
        inputs={"default": {"items": [{"name": "x"}] * 3}},
    )
    assert peak[0] == 1


def test_batch_item_that_is_not_a_list_is_one_item(llm: FakeLLM) -> None:
    output = run_ask(compile_yaml(batch_node()), inputs={"items": {"name": "solo"}})
    assert llm.prompts() == ["0: solo (solo)"] and len(output.value["default"]) == 1


def test_batch_failures_fail_the_node_with_partial_results(llm: FakeLLM) -> None:
    def flaky(person: str, request: LLMRequest) -> Any:
        prompt = request.messages[-1].content
        return LLMError("rate limited") if prompt.startswith("1") else "fine"

    llm.answer = flaky
    graph = compile_yaml(batch_node())
    with pytest.raises(person_job.BatchError) as caught:
        run_ask(graph, inputs={"default": {"items": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}})
    assert str(caught.value) == "1 of 3 items failed: item 1: rate limited"
    assert caught.value.metadata["partial_results"] == ["fine", None, "fine"]
    assert caught.value.metadata["token_usage"].total == 24


def test_batch_failure_is_recorded_on_the_failed_node(llm: FakeLLM) -> None:
    llm.answer = lambda person, request: LLMError("boom")
    start = "{label: Start, type: start, custom_data: {items: [1]}}"
    graph = compile_yaml(batch_node().replace("{label: Start, type: start}", start))
    finished, recorder = run(graph)
    assert finished.status == ExecutionStatus.FAILED
    state = recorder.node(graph, "Ask")
    assert (
        state.status == NodeExecutionStatus.FAILED
        and state.error == "1 of 1 items failed: item 0: boom"
    )
    assert metadata(recorder, graph, "Ask")["partial_results"] == [None]


def test_batch_without_items_says_where_it_looked(llm: FakeLLM) -> None:
    with pytest.raises(Exception, match="batch: no 'items' in the inputs or in the default input"):
        run_ask(compile_yaml(batch_node()), inputs={"default": {"other": 1}})


# -- person_batch_job ---------------------------------------------------------------------------

BATCH_JOB = (
    """
nodes:
  - {label: Start, type: start, custom_data: {q: tea}}
  - label: Panel
    type: person_batch_job
    person_ids: [Writer, Critic]
    prompt: "Opinion on {{q}}?"
connections:
  - {from: Start, to: Panel}
"""
    + PERSONS
)


def test_person_batch_job_asks_each_person_with_the_input(llm: FakeLLM) -> None:
    output = run_ask(compile_yaml(BATCH_JOB), label="Panel", inputs={"default": {"q": "tea"}})
    assert output.value == {"default": {"Writer": "Writer reply 1", "Critic": "Critic reply 2"}}
    assert llm.prompts() == ['Opinion on tea?\n\nInput: {"q": "tea"}'] * 2
    assert llm.calls[0][1].system == "You are terse." and llm.calls[1][1].system is None
    assert output.metadata["token_usage"].total == 24
    assert output.metadata["models"] == {"Writer": "gpt-test-2025", "Critic": "gpt-test-2025"}


def test_person_batch_job_aggregates_and_reports_failures(llm: FakeLLM) -> None:
    graph = compile_yaml(
        BATCH_JOB.replace(
            "person_ids: [Writer, Critic]",
            "person_ids: Writer, Critic\n    aggregate_results: true",
        )
    )
    output = run_ask(graph, label="Panel")
    assert (
        output.value["default"] == "Person Writer: Writer reply 1\n\nPerson Critic: Critic reply 2"
    )
    llm.answer = lambda person, request: LLMError("down") if person == "Critic" else "ok"
    with pytest.raises(person_job.BatchError, match="1 of 2 persons failed: person 'Critic': down"):
        run_ask(graph, label="Panel")


def test_person_batch_job_validation() -> None:
    assert "person_ids: name at least one person" in problems(
        BATCH_JOB.replace("[Writer, Critic]", "[]")
    )
    assert "person 'Nobody' is not defined" in problems(BATCH_JOB.replace("Critic]", "Nobody]"))
    assert "needs a prompt" in problems(
        BATCH_JOB.replace('prompt: "Opinion on {{q}}?"', "prompt: ''")
    )
