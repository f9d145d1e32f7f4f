"""The checks `compile_graph` runs on each node and arrow: a node's type is known and supported,
its properties validate against its handler's model, its handler's own check passes, its limits
are positive numbers; an arrow joins existing nodes through ports they have. Every problem is
collected, none raised, so one DiagramError can list them all.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ValidationError
from typing_extensions import TypeVar  # TypeVar defaults (PEP 696) before Python 3.13

from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode
from dipeo_cli.errors import DiagramError, Problem
from dipeo_cli.graph import CompileOptions, ExecutableNode
from dipeo_cli.registry import HandlerRegistry, HandlerSpec

# DiPeO node types this version cannot run yet, and why: rejected at validation, never at run time.
_PLUGIN_HINT = "write a plugin handler for it (README: Writing a handler)"
NOT_SUPPORTED_YET = {
    "integrated_api": f"is not supported; {_PLUGIN_HINT}",
    "typescript_ast": f"is only used by DiPeO's own code generator; {_PLUGIN_HINT}",
    "ir_builder": f"is only used by DiPeO's own code generator; {_PLUGIN_HINT}",
    "job": "is DiPeO's old name for code jobs and has no handler; use code_job",
}

CONTENT_TYPES = ("raw_text", "object", "conversation_state", "variable", "json", "binary")
NumberT = TypeVar("NumberT", int, float)


def collect(
    found: list[Any],
    dnode: DiagramNode,
    problems: list[Problem],
    warnings: list[Problem],
) -> None:
    """A check's findings: strings are errors; Problems keep their severity, located here."""
    for item in found:
        if isinstance(item, Problem):
            located = replace(item, where=item.where or dnode.where, line=item.line or dnode.line)
            (warnings if located.is_warning else problems).append(located)
        else:
            problems.append(Problem(str(item), dnode.where, dnode.line))


def compile_node(
    dnode: DiagramNode,
    registry: HandlerRegistry,
    problems: list[Problem],
    diagram: Diagram,
    options: CompileOptions,
) -> ExecutableNode | None:
    spec = registry.get(dnode.type)
    if spec is None:
        if not dnode.type:
            return None  # the loader already reported the missing type
        if dnode.type in NOT_SUPPORTED_YET:
            problems.append(
                Problem(
                    f"node type '{dnode.type}' {NOT_SUPPORTED_YET[dnode.type]}",
                    dnode.where,
                    dnode.line,
                )
            )
        else:
            known = ", ".join(registry.types())
            problems.append(
                Problem(
                    f"unknown node type '{dnode.type}' (known types: {known})",
                    dnode.where,
                    dnode.line,
                )
            )
        return None

    config: BaseModel | None = None
    if spec.props is not None:
        try:
            config = spec.props.model_validate(dnode.props)
        except ValidationError as exc:
            for err in exc.errors():
                field_path = ".".join(str(p) for p in err["loc"]) or "properties"
                message = err["msg"]
                if err["type"] == "missing":
                    message = "required property is missing"
                problems.append(
                    Problem(f"property '{field_path}': {message}", dnode.where, dnode.line)
                )
            # the node's other problems too, not only the first property's (a bad `tools`
            # must not hide "no person"): check what validates without the failing fields
            partial = _without_failing_fields(spec.props, dnode.props, exc)
            if partial is not None:
                collect(
                    check_node(spec, partial, diagram, registry, options),
                    dnode,
                    problems,
                    [],  # warnings come once the errors above are fixed
                )
            return None
        except Exception as exc:  # a validator that raised something else (TypeError, ...)
            problems.append(Problem(f"invalid properties: {_describe(exc)}", dnode.where))
            return None

    max_iteration = _positive_number(dnode, "max_iteration", int, problems)
    timeout = _positive_number(dnode, "timeout", float, problems)
    return ExecutableNode(
        id=dnode.id,
        label=dnode.label,
        type=dnode.type,
        props=dnode.props,
        config=config,
        spec=spec,
        max_iteration=max_iteration,
        timeout=timeout,
    )


def _without_failing_fields(
    model: type, props: dict[str, Any], exc: ValidationError
) -> BaseModel | None:
    """The props model validated without the top-level fields that failed, or None."""
    failing = {err["loc"][0] for err in exc.errors() if err["loc"]}
    if not failing:
        return None
    kept = {k: v for k, v in props.items() if k not in failing}
    try:
        partial = model.model_validate(kept)  # type: ignore[attr-defined]
    except Exception:
        return None
    if hasattr(partial, "_source"):  # checks that find their node by its properties
        partial._source = props
    return partial  # type: ignore[no-any-return]


def check_node(
    spec: HandlerSpec,
    config: BaseModel | None,
    diagram: Diagram,
    registry: HandlerRegistry,
    options: CompileOptions,
) -> list[Any]:
    """The handler's compile-time check; anything else it raises (a file-system error while
    looking for a file, ...) is a problem with this node, never an escaping exception."""
    check = spec.check
    try:
        if check is None:
            return []
        if _takes_options(check):
            return list(check(config, diagram, registry, options))
        # a plugin written before options: _takes_options found three parameters, which
        # HandlerSpec.check's type (the current four) cannot say
        return list(check(config, diagram, registry))  # type: ignore[call-arg]
    except DiagramError:
        raise
    except Exception as exc:
        return [f"cannot check this node: {_describe(exc)}"]


@functools.lru_cache(maxsize=256)
def _takes_options(check: Any) -> bool:
    """Whether a handler's check takes the fourth argument (CompileOptions)."""
    try:
        parameters = list(inspect.signature(check).parameters.values())
    except (TypeError, ValueError):
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    return len(parameters) >= 4


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _positive_number(
    dnode: DiagramNode, key: str, kind: type[NumberT], problems: list[Problem]
) -> NumberT | None:
    raw = dnode.props.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except (TypeError, ValueError, OverflowError):
        problems.append(Problem(f"property '{key}' must be a number, got {raw!r}", dnode.where))
        return None
    if not value > 0:  # NaN too
        problems.append(
            Problem(f"property '{key}' must be greater than 0, got {raw!r}", dnode.where)
        )
        return None
    return value


def check_arrow(
    arrow: DiagramArrow,
    by_id: dict[str, DiagramNode],
    nodes: dict[str, ExecutableNode],
    problems: list[Problem],
) -> bool:
    ok = True
    for end in (arrow.source, arrow.target):
        if end not in by_id:
            problems.append(Problem(f"refers to a node that does not exist ('{end}')", arrow.where))
            ok = False
    if not ok:
        return False
    source, target = by_id[arrow.source], by_id[arrow.target]
    if target.type == "start":
        problems.append(
            Problem(
                f"a start node cannot have inputs ('{target.label}' is a start node)", arrow.where
            )
        )
        ok = False
    if source.type == "endpoint":
        problems.append(
            Problem(f"an endpoint has no outputs ('{source.label}' is an endpoint)", arrow.where)
        )
        ok = False
    source_node, target_node = nodes.get(arrow.source), nodes.get(arrow.target)
    if source_node is not None and source.type != "endpoint":
        ports = (*source_node.spec.outputs, "error")
        if arrow.source_handle not in ports:
            problems.append(
                Problem(
                    f"'{arrow.source_handle}' is not an output of '{source.label}' "
                    f"({source.type}); available: {', '.join(ports)}",
                    arrow.where,
                )
            )
            ok = False
    if target_node is not None and target.type != "start":
        if arrow.target_handle not in target_node.spec.inputs:
            problems.append(
                Problem(
                    f"'{arrow.target_handle}' is not an input of '{target.label}' "
                    f"({target.type}); available: {', '.join(target_node.spec.inputs)}",
                    arrow.where,
                )
            )
            ok = False
    if arrow.content_type is not None and arrow.content_type not in CONTENT_TYPES:
        problems.append(
            Problem(
                f"unknown content_type '{arrow.content_type}' "
                f"(use one of: raw_text, object, conversation_state)",
                arrow.where,
            )
        )
        ok = False
    return ok
