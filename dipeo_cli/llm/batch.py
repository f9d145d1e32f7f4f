"""Running one call per item (person_job batches, person_batch_job's persons) and reporting
the items that failed together."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dipeo_cli.errors import NodeError
from dipeo_cli.llm.call import ask_person, llm_calls, preview, structured_value
from dipeo_cli.llm.inputs import unwrap_default
from dipeo_cli.memory import Message, conversation_of
from dipeo_cli.prompt import render_prompt
from dipeo_cli.state import NodeOutput, TokenUsage, create_node_output
from dipeo_cli.values import decode_json_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext


class BatchError(NodeError):
    """Some items of a batch failed; `metadata` keeps the partial results for the history."""


def batch_items(inputs: dict[str, Any], key: str) -> list[Any]:
    """The items at `key` in the inputs, or in the `default` input; a non-list is one item."""
    if key in inputs:
        found = decode_json_text(inputs[key])
    else:
        default = unwrap_default(inputs.get("default"))
        if not isinstance(default, dict) or key not in default:
            names = ", ".join(inputs) or "none"
            raise NodeError(
                f"batch: no '{key}' in the inputs or in the default input (inputs: {names}); "
                "set batch_input_key"
            )
        found = decode_json_text(default[key])
    return list(found) if isinstance(found, (list, tuple)) else [found]


async def run_items(
    count: int, parallel: bool, limit: int, call: Callable[[int], Awaitable[Any]]
) -> list[tuple[Any, BaseException | None]]:
    """Run `call(index)` for every index, concurrently (at most `limit` at once, started in
    index order) or one by one; (result, error) per index, in order."""
    outcomes: list[tuple[Any, BaseException | None]] = [(None, None)] * count
    semaphore = asyncio.Semaphore(limit)

    async def one(index: int) -> None:
        async with semaphore:
            try:
                outcomes[index] = (await call(index), None)
            except Exception as exc:  # reported per item; the node decides what it means
                outcomes[index] = (None, exc)

    if parallel:
        await asyncio.gather(*(one(i) for i in range(count)))
    else:
        for index in range(count):
            await one(index)
    return outcomes


def describe_error(exc: BaseException) -> str:
    message = str(exc).strip()
    if isinstance(exc, NodeError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def failure_summary(failures: list[tuple[str, BaseException]], total: int, what: str) -> str:
    shown = "; ".join(f"{name}: {describe_error(exc)}" for name, exc in failures[:5])
    more = f"; ... ({len(failures)} in all)" if len(failures) > 5 else ""
    return f"{len(failures)} of {total} {what} failed: {shown}{more}"


async def ask_each_item(
    ctx: NodeContext,
    person: Any,
    source: str,
    values: dict[str, Any],
    history: list[Message],
    items: list[Any],
    *,
    schema: dict[str, Any] | None,
    notes: dict[str, Any],
    parallel: bool,
    limit: int,
) -> NodeOutput:
    """person_job's batch: the prompt `source` rendered per item (with `item`, `index` and a
    dict item's keys over `values`) and asked with the same `history`, calls recorded with
    their batch index; exchanges added to the conversation afterwards in input order. The
    output is the results in input order; BatchError (partial results in its metadata) when
    an item failed."""
    prompts: list[str] = []
    warnings: list[str] = []
    for index, item in enumerate(items):
        scope = dict(values)
        if isinstance(item, dict):
            scope.update(item)
        scope.update({"item": item, "index": index})
        text, found = render_prompt(source, scope)
        prompts.append(text)
        warnings += found

    async def call(index: int) -> Any:
        if not prompts[index].strip():
            return None
        return await ask_person(
            ctx, person, prompts[index], history, schema=schema, batch_index=index
        )

    started = time.perf_counter()
    outcomes = await run_items(len(items), parallel, limit, call)
    conversation = conversation_of(ctx.resources)
    results: list[Any] = []
    failures: list[tuple[str, BaseException]] = []
    usage = TokenUsage()
    model = service = None
    mock = False
    for index, (outcome, error) in enumerate(outcomes):
        if error is None and outcome is not None:
            reply, resolved = outcome
            try:
                results.append(structured_value(reply) if schema is not None else reply.text)
            except NodeError as exc:
                error = exc
            usage = usage + reply.usage
            model, service, mock = (
                reply.model or resolved.model,
                resolved.provider,
                mock or reply.mock,
            )
            if error is None:
                conversation.record(
                    node=ctx.node.label,
                    person_id=person.id,
                    person_label=person.label,
                    prompt=prompts[index],
                    reply=reply.text,
                )
        elif error is None:
            results.append("")
        if error is not None:
            results.append(None)
            failures.append((f"item {index}", error))
    metadata: dict[str, Any] = {
        "person_id": person.id,
        "person": person.label,
        "model": model,
        "service": service,
        "batch_size": len(items),
        "succeeded": len(items) - len(failures),
        "failed": len(failures),
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "token_usage": usage,
        "prompt": preview(prompts[0]) if prompts else "",
        "memory": len(history),
        "mock": mock,
        **notes,
        "llm_calls": llm_calls(ctx),
    }
    if warnings:
        metadata["prompt_warnings"] = list(dict.fromkeys(warnings))
    if failures:
        metadata["partial_results"] = results
        raise BatchError(failure_summary(failures, len(items), "items"), metadata)
    return create_node_output({"default": results}, metadata)
