"""condition: choose a branch, and pass the input on along it unchanged.

The value goes out on the taken port only: `{"condtrue": data}` or `{"condfalse": data}`, where
data is the single input's value, or the dict of inputs by label when there are several. So a
value can travel round a loop through a condition. `metadata.result` holds the decision.

condition_type:
  custom                 `expression`, evaluated safely (dipeo_cli.expression). Names resolve to
                         inputs by label, then the keys of a `default` input that is a dict, then
                         the execution variables (inputs that are JSON text of an object or
                         array are decoded first). An expression that fails FAILS the node (DiPeO
                         silently took the false branch).
  detect_max_iterations  true when the nodes with a `max_iteration` that have run all reached it
                         (those of this condition's own loop if any has one, else the diagram's).
  check_nodes_executed   true when every node in `node_indices` (labels or ids) has run.
  llm_decision           rejected at validation until LLM persons are supported.

`expose_index_as: name` makes this condition's execution count minus one available as `name`
to its expression, sets it as an execution variable (as DiPeO did, so that later nodes see it),
and records it in the metadata.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.errors import NodeError
from dipeo_cli.expression import ExpressionError, UndefinedNameError, evaluate, parse_expression
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import decode_json_text

ConditionType = Literal["custom", "detect_max_iterations", "check_nodes_executed", "llm_decision"]


class ConditionProps(BaseModel):
    # Checks that involve two properties sit on the later one (`validate_default` so that they
    # run when it is absent), so that each problem names the property to fix.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    condition_type: ConditionType = "custom"
    expression: str = Field(default="", validate_default=True)
    node_indices: list[str] = Field(default=[], validate_default=True)
    expose_index_as: str | None = None
    skippable: bool = False

    @field_validator("condition_type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if value is None or value == "":
            return "custom"
        value = value.lower() if isinstance(value, str) else value
        if value == "llm_decision":
            raise PydanticCustomError(
                "not_supported", "llm_decision conditions need LLM persons, not supported yet"
            )
        return value

    @field_validator("expression", mode="before")
    @classmethod
    def _expression_text(cls, value: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, bool):  # YAML `expression: true`
            return "True" if value else "False"
        if isinstance(value, (int, float)):
            return str(value)
        return value

    @field_validator("expression")
    @classmethod
    def _expression_parses(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("condition_type") != "custom":
            return value
        if not value.strip():
            raise PydanticCustomError(
                "expression", "a custom condition needs an expression (for example: count >= 3)"
            )
        try:
            parse_expression(value)
        except ExpressionError as exc:
            raise PydanticCustomError(
                "expression",
                "{expression} is not a valid expression: {error}",
                {"expression": repr(value), "error": str(exc)},
            ) from None
        return value

    @field_validator("node_indices", mode="before")
    @classmethod
    def _indices(cls, value: Any) -> Any:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [str(item) for item in value]
        return value

    @field_validator("node_indices")
    @classmethod
    def _indices_needed(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("condition_type") == "check_nodes_executed" and not value:
            raise PydanticCustomError(
                "node_indices", "check_nodes_executed needs node_indices (node labels)"
            )
        return value


@node_handler("condition", props=ConditionProps, outputs=("condtrue", "condfalse"))
async def condition(node: Any, ctx: Any) -> NodeOutput:
    config: ConditionProps = node.config
    metadata: dict[str, Any] = {"condition_type": config.condition_type}
    index: int | None = None
    if config.expose_index_as:
        index = ctx.iteration - 1
        try:
            ctx.variables[config.expose_index_as] = index
        except TypeError:  # an executor may hand out read-only variables; the metadata still has it
            pass
        metadata["exposed"] = {config.expose_index_as: index}

    if config.condition_type == "custom":
        result = _evaluate_custom(config, ctx, index)
    elif config.condition_type == "detect_max_iterations":
        result = _max_iterations_reached(node, ctx)
    else:
        result = _nodes_executed(config.node_indices, ctx)

    inputs = ctx.inputs
    passthrough = next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)
    metadata["result"] = result
    port = "condtrue" if result else "condfalse"
    return create_node_output({port: passthrough}, metadata)


def _evaluate_custom(config: ConditionProps, ctx: Any, index: int | None) -> bool:
    namespace: dict[str, Any] = dict(ctx.variables)
    # Text that holds a JSON object or array is decoded, as code jobs and templates do: DiPeO's
    # exporter puts `content_type: raw_text` on every arrow, which turns dicts into JSON text.
    inputs = {label: decode_json_text(value) for label, value in ctx.inputs.items()}
    default = inputs.get("default")
    if isinstance(default, dict):
        namespace.update(default)
    namespace.update(inputs)
    if config.expose_index_as:
        namespace[config.expose_index_as] = index
    try:
        return bool(evaluate(config.expression, namespace))
    except UndefinedNameError as exc:
        raise ExpressionError(
            f"expression {config.expression!r}: {exc} "
            f"(inputs: {_names(ctx.inputs)}; variables: {_names(ctx.variables)})"
        ) from None
    except ExpressionError as exc:
        raise ExpressionError(f"expression {config.expression!r}: {exc}") from None


def _names(mapping: dict[str, Any]) -> str:
    names = list(mapping)
    if not names:
        return "none"
    shown = ", ".join(names[:10])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 10 else "")


def _max_iterations_reached(node: Any, ctx: Any) -> bool:
    graph = ctx.graph
    limited = [n for n in graph.nodes.values() if n.max_iteration is not None and n.id != node.id]
    own_loop = graph.loop_of.get(node.id)
    in_loop = [
        n for n in limited if graph.loop_of.get(n.id) == own_loop and n.id in graph.in_a_loop
    ]
    candidates = in_loop or limited
    ran = [n for n in candidates if ctx.execution_count(n.id) > 0]
    if not ran:
        return False
    return all(ctx.execution_count(n.id) >= n.max_iteration for n in ran)


def _nodes_executed(names: list[str], ctx: Any) -> bool:
    graph = ctx.graph
    result = True
    for name in names:
        target = graph.nodes.get(name) or graph.node_by_label(name)
        if target is None:
            known = ", ".join(n.label or n.id for n in graph.nodes.values())
            raise NodeError(f"node_indices names '{name}', which is not a node (nodes: {known})")
        if ctx.execution_count(target.id) < 1:
            result = False
    return result
