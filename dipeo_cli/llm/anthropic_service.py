"""Anthropic messages through the official `anthropic` client (`anthropic`/`claude` persons).

Request: the system prompt (the request's, else the person's, plus the content of any
`system`-role message) as `system=`; the user/assistant messages as given; `max_tokens` from
the request, else ANTHROPIC_DEFAULT_MAX_TOKENS (the API requires it); `temperature` when set
and the installed client still has the parameter (current versions of the messages API have
none, so it is left out rather than failing every call).
A response_schema is sent as one tool whose `input_schema` is the schema, forced with
`tool_choice={"type": "tool", "name": ...}` (a schema whose top is not an object is wrapped as
`{"value": schema}` and unwrapped).

Reply: the text blocks joined; with a schema, the tool call's input is `structured` and its
JSON the text. Usage: input = input_tokens + cache_read_input_tokens +
cache_creation_input_tokens (every prompt token, as OpenAI counts them), cached =
cache_read_input_tokens, output = output_tokens, total = input + output.

Retries and timeouts as in openai_service.py (the client's own `max_retries` and `timeout`).
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any

import anthropic

from dipeo_cli.llm.base import LLMReply, LLMRequest, PersonConfig
from dipeo_cli.llm.services import ANTHROPIC_DEFAULT_MAX_TOKENS, DEFAULT_TIMEOUT, MAX_RETRIES
from dipeo_cli.llm.translation import (
    call_error,
    object_schema,
    parse_structured,
    schema_name,
    status_error,
    system_prompt,
    unwrap,
)
from dipeo_cli.state import TokenUsage


def _accepts_temperature() -> bool:
    from anthropic.resources.messages import AsyncMessages

    return "temperature" in inspect.signature(AsyncMessages.create).parameters


ACCEPTS_TEMPERATURE = _accepts_temperature()


def new_client(config: PersonConfig) -> anthropic.AsyncAnthropic:
    kwargs: dict[str, Any] = {}
    if config.base_url:
        kwargs["base_url"] = config.base_url
    return anthropic.AsyncAnthropic(
        api_key=config.api_key, max_retries=MAX_RETRIES, timeout=DEFAULT_TIMEOUT, **kwargs
    )


class AnthropicChat:
    def __init__(self, client: anthropic.AsyncAnthropic, config: PersonConfig) -> None:
        self._client = client
        self.config = config

    async def complete(self, request: LLMRequest) -> LLMReply:
        config = self.config
        systems = [system_prompt(config, request) or ""]
        messages: list[dict[str, str]] = []
        for m in request.messages:
            if m.role == "system":
                systems.append(m.content)
            elif messages and messages[-1]["role"] == m.role:
                # The messages API wants user and assistant turns to alternate: join a run.
                messages[-1]["content"] += "\n\n" + m.content
            else:
                messages.append({"role": m.role, "content": m.content})
        if messages and messages[0]["role"] != "user":
            # ... and to open with a user turn (a memory of only this person's own replies).
            messages.insert(0, {"role": "user", "content": "(earlier in this conversation)"})
        params: dict[str, Any] = {
            "model": config.model,
            "max_tokens": request.max_tokens or ANTHROPIC_DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        system = "\n\n".join(s for s in systems if s)
        if system:
            params["system"] = system
        if request.temperature is not None and ACCEPTS_TEMPERATURE:
            params["temperature"] = request.temperature
        wrapped = False
        tool = schema_name(request.schema_name)
        if request.response_schema is not None:
            schema, wrapped = object_schema(request.response_schema)
            params["tools"] = [
                {
                    "name": tool,
                    "description": "Give your answer as this tool's input, following its schema.",
                    "input_schema": schema,
                }
            ]
            params["tool_choice"] = {"type": "tool", "name": tool}
        timeout = request.timeout or DEFAULT_TIMEOUT

        started = time.perf_counter()
        try:
            response = await self._client.messages.create(**params, timeout=timeout)
        except anthropic.APIStatusError as exc:
            raise status_error(
                config, exc.status_code, exc.body, exc.message, exc.response.headers
            ) from None
        except anthropic.APITimeoutError:
            raise call_error(config, f"no answer within {timeout:g} s (per call)") from None
        except anthropic.APIConnectionError as exc:
            raise call_error(config, f"cannot reach {self._client.base_url}: {exc}") from None
        except anthropic.AnthropicError as exc:
            raise call_error(config, str(exc)) from None
        latency_ms = (time.perf_counter() - started) * 1000

        texts: list[str] = []
        tool_input: Any = None
        for block in response.content or ():
            kind = getattr(block, "type", None)
            if kind == "text":
                texts.append(block.text)
            elif kind == "tool_use" and tool_input is None:
                tool_input = block.input
        text = "".join(texts)
        structured = None
        if request.response_schema is not None:
            where = f"{config.provider} ({config.model})"
            if tool_input is not None:
                structured = unwrap(tool_input, wrapped)
                text = json.dumps(structured)
            else:
                structured = parse_structured(text, wrapped, where)
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
    cache_read = getattr(usage, "cache_read_input_tokens", None)
    cache_write = getattr(usage, "cache_creation_input_tokens", None) or 0
    prompt = (usage.input_tokens or 0) + (cache_read or 0) + cache_write
    output = usage.output_tokens or 0
    return TokenUsage(input=prompt, output=output, cached=cache_read, total=prompt + output)
