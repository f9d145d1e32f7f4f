"""Property validation of the built-in handlers, and the helpers the other handler tests use.

Handlers are called directly with a real NodeContext, on nodes compiled by `graph.compile_graph`
(which validates their properties with the handlers' models).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli import registry
from dipeo_cli.compiler import compile_graph
from dipeo_cli.context import NodeContext, NodeScopedStore, RunResources
from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode
from dipeo_cli.errors import DiagramError
from dipeo_cli.graph import ExecutableGraph
from dipeo_cli.state import NodeOutput

REGISTRY = registry.load_builtin_handlers()


def make_graph(
    *nodes: tuple[str, str, dict[str, Any]], arrows: tuple[tuple[str, str], ...] = ()
) -> ExecutableGraph:
    """Compile nodes given as (label, type, props); a start node "Start" is added if missing.
    Arrows are (source label, target label); node ids equal labels."""
    specs = list(nodes)
    if not any(kind == "start" for _, kind, _ in specs):
        specs.insert(0, ("Start", "start", {}))
    diagram = Diagram(
        nodes=[
            DiagramNode(id=label, type=kind, label=label, props=props)
            for label, kind, props in specs
        ],
        arrows=[
            DiagramArrow(id=f"a{i}", source=src, target=dst, source_handle=port)
            for i, (src, dst, *rest) in enumerate(arrows)
            for port in [rest[0] if rest else "default"]
        ],
    )
    return compile_graph(diagram, REGISTRY)


def compile_problem(kind: str, props: dict[str, Any]) -> str:
    """The validation message for one node of type `kind` with `props`."""
    with pytest.raises(DiagramError) as caught:
        make_graph(("Node", kind, props))
    return str(caught.value)


def make_ctx(
    graph: ExecutableGraph,
    label: str,
    *,
    inputs: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    iteration: int = 1,
    counts: dict[str, int] | None = None,
    resources: RunResources | None = None,
    base_dir: Path | None = None,
) -> NodeContext:
    node = graph.node_by_label(label)
    assert node is not None, label
    return NodeContext(
        execution_id="exec-test",
        node=node,
        inputs=dict(inputs or {}),
        variables=dict(variables or {}) if variables is not None else {},
        iteration=iteration,
        state_store=NodeScopedStore(None),
        resources=resources or RunResources(base_dir=base_dir or Path.cwd()),
        graph=graph,
        outputs={},
        counts=dict(counts or {}),
    )


async def call(ctx: NodeContext) -> NodeOutput:
    return await ctx.node.spec.fn(ctx.node, ctx)


def run_node(graph: ExecutableGraph, label: str, **kwargs: Any) -> NodeOutput:
    """Run one node's handler in a fresh event loop, closing the run's resources after."""

    async def go() -> NodeOutput:
        ctx = make_ctx(graph, label, **kwargs)
        try:
            return await call(ctx)
        finally:
            await ctx.resources.close()

    return asyncio.run(go())


def run_one(kind: str, props: dict[str, Any], **kwargs: Any) -> NodeOutput:
    return run_node(make_graph(("Node", kind, props)), "Node", **kwargs)


# -- validation ----------------------------------------------------------------------------------


def test_unknown_properties_and_executor_limits_are_accepted() -> None:
    extras = {"flipped": [True, False], "max_iteration": 3, "timeout": 5, "position": {"x": 1}}
    make_graph(
        ("Start", "start", {"trigger_mode": "manual", **extras}),
        ("C", "condition", {"expression": "1 < 2", **extras}),
        ("J", "code_job", {"code": "result = 1", **extras}),
        ("E", "endpoint", dict(extras)),
        ("D", "db", {"file": "x.json", **extras}),
        ("T", "template_job", {"template_content": "hi", **extras}),
    )


def test_llm_decision_needs_a_defined_person_and_a_question() -> None:
    message = compile_problem("condition", {"condition_type": "llm_decision", "person": "judge"})
    assert "person 'judge' is not defined" in message
    assert "needs judge_by" in message


def test_condition_expression_syntax_error_is_reported_at_validation() -> None:
    message = compile_problem("condition", {"condition_type": "custom", "expression": "a >"})
    assert message.endswith(
        "node 'Node': property 'expression': 'a >' is not a valid expression: syntax error: invalid syntax"
    )


def test_condition_rejects_disallowed_syntax_at_validation() -> None:
    message = compile_problem("condition", {"expression": "(lambda: 1)()"})
    assert "lambda is not allowed" in message


def test_custom_condition_needs_an_expression() -> None:
    assert "needs an expression" in compile_problem("condition", {})


def test_check_nodes_executed_needs_node_indices() -> None:
    assert "node_indices" in compile_problem(
        "condition", {"condition_type": "check_nodes_executed"}
    )


def test_code_job_needs_exactly_one_of_code_and_file_path() -> None:
    assert "property 'code': a code_job needs code, or a file_path" in compile_problem(
        "code_job", {}
    )
    both = compile_problem("code_job", {"code": "result = 1", "file_path": "x.py"})
    assert "property 'code': a code_job takes code or file_path, not both" in both


def test_code_job_rejects_unknown_language() -> None:
    assert "unknown language 'cobol'" in compile_problem(
        "code_job", {"language": "cobol", "code": "x"}
    )


def test_code_job_python_syntax_error_is_reported_at_validation() -> None:
    message = compile_problem("code_job", {"code": "x = (1,\nresult = 2"})
    assert "property 'code': python syntax error on line 1" in message


def test_code_job_accepts_dipeo_aliases_and_top_level_return() -> None:
    graph = make_graph(
        ("J", "code_job", {"filePath": "f.py", "functionName": "go", "language": "Python"}),
        ("K", "code_job", {"code": "return 5"}),
    )
    config = graph.node_by_label("J").config  # type: ignore[union-attr]
    assert (config.file_path, config.function_name, config.language) == ("f.py", "go", "python")


def test_endpoint_save_to_file_needs_a_path() -> None:
    message = compile_problem("endpoint", {"save_to_file": True})
    assert "property 'file_path': save_to_file is set but there is no file_path" in message


def test_endpoint_accepts_file_name_aliases() -> None:
    for key in ("file_path", "file_name", "filePath", "fileName"):
        graph = make_graph(("E", "endpoint", {"save_to_file": True, key: "out.txt"}))
        assert graph.node_by_label("E").config.file_path == "out.txt"  # type: ignore[union-attr]


def test_endpoint_rejects_unknown_file_format() -> None:
    assert "file_format 'xml' is not supported" in compile_problem(
        "endpoint", {"file_format": "xml"}
    )


def test_db_needs_a_file_and_a_known_operation() -> None:
    assert "property 'file': a db node needs a file to read" in compile_problem(
        "db", {"operation": "read"}
    )
    assert "operation 'prompt' is not supported" in compile_problem(
        "db", {"operation": "prompt", "file": "x"}
    )


def test_db_update_needs_one_key_path() -> None:
    message = compile_problem("db", {"operation": "update", "file": "x.json"})
    assert "property 'keys': update needs a dot path" in message


def test_db_write_takes_one_file_and_no_glob() -> None:
    assert "exactly one file" in compile_problem("db", {"operation": "write", "file": ["a", "b"]})
    assert "glob" in compile_problem("db", {"operation": "write", "file": "out/*.json"})


def test_db_accepts_source_details_alias() -> None:
    graph = make_graph(("D", "db", {"sourceDetails": "data.json"}))
    assert graph.node_by_label("D").config.files == ["data.json"]  # type: ignore[union-attr]


def test_template_job_needs_exactly_one_template() -> None:
    assert (
        "property 'template_content': a template_job needs template_content or a template_path"
        in (compile_problem("template_job", {}))
    )
    both = compile_problem("template_job", {"template_content": "x", "template_path": "t.j2"})
    assert "not both" in both


def test_template_job_syntax_error_is_reported_at_validation() -> None:
    message = compile_problem("template_job", {"template_content": "Hello {{ name "})
    assert "template_content has a template syntax error on line 1" in message


def test_start_custom_data_accepts_json_text_and_rejects_other_text() -> None:
    graph = make_graph(("Start", "start", {"custom_data": '{"a": 1}'}))
    assert graph.node_by_label("Start").config.custom_data == {"a": 1}  # type: ignore[union-attr]
    assert "custom_data must be a mapping" in compile_problem("start", {"custom_data": "nope"})


def test_start_hook_mode_needs_a_hook_event() -> None:
    assert "property 'hook_event': trigger_mode 'hook' needs a hook_event" in compile_problem(
        "start", {"trigger_mode": "hook"}
    )
