"""start: where an execution begins.

Its `default` output is `{**custom_data, **variables}`: the execution variables (`--input-data`,
`--inputs`, `-i`) override the diagram's `custom_data` (DiPeO let custom_data win; a value given
on the command line should beat a default written in the file).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode


class StartProps(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    trigger_mode: Literal["none", "manual", "hook"] = "none"
    custom_data: dict[str, Any] = {}
    output_data_structure: Any = None
    hook_event: str | None = Field(default=None, validate_default=True)
    hook_filters: Any = None

    @field_validator("trigger_mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if value is None or value == "":
            return "none"
        return value.lower() if isinstance(value, str) else value

    @field_validator("custom_data", mode="before")
    @classmethod
    def _custom_data(cls, value: Any) -> Any:
        if value is None or value == "":
            return {}
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise PydanticCustomError(
                    "custom_data", "custom_data must be a mapping (or a JSON object as text)"
                ) from None
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "custom_data",
                "custom_data must be a mapping, got {kind}",
                {"kind": type(value).__name__},
            )
        return value

    @field_validator("hook_event")
    @classmethod
    def _hook_needs_event(cls, value: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("trigger_mode") == "hook" and not value:
            raise PydanticCustomError("hook_event", "trigger_mode 'hook' needs a hook_event")
        return value


@node_handler("start", props=StartProps, inputs=(), outputs=("default",))
async def start(node: ExecutableNode[StartProps], ctx: NodeContext) -> NodeOutput:
    config: StartProps = node.config
    value = {**config.custom_data, **ctx.variables}
    return create_node_output({"default": value}, {"trigger_mode": config.trigger_mode})
