"""What a person's prompt sees of a node's inputs, and the conversations that come in on arrows.

Template values (prompt.py), later ones winning: the `default` and `first` inputs spread into the
top level when they are dicts (JSON text decoded, `{"default": ...}` wrappers removed); every
input by its label (a conversation input `x` also gives `x_messages` and `x_last_message`); the
execution variables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dipeo_cli.memory import Conversation, is_conversation, last_text
from dipeo_cli.values import decode_json_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext


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


def merge_conversations(conversation: Conversation, ctx: NodeContext) -> int:
    """Add the messages of the node's conversation-state inputs to the conversation."""
    sources = {e.variable: ctx.graph.nodes[e.source].label for e in ctx.graph.incoming[ctx.node_id]}
    added = 0
    for label, value in ctx.inputs.items():
        if is_conversation(value):
            added += conversation.merge(value, source=sources.get(label, label))
    return added
