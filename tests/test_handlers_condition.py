from __future__ import annotations

import pytest

from dipeo_cli.errors import NodeError
from dipeo_cli.expression_syntax import ExpressionError
from tests.test_handlers_props import make_graph, run_node


def custom(expression: str, **props: object):
    return make_graph(
        ("Check", "condition", {"condition_type": "custom", "expression": expression, **props})
    )


def test_true_branch_gets_the_single_input_unchanged() -> None:
    output = run_node(custom("state.n >= 3"), "Check", inputs={"state": {"n": 3, "log": [1]}})
    assert output.value == {"condtrue": {"n": 3, "log": [1]}}
    assert output.metadata == {"condition_type": "custom", "result": True}


def test_false_branch_gets_the_inputs_by_label_when_there_are_several() -> None:
    output = run_node(custom("a > b"), "Check", inputs={"a": 1, "b": 2})
    assert output.value == {"condfalse": {"a": 1, "b": 2}}
    assert output.metadata["result"] is False


def test_expression_sees_variables_and_default_dict_keys() -> None:
    graph = custom("y == 7 and len(default) > 0 and n == 2")
    output = run_node(graph, "Check", inputs={"default": {"n": 2}}, variables={"y": 7})
    assert output.metadata["result"] is True


def test_inputs_beat_variables_of_the_same_name() -> None:
    output = run_node(custom("a > 10"), "Check", inputs={"a": 11}, variables={"a": 0})
    assert output.metadata["result"] is True


def test_subscripts_and_arithmetic_work() -> None:
    graph = custom('state["counter"] * 2 >= len(state["items"])')
    output = run_node(graph, "Check", inputs={"state": {"counter": 1, "items": [1, 2]}})
    assert output.metadata["result"] is True


def test_undefined_name_fails_the_node_listing_inputs_and_variables() -> None:
    with pytest.raises(ExpressionError) as caught:
        run_node(custom("missing > 1"), "Check", inputs={"a": 1, "b": 2}, variables={"v": 1})
    assert str(caught.value) == (
        "expression 'missing > 1': name 'missing' is not defined (inputs: a, b; variables: v)"
    )


def test_type_error_fails_the_node_naming_the_expression() -> None:
    with pytest.raises(ExpressionError, match=r"expression 's > 10': TypeError"):
        run_node(custom("s > 10"), "Check", inputs={"s": "abc"})


def test_expose_index_as_gives_the_execution_count_minus_one() -> None:
    graph = custom("current_index >= 2", expose_index_as="current_index")
    variables: dict[str, object] = {}
    first = run_node(graph, "Check", iteration=1, variables=variables)
    third = run_node(graph, "Check", iteration=3)
    assert first.metadata["result"] is False and first.metadata["exposed"] == {"current_index": 0}
    assert third.metadata["result"] is True and third.metadata["exposed"] == {"current_index": 2}


def loop_graph():
    # Start -> Work (max 3) -> Check -(condfalse)-> Work; Other (max 1) sits outside the loop.
    return make_graph(
        ("Work", "code_job", {"code": "result = 1", "max_iteration": 3}),
        ("Check", "condition", {"condition_type": "detect_max_iterations"}),
        ("Other", "code_job", {"code": "result = 1", "max_iteration": 1}),
        ("End", "endpoint", {}),
        arrows=(
            ("Start", "Work"),
            ("Work", "Check"),
            ("Check", "Work", "condfalse"),
            ("Check", "End", "condtrue"),
            ("Start", "Other"),
        ),
    )


def test_detect_max_iterations_is_true_when_the_loops_nodes_reached_their_cap() -> None:
    graph = loop_graph()
    assert run_node(graph, "Check", counts={"Work": 3, "Other": 1}).value == {"condtrue": {}}
    assert run_node(graph, "Check", counts={"Work": 2, "Other": 1}).metadata["result"] is False


def test_detect_max_iterations_is_false_before_any_limited_node_ran() -> None:
    assert run_node(loop_graph(), "Check", counts={}).metadata["result"] is False


def test_detect_max_iterations_uses_the_whole_diagram_outside_a_loop() -> None:
    graph = make_graph(
        ("A", "code_job", {"code": "result = 1", "max_iteration": 2}),
        ("B", "code_job", {"code": "result = 1", "max_iteration": 5}),
        ("Check", "condition", {"condition_type": "detect_max_iterations"}),
        arrows=(("Start", "A"), ("A", "Check")),
    )
    assert run_node(graph, "Check", counts={"A": 2}).metadata["result"] is True  # B never ran
    assert run_node(graph, "Check", counts={"A": 2, "B": 1}).metadata["result"] is False
    no_limits = make_graph(("Check", "condition", {"condition_type": "detect_max_iterations"}))
    assert run_node(no_limits, "Check").metadata["result"] is False


def test_check_nodes_executed_by_label_or_id() -> None:
    graph = make_graph(
        ("A", "code_job", {"code": "result = 1"}),
        (
            "Check",
            "condition",
            {"condition_type": "check_nodes_executed", "node_indices": ["A", "Start"]},
        ),
    )
    assert run_node(graph, "Check", counts={"A": 1, "Start": 1}).metadata["result"] is True
    assert run_node(graph, "Check", counts={"Start": 1}).metadata["result"] is False


def test_check_nodes_executed_fails_on_an_unknown_node() -> None:
    graph = make_graph(
        ("Check", "condition", {"condition_type": "check_nodes_executed", "node_indices": "Nope"})
    )
    with pytest.raises(NodeError, match="node_indices names 'Nope', which is not a node"):
        run_node(graph, "Check")
