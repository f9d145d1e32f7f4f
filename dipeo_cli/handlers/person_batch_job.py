"""person_batch_job (DiPeO mid-2025): ask several persons the same prompt.

    person_ids          the persons (ids or labels; a list or comma-separated text)
    prompt              the prompt (DiPeO's template forms, with the values person_job uses);
                        the `default` input is appended as "\\n\\nInput: <input>" as DiPeO did
    parallel_execution  ask them concurrently (default true), at most `max_concurrent` (10)
    aggregate_results   output one text "Person <label>: <result>" per person, joined by a
                        blank line, instead of the dict {person label: result}
    memorize_to, at_most   what each person sees of the conversation, as for person_job

Every exchange is added to the execution's conversation, in the order of `person_ids`. Each
call is recorded in `llm_calls` (dipeo_cli.llm.call) with `batch_index` = the person's position
in `person_ids`. If a
person's call fails the node fails, naming it, with the other results in its metadata. Token
usage is summed over the calls.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.llm.batch import BatchError, failure_summary, run_items
from dipeo_cli.llm.call import ask_person, llm_calls, preview
from dipeo_cli.llm.inputs import merge_conversations, template_values, unwrap_default
from dipeo_cli.llm.persons import check_person, find_person, split_names
from dipeo_cli.memory import conversation_of, memory_keyword
from dipeo_cli.prompt import check_prompt, render_prompt
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, TokenUsage, create_node_output
from dipeo_cli.values import to_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode


class PersonBatchJobProps(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    person_ids: list[str] = Field(
        default=[], validation_alias=AliasChoices("person_ids", "personIds", "persons")
    )
    prompt: str = Field(default="", validation_alias=AliasChoices("prompt", "default_prompt"))
    parallel_execution: bool = True
    aggregate_results: bool = False
    memorize_to: str | None = None
    at_most: int | None = Field(default=None, ge=1)
    max_concurrent: int = Field(default=10, ge=1)

    @field_validator("person_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        return split_names(value)

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_text(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("prompt", "a person_batch_job needs a prompt")
        problem = check_prompt(value)
        if problem:
            raise PydanticCustomError(
                "prompt_syntax", "template error: {problem}", {"problem": problem}
            )
        return value


def check_person_batch_job(
    config: PersonBatchJobProps, diagram: Any, registry: Any, options: Any = None
) -> list[str]:
    if not config.person_ids:
        return ["person_ids: name at least one person"]
    problems: list[str] = []
    for ref in config.person_ids:
        problems += check_person(diagram.persons, ref, getattr(options, "llm_mode", None))
    return problems


@node_handler("person_batch_job", props=PersonBatchJobProps, check=check_person_batch_job)
async def person_batch_job(node: ExecutableNode[PersonBatchJobProps], ctx: NodeContext) -> NodeOutput:
    config: PersonBatchJobProps = node.config
    persons = [find_person(ctx.graph.diagram.persons, ref) for ref in config.person_ids]
    conversation = conversation_of(ctx.resources)
    merge_conversations(conversation, ctx)
    text, warnings = render_prompt(config.prompt, template_values(ctx.inputs, ctx.variables))
    if "default" in ctx.inputs:
        text = f"{text}\n\nInput: {to_text(unwrap_default(ctx.inputs['default']))}"
    histories = [
        conversation.select(p.id, config.memorize_to, at_most=config.at_most) for p in persons
    ]

    async def call(index: int) -> Any:
        return await ask_person(ctx, persons[index], text, histories[index], batch_index=index)

    started = time.perf_counter()
    outcomes = await run_items(len(persons), config.parallel_execution, config.max_concurrent, call)
    results: dict[str, Any] = {}
    failures: list[tuple[str, BaseException]] = []
    usage = TokenUsage()
    models: dict[str, str] = {}
    mock = False
    for person, (outcome, error) in zip(persons, outcomes, strict=True):
        if error is not None:
            failures.append((f"person '{person.label}'", error))
            continue
        reply, resolved = outcome
        results[person.label] = reply.text
        usage = usage + reply.usage
        models[person.label] = reply.model or resolved.model
        mock = mock or bool(reply.mock)
        conversation.record(
            node=node.label,
            person_id=person.id,
            person_label=person.label,
            prompt=text,
            reply=reply.text,
        )
    metadata: dict[str, Any] = {
        "person_ids": [p.id for p in persons],
        "models": models,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "token_usage": usage,
        "prompt": preview(text),
        "memorize_to": memory_keyword(config.memorize_to),
        "mock": mock,
        "llm_calls": llm_calls(ctx),
    }
    if warnings:
        metadata["prompt_warnings"] = warnings
    if failures:
        metadata["partial_results"] = results
        raise BatchError(failure_summary(failures, len(persons), "persons"), metadata)
    if config.aggregate_results:
        value: Any = "\n\n".join(f"Person {label}: {result}" for label, result in results.items())
    else:
        value = results
    return create_node_output({"default": value}, metadata)
