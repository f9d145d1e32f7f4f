"""OpenAI chat completions through the official `openai` client; also every OpenAI-compatible
server (Ollama, vLLM, DeepSeek, xAI, Gemini's compatible endpoint) by its base URL.

Request: the system prompt (the request's, else the person's) as a leading `system` message,
then the messages as given; `temperature` when set; `max_tokens` when set, sent as
`max_completion_tokens` to OpenAI itself (its reasoning models refuse `max_tokens`) and as
`max_tokens` to the compatible servers; a response_schema as
`response_format={"type": "json_schema", "json_schema": {"name", "schema", "strict": False}}`
(a schema whose top is not an object is sent wrapped as `{"value": schema}` and unwrapped).

Reply: `choices[0].message.content` as text; with a schema, its JSON parsed as `structured`.
Usage: prompt_tokens -> input, completion_tokens -> output, prompt_tokens_details.cached_tokens
-> cached, total_tokens -> total.

The client retries 408/409/429/5xx, timeouts and connection errors `MAX_RETRIES` times with
its own exponential backoff (honouring `retry-after`); `timeout` is per HTTP attempt. What
still fails becomes an LLMError with the provider's message.
"""

from __future__ import annotations

import time
from typing import Any

import openai

from dipeo_cli.llm.base import LLMReply, LLMRequest, PersonConfig
from dipeo_cli.llm.services import DEFAULT_TIMEOUT, MAX_RETRIES
from dipeo_cli.llm.translation import (
    call_error,
    object_schema,
    parse_structured,
    schema_name,
    status_error,
    system_prompt,
)
from dipeo_cli.state import TokenUsage


def new_client(config: PersonConfig) -> openai.AsyncOpenAI:
    kwargs: dict[str, Any] = {}
    if config.base_url:
        kwargs["base_url"] = config.base_url
    return openai.AsyncOpenAI(
        # servers that check no key (Ollama) still need a non-empty one in the client
        api_key=config.api_key or config.provider,
        max_retries=MAX_RETRIES,
        timeout=DEFAULT_TIMEOUT,
        **kwargs,
    )


class OpenAIChat:
    def __init__(self, client: openai.AsyncOpenAI, config: PersonConfig) -> None:
        self._client = client
        self.config = config

    async def complete(self, request: LLMRequest) -> LLMReply:
        config = self.config
        messages: list[dict[str, str]] = []
        system = system_prompt(config, request)
        if system:
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.content} for m in request.messages)
        params: dict[str, Any] = {"model": config.model, "messages": messages}
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.max_tokens is not None:
            limit = "max_completion_tokens" if config.provider == "openai" else "max_tokens"
            params[limit] = request.max_tokens
        wrapped = False
        if request.response_schema is not None:
            schema, wrapped = object_schema(request.response_schema)
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name(request.schema_name),
                    "schema": schema,
                    "strict": False,
                },
            }
        timeout = request.timeout or DEFAULT_TIMEOUT

        started = time.perf_counter()
        try:
            response = await self._client.chat.completions.create(**params, timeout=timeout)
        except openai.APIStatusError as exc:
            raise status_error(
                config, exc.status_code, exc.body, exc.message, exc.response.headers
            ) from None
        except openai.APITimeoutError:
            raise call_error(config, f"no answer within {timeout:g} s (per call)") from None
        except openai.APIConnectionError as exc:
            raise call_error(config, f"cannot reach {self._client.base_url}: {exc}") from None
        except openai.OpenAIError as exc:
            raise call_error(config, str(exc)) from None
        latency_ms = (time.perf_counter() - started) * 1000

        if not response.choices:
            raise call_error(config, "the reply has no choices")
        message = response.choices[0].message
        refusal = getattr(message, "refusal", None)
        if refusal:
            raise call_error(config, f"the model refused: {refusal}")
        text = message.content or ""
        structured = None
        if request.response_schema is not None:
            structured = parse_structured(text, wrapped, f"{config.provider} ({config.model})")
        return LLMReply(
            text=text,
            usage=_usage(response.usage),
            model=response.model or config.model,
            latency_ms=latency_ms,
            structured=structured,
        )


def _usage(usage: Any) -> TokenUsage:
    if usage is None:
        return TokenUsage()
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return TokenUsage(
        input=prompt,
        output=completion,
        cached=cached,
        total=usage.total_tokens or prompt + completion,
    )
