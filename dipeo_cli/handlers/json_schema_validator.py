"""json_schema_validator: check data against a JSON Schema (the `jsonschema` library).

The schema is `schema_path` (a .json, .yaml or .yml file relative to the base directory) or the
inline `json_schema` (a mapping, or JSON/YAML text of one): exactly one of them, checked by
`dipeo validate`, which also rejects an inline schema that is not a valid schema. The validator
class follows the schema's `$schema` (draft 4 to 2020-12), draft 2020-12 when it has none.
`format` is an annotation only, as the JSON Schema specification says.

The data is the file `data_path` (json or yaml, relative to the base directory) when given;
otherwise the input: one input is its value (text holding a JSON object or array is decoded),
several are a dict keyed by arrow label.

    strict_mode (alias strict)  report every error; otherwise only the most relevant one
    error_on_extra              every object schema that does not say otherwise gets
                                `additionalProperties: false`, at the top level and nested
                                (properties, items, $defs, anyOf/oneOf, ...), as DiPeO did;
                                unlike DiPeO, `allOf` branches are left alone, because closing
                                each branch would reject the properties of the others

A failed check fails the node: "validation failed: $.items[2].name: 'name' is a required
property; ..." with each error's JSON path and message (metadata `errors` holds them as a
list). Success passes the data on as the `default` output, metadata `{"valid": true, ...}`.
jsonschema is imported on first use, so diagrams without this node start as fast as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.errors import NodeError
from dipeo_cli.files import display_path, parse_text, read_text, resolve_path
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import decode_json_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MESSAGE_CHARS = 300  # jsonschema messages quote the instance, which may be huge


class JsonSchemaValidatorProps(BaseModel):
    # Checks that involve two properties sit on the later one (`validate_default`), so that the
    # problem names the property to fix.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_path: str | None = Field(
        default=None, validation_alias=AliasChoices("schema_path", "schemaPath")
    )
    json_schema: dict[str, Any] | bool | None = Field(
        default=None,
        validation_alias=AliasChoices("json_schema", "jsonSchema", "schema"),
        validate_default=True,
    )
    data_path: str | None = Field(
        default=None, validation_alias=AliasChoices("data_path", "dataPath")
    )
    strict_mode: bool = Field(
        default=False, validation_alias=AliasChoices("strict_mode", "strict", "strictMode")
    )
    error_on_extra: bool = Field(
        default=False, validation_alias=AliasChoices("error_on_extra", "errorOnExtra")
    )

    @field_validator("schema_path", "data_path", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("strict_mode", "error_on_extra", mode="before")
    @classmethod
    def _flag(cls, value: Any) -> Any:
        return False if value is None or value == "" else value

    @field_validator("json_schema", mode="before")
    @classmethod
    def _inline_text(cls, value: Any) -> Any:
        if value is None or value == "" or value == {}:
            return None
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value)  # JSON is YAML too
            except yaml.YAMLError as exc:
                raise PydanticCustomError(
                    "json_schema", "json_schema is neither JSON nor YAML: {error}", {"error": exc}
                ) from None
        if not isinstance(value, (dict, bool)):
            raise PydanticCustomError(
                "json_schema",
                "json_schema must be a schema object, got {kind}",
                {"kind": type(value).__name__},
            )
        return value

    @field_validator("json_schema")
    @classmethod
    def _one_schema(cls, value: Any, info: ValidationInfo) -> Any:
        has_path = info.data.get("schema_path") is not None
        if value is None and not has_path:
            raise PydanticCustomError(
                "json_schema",
                "a json_schema_validator needs a schema_path or an inline json_schema",
            )
        if value is not None and has_path:
            raise PydanticCustomError("json_schema", "give schema_path or json_schema, not both")
        if value is not None:
            problem = schema_problem(value)
            if problem:
                raise PydanticCustomError(
                    "json_schema",
                    "json_schema is not a valid schema: {problem}",
                    {"problem": problem},
                )
        return value


def schema_problem(schema: Any) -> str | None:
    """Why `schema` is not a valid JSON Schema for its draft, or None when it is."""
    from jsonschema.exceptions import SchemaError

    try:
        validator_class(schema).check_schema(schema)
    except SchemaError as exc:
        return f"{json_path(exc.absolute_path)}: {_short(exc.message)}"
    return None


def validator_class(schema: Any) -> Any:
    """The validator class for the schema's `$schema`; draft 2020-12 when it names none."""
    from jsonschema.validators import Draft202012Validator, validator_for

    return validator_for(schema, default=Draft202012Validator)


def json_path(parts: Iterable[Any]) -> str:
    """`['items', 2, 'name']` -> `$.items[2].name`; keys that are not identifiers are quoted."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(str(part)):
            text += f".{part}"
        else:
            text += f"[{json.dumps(str(part), ensure_ascii=False)}]"
    return text


def close_objects(schema: Any) -> Any:
    """A copy of `schema` where every object schema without `additionalProperties` (or
    `unevaluatedProperties`) forbids extra properties. Iterative, and `allOf` branches are left
    open (closing each would reject the others' properties)."""
    if not isinstance(schema, dict):
        return schema
    root = json.loads(json.dumps(schema))  # deep copy; schemas are JSON
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
        if (is_object or (kind is None and "properties" in node)) and not (
            "additionalProperties" in node or "unevaluatedProperties" in node
        ):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas"):
            value = node.get(key)
            if isinstance(value, dict):
                stack.extend(value.values())
        for key in ("items", "additionalItems", "contains", "additionalProperties", "not"):
            value = node.get(key)
            if isinstance(value, dict):
                stack.append(value)
            elif key == "items" and isinstance(value, list):  # draft 4-7 tuple form
                stack.extend(value)
        for key in ("prefixItems", "anyOf", "oneOf"):
            value = node.get(key)
            if isinstance(value, list):
                stack.extend(value)
        for key in ("if", "then", "else"):
            if isinstance(node.get(key), dict):
                stack.append(node[key])
    return root


def _short(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= _MESSAGE_CHARS else message[: _MESSAGE_CHARS - 1] + "…"


def _load_file(base_dir: Path, name: str) -> tuple[Any, str]:
    path = resolve_path(base_dir, name)
    shown = display_path(base_dir, path)
    suffix = path.suffix.lower()
    fmt = "yaml" if suffix in (".yaml", ".yml") else "json"
    text = read_text(path, shown)
    if not text.strip():
        raise NodeError(f"{shown} is empty")
    return parse_text(text, fmt, shown), shown


def _data_from_inputs(inputs: dict[str, Any]) -> Any:
    if not inputs:
        raise NodeError("nothing to validate: connect an input or set data_path")
    if len(inputs) == 1:
        return decode_json_text(next(iter(inputs.values())))
    return {label: decode_json_text(value) for label, value in inputs.items()}


@node_handler("json_schema_validator", props=JsonSchemaValidatorProps, outputs=("default",))
async def json_schema_validator(node: ExecutableNode[JsonSchemaValidatorProps], ctx: NodeContext) -> NodeOutput:
    config: JsonSchemaValidatorProps = node.config
    metadata: dict[str, Any] = {"strict_mode": config.strict_mode}
    if config.json_schema is not None:
        schema = config.json_schema
    else:
        assert config.schema_path is not None
        schema, shown = _load_file(ctx.base_dir, config.schema_path)
        metadata["schema_path"] = shown
        if not isinstance(schema, (dict, bool)):
            raise NodeError(f"{shown} does not hold a schema object")
        problem = schema_problem(schema)
        if problem:
            raise NodeError(f"{shown} is not a valid JSON Schema: {problem}")
    if config.error_on_extra:
        schema = close_objects(schema)

    if config.data_path:
        data, shown = _load_file(ctx.base_dir, config.data_path)
        metadata["data_path"] = shown
    else:
        data = _data_from_inputs(ctx.inputs)

    validator = validator_class(schema)(schema)
    if config.strict_mode:
        errors = sorted(
            validator.iter_errors(data),
            key=lambda e: ([str(p) for p in e.absolute_path], e.message),
        )
    else:
        from jsonschema.exceptions import best_match

        first = best_match(validator.iter_errors(data))
        errors = [first] if first is not None else []
    if errors:
        listed = [f"{json_path(e.absolute_path)}: {_short(e.message)}" for e in errors]
        raise NodeError(
            "validation failed: " + "; ".join(listed),
            {**metadata, "valid": False, "errors": listed},
        )
    return create_node_output({"default": data}, {**metadata, "valid": True})
