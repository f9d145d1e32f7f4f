"""Between our LLMRequest/LLMReply and the providers' APIs, for openai_service.py and
anthropic_service.py: the system prompt sent, schema names and object schemas, structured
replies read from text, and errors that name the provider and never show the key."""

from __future__ import annotations

import json
import re
from typing import Any

from dipeo_cli.llm.base import LLMError, LLMRequest, PersonConfig
from dipeo_cli.llm.services import MAX_RETRIES
from dipeo_cli.redact import redact

_RETRIED_STATUSES = (408, 409, 429)


def system_prompt(config: PersonConfig, request: LLMRequest) -> str | None:
    """The request's system prompt, else the person's."""
    system = request.system if request.system is not None else config.system_prompt
    return system or None


def schema_name(name: str) -> str:
    """A name both APIs accept for a schema or tool: [a-zA-Z0-9_-], at most 64 characters."""
    cleaned = re.sub(r"[^a-zA-Z0-9_-]+", "_", name or "").strip("_")[:64]
    return cleaned or "response"


def object_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema to send, and whether it was wrapped: both APIs want an object at the top, so
    any other schema becomes `{"value": schema}` and the reply's `value` is unwrapped."""
    if schema.get("type") == "object" or ("properties" in schema and "type" not in schema):
        return schema, False
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {"value": {k: v for k, v in schema.items() if k not in _ROOT_ONLY}},
        "required": ["value"],
    }
    for key in _ROOT_ONLY:
        if key in schema:
            wrapped[key] = schema[key]
    return wrapped, True


_ROOT_ONLY = ("$schema", "$defs", "definitions")


def parse_structured(text: str, wrapped: bool, where: str) -> Any:
    """The JSON object in a reply's text (a ```json fence around it is accepted)."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.DOTALL)
    if fence:
        body = fence.group(1)
    try:
        value = json.loads(body)
    except ValueError:
        preview = " ".join(redact(text).split())[:200]
        raise LLMError(
            f"{where}: the reply is not the JSON the schema asks for: {preview!r}"
        ) from None
    return unwrap(value, wrapped)


def unwrap(value: Any, wrapped: bool) -> Any:
    if wrapped and isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


def status_error(
    config: PersonConfig, status: int, body: Any, fallback: str, headers: Any = None
) -> LLMError:
    """LLMError for an HTTP error answer: `openai (gpt-4.1): HTTP 429 (after 3 retries): ...`
    with the provider's own message (never the key)."""
    message = _provider_message(body) or fallback
    retried = ""
    should_retry = headers.get("x-should-retry") if headers is not None else None
    if (status in _RETRIED_STATUSES or status >= 500) and should_retry != "false":
        retried = f" (after {MAX_RETRIES} retries)"
    return call_error(config, f"HTTP {status}{retried}: {message}")


def call_error(config: PersonConfig, message: str) -> LLMError:
    """LLMError naming the provider and model; the key is masked even if the provider echoed
    it back."""
    text = f"{config.provider} ({config.model}): {message}"
    if config.api_key:
        text = text.replace(config.api_key, "***")
    return LLMError(redact(text))


def _provider_message(body: Any) -> str | None:
    # OpenAI: {"error": {"message", "type", "code"}} (the SDK passes the inner object);
    # Anthropic: {"type": "error", "error": {"type", "message"}}.
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            body = inner
        elif isinstance(inner, str):
            return inner
        message = body.get("message")
        if isinstance(message, str) and message:
            kind = body.get("type") or body.get("code")
            return f"{message} ({kind})" if isinstance(kind, str) and kind else message
    if isinstance(body, str) and body.strip():
        return redact(body.strip())[:500]  # masked before it is cut
    return None
