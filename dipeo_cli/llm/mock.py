"""The offline LLM: `--llm mock` or `service: mock`. Deterministic, no network, no key.

Tests of a diagram's logic depend on this format; changes go in the CHANGELOG.

Reply text (no response_schema):

    mock reply #<n> to: <prompt>

- `<n>` counts this person's calls in the run, from 1 (one counter per person id, shared by
  the nodes that use the person and by sub-diagram runs);
- `<prompt>` is the content of the last `user` message with every run of whitespace turned
  into one space, stripped, cut to its first 80 characters ("" when there is no user
  message).

With a response_schema, `structured` is the smallest-effort object that satisfies the schema
(see `sample_for_schema`) and the text is its JSON (`json.dumps`, default separators).

Usage counts whitespace-separated words: `input` = words of the system prompt and of every
message, `output` = words of the text, `total` = both, `cached` = None. The reply's model is
`mock:<person's model>`, latency_ms is 0.0 and `mock` is True.
"""

from __future__ import annotations

import json
from typing import Any

from dipeo_cli.llm.base import LLMReply, LLMRequest, PersonConfig
from dipeo_cli.state import TokenUsage

PROMPT_CHARS = 80
_MAX_DEPTH = 32


class MockClient:
    """One per person per run (`llm_client` caches it), so the reply numbers count per person."""

    def __init__(self, config: PersonConfig) -> None:
        self.config = config
        self.calls = 0

    async def complete(self, request: LLMRequest) -> LLMReply:
        self.calls += 1
        structured = None
        if request.response_schema is not None:
            structured = sample_for_schema(request.response_schema)
            text = json.dumps(structured)
        else:
            text = f"mock reply #{self.calls} to: {_last_user_text(request)}"
        system = request.system if request.system is not None else self.config.system_prompt
        words_in = _words(system or "") + sum(_words(m.content) for m in request.messages)
        words_out = _words(text)
        return LLMReply(
            text=text,
            usage=TokenUsage(input=words_in, output=words_out, total=words_in + words_out),
            model=f"mock:{self.config.model}",
            latency_ms=0.0,
            structured=structured,
            mock=True,
        )


def _last_user_text(request: LLMRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return " ".join(message.content.split())[:PROMPT_CHARS]
    return ""


def _words(text: str) -> int:
    return len(text.split())


def sample_for_schema(schema: dict[str, Any]) -> Any:
    """A value that satisfies the JSON schema, built without guessing:

    `const`, else `default`, else the first of `enum` or `examples`; else by `type` (the first
    non-null one when it is a list): object -> every declared property (required or not) with
    its own sample, array -> `minItems` samples of `items` (none by default), string -> ""
    (padded with "x" to `minLength`), integer/number -> 0 moved into `minimum`/
    `exclusiveMinimum`/`maximum`, boolean -> false, null -> null. `anyOf`/`oneOf` take their
    first choice, `allOf` merges its parts, local `$ref`s (`#/$defs/...`, `#/definitions/...`)
    are followed; a schema without a type is an empty object.
    """
    return _sample(schema, schema, 0)


def _sample(schema: Any, root: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _sample(_follow(ref, root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    for key in ("enum", "examples"):
        values = schema.get(key)
        if isinstance(values, list) and values:
            return values[0]
    for key in ("anyOf", "oneOf"):
        choices = schema.get(key)
        if isinstance(choices, list) and choices:
            return _sample(choices[0], root, depth + 1)
    parts = schema.get("allOf")
    if isinstance(parts, list) and parts:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in parts:
            part = (
                _follow(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            )
            if isinstance(part, dict):
                for key, value in part.items():
                    if key == "properties" and isinstance(value, dict):
                        merged["properties"] = {**merged.get("properties", {}), **value}
                    else:
                        merged.setdefault(key, value)
        return _sample(merged, root, depth + 1)

    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else None
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: _sample(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        count = int(schema.get("minItems") or 0)
        return [_sample(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "string":
        return "x" * int(schema.get("minLength") or 0)
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    value: float = 0
    if isinstance(schema.get("minimum"), (int, float)):
        value = max(value, schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), (int, float)):
        low = schema["exclusiveMinimum"]
        if value <= low:
            value = low + 1 if integer else low + 0.5
    if isinstance(schema.get("maximum"), (int, float)) and value > schema["maximum"]:
        value = schema["maximum"]
    if (
        isinstance(schema.get("exclusiveMaximum"), (int, float))
        and value >= schema["exclusiveMaximum"]
    ):
        value = schema["exclusiveMaximum"] - (1 if integer else 0.5)
    if integer:
        return int(value) if float(value).is_integer() else int(value) + 1
    return value


def _follow(ref: str, root: dict[str, Any]) -> Any:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node
