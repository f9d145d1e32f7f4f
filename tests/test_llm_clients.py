"""The official openai and anthropic clients against the fake provider on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from dipeo_cli.context import RunResources
from dipeo_cli.diagram.model import Person
from dipeo_cli.llm import (
    LLMError,
    LLMMessage,
    LLMRequest,
    anthropic_service,
    llm_client,
    resolve_person,
)
from dipeo_cli.llm.services import MAX_RETRIES
from tests.httpkit import free_port
from tests.llm_server import ANTHROPIC_TEST_KEY, OPENAI_TEST_KEY, Reply


def person(**fields) -> Person:
    return Person(**{"id": "p1", "label": "Writer", "model": "test-model", **fields})


def call(config, *requests: LLMRequest, resources: RunResources | None = None):
    """Run the requests in order on one client; close the run's clients at the end."""

    async def go():
        res = resources or RunResources()
        try:
            client = llm_client(config, res)
            return [await client.complete(r) for r in requests]
        finally:
            if resources is None:
                await res.close()

    return asyncio.run(go())


def conversation(*texts: str, **options) -> LLMRequest:
    roles = ("user", "assistant")
    return LLMRequest(
        messages=tuple(LLMMessage(roles[i % 2], t) for i, t in enumerate(texts)), **options
    )


def call_error(config, request: LLMRequest) -> LLMError:
    with pytest.raises(LLMError) as info:
        call(config, request)
    return info.value


@pytest.fixture
def openai_person(llm_server):
    return resolve_person(person(system_prompt="You are terse."))


@pytest.fixture
def anthropic_person(llm_server):
    return resolve_person(person(service="claude", system_prompt="You are terse."))


# -- OpenAI ------------------------------------------------------------------------------------


def test_openai_sends_the_system_prompt_and_messages_and_maps_the_reply(llm_server, openai_person):
    llm_server.reply(Reply(text="Paris.", usage={"input": 21, "output": 2, "cached": 16}))
    request = conversation(
        "Capital of France?", "Which country?", "France.", temperature=0.1, max_tokens=50
    )
    [reply] = call(openai_person, request)

    [sent] = llm_server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_TEST_KEY}"
    assert sent.body["model"] == "test-model"
    assert sent.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Which country?"},
        {"role": "user", "content": "France."},
    ]
    assert sent.body["temperature"] == 0.1
    assert sent.body["max_completion_tokens"] == 50
    assert "max_tokens" not in sent.body and "response_format" not in sent.body

    assert reply.text == "Paris."
    assert reply.model == "test-model"
    assert (reply.usage.input, reply.usage.output, reply.usage.cached, reply.usage.total) == (
        21,
        2,
        16,
        23,
    )
    assert reply.structured is None and reply.mock is False
    assert reply.latency_ms > 0


def test_the_request_system_prompt_replaces_the_persons(llm_server, openai_person):
    call(openai_person, conversation("hi", system="Judge strictly."), conversation("hi", system=""))
    assert [r.system for r in llm_server.requests] == ["Judge strictly.", None]


def test_optional_parameters_are_left_out_when_unset(llm_server):
    call(resolve_person(person()), conversation("hi"))
    body = llm_server.requests[0].body
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert not {"temperature", "max_tokens", "max_completion_tokens"} & set(body)


def test_openai_compatible_servers_get_max_tokens_and_their_own_key(llm_server, monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-test-91b2c3")
    config = resolve_person(person(service="deepseek", base_url=llm_server.openai_base_url))
    call(config, conversation("hi", max_tokens=64))
    sent = llm_server.requests[0]
    assert sent.headers["authorization"] == "Bearer sk-deepseek-test-91b2c3"
    assert sent.body["max_tokens"] == 64 and "max_completion_tokens" not in sent.body


def test_ollama_is_reached_through_ollama_host_without_a_key(llm_server, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{llm_server.port}")
    config = resolve_person(person(service="ollama", model="llama3.2"))
    [reply] = call(config, conversation("Why is the sky blue?"))
    assert reply.text == "reply #1 to: Why is the sky blue?"
    assert llm_server.requests[0].body["model"] == "llama3.2"


def test_openai_structured_output_request_and_parsing(llm_server, openai_person):
    schema = {
        "type": "object",
        "properties": {"verdict": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["verdict", "score"],
    }
    llm_server.reply({"verdict": "approve", "score": 8})
    [reply] = call(
        openai_person, conversation("Judge it", response_schema=schema, schema_name="Verdict!")
    )
    assert llm_server.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Verdict", "schema": schema, "strict": False},
    }
    assert reply.structured == {"verdict": "approve", "score": 8}
    assert reply.text == '{"verdict": "approve", "score": 8}'


def test_a_schema_that_is_not_an_object_is_wrapped_and_unwrapped(llm_server, openai_person):
    schema = {"type": "array", "items": {"type": "string"}}
    llm_server.reply({"value": ["a", "b"]})
    [reply] = call(openai_person, conversation("List two", response_schema=schema))
    sent_schema = llm_server.requests[0].body["response_format"]["json_schema"]["schema"]
    assert sent_schema == {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    assert reply.structured == ["a", "b"]


def test_a_reply_that_is_not_json_fails_a_structured_call(llm_server, openai_person):
    llm_server.reply(Reply(text="Sure! Here it is: approve"))
    error = call_error(openai_person, conversation("x", response_schema={"type": "object"}))
    assert "the reply is not the JSON the schema asks for: 'Sure! Here it is: approve'" in str(
        error
    )


def test_a_json_reply_in_a_code_fence_is_accepted(llm_server, openai_person):
    llm_server.reply(Reply(text='```json\n{"a": 1}\n```'))
    [reply] = call(openai_person, conversation("x", response_schema={"type": "object"}))
    assert reply.structured == {"a": 1}


# -- Anthropic ---------------------------------------------------------------------------------


def test_anthropic_sends_system_separately_and_maps_usage(llm_server, anthropic_person):
    llm_server.reply(Reply(text="Paris.", usage={"input": 5, "output": 2, "cached": 100}))
    [reply] = call(anthropic_person, conversation("Capital of France?", temperature=0.3))

    [sent] = llm_server.requests
    assert sent.path == "/v1/messages"
    # older clients send the key as x-api-key, newer ones as a bearer token
    assert ANTHROPIC_TEST_KEY in (
        sent.headers.get("x-api-key"),
        sent.headers.get("authorization", "").removeprefix("Bearer "),
    )
    assert "anthropic-version" in sent.headers
    assert sent.body["system"] == "You are terse."
    assert sent.body["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert sent.body["max_tokens"] == 4096
    if anthropic_service.ACCEPTS_TEMPERATURE:
        assert sent.body["temperature"] == 0.3
    else:  # the current messages API has no temperature
        assert "temperature" not in sent.body
    assert "tools" not in sent.body

    assert reply.text == "Paris."
    # input counts every prompt token, cached ones included, as OpenAI does
    assert (reply.usage.input, reply.usage.output, reply.usage.cached, reply.usage.total) == (
        105,
        2,
        100,
        107,
    )
    assert reply.model == "test-model"


def test_anthropic_structured_output_is_a_forced_tool(llm_server, anthropic_person):
    schema = {"type": "object", "properties": {"winner": {"type": "string"}}}
    llm_server.reply({"winner": "Alice"})
    [reply] = call(
        anthropic_person,
        conversation(
            "Who won?", response_schema=schema, schema_name="debate verdict", max_tokens=300
        ),
    )
    body = llm_server.requests[0].body
    assert body["max_tokens"] == 300
    [tool] = body["tools"]
    assert tool["name"] == "debate_verdict" and tool["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "debate_verdict"}
    assert reply.structured == {"winner": "Alice"}
    assert reply.text == '{"winner": "Alice"}'


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["openai", "anthropic"])
@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_retried(llm_server, service, status):
    llm_server.fail(MAX_RETRIES, status=status)
    llm_server.reply("finally")
    [reply] = call(resolve_person(person(service=service)), conversation("hi"))
    assert reply.text == "finally"
    assert len(llm_server.requests) == MAX_RETRIES + 1


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            "openai",
            "openai (test-model): HTTP 500 (after 3 retries): The server had an error while processing your request (server_error)",
        ),
        (
            "anthropic",
            "anthropic (test-model): HTTP 500 (after 3 retries): The server had an error while processing your request (api_error)",
        ),
    ],
)
def test_server_errors_after_the_retries_fail_with_the_providers_message(
    llm_server, service, expected
):
    llm_server.fail(10, status=500)
    error = call_error(resolve_person(person(service=service)), conversation("hi"))
    assert str(error) == expected
    assert len(llm_server.requests) == MAX_RETRIES + 1


@pytest.mark.parametrize(
    ("service", "key"), [("openai", OPENAI_TEST_KEY), ("claude", ANTHROPIC_TEST_KEY)]
)
def test_the_api_key_never_appears_in_an_llm_error(llm_server, service, key):
    # providers echo (parts of) a rejected key; our error must not
    llm_server.fail(1, status=401, message=f"Incorrect API key provided: {key}.")
    error = call_error(resolve_person(person(service=service)), conversation("hi"))
    assert "HTTP 401: Incorrect API key provided: ***." in str(error)
    assert key not in str(error) and key not in repr(error)
    assert error.__cause__ is None and error.__suppress_context__
    assert len(llm_server.requests) == 1  # a 401 is not retried


@pytest.mark.parametrize("service", ["openai", "anthropic"])
def test_a_call_that_takes_longer_than_its_timeout_fails(llm_server, service):
    llm_server.reply_with(lambda request, n: Reply(text="late", delay=5))
    started = time.monotonic()
    error = call_error(resolve_person(person(service=service)), conversation("hi", timeout=0.2))
    assert time.monotonic() - started < 3
    assert str(error) == f"{service} (test-model): no answer within 0.2 s (per call)"
    assert len(llm_server.requests) == MAX_RETRIES + 1  # timeouts are retried too


def test_an_unreachable_server_fails_with_the_address(llm_server, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/v1"
    error = call_error(resolve_person(person(base_url=url)), conversation("hi"))
    assert str(error).startswith(f"openai (test-model): cannot reach {url}/: ")


# -- one client per run ------------------------------------------------------------------------


def test_clients_are_shared_within_a_run_and_closed_at_its_end(llm_server, openai_person):
    resources = RunResources()
    other = resolve_person(person(id="p2", label="Critic"))

    async def go():
        first = llm_client(openai_person, resources)
        second = llm_client(other, resources)
        await first.complete(conversation("a"))
        await second.complete(conversation("b"))
        assert first._client is second._client  # same endpoint and key: one connection pool
        anthropic = llm_client(resolve_person(person(service="anthropic")), resources)
        assert anthropic._client is not first._client
        await resources.close()
        return first._client, anthropic._client

    openai_sdk, anthropic_sdk = asyncio.run(go())
    assert openai_sdk.is_closed() and anthropic_sdk.is_closed()
    assert len(llm_server.requests) == 2
