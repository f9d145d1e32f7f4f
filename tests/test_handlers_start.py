from __future__ import annotations

from tests.test_handlers_props import make_graph, run_node


def test_start_outputs_custom_data_overridden_by_variables() -> None:
    graph = make_graph(
        ("Start", "start", {"trigger_mode": "manual", "custom_data": {"x": 5, "name": "alice"}})
    )
    output = run_node(graph, "Start", variables={"name": "bob", "y": 7})
    assert output.value == {"default": {"x": 5, "name": "bob", "y": 7}}


def test_start_without_custom_data_outputs_the_variables() -> None:
    output = run_node(make_graph(("Start", "start", {})), "Start", variables={"y": 7})
    assert output.value == {"default": {"y": 7}}
    assert output.metadata["trigger_mode"] == "none"


def test_start_output_is_not_the_custom_data_object_itself() -> None:
    graph = make_graph(("Start", "start", {"custom_data": {"n": 0}}))
    output = run_node(graph, "Start")
    output.value["default"]["n"] = 99
    assert run_node(graph, "Start").value == {"default": {"n": 0}}
