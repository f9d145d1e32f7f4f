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
  llm_decision           asks `person` the `judge_by` prompt (or the file `judge_by_file`, found
                         as person_job prompt files are), rendered with the inputs and the
                         variables as person_job prompts are. When the prompt uses no template
                         name at all, the input is appended ("Input:" and its text), so the judge
                         sees what it judges (DiPeO sent the bare question). The person sees the
                         conversation per `memorize_to` (default GOLDFISH: nothing) and `at_most`.
                         The reply decides (`parse_decision`): a JSON {"decision": ...}; else a
                         reply starting with yes/true or no/false; else the count of yes/true/
                         correct/pass/valid words against no/false/incorrect/fail/invalid ones;
                         a tie is false, with metadata decision_reason "ambiguous reply". An LLM
                         error fails the node (DiPeO silently took the false branch). Metadata:
                         decision_reason, reply, person_id, model, token_usage, latency_ms,
                         llm_calls (the full record, dipeo_cli.llm.call).

`expose_index_as: name` makes this condition's execution count minus one available as `name`
to its expression, sets it as an execution variable (as DiPeO did, so that later nodes see it),
and records it in the metadata.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.errors import NodeError
from dipeo_cli.expression import UndefinedNameError, evaluate
from dipeo_cli.expression_syntax import ExpressionError, parse_expression
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import decode_json_text, to_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

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
    # llm_decision
    person: str | None = None
    judge_by: str = ""
    judge_by_file: str | None = None
    memorize_to: str | None = "GOLDFISH"
    at_most: int | None = Field(default=None, ge=1)

    @field_validator("condition_type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if value is None or value == "":
            return "custom"
        return value.lower() if isinstance(value, str) else value

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

    @field_validator("person", "judge_by_file")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("judge_by", mode="before")
    @classmethod
    def _judge_text(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("memorize_to", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        return "GOLDFISH" if value is None or value == "" else value


def check_condition(
    config: ConditionProps, diagram: Any, registry: Any, options: Any = None
) -> list[str]:
    """Compile-time checks of llm_decision: the person resolves, the question is there."""
    if config.condition_type != "llm_decision":
        return []
    from dipeo_cli.llm.persons import check_person
    from dipeo_cli.llm.prompt_files import diagram_dir_of, read_prompt_file
    from dipeo_cli.paths import base_dir
    from dipeo_cli.prompt import check_prompt

    problems = check_person(diagram.persons, config.person, getattr(options, "llm_mode", None))
    if config.judge_by_file:
        try:
            text = read_prompt_file(config.judge_by_file, diagram_dir_of(diagram), base_dir())
        except NodeError as exc:
            problems.append(f"judge_by_file: {exc}")
            text = ""
    elif config.judge_by.strip():
        text = config.judge_by
    else:
        problems.append("an llm_decision condition needs judge_by (the question) or judge_by_file")
        text = ""
    problem = check_prompt(text)
    if problem:
        problems.append(f"judge_by: template error: {problem}")
    return problems


@node_handler(
    "condition", props=ConditionProps, outputs=("condtrue", "condfalse"), check=check_condition
)
async def condition(node: ExecutableNode[ConditionProps], ctx: NodeContext) -> NodeOutput:
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
    elif config.condition_type == "llm_decision":
        result = await _llm_decision(node, config, ctx, metadata)
    else:
        result = _nodes_executed(config.node_indices, ctx)

    inputs = ctx.inputs
    passthrough = next(iter(inputs.values())) if len(inputs) == 1 else dict(inputs)
    metadata["result"] = result
    port = "condtrue" if result else "condfalse"
    return create_node_output({port: passthrough}, metadata)


def _evaluate_custom(config: ConditionProps, ctx: NodeContext, index: int | None) -> bool:
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


def _max_iterations_reached(node: ExecutableNode[ConditionProps], ctx: NodeContext) -> bool:
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
    return all(
        ctx.execution_count(n.id) >= (n.max_iteration or 0) for n in ran
    )  # `limited`: set ones


def _nodes_executed(names: list[str], ctx: NodeContext) -> bool:
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


# -- llm_decision -----------------------------------------------------------------------------

DECISION_INSTRUCTION = (
    "You are deciding a yes/no question. Begin your reply with YES or NO, "
    "then give a one-sentence reason."
)
_AFFIRMATIVE = ("yes", "true", "correct", "pass", "passed", "passes", "valid", "approved")
_NEGATIVE = ("no", "false", "incorrect", "fail", "failed", "fails", "invalid", "rejected")
_WORD = re.compile(r"[a-z]+")
_MARKUP = re.compile(r"[*_`#>\[\]()\"']")


def parse_decision(reply: str) -> tuple[bool, str]:
    """(decision, how it was read) from a judge's reply, DiPeO's rules (module docstring)."""
    text = reply.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    body = fence.group(1) if fence else text
    if body.startswith("{"):
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict) and "decision" in data:
            value = data["decision"]
            if isinstance(value, bool):
                return value, "json decision"
            if isinstance(value, (int, float)):
                return value != 0, "json decision"
            if isinstance(value, str):
                word = value.strip().lower()
                if word in _AFFIRMATIVE:
                    return True, "json decision"
                if word in _NEGATIVE:
                    return False, "json decision"
    words = _WORD.findall(_MARKUP.sub(" ", text.lower()))
    if words and words[0] in ("yes", "true"):
        return True, f"reply starts with '{words[0]}'"
    if words and words[0] in ("no", "false"):
        return False, f"reply starts with '{words[0]}'"
    yes = sum(1 for w in words if w in _AFFIRMATIVE)
    no = sum(1 for w in words if w in _NEGATIVE)
    if yes != no:
        return yes > no, f"counted {yes} affirmative and {no} negative words"
    return False, "ambiguous reply"


async def _llm_decision(
    node: ExecutableNode[ConditionProps],
    config: ConditionProps,
    ctx: NodeContext,
    metadata: dict[str, Any],
) -> bool:
    from dipeo_cli.llm.call import ask_person, call_metadata, llm_calls, preview
    from dipeo_cli.llm.inputs import merge_conversations, template_values
    from dipeo_cli.llm.persons import find_person
    from dipeo_cli.llm.prompt_files import read_prompt_file
    from dipeo_cli.memory import conversation_of, last_text
    from dipeo_cli.prompt import render_prompt, template_names

    person = find_person(ctx.graph.diagram.persons, config.person)
    if config.judge_by_file:
        source = read_prompt_file(config.judge_by_file, ctx.resources.diagram_dir, ctx.base_dir)
    else:
        source = config.judge_by
    conversation = conversation_of(ctx.resources)
    merge_conversations(conversation, ctx)
    question, warnings = render_prompt(source, template_values(ctx.inputs, ctx.variables))
    if not template_names(source) and ctx.inputs:
        shown = {
            label: last_text(value) if isinstance(value, dict) and "messages" in value else value
            for label, value in ctx.inputs.items()
        }
        data = next(iter(shown.values())) if len(shown) == 1 else shown
        data = decode_json_text(data)
        text = (
            json.dumps(data, indent=2, ensure_ascii=False, default=str)
            if isinstance(data, (dict, list))
            else to_text(data)
        )
        question = f"{question.rstrip()}\n\nInput:\n{text}"
        metadata["input_appended"] = True
    if warnings:
        metadata["prompt_warnings"] = warnings
    if not question.strip():
        raise NodeError("llm_decision: the question (judge_by) is empty after rendering")
    history = conversation.select(person.id, config.memorize_to, at_most=config.at_most)
    reply, resolved = await ask_person(
        ctx, person, question, history, system_suffix=DECISION_INSTRUCTION
    )
    conversation.record(
        node=node.label,
        person_id=person.id,
        person_label=person.label,
        prompt=question,
        reply=reply.text,
    )
    decision, reason = parse_decision(reply.text)
    metadata.update(call_metadata(person, resolved, reply, question, len(history)))
    metadata["decision_reason"] = reason
    metadata["reply"] = preview(reply.text)
    metadata["llm_calls"] = llm_calls(ctx)
    return decision
