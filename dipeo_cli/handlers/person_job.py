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
template names, which stay in the prompt as written).

Batch: the items are the list at `batch_input_key` in the inputs or in the `default` input
(anything else is one item); each renders the prompt with `item`, `index` and, for a dict
item, its keys. All items see the conversation as it was before the batch; their exchanges are
added afterwards in input order. The output is the list of results in input order; if any item
fails the node fails, listing the failures, with the partial results in its metadata.

The client comes from `dipeo_cli.llm` (`resolve_person` at validation, so a missing key is
reported by `dipeo validate`; `llm_client` at run time); the resolved persons are cached for
the run. An LLM error fails the node with the provider's message.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

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

from dipeo_cli.errors import DipeoError, NodeError
from dipeo_cli.memory import (
    Conversation,
    Message,
    as_chat,
    conversation_of,
    is_conversation,
    is_free_text,
    last_text,
    memory_keyword,
)
from dipeo_cli.prompt import check_prompt, render_prompt
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, TokenUsage, create_node_output
from dipeo_cli.values import decode_json_text, to_text

PREVIEW_CHARS = 200
_PYTHON_SOURCE = re.compile(
    r"^\s*(?:class\s+\w+|from\s+\w[\w.]*\s+import|import\s+\w|def\s+\w)", re.M
)
_SCHEMA_KEYS = ("type", "properties", "$ref", "anyOf", "oneOf", "allOf", "enum", "items", "const")


class BatchError(NodeError):
    """Some items of a batch failed; `metadata` keeps the partial results for the history."""


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
    text_format: dict[str, Any] | None = None
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
        if value not in (None, "", [], {}, "none"):
            raise PydanticCustomError(
                "tools", "tools are not supported yet (remove 'tools' from this node)"
            )
        return None

    @field_validator("text_format", mode="before")
    @classmethod
    def _text_format(cls, value: Any) -> Any:
        if value is None or value == "" or value == {}:
            return None
        try:
            return parse_schema(value, "text_format")
        except ValueError as exc:
            raise PydanticCustomError("text_format", "{message}", {"message": str(exc)}) from None

    @field_validator("batch_input_key", mode="before")
    @classmethod
    def _batch_key(cls, value: Any) -> Any:
        return "items" if value is None or value == "" else value


def split_names(value: Any) -> Any:
    """`"a, b"` or `["a", "b"]` -> `["a", "b"]`; None/"" -> []."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    return value


# -- persons ----------------------------------------------------------------------------------


def find_person(persons: dict[str, Any], ref: str | None) -> Any:
    """The diagram's person with id `ref`, else with label `ref`; NodeError listing them."""
    if ref:
        if ref in persons:
            return persons[ref]
        for person in persons.values():
            if person.label == ref:
                return person
    known = ", ".join(sorted(p.label or p.id for p in persons.values()))
    hint = (
        f"persons: {known}" if persons else "the diagram defines no persons: add a persons: section"
    )
    if not ref:
        raise NodeError(f"no person given; set person ({hint})")
    raise NodeError(f"person '{ref}' is not defined ({hint})")


def resolve_config(person: Any, base_dir: Path) -> Any:
    """The person's PersonConfig (dipeo_cli.llm.resolve_person, which honours `--llm mock`
    through $DIPEO_LLM; raises a DipeoError)."""
    from dipeo_cli.llm import resolve_person

    return resolve_person(person, base_dir=base_dir)


def open_client(config: Any, resources: Any) -> Any:
    """The LLMClient for a resolved person (cached by dipeo_cli.llm for the run)."""
    from dipeo_cli.llm import llm_client

    return llm_client(config, resources)


def check_person(persons: dict[str, Any], ref: str | None) -> list[str]:
    """Compile-time: the person exists and can be called (its service is known, its key found)."""
    from dipeo_cli.paths import base_dir

    try:
        person = find_person(persons, ref)
    except NodeError as exc:
        return [str(exc)]
    try:
        resolve_config(person, base_dir())
    except ImportError:  # pragma: no cover - a build without the LLM services
        return []
    except DipeoError as exc:
        return [str(exc)]
    return []


def person_config(ctx: Any, person: Any) -> Any:
    """The person's PersonConfig, resolved once per run."""
    cache: dict[str, Any] = ctx.resources.service("person_configs", dict, lambda _: None)
    if person.id not in cache:
        try:
            cache[person.id] = resolve_config(person, ctx.base_dir)
        except DipeoError as exc:
            raise NodeError(str(exc)) from None
    return cache[person.id]


async def ask(
    ctx: Any,
    person: Any,
    prompt: str,
    history: list[Message],
    *,
    schema: dict[str, Any] | None = None,
    system_suffix: str | None = None,
) -> tuple[Any, Any]:
    """Send `history` (as the person sees it) and `prompt` to the person; (LLMReply, config)."""
    from dipeo_cli.llm.base import LLMMessage, LLMRequest

    config = person_config(ctx, person)
    client = open_client(config, ctx.resources)
    messages = [LLMMessage(role, content) for role, content in as_chat(history, person.id)]
    messages.append(LLMMessage("user", prompt))
    system = config.system_prompt if config.system_prompt else person.system_prompt
    if system_suffix:
        system = f"{system}\n\n{system_suffix}" if system else system_suffix
    request = LLMRequest(
        messages=tuple(messages),
        system=system or None,
        response_schema=schema,
        schema_name=_schema_name(schema),
    )
    reply = await client.complete(request)
    return reply, config


def call_metadata(person: Any, config: Any, reply: Any, prompt: str, sent: int) -> dict[str, Any]:
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


def _schema_name(schema: dict[str, Any] | None) -> str:
    if schema and isinstance(schema.get("title"), str) and schema["title"].strip():
        return str(schema["title"])
    return "response"


# -- files and schemas ------------------------------------------------------------------------


def prompt_file_places(name: str, diagram_dir: Path, base: Path) -> list[Path]:
    """Where a prompt file is looked for, in order (DiPeO's order, then the diagram folder)."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return [path]
    places: list[Path] = []
    if name.startswith(("projects/", "files/")):
        places.append(base / name)
    places += [
        diagram_dir / "prompts" / name,
        base / "files" / "prompts" / name,
        diagram_dir / name,
    ]
    return places


def find_prompt_file(name: str, diagram_dir: Path, base: Path) -> Path:
    """The prompt file `name`; NodeError listing the places tried when there is none."""
    places = prompt_file_places(name, diagram_dir, base)
    for place in places:
        if place.is_file():
            return place
    raise NodeError(f"prompt file '{name}' not found (looked in {', '.join(map(str, places))})")


def read_prompt_file(name: str, diagram_dir: Path, base: Path) -> str:
    path = find_prompt_file(name, diagram_dir, base)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NodeError(f"cannot read prompt file {path}: {exc}") from None


def parse_schema(value: Any, what: str) -> dict[str, Any]:
    """A JSON schema from a mapping or JSON/YAML text; ValueError saying what is wrong (Python
    source, as DiPeO's Pydantic-model text_format, is refused: we never run diagram code to
    validate it)."""
    if isinstance(value, str):
        text = value.strip()
        if _PYTHON_SOURCE.search(text) and not text.startswith("{"):
            raise ValueError(
                f"{what} holds Python source (a Pydantic model, as DiPeO used); dipeo needs a "
                "JSON schema instead: write it as a mapping, or print "
                "YourModel.model_json_schema() once and use that"
            )
        try:
            parsed = json.loads(text)
        except ValueError:
            import yaml

            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"{what} is neither JSON nor YAML: {exc}") from None
        value = parsed
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON schema (a mapping), got {type(value).__name__}")
    if not any(key in value for key in _SCHEMA_KEYS):
        keys = ", ".join(map(str, list(value)[:8])) or "none"
        raise ValueError(
            f"{what} must be a JSON schema with 'type' and 'properties' (got keys: {keys})"
        )
    import jsonschema

    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        raise ValueError(f"{what} is not a valid JSON schema at {where}: {exc.message}") from None
    return value


def schema_file_places(name: str, diagram_dir: Path, base: Path) -> list[Path]:
    path = Path(name).expanduser()
    return [path] if path.is_absolute() else [base / name, diagram_dir / name]


def load_schema_file(name: str, diagram_dir: Path, base: Path) -> dict[str, Any]:
    """text_format_file: a JSON or YAML schema file; ValueError when missing or not a schema."""
    places = schema_file_places(name, diagram_dir, base)
    for place in places:
        if place.is_file():
            if place.suffix == ".py":
                return parse_schema("class Model: ...", f"text_format_file {name}")
            try:
                text = place.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read text_format_file {place}: {exc}") from None
            return parse_schema(text, f"text_format_file {name}")
    raise ValueError(
        f"text_format_file '{name}' not found (looked in {', '.join(map(str, places))})"
    )


def diagram_dir_of(diagram: Any) -> Path:
    return Path(diagram.file).resolve().parent if diagram.file else Path.cwd()


# -- compile-time check -----------------------------------------------------------------------


def check_person_job(config: PersonJobProps, diagram: Any, registry: Any) -> list[str]:
    """The person exists and resolves (its key is there); prompt files exist and parse; some
    prompt is given; text_format_file is a JSON schema; ignore_person names persons."""
    from dipeo_cli.paths import base_dir

    problems = check_person(diagram.persons, config.person)
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
    return problems


def _has_prompt_input(config: PersonJobProps, diagram: Any) -> bool:
    node = next((n for n in diagram.nodes if n.props is config._source), None)
    if node is None:  # not found (a copy of the properties): do not guess, run time decides
        return True
    return any(a.target == node.id and a.label == "prompt" for a in diagram.arrows)


# -- template values --------------------------------------------------------------------------


def unwrap_default(value: Any) -> Any:
    """JSON text decoded, and `{"default": x}` wrappers (as start nodes emit) removed."""
    value = decode_json_text(value)
    while isinstance(value, dict) and len(value) == 1 and "default" in value:
        value = decode_json_text(value["default"])
    return value


def template_values(inputs: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    """What prompt templates see (module docstring), inputs as they arrived."""
    values: dict[str, Any] = {}
    decoded: dict[str, Any] = {}
    for label, value in inputs.items():
        decoded[label] = (
            unwrap_default(value) if label in ("default", "first") else decode_json_text(value)
        )
    for label in ("default", "first"):
        if isinstance(decoded.get(label), dict):
            values.update(decoded[label])
    for label, value in decoded.items():
        values[label] = value
        if is_conversation(value):
            values[f"{label}_messages"] = value["messages"]
            values[f"{label}_last_message"] = last_text(value)
    values.update(variables)
    return values


def merge_conversations(conversation: Conversation, ctx: Any) -> int:
    """Add the messages of the node's conversation-state inputs to the conversation."""
    sources = {e.variable: ctx.graph.nodes[e.source].label for e in ctx.graph.incoming[ctx.node_id]}
    added = 0
    for label, value in ctx.inputs.items():
        if is_conversation(value):
            added += conversation.merge(value, source=sources.get(label, label))
    return added


# -- the handler ------------------------------------------------------------------------------


@node_handler("person_job", props=PersonJobProps, check=check_person_job)
async def person_job(node: Any, ctx: Any) -> NodeOutput:
    config: PersonJobProps = node.config
    diagram = ctx.graph.diagram
    person = find_person(diagram.persons, config.person)
    ignore = {find_person(diagram.persons, name).id for name in config.ignore_person}
    conversation = conversation_of(ctx.resources)
    merge_conversations(conversation, ctx)
    values = template_values(ctx.inputs, ctx.variables)
    source, which = _prompt_source(config, ctx)
    schema = _schema(config, ctx)
    history = conversation.select(
        person.id, config.memorize_to, at_most=config.at_most, ignore=ignore
    )
    notes = _memory_notes(config)

    if config.batch:
        return await _run_batch(node, ctx, config, person, source, values, history, schema, notes)

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

    reply, resolved = await ask(ctx, person, text, history, schema=schema)
    asked, answered = conversation.record(
        node=node.label,
        person_id=person.id,
        person_label=person.label,
        prompt=text,
        reply=reply.text,
    )
    metadata.update(call_metadata(person, resolved, reply, text, len(history)))
    result = _result(reply, schema) if schema is not None else reply.text
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


def _prompt_source(config: PersonJobProps, ctx: Any) -> tuple[str, str]:
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


def _schema(config: PersonJobProps, ctx: Any) -> dict[str, Any] | None:
    if config.text_format is not None:
        return config.text_format
    if config.text_format_file:
        try:
            return load_schema_file(
                config.text_format_file, ctx.resources.diagram_dir, ctx.base_dir
            )
        except ValueError as exc:
            raise NodeError(str(exc)) from None
    return None


def _result(reply: Any, schema: dict[str, Any]) -> Any:
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


# -- batch ------------------------------------------------------------------------------------


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
    count: int, parallel: bool, limit: int, call: Any
) -> list[tuple[Any, BaseException | None]]:
    """Run `call(index)` for every index, concurrently (at most `limit` at once) or one by
    one; (result, error) per index, in order."""
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


async def _run_batch(
    node: Any,
    ctx: Any,
    config: PersonJobProps,
    person: Any,
    source: str,
    values: dict[str, Any],
    history: list[Message],
    schema: dict[str, Any] | None,
    notes: dict[str, Any],
) -> NodeOutput:
    items = batch_items(ctx.inputs, config.batch_input_key)
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
        return await ask(ctx, person, prompts[index], history, schema=schema)

    started = time.perf_counter()
    outcomes = await run_items(len(items), config.batch_parallel, config.max_concurrent, call)
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
                results.append(_result(reply, schema) if schema is not None else reply.text)
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
                    node=node.label,
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
    }
    if warnings:
        metadata["prompt_warnings"] = list(dict.fromkeys(warnings))
    if failures:
        metadata["partial_results"] = results
        raise BatchError(failure_summary(failures, len(items), "items"), metadata)
    return create_node_output({"default": results}, metadata)
