"""person_job: ask a person (an LLM) a prompt built from the node's inputs.

Properties (DiPeO's names; camelCase and `prompt` for first_only_prompt accepted):

    person              id or label of one of the diagram's persons
    first_only_prompt   the prompt of the node's first execution (when not empty)
    default_prompt      the prompt of every other execution (and of the first, failing the above)
    first_prompt_file / prompt_file   the same, from a file: an absolute path; relative to the
                        base directory when it starts with projects/ or files/; else
                        <diagram dir>/prompts/<name>, <base>/files/prompts/<name>, then
                        <diagram dir>/<name>. A file replaces the text property.
    memorize_to, at_most, ignore_person   what the person sees of the conversation (memory.py)
    text_format / text_format_file   a JSON schema (a mapping, or JSON/YAML text or file): the
                        reply is asked for as structured output and the output is the object
    batch, batch_input_key (items), batch_parallel (true), max_concurrent (10)   one call per
                        item of a list input (see below)
    max_iteration       enforced by the executor
    tools               not supported yet (a validation error)

Without any prompt property, an input labelled `prompt` is the prompt; with neither, the diagram
is rejected at validation. A prompt that renders empty makes no call and outputs "".

Template values (prompt.py), later ones winning: the `default` and `first` inputs spread into the
top level when they are dicts (JSON text decoded, `{"default": ...}` wrappers removed); every
input by its label (a conversation input `x` also gives `x_messages` and `x_last_message`); the
execution variables. The person's system prompt is sent (DiPeO's mid-2025 version did not).

Output: the reply text; the structured object with text_format; with an outgoing
conversation_state arrow, `{"messages", "last_message", "person_id", "model"}` (the messages
the person saw, its prompt and its reply; `last_message` is the reply's text). Metadata:
person_id, person, model, service, latency_ms, token_usage, prompt (its first 200
characters), memory (how many earlier messages were sent), mock, prompt_warnings (unknown
template names, which stay in the prompt as written), and llm_calls: the full record of every
call (request and reply, dipeo_cli.llm.call).

Batch: the items are the list at `batch_input_key` in the inputs or in the `default` input
(anything else is one item); each renders the prompt with `item`, `index` and, for a dict
item, its keys. All items see the conversation as it was before the batch; their exchanges are
added afterwards in input order. The output is the list of results in input order; if any item
fails the node fails, listing the failures, with the partial results in its metadata.

Persons are resolved at validation (so a missing key is reported by `dipeo validate`) and at
run time, with the run's `llm_mode` (dipeo_cli.llm.persons); calls go through
`dipeo_cli.llm.call`. An LLM error fails the node with the provider's message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dipeo_cli.errors import NodeError, warning
from dipeo_cli.llm.batch import BatchError, ask_each_item, batch_items
from dipeo_cli.llm.call import ask_person, call_metadata, llm_calls, structured_value
from dipeo_cli.llm.inputs import merge_conversations, template_values
from dipeo_cli.llm.persons import check_person, find_person, split_names
from dipeo_cli.llm.prompt_files import (
    diagram_dir_of,
    load_schema_file,
    parse_schema,
    read_prompt_file,
)
from dipeo_cli.llm.pydantic_schema import check_model_source, derive_schema, is_model_source
from dipeo_cli.memory import conversation_of, is_free_text, memory_keyword
from dipeo_cli.prompt import check_prompt, render_prompt
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import to_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

__all__ = ["BatchError", "PersonJobProps", "check_person_job", "person_job"]


class PersonJobProps(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    person: str | None = Field(
        default=None, validation_alias=AliasChoices("person", "person_id", "personId")
    )
    first_only_prompt: str = Field(
        default="", validation_alias=AliasChoices("first_only_prompt", "firstOnlyPrompt", "prompt")
    )
    first_prompt_file: str | None = None
    default_prompt: str = Field(
        default="", validation_alias=AliasChoices("default_prompt", "defaultPrompt")
    )
    prompt_file: str | None = None
    memorize_to: str | None = Field(
        default=None, validation_alias=AliasChoices("memorize_to", "memory_profile")
    )
    at_most: int | None = Field(default=None, ge=1)
    ignore_person: list[str] = []
    tools: Any = None
    text_format: dict[str, Any] | str | None = None  # a schema, or Pydantic model source
    text_format_file: str | None = None
    batch: bool = False
    batch_input_key: str = "items"
    batch_parallel: bool = True
    max_concurrent: int = Field(default=10, ge=1)

    _source: Any = PrivateAttr(default=None)  # the raw properties, to find the node in check()

    @model_validator(mode="wrap")
    @classmethod
    def _remember_source(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        model._source = data
        return model

    @field_validator("first_only_prompt", "default_prompt", mode="before")
    @classmethod
    def _prompt_text(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("first_only_prompt", "default_prompt")
    @classmethod
    def _prompt_syntax(cls, value: str) -> str:
        problem = check_prompt(value)
        if problem:
            raise PydanticCustomError(
                "prompt_syntax", "template error: {problem}", {"problem": problem}
            )
        return value

    @field_validator(
        "person", "first_prompt_file", "prompt_file", "text_format_file", "memorize_to"
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("ignore_person", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return split_names(value)

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: Any) -> Any:
        # not supported: check_person_job warns, and the node runs without them
        return None if value in (None, "", [], {}, "none") else value

    @field_validator("text_format", mode="before")
    @classmethod
    def _text_format(cls, value: Any) -> Any:
        if value is None or value == "" or value == {}:
            return None
        if is_model_source(value):  # DiPeO's Pydantic models: the schema is derived at run time
            problem = check_model_source(value, "text_format")
            if problem:
                raise PydanticCustomError("text_format", "{message}", {"message": problem})
            return value
        try:
            return parse_schema(value, "text_format")
        except ValueError as exc:
            raise PydanticCustomError("text_format", "{message}", {"message": str(exc)}) from None

    @field_validator("batch_input_key", mode="before")
    @classmethod
    def _batch_key(cls, value: Any) -> Any:
        return "items" if value is None or value == "" else value


def check_person_job(
    config: PersonJobProps, diagram: Any, registry: Any, options: Any = None
) -> list[str]:
    """The person exists and resolves (its key is there); prompt files exist and parse; some
    prompt is given; text_format_file is a JSON schema; ignore_person names persons."""
    from dipeo_cli.paths import base_dir

    problems = check_person(diagram.persons, config.person, getattr(options, "llm_mode", None))
    base, where = base_dir(), diagram_dir_of(diagram)
    for name in (config.first_prompt_file, config.prompt_file):
        if name:
            try:
                problem = check_prompt(read_prompt_file(name, where, base))
            except NodeError as exc:
                problems.append(str(exc))
            else:
                if problem:
                    problems.append(f"prompt file '{name}': template error: {problem}")
    has_prompt = any(
        (
            config.first_only_prompt.strip(),
            config.default_prompt.strip(),
            config.first_prompt_file,
            config.prompt_file,
        )
    )
    if not has_prompt and not _has_prompt_input(config, diagram):
        problems.append(
            "no prompt: set default_prompt or first_only_prompt (or prompt_file / "
            "first_prompt_file), or connect an input labelled 'prompt'"
        )
    if config.text_format_file:
        try:
            load_schema_file(config.text_format_file, where, base)
        except ValueError as exc:
            problems.append(str(exc))
    for name in config.ignore_person:
        try:
            find_person(diagram.persons, name)
        except NodeError as exc:
            problems.append(f"ignore_person: {exc}")
    if config.tools is not None:
        problems.append(
            warning(
                "tools (web search, image generation, ...) are not supported: the node runs "
                "without them (remove 'tools' to silence this)"
            )
        )
    return problems


def _has_prompt_input(config: PersonJobProps, diagram: Any) -> bool:
    node = next((n for n in diagram.nodes if n.props is config._source), None)
    if node is None:  # not found (a copy of the properties): do not guess, run time decides
        return True
    return any(a.target == node.id and a.label == "prompt" for a in diagram.arrows)


# -- the handler -----------------------------------------------------------------------------


@node_handler("person_job", props=PersonJobProps, check=check_person_job)
async def person_job(node: ExecutableNode[PersonJobProps], ctx: NodeContext) -> NodeOutput:
    config: PersonJobProps = node.config
    diagram = ctx.graph.diagram
    person = find_person(diagram.persons, config.person)
    ignore = {find_person(diagram.persons, name).id for name in config.ignore_person}
    conversation = conversation_of(ctx.resources)
    merge_conversations(conversation, ctx)
    values = template_values(ctx.inputs, ctx.variables)
    # DiPeO's conversation variables; an input or variable of the same name wins
    values.setdefault("global_conversation", [m.as_dict() for m in conversation.messages])
    values.setdefault("global_message_count", len(conversation))
    source, which = _prompt_source(config, ctx)
    schema = await _schema(config, ctx)
    history = conversation.select(
        person.id, config.memorize_to, at_most=config.at_most, ignore=ignore
    )
    notes = _memory_notes(config)

    if config.batch:
        items = batch_items(ctx.inputs, config.batch_input_key)
        return await ask_each_item(
            ctx,
            person,
            source,
            values,
            history,
            items,
            schema=schema,
            notes=notes,
            parallel=config.batch_parallel,
            limit=config.max_concurrent,
        )

    text, warnings = render_prompt(source, values)
    metadata: dict[str, Any] = {
        "person_id": person.id,
        "person": person.label,
        "prompt_source": which,
    }
    metadata.update(notes)
    if warnings:
        metadata["prompt_warnings"] = warnings
    if not text.strip():
        metadata["skipped_call"] = "the prompt is empty"
        return create_node_output({"default": ""}, metadata)

    reply, resolved = await ask_person(ctx, person, text, history, schema=schema)
    asked, answered = conversation.record(
        node=node.label,
        person_id=person.id,
        person_label=person.label,
        prompt=text,
        reply=reply.text,
    )
    metadata.update(call_metadata(person, resolved, reply, text, len(history)))
    metadata["llm_calls"] = llm_calls(ctx)
    result = structured_value(reply) if schema is not None else reply.text
    if any(e.content_type == "conversation_state" for e in ctx.graph.outgoing[node.id]):
        seen = [*history, asked, answered]
        value: Any = {
            "messages": [m.as_dict(person.id) for m in seen],
            "last_message": reply.text,
            "person_id": person.id,
            "model": metadata["model"],
        }
        if schema is not None:
            value["structured"] = result
    else:
        value = result
    return create_node_output({"default": value}, metadata)


def _memory_notes(config: PersonJobProps) -> dict[str, Any]:
    notes: dict[str, Any] = {"memorize_to": memory_keyword(config.memorize_to)}
    if is_free_text(config.memorize_to):
        notes["memory_note"] = (
            "memorize_to is a free-text criterion: every message was sent "
            "(DiPeO would have asked an LLM to select messages)"
        )
    return notes


def _prompt_source(config: PersonJobProps, ctx: NodeContext) -> tuple[str, str]:
    """(template, which property it came from) for this execution."""
    where = ctx.resources.diagram_dir
    if ctx.iteration == 1:
        if config.first_prompt_file:
            text = read_prompt_file(config.first_prompt_file, where, ctx.base_dir)
            if text.strip():
                return text, "first_prompt_file"
        elif config.first_only_prompt.strip():
            return config.first_only_prompt, "first_only_prompt"
    if config.prompt_file:
        return read_prompt_file(config.prompt_file, where, ctx.base_dir), "prompt_file"
    if (
        config.default_prompt.strip()
        or config.first_only_prompt.strip()
        or config.first_prompt_file
    ):
        return config.default_prompt, "default_prompt"
    if "prompt" in ctx.inputs:
        return to_text(ctx.inputs["prompt"]), "prompt input"
    raise NodeError(
        "no prompt: set default_prompt or first_only_prompt, or connect an input labelled 'prompt'"
    )


async def _schema(config: PersonJobProps, ctx: NodeContext) -> dict[str, Any] | None:
    found: dict[str, Any] | str | None = config.text_format
    what = "text_format"
    if found is None and config.text_format_file:
        what = f"text_format_file {config.text_format_file}"
        try:
            found = load_schema_file(
                config.text_format_file, ctx.resources.diagram_dir, ctx.base_dir
            )
        except ValueError as exc:
            raise NodeError(str(exc)) from None
    if isinstance(found, str):
        return await derive_schema(found, ctx, what)
    return found
