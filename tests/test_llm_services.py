"""Service names, endpoints, API keys and the offline mock (no network)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from dipeo_cli.context import RunResources
from dipeo_cli.diagram.model import Person
from dipeo_cli.llm import (
    KNOWN_SERVICES,
    LLMConfigError,
    LLMMessage,
    LLMRequest,
    choose_llm_mode,
    llm_client,
    normalize_service,
    resolve_person,
)
from dipeo_cli.llm.mock import sample_for_schema
from dipeo_cli.redact import redact
from tests.llm_server import PROVIDER_KEY_VARS


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROVIDER_KEY_VARS, "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def person(**fields) -> Person:
    return Person(**{"id": "p1", "label": "Writer", **fields})


def write_keys(base: Path, entries: dict, name: str = "files/apikeys.json") -> Path:
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries), encoding="utf-8")
    return path


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("openai", "openai"),
        ("OpenAI", "openai"),
        ("chatgpt", "openai"),
        ("anthropic", "anthropic"),
        ("Claude", "anthropic"),
        ("google", "google"),
        ("GEMINI", "google"),
        ("grok", "grok"),
        ("xai", "grok"),
        ("deepseek", "deepseek"),
        ("ollama", "ollama"),
        ("mock", "mock"),
        (" Ollama ", "ollama"),
        ("", "openai"),
    ],
)
def test_service_names_and_aliases_are_normalised(name, canonical):
    assert normalize_service(name) == canonical


@pytest.mark.parametrize("name", ["claude-code", "Claude_Code", "claude-code-custom"])
def test_claude_code_names_are_one_service(name):
    assert normalize_service(name) == "claude-code"


@pytest.mark.parametrize("name", ["bedrock", "vertex"])
def test_dipeo_services_we_do_not_support_say_so(name):
    with pytest.raises(LLMConfigError, match="is not supported by this runner"):
        normalize_service(name)


def test_unknown_service_lists_the_known_ones(tmp_path):
    with pytest.raises(LLMConfigError) as info:
        resolve_person(person(service="teleport"), base_dir=tmp_path)
    message = str(info.value)
    assert message.startswith("person 'Writer': unknown service 'teleport' (known services: ")
    for name in ("anthropic", "claude", "deepseek", "gemini", "grok", "ollama", "openai", "xai"):
        assert name in message
    assert info.value.problem().where == "person 'Writer'"
    assert "claude" in KNOWN_SERVICES and "bedrock" not in KNOWN_SERVICES


# -- endpoints ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "env", "client", "base_url"),
    [
        ("openai", "OPENAI_API_KEY", "openai", None),
        ("claude", "ANTHROPIC_API_KEY", "anthropic", None),
        ("deepseek", "DEEPSEEK_API_KEY", "openai", "https://api.deepseek.com"),
        ("xai", "XAI_API_KEY", "openai", "https://api.x.ai/v1"),
        (
            "gemini",
            "GEMINI_API_KEY",
            "openai",
            "https://generativelanguage.googleapis.com/v1beta/openai/",
        ),
        (
            "google",
            "GOOGLE_API_KEY",
            "openai",
            "https://generativelanguage.googleapis.com/v1beta/openai/",
        ),
    ],
)
def test_each_provider_uses_its_client_endpoint_and_key_variable(
    tmp_path, monkeypatch, service, env, client, base_url
):
    monkeypatch.setenv(env, f"key-for-{service}-123456")
    config = resolve_person(person(service=service, model="m1"), base_dir=tmp_path)
    assert config.service == client
    assert config.base_url == base_url
    assert config.api_key == f"key-for-{service}-123456"
    assert config.model == "m1"
    assert config.person_id == "p1" and config.label == "Writer"


def test_ollama_needs_no_key_and_follows_ollama_host(tmp_path, monkeypatch):
    config = resolve_person(person(service="ollama", model="llama3"), base_dir=tmp_path)
    assert (config.service, config.provider) == ("openai", "ollama")
    assert config.api_key is None
    assert config.base_url == "http://localhost:11434/v1"
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:11434")
    assert resolve_person(person(service="ollama"), base_dir=tmp_path).base_url == (
        "http://gpu-box:11434/v1"
    )
    monkeypatch.setenv("OLLAMA_HOST", "https://ollama.example/")
    assert resolve_person(person(service="ollama"), base_dir=tmp_path).base_url == (
        "https://ollama.example/v1"
    )


def test_a_person_base_url_wins_over_the_environment_and_the_provider(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-123456")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-123456")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://env-proxy:8000/v1")
    assert resolve_person(person(), base_dir=tmp_path).base_url == "http://env-proxy:8000/v1"
    vllm = person(base_url="http://vllm:8000/v1")
    assert resolve_person(vllm, base_dir=tmp_path).base_url == "http://vllm:8000/v1"
    from_extra = person(service="deepseek", extra={"base_url": "http://ds-mirror/v1"})
    assert resolve_person(from_extra, base_dir=tmp_path).base_url == "http://ds-mirror/v1"
    # OPENAI_BASE_URL is OpenAI's own setting: it does not move other providers
    assert resolve_person(person(service="deepseek"), base_dir=tmp_path).base_url == (
        "https://api.deepseek.com"
    )


def test_anthropic_base_url_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-123456")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/")
    config = resolve_person(person(service="anthropic"), base_dir=tmp_path)
    assert config.base_url == "http://127.0.0.1:9/"


def test_a_base_url_without_a_scheme_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-123456")
    with pytest.raises(LLMConfigError, match="base_url must start with http:// or https://"):
        resolve_person(person(base_url="localhost:8000"), base_dir=tmp_path)


# -- keys --------------------------------------------------------------------------------------


def test_key_precedence_env_named_by_api_key_id_then_key_file_then_provider_env(
    tmp_path, monkeypatch
):
    write_keys(
        tmp_path,
        {
            "APIKEY_52609F": {"label": "mine", "service": "openai", "key": "sk-from-file-111111"},
            "APIKEY_000000": {"label": "other", "service": "openai", "key": "sk-other-222222"},
        },
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider-env-333333")
    monkeypatch.setenv("APIKEY_52609F", "sk-id-env-444444")
    writer = person(api_key_id="APIKEY_52609F")

    assert resolve_person(writer, base_dir=tmp_path).api_key == "sk-id-env-444444"
    monkeypatch.delenv("APIKEY_52609F")
    assert resolve_person(writer, base_dir=tmp_path).api_key == "sk-from-file-111111"
    unknown_id = person(api_key_id="APIKEY_FFFFFF")
    assert resolve_person(unknown_id, base_dir=tmp_path).api_key == "sk-provider-env-333333"
    assert resolve_person(person(), base_dir=tmp_path).api_key == "sk-provider-env-333333"


def test_without_env_a_key_file_entry_of_the_same_service_is_used(tmp_path):
    # DiPeO's fallback for diagrams made with someone else's key store
    write_keys(
        tmp_path,
        {
            "APIKEY_AAAAAA": {"label": "a", "service": "claude", "key": "sk-ant-from-file-1"},
            "APIKEY_BBBBBB": {"label": "b", "service": "openai", "key": "sk-openai-from-file-2"},
        },
    )
    theirs = person(service="anthropic", api_key_id="APIKEY_123456")
    assert resolve_person(theirs, base_dir=tmp_path).api_key == "sk-ant-from-file-1"
    assert resolve_person(person(), base_dir=tmp_path).api_key == "sk-openai-from-file-2"


def test_the_key_file_location_can_be_moved(tmp_path, monkeypatch):
    write_keys(tmp_path, {"K1": {"service": "openai", "key": "sk-moved-555555"}}, "secrets/k.json")
    monkeypatch.setenv("API_KEY_STORE_FILE", "secrets/k.json")  # relative to the base dir
    assert resolve_person(person(api_key_id="K1"), base_dir=tmp_path).api_key == "sk-moved-555555"
    monkeypatch.delenv("API_KEY_STORE_FILE")
    other = write_keys(tmp_path, {"K1": {"key": "sk-explicit-666666"}}, "x/keys.json")
    config = resolve_person(person(api_key_id="K1"), base_dir=tmp_path, key_file=other)
    assert config.api_key == "sk-explicit-666666"


def test_the_base_dir_defaults_to_dipeo_base_dir(tmp_path, monkeypatch):
    write_keys(tmp_path, {"K1": {"service": "openai", "key": "sk-base-dir-777777"}})
    monkeypatch.setenv("DIPEO_BASE_DIR", str(tmp_path))
    assert resolve_person(person(api_key_id="K1")).api_key == "sk-base-dir-777777"


def test_a_missing_key_says_which_variable_to_set(tmp_path):
    with pytest.raises(LLMConfigError) as info:
        resolve_person(person(api_key_id="APIKEY_52609F"), base_dir=tmp_path)
    assert str(info.value) == (
        "person 'Writer': no API key for openai: set OPENAI_API_KEY, "
        "or define APIKEY_52609F in the environment or in files/apikeys.json"
    )
    with pytest.raises(LLMConfigError) as info:
        resolve_person(person(service="gemini"), base_dir=tmp_path)
    assert str(info.value) == (
        "person 'Writer': no API key for google: set GOOGLE_API_KEY or GEMINI_API_KEY, "
        "or give the person an api_key_id naming an environment variable or an entry of "
        "files/apikeys.json"
    )
    problem = info.value.problem()
    assert problem.where == "person 'Writer'"
    assert problem.message.startswith("no API key for google")


def test_a_broken_key_file_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-123456")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "apikeys.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(LLMConfigError, match="apikeys.json is not valid JSON"):
        resolve_person(person(), base_dir=tmp_path)
    (tmp_path / "files" / "apikeys.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(LLMConfigError, match="must hold an object"):
        resolve_person(person(), base_dir=tmp_path)


def test_every_resolved_key_is_registered_as_a_secret(tmp_path):
    key = "sk-only-in-the-file-8f3a1c"
    write_keys(tmp_path, {"K1": {"service": "openai", "key": key}})
    config = resolve_person(person(api_key_id="K1"), base_dir=tmp_path)
    assert redact(f"the key is {key}") == "the key is ***"
    assert key not in repr(config)


# -- the mock ----------------------------------------------------------------------------------


def test_llm_override_mock_needs_no_key(tmp_path, monkeypatch):
    config = resolve_person(
        person(service="anthropic", model="claude-x"), base_dir=tmp_path, llm_override="mock"
    )
    assert (config.service, config.provider, config.api_key) == ("mock", "mock", None)
    assert config.model == "claude-x"
    monkeypatch.setenv("DIPEO_LLM", "mock")  # only the CLI reads it (choose_llm_mode)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-env-key-1234")
    assert resolve_person(person(), base_dir=tmp_path).service == "openai"
    assert resolve_person(person(service="mock"), base_dir=tmp_path, llm_override="").service == (
        "mock"
    )
    with pytest.raises(LLMConfigError, match="accepts only 'mock'"):
        resolve_person(person(), base_dir=tmp_path, llm_override="ollama")


def test_choose_llm_mode_takes_the_flag_then_the_environment():
    assert choose_llm_mode(None, {}) is None
    assert choose_llm_mode(None, {"DIPEO_LLM": "mock"}) == "mock"
    assert choose_llm_mode("mock", {}) == "mock"
    assert choose_llm_mode(None, {"DIPEO_LLM": ""}) is None
    with pytest.raises(LLMConfigError, match=r"\$DIPEO_LLM accepts only 'mock', got 'live'"):
        choose_llm_mode(None, {"DIPEO_LLM": "live"})
    with pytest.raises(LLMConfigError, match="--llm accepts only 'mock'"):
        choose_llm_mode("ollama", {"DIPEO_LLM": "mock"})


def run_mock(requests, config=None, resources=None):
    async def go():
        res = resources or RunResources()
        client = llm_client(config or resolve_person(person(service="mock")), res)
        return [await client.complete(request) for request in requests]

    return asyncio.run(go())


def ask(*texts: str, system: str | None = None, schema=None) -> LLMRequest:
    roles = ["user", "assistant"]
    messages = tuple(LLMMessage(roles[i % 2], t) for i, t in enumerate(texts))
    return LLMRequest(messages=messages, system=system, response_schema=schema)


def test_mock_replies_are_numbered_per_person_and_quote_the_last_user_message():
    long_prompt = "Write  a poem\nabout " + "x" * 200
    replies = run_mock(
        [ask("Hello there"), ask("first", "an answer", long_prompt), ask()],
    )
    assert [r.text for r in replies] == [
        "mock reply #1 to: Hello there",
        "mock reply #2 to: " + ("Write a poem about " + "x" * 200)[:80],
        "mock reply #3 to: ",
    ]
    assert all(r.mock for r in replies)
    assert replies[0].model == "mock:gpt-4.1-nano"
    assert replies[0].structured is None


def test_mock_counts_separately_per_person_within_a_run():
    resources = RunResources()
    a = resolve_person(person(id="a", service="mock"))
    b = resolve_person(person(id="b", service="mock"))

    async def go():
        out = []
        for config in (a, a, b, a):
            out.append((await llm_client(config, resources).complete(ask("hi"))).text)
        return out

    assert asyncio.run(go()) == [
        "mock reply #1 to: hi",
        "mock reply #2 to: hi",
        "mock reply #1 to: hi",
        "mock reply #3 to: hi",
    ]
    # a new run starts again from 1
    assert run_mock([ask("hi")], a)[0].text == "mock reply #1 to: hi"


def test_mock_usage_counts_words():
    reply = run_mock([ask("one two three", "four", "five six", system="be brief")])[0]
    assert reply.text == "mock reply #1 to: five six"
    assert (reply.usage.input, reply.usage.output, reply.usage.total) == (8, 6, 14)
    assert reply.usage.cached is None
    # the person's system prompt counts when the request has none
    config = resolve_person(person(service="mock", system_prompt="a b c"))
    assert run_mock([ask("x")], config)[0].usage.input == 4


SCHEMAS = [
    {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["approve", "reject"]},
            "score": {"type": "integer", "minimum": 1, "maximum": 10},
            "ratio": {"type": "number", "exclusiveMinimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "ok": {"type": "boolean"},
            "note": {"type": ["string", "null"], "minLength": 3},
            "nested": {"$ref": "#/$defs/Nested"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "fixed": {"const": "v1"},
        },
        "required": ["verdict", "score", "tags"],
        "$defs": {"Nested": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    },
    {"type": "array", "items": {"type": "integer"}},
    {"type": "string", "minLength": 2},
    {
        "allOf": [
            {"properties": {"a": {"type": "integer"}}},
            {"properties": {"b": {"type": "boolean"}}},
        ]
    },
    {"properties": {"x": {"type": "integer", "default": 7}}},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_mock_structured_replies_satisfy_their_schema(schema):
    reply = run_mock([ask("judge", schema=schema)])[0]
    jsonschema.validate(reply.structured, schema)
    assert json.loads(reply.text) == reply.structured
    assert reply.mock


def test_mock_schema_objects_use_zero_values_and_first_choices():
    assert sample_for_schema(SCHEMAS[0]) == {
        "verdict": "approve",
        "score": 1,
        "ratio": 0.5,
        "tags": ["", ""],
        "ok": False,
        "note": "xxx",
        "nested": {"n": 0},
        "either": 0,
        "fixed": "v1",
    }
    assert sample_for_schema(SCHEMAS[3]) == {"a": 0, "b": False}
    assert sample_for_schema(SCHEMAS[4]) == {"x": 7}


def test_importing_the_llm_package_loads_no_sdk():
    code = (
        "import sys\n"
        "import dipeo_cli.llm\n"
        "from dipeo_cli.diagram.model import Person\n"
        "dipeo_cli.llm.resolve_person(Person(id='p', label='P', service='ollama'))\n"
        "print(','.join(m for m in ('openai', 'anthropic', 'httpx', 'httpx2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
