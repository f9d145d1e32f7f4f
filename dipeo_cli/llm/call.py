"""The one call point of LLM persons: every person_job, person_batch_job and llm_decision call
goes through `call_person`, which knows its caller and records the call in full.

    reply, config = await ask_person(ctx, person, prompt, history, schema=..., batch_index=i)
    # or, with a request built by hand:
    reply = await call_person(ctx, config, request, batch_index=None)
    metadata["llm_calls"] = llm_calls(ctx)

The record. Each call appends one entry to the node execution's `llm_calls` (numbered from 1 in
the order the calls start; a batch starts its items in index order), which handlers put in the
node's output metadata (and `call_person` adds to the metadata of a NodeError it lets through):

    {"call": 1, "batch_index": None, "person_id": "person_1", "replayed": False,
     "request": {"service", "provider", "model", "base_url", "system", "messages": [{"role",
                 "content"}, ...], "response_schema", "schema_name", "temperature",
                 "max_tokens", "timeout"},
     "reply": {"text", "structured", "model", "token_usage": {"input", "output", "cached",
               "total"}, "latency_ms", "mock"} or None when the call failed,
     "error": "..." only when the call failed}

`system` is the system prompt that was sent (the request's, else the person's); `messages` every
message, the prompt last. The API key is never part of a record, and the request and reply pass
`redact_json` before they are kept (a key echoed by a provider is masked too).

The replay seam. Before calling the client, `call_person` asks `ctx.resources.llm_replay` (None
by default: every call goes out) for a recorded reply:

    class LLMReplayer(Protocol):
        async def reply_for(self, call: CallIdentity, request: dict) -> LLMReply | None

`call` says who is calling (execution id, node id and label, iteration, batch index, call
number, person id); `request` is the request record exactly as it will be stored (above), so a
replayer can compare it with the one in an earlier execution's history. The replayer returns
the LLMReply to use (the call is recorded with `"replayed": True` and no client is opened),
None to let the call go out, or raises a NodeError (e.g. "the prompt changed: <diff>"), which
fails the node like a provider error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dipeo_cli.context import node_calls
from dipeo_cli.errors import NodeError
from dipeo_cli.llm import persons
from dipeo_cli.llm.base import LLMMessage, LLMReply, LLMRequest, PersonConfig
from dipeo_cli.memory import Message, as_chat
from dipeo_cli.redact import redact, redact_record

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext

PREVIEW_CHARS = 200
RECORDS_KEY = "llm_calls"


@dataclass(frozen=True)
class CallIdentity:
    """Which call this is: a replayer matches recorded calls by these."""

    execution_id: str
    node_id: str
    node_label: str
    iteration: int
    batch_index: int | None
    call: int  # 1, 2, ... within this node execution, in the order the calls started
    person_id: str


class LLMReplayer(Protocol):
    async def reply_for(self, call: CallIdentity, request: dict[str, Any]) -> LLMReply | None: ...


def llm_calls(ctx: NodeContext) -> list[dict[str, Any]]:
    """This node execution's LLM call records, for its metadata."""
    return node_calls(ctx, RECORDS_KEY)


def build_request(
    config: PersonConfig,
    person: Any,
    prompt: str,
    history: list[Message],
    *,
    schema: dict[str, Any] | None = None,
    system_suffix: str | None = None,
) -> LLMRequest:
    """`history` (as the person sees it) then `prompt`, with the person's system prompt (plus
    `system_suffix`) and the structured-output schema."""
    messages = [LLMMessage(role, content) for role, content in as_chat(history, person.id)]
    messages.append(LLMMessage("user", prompt))
    system = config.system_prompt if config.system_prompt else person.system_prompt
    if system_suffix:
        system = f"{system}\n\n{system_suffix}" if system else system_suffix
    return LLMRequest(
        messages=tuple(messages),
        system=system or None,
        response_schema=schema,
        schema_name=_schema_name(schema),
    )


async def ask_person(
    ctx: NodeContext,
    person: Any,
    prompt: str,
    history: list[Message],
    *,
    schema: dict[str, Any] | None = None,
    system_suffix: str | None = None,
    batch_index: int | None = None,
) -> tuple[LLMReply, PersonConfig]:
    """Send `history` and `prompt` to the person through `call_person`; (reply, config)."""
    config = persons.person_config(ctx, person)
    request = build_request(
        config, person, prompt, history, schema=schema, system_suffix=system_suffix
    )
    return await call_person(ctx, config, request, batch_index=batch_index), config


async def call_person(
    ctx: NodeContext, config: PersonConfig, request: LLMRequest, *, batch_index: int | None = None
) -> LLMReply:
    """Make one LLM call for the node `ctx` runs, recorded in its `llm_calls` (module
    docstring), answered by `ctx.resources.llm_replay` when that has a reply. Raises what the
    client or the replayer raises (LLMError: the provider's message)."""
    records = llm_calls(ctx)
    record: dict[str, Any] = {
        "call": len(records) + 1,
        "batch_index": batch_index,
        "person_id": config.person_id,
        "replayed": False,
        "request": request_record(config, request),
        "reply": None,
    }
    records.append(record)
    identity = CallIdentity(
        execution_id=ctx.execution_id,
        node_id=ctx.node_id,
        node_label=ctx.node.label,
        iteration=ctx.iteration,
        batch_index=batch_index,
        call=record["call"],
        person_id=config.person_id,
    )
    replayer: LLMReplayer | None = getattr(ctx.resources, "llm_replay", None)
    try:
        reply = None
        if replayer is not None:
            reply = await replayer.reply_for(identity, record["request"])
            record["replayed"] = reply is not None
        if reply is None:
            reply = await persons.open_client(config, ctx.resources).complete(request)
    except Exception as exc:
        record["error"] = redact(str(exc).strip() or type(exc).__name__)
        if isinstance(exc, NodeError):
            exc.metadata.setdefault(RECORDS_KEY, records)
        raise
    record["reply"] = reply_record(reply)
    return reply


def request_record(config: PersonConfig, request: LLMRequest) -> dict[str, Any]:
    """The request as recorded (and as a replayer sees it): everything sent but the key."""
    system = request.system if request.system is not None else config.system_prompt
    return redact_record(
        {
            "service": config.service,
            "provider": config.provider,
            "model": config.model,
            "base_url": config.base_url,
            "system": system or None,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "response_schema": request.response_schema,
            "schema_name": request.schema_name if request.response_schema is not None else None,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "timeout": request.timeout,
        }
    )


def reply_record(reply: LLMReply) -> dict[str, Any]:
    return redact_record(
        {
            "text": reply.text,
            "structured": reply.structured,
            "model": reply.model,
            "token_usage": reply.usage.model_dump(),
            "latency_ms": round(float(reply.latency_ms), 1),
            "mock": bool(reply.mock),
        }
    )


def call_metadata(person: Any, config: Any, reply: Any, prompt: str, sent: int) -> dict[str, Any]:
    """The summary keys person_job and llm_decision have always had (the full record is in
    `llm_calls`)."""
    return {
        "person_id": person.id,
        "person": person.label,
        "model": reply.model or config.model,
        "service": config.provider,
        "latency_ms": round(float(reply.latency_ms), 1),
        "token_usage": reply.usage,
        "prompt": preview(prompt),
        "memory": sent,
        "mock": bool(reply.mock),
    }


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def structured_value(reply: LLMReply) -> Any:
    """The object a text_format reply holds: the client's parsed value, else the reply's JSON
    text (a ```json fence around it is accepted); NodeError when it is not JSON."""
    if reply.structured is not None:
        return reply.structured
    text = reply.text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    try:
        return json.loads(fence.group(1) if fence else text)
    except ValueError:
        raise NodeError(
            f"the reply is not the JSON text_format asks for: {preview(' '.join(text.split()))!r}"
        ) from None


def _schema_name(schema: dict[str, Any] | None) -> str:
    if schema and isinstance(schema.get("title"), str) and schema["title"].strip():
        return str(schema["title"])
    return "response"
