"""Native JSON loading: objects keyed by id or lists, every handle-reference style, persons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli.diagram import Diagram, load_diagram, parse_diagram
from dipeo_cli.errors import DiagramError

FIXTURES = Path(__file__).parent / "fixtures" / "diagrams"


def native(document: dict[str, Any], file: str = "test.json") -> Diagram:
    return parse_diagram(json.dumps(document), file=file)


def node(node_type: str, label: str, **data: Any) -> dict[str, Any]:
    return {"type": node_type, "position": {"x": 1, "y": 2}, "data": {"label": label, **data}}


def edges(diagram: Diagram) -> list[tuple[str, str, str, str]]:
    labels = {n.id: n.label for n in diagram.nodes}
    return [
        (labels[a.source], a.source_handle, labels[a.target], a.target_handle)
        for a in diagram.arrows
    ]


def test_objects_keyed_by_id() -> None:
    diagram = native(
        {
            "nodes": {
                "node_0": node("start", "Start", custom_data={"a": 1}),
                "node_1": node("endpoint", "End", save_to_file=False),
            },
            "arrows": {
                "arrow_7": {
                    "source": "node_0_default_output",
                    "target": "node_1_default_input",
                    "content_type": "object",
                    "label": "x",
                }
            },
            "metadata": {"name": "demo"},
        }
    )
    assert diagram.format == "native"
    start, end = diagram.nodes
    assert (start.id, start.type, start.label, start.props) == (
        "node_0",
        "start",
        "Start",
        {"custom_data": {"a": 1}},
    )
    assert (start.position.x, start.position.y) == (1, 2)
    assert end.props == {"save_to_file": False}
    (arrow,) = diagram.arrows
    assert (arrow.id, arrow.label, arrow.content_type) == ("arrow_7", "x", "object")
    assert arrow.written_as == "arrow_7 ('Start' -> 'End')"
    assert diagram.metadata == {"name": "demo"}


def test_lists_of_records_with_typenames_and_nested_props() -> None:
    diagram = native(
        {
            "nodes": [
                {"__typename": "DomainNodeType", "id": "node_Y_MY", **node("start", "Start")},
                {
                    "id": "node_kga-",
                    "type": "CODE_JOB",
                    "position": {"__typename": "Vec2Type", "x": 5, "y": 6},
                    "data": {
                        "label": "Run",
                        "__typename": "X",
                        "props": {"code": "x"},
                        "language": "python",
                    },
                },
            ],
            "arrows": [
                {
                    "id": "a1",
                    "source": "node_Y_MY_default_output",
                    "target": "node_kga-_first_input",
                }
            ],
        }
    )
    run = diagram.nodes[1]
    assert (run.id, run.type, run.props) == (
        "node_kga-",
        "code_job",
        {"language": "python", "code": "x"},
    )
    assert edges(diagram) == [("Start", "default", "Run", "first")]


def test_handle_ids_are_looked_up_in_the_handles_table() -> None:
    diagram = native(
        {
            "nodes": {"n1": node("condition", "Check"), "n2": node("endpoint", "End")},
            "handles": {
                "h-out": {"node_id": "n1", "label": "condfalse", "direction": "output"},
                "h-in": {"nodeId": "n2", "label": "default", "direction": "input"},
            },
            "arrows": {"a": {"source": "h-out", "target": "h-in"}},
        }
    )
    assert edges(diagram) == [("Check", "condfalse", "End", "default")]


def test_mid_2025_colon_references_and_handle_names() -> None:
    diagram = native(
        {
            "nodes": {
                "start": node("start", "Start"),
                "check": node("condition", "Check"),
                "end": node("endpoint", "End"),
            },
            "arrows": {
                "a0": {"source": "start:output", "target": "check:input"},
                "a1": {"source": "check:true", "target": "end"},
                "a2": {"source": "check:false", "target": "end:default"},
                "a3": {"source": "start", "target": "end"},
            },
        }
    )
    assert edges(diagram) == [
        ("Start", "default", "Check", "default"),
        ("Check", "condtrue", "End", "default"),
        ("Check", "condfalse", "End", "default"),
        ("Start", "default", "End", "default"),
    ]


def test_branch_data_on_a_default_handle_picks_the_condition_output() -> None:
    diagram = native(
        {
            "nodes": {"c": node("condition", "Check"), "e": node("endpoint", "End")},
            "arrows": {
                "a0": {"source": "c:default", "target": "e", "data": {"branch": "true"}},
                "a1": {
                    "source": "c",
                    "target": "e",
                    "data": {"branch": "false", "label": "v", "contentType": "raw_text"},
                },
            },
        }
    )
    assert edges(diagram) == [
        ("Check", "condtrue", "End", "default"),
        ("Check", "condfalse", "End", "default"),
    ]
    assert (diagram.arrows[1].label, diagram.arrows[1].content_type) == ("v", "raw_text")
    assert diagram.arrows[1].data == {"branch": "false", "label": "v", "contentType": "raw_text"}


def test_persons_in_both_shapes() -> None:
    diagram = native(
        {
            "nodes": {"n": node("start", "Start")},
            "persons": [
                {
                    "id": "person_1",
                    "label": "Writer",
                    "type": "person",
                    "llm_config": {
                        "service": "anthropic",
                        "model": "m1",
                        "api_key_id": "K",
                        "system_prompt": "",
                    },
                },
                {
                    "id": "p2",
                    "label": "Old",
                    "service": "openai",
                    "model": "m2",
                    "apiKeyId": "K2",
                    "systemPrompt": "Hi",
                    "maskedApiKey": "sk-***",
                },
            ],
        }
    )
    writer, old = diagram.persons["person_1"], diagram.persons["p2"]
    assert (
        writer.label,
        writer.service,
        writer.model,
        writer.api_key_id,
        writer.system_prompt,
    ) == ("Writer", "anthropic", "m1", "K", None)
    assert (old.label, old.model, old.api_key_id, old.system_prompt, old.extra) == (
        "Old",
        "m2",
        "K2",
        "Hi",
        {},
    )


def test_mid_2025_camel_case_fields_become_snake_case() -> None:
    diagram = native(
        {
            "nodes": {
                "n": node("person_job", "Ask", personId="p1", maxIteration=2, defaultPrompt="hi")
            }
        }
    )
    assert diagram.nodes[0].props == {"person": "p1", "max_iteration": 2, "default_prompt": "hi"}


def test_arrows_to_missing_nodes_are_all_reported() -> None:
    with pytest.raises(DiagramError) as info:
        native(
            {
                "nodes": {"node_1": node("start", "Start"), "node_2": node("start", "Start")},
                "arrows": [
                    {
                        "id": "arrow_0",
                        "source": "node_9_default_output",
                        "target": "node_1_default_input",
                    },
                    {"id": "arrow_1", "source": "node_1:default"},
                    "junk",
                ],
            },
            file="broken.json",
        )
    assert str(info.value).splitlines() == [
        "broken.json: node 'Start': duplicate label 'Start' (nodes node_1 and node_2); "
        "labels must be unique",
        "broken.json: arrow 'arrow_0': source 'node_9_default_output' refers to node 'node_9', "
        "which does not exist",
        "broken.json: arrow 'arrow_1': has no target",
        "broken.json: arrow 'arrow_2': must be an object with source and target, got 'junk'",
    ]


def test_node_without_type_is_a_problem() -> None:
    with pytest.raises(DiagramError, match="node 'Lonely': node has no type"):
        native({"nodes": {"x": {"data": {"label": "Lonely"}}}, "arrows": {}})


def test_json_syntax_error_reports_its_line() -> None:
    with pytest.raises(DiagramError) as info:
        parse_diagram('{\n  "nodes": {\n    "a": {"type": "start",}\n  }\n}\n', file="bad.json")
    assert str(info.value) == (
        "bad.json:3: invalid JSON: Expecting property name enclosed in double quotes (column 27)"
    )


def test_json_file_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(
        DiagramError, match="the top level must be a mapping with 'nodes', got a list"
    ):
        load_diagram(path)


def test_native_content_in_yaml_is_detected() -> None:
    diagram = parse_diagram(
        "nodes:\n  n0: {type: start, data: {label: S}}\n  n1: {type: endpoint, data: {label: E}}\n"
        "arrows:\n  a0: {source: n0_default_output, target: n1_default_input}\n"
    )
    assert diagram.format == "native"
    assert [n.line for n in diagram.nodes] == [2, 3]
    assert edges(diagram) == [("S", "default", "E", "default")]


def test_fixture_has_the_same_shape_as_the_light_one() -> None:
    from_native = load_diagram(FIXTURES / "loop.native.json")
    from_light = load_diagram(FIXTURES / "loop.light.yaml")
    assert edges(from_native) == edges(from_light)
    assert [(n.label, n.type, n.props) for n in from_native.nodes] == [
        (n.label, n.type, n.props) for n in from_light.nodes
    ]
