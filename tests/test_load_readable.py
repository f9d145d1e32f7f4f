"""Readable YAML loading: node keys, persons, and every way of writing `flow`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dipeo_cli.diagram import Diagram, load_diagram, parse_diagram
from dipeo_cli.errors import DiagramError

FIXTURES = Path(__file__).parent / "fixtures" / "diagrams"

NODES = """
version: readable
nodes:
  - Start @(26,211):
      trigger_mode: manual
  - Check [condition] @(1, -2.5):
      expression: a > 1
  - Code Job:
      type: code_job
      position: {x: 5, y: 6}
      code: a = 1
  - End [endpoint]: {}
"""


def readable(flow: str, nodes: str = NODES) -> Diagram:
    return parse_diagram(textwrap.dedent(nodes) + textwrap.dedent(flow), file="r.yaml")


def edges(diagram: Diagram) -> list[tuple[str, str, str, str, str | None, str | None]]:
    labels = {n.id: n.label for n in diagram.nodes}
    return [
        (
            labels[a.source],
            a.source_handle,
            labels[a.target],
            a.target_handle,
            a.content_type,
            a.label,
        )
        for a in diagram.arrows
    ]


def test_node_keys_give_label_type_and_position() -> None:
    diagram = readable("flow: []\n")
    assert diagram.format == "readable"
    assert [(n.id, n.label, n.type) for n in diagram.nodes] == [
        ("node_0", "Start", "start"),  # an untyped first node is the start node
        ("node_1", "Check", "condition"),
        ("node_2", "Code Job", "code_job"),
        ("node_3", "End", "endpoint"),
    ]
    assert [(n.position.x, n.position.y) for n in diagram.nodes] == [
        (26, 211),
        (1, -2.5),
        (5, 6),
        (0, 0),
    ]
    assert diagram.nodes[0].props == {"trigger_mode": "manual"}
    assert diagram.nodes[2].props == {"code": "a = 1"}
    assert [n.line for n in diagram.nodes] == [4, 6, 8, 12]


def test_new_style_sentences() -> None:
    diagram = readable(
        """
        flow:
          - Start: to "Code Job"
          - Code Job: to "Check" as "object" naming "a"
          - Check:
            - from "condfalse" to "Code Job" as "raw_text"
            - from "_condtrue" to "End" in "_first" naming "x"
        """
    )
    assert edges(diagram) == [
        ("Start", "default", "Code Job", "default", None, None),
        ("Code Job", "default", "Check", "default", "object", "a"),
        ("Check", "condfalse", "Code Job", "default", "raw_text", None),
        ("Check", "condtrue", "End", "first", None, "x"),
    ]
    assert diagram.arrows[2].written_as == '\'Check\': from "condfalse" to "Code Job" as "raw_text"'
    assert [a.id for a in diagram.arrows] == ["arrow_0", "arrow_1", "arrow_2", "arrow_3"]


def test_old_style_targets_with_handles_content_types_and_labels() -> None:
    diagram = readable(
        """
        flow:
          - Start: Code Job (raw_text)
          - Code Job:
            - Check (conversation_state)(a)
            - End_first(result)
          - Check_condfalse: Code Job
          - Check[condtrue]: End
        """
    )
    assert edges(diagram) == [
        ("Start", "default", "Code Job", "default", "raw_text", None),
        ("Code Job", "default", "Check", "default", "conversation_state", "a"),
        ("Code Job", "default", "End", "first", None, "result"),
        ("Check", "condfalse", "Code Job", "default", None, None),
        ("Check", "condtrue", "End", "default", None, None),
    ]


def test_plain_arrow_strings_and_mapping_entries() -> None:
    diagram = readable(
        """
        flow:
          - "Start -> Code Job -> Check"
          - Check: {from: _condtrue, to: End, as: raw_text, naming: out}
          - Check:
            - {from: condfalse, to: Code Job}
        """
    )
    assert edges(diagram) == [
        ("Start", "default", "Code Job", "default", None, None),
        ("Code Job", "default", "Check", "default", None, None),
        ("Check", "condtrue", "End", "default", "raw_text", "out"),
        ("Check", "condfalse", "Code Job", "default", None, None),
    ]


def test_persons_are_a_list_of_single_key_mappings() -> None:
    diagram = readable(
        "flow: []\n",
        nodes=NODES
        + "persons:\n  - Person 1: {service: openai, model: m, api_key_id: K, system_prompt: Hi}\n",
    )
    person = diagram.persons["person_Person_1"]
    assert (person.label, person.model, person.api_key_id, person.system_prompt) == (
        "Person 1",
        "m",
        "K",
        "Hi",
    )


def test_an_untyped_node_nothing_identifies_is_rejected_naming_it() -> None:
    with pytest.raises(DiagramError) as info:
        readable(
            "flow: []\n",
            nodes="nodes:\n  - Begin: {}\n  - Work:\n      code: x\n  - Done: {}\n",
        )
    assert str(info.value).splitlines() == [
        "r.yaml:5: node 'Done': node has no type "
        "(add `type: ...`, or write the key as 'Done [type]')",
    ]


@pytest.mark.parametrize(
    ("label", "fields", "expected"),
    [
        ("Ask", "{person: P, default_prompt: hi}", "person_job"),
        ("Check", "{condition_type: detect_max_iterations}", "condition"),
        ("Judge", "{condition_type: llm_decision, person: P}", "condition"),
        ("Load", "{operation: read, sub_type: file, file: a.txt}", "db"),
        ("Out", "{file_format: txt, save_to_file: true}", "endpoint"),
        ("Calc", "{code: 'result = 1', language: python}", "code_job"),
        ("Start", "{}", "start"),
        ("Finish line", "{}", "endpoint"),
        ("If big", "{}", "condition"),
    ],
)
def test_untyped_nodes_get_the_type_mid_2025_dipeo_inferred(label, fields, expected) -> None:
    text = f"version: readable\nnodes:\n  - Other [start]: {{}}\n  - {label}: {fields}\n"
    diagram = parse_diagram(text, file="r.yaml", strict=False)
    assert diagram.nodes[1].type == expected


def test_flow_problems_are_all_reported_with_lines() -> None:
    with pytest.raises(DiagramError) as info:
        readable(
            """\
            flow:
              - Strat: to "End"
              - Start: to "Ednd" sideways "x"
              - Start: to "Chek"
              - "Start => End"
              - Check: {to: End, colour: red}
              - 42
            """
        )
    assert str(info.value).splitlines() == [
        "r.yaml:14: connection 'Strat': to \"End\": no node labelled 'Strat'; "
        "did you mean 'Start'?",
        'r.yaml:15: connection \'Start\': to "Ednd" sideways "x": cannot read \'sideways "x"\' in '
        "this flow entry",
        "r.yaml:16: connection 'Start': to \"Chek\": no node labelled 'Chek'; "
        "did you mean 'Check'?",
        "r.yaml:17: connection 'Start => End': cannot read this flow entry; write it as \"A -> B\"",
        "r.yaml:18: connection 'Check': to \"End\": unknown key(s) colour; "
        "use to, from, in, as, naming",
        "r.yaml:19: flow entry #6: cannot read flow entry 42",
    ]


def test_mid_2025_workflow_form() -> None:
    diagram = parse_diagram(
        textwrap.dedent(
            """
            workflow:
              - Begin: {}
              - Ask: {person: writer, prompt: hi}
              - Run: {code: "x = 1", language: python}
              - If big: {condition: x > 1}
              - End: {}
            flow:
              - "Begin -> Ask"
              - "Ask -> Run"
              - "Run -> If big"
              - "If big -> End"
            """
        )
    )
    assert diagram.format == "readable"
    assert [n.type for n in diagram.nodes] == [
        "start",
        "person_job",
        "code_job",
        "condition",
        "endpoint",
    ]
    assert len(diagram.arrows) == 4


def test_fixture_has_the_same_shape_as_the_light_one() -> None:
    from_readable = load_diagram(FIXTURES / "loop.readable.yaml")
    from_light = load_diagram(FIXTURES / "loop.light.yaml")
    assert edges(from_readable) == edges(from_light)
    assert [(n.label, n.type, n.props) for n in from_readable.nodes] == [
        (n.label, n.type, n.props) for n in from_light.nodes
    ]


def test_labels_that_yaml_reads_as_booleans_keep_their_spelling():
    from dipeo_cli.diagram import parse_diagram

    text = (
        "version: readable\n"
        "nodes:\n"
        "- Start:\n    type: start\n"
        "- Yes:\n    type: endpoint\n"
        "- No:\n    type: endpoint\n"
        "flow:\n"
        '- Start:\n  - to "Yes"\n  - to "No"\n'
        "- No: []\n"
    )
    diagram = parse_diagram(text, "yes.readable.yaml")
    assert [n.label for n in diagram.nodes] == ["Start", "Yes", "No"]
    assert len(diagram.arrows) == 2
