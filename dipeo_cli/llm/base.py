"""The contract between person handlers and LLM services.

    resolve_person(person, base_dir=..., llm_override=llm_mode) -> PersonConfig (compile time)
    client = llm_client(config, resources)                                    (run time, cached)
    reply = await client.complete(LLMRequest(...))                            -> LLMReply

Handlers (person_job, person_batch_job, llm_decision conditions) only see these types; the
service modules (openai_service.py, anthropic_service.py, mock.py) implement `LLMClient`.
Keys never leave PersonConfig except into the official client; they are registered with
`dipeo_cli.redact` when resolved, so no output, log or history row can show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from dipeo_cli.errors import NodeError
from dipeo_cli.state import TokenUsage


class LLMError(NodeError):
    """An LLM call failed for good (after the client's retries): the provider's message."""


@dataclass(frozen=True)
class PersonConfig:
    """A person resolved for calling: canonical service name, model, key and endpoint."""

    person_id: str
    label: str
    service: str  # canonical: "openai", "anthropic", "mock" (OpenAI-compatible ones: "openai")
    provider: str  # as the user named it after aliases: "openai", "ollama", "deepseek", ...
    model: str
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    system_prompt: str | None = None


@dataclass(frozen=True)
class LLMMessage:
    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True)
class LLMRequest:
    messages: tuple[LLMMessage, ...]
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    # A JSON schema the reply must follow (structured output), with a name for the schema.
    response_schema: dict[str, Any] | None = None
    schema_name: str = "response"
    timeout: float | None = None  # seconds, per call


@dataclass(frozen=True)
class LLMReply:
    text: str
    usage: TokenUsage
    model: str
    latency_ms: float
    structured: Any = None  # the parsed object when response_schema was given
    mock: bool = False


class LLMClient(Protocol):
    async def complete(self, request: LLMRequest) -> LLMReply: ...
