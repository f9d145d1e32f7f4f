"""Light YAML loading: node ids and props, persons, connection syntaxes, and every error at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dipeo_cli.diagram import Diagram, load_diagram, parse_diagram
from dipeo_cli.errors import DiagramError

FIXTURES = Path(__file__).parent / "fixtures" / "diagrams"


def light(text: str, file: str | None = "test.light.yaml") -> Diagram:
    return parse_diagram(textwrap.dedent(text), file=file)


def problems_of(text: str, **kwargs: str) -> DiagramError:
    with pytest.raises(DiagramError) as info:
        parse_diagram(textwrap.dedent(text), file="bad.yaml", **kwargs)
    return info.value


def arrow_between(diagram: Diagram, source: str, target: str):  # type: ignore[no-untyped-def]
    ids = {node.label: node.id for node in diagram.nodes}
    return next(a for a in diagram.arrows if (a.source, a.target) == (ids[source], ids[target]))


def test_node_ids_follow_list_order_and_types_are_lower_cased() -> None:
    diagram = light(
        """
        nodes:
          - {label: Start, type: START}
          - {label: Run, type: CODE_JOB, code: "x = 1"}
        connections: []
        """
    )
    assert [(n.id, n.type, n.label) for n in diagram.nodes] == [
        ("node_0", "start", "Start"),
        ("node_1", "code_job", "Run"),
    ]
    assert diagram.format == "light"
    assert diagram.file == "test.light.yaml"


def test_node_lines_are_the_lines_of_their_list_items() -> None:
    diagram = light(
        """\
        nodes:
        - label: Start
          type: start
        - label: End
          type: endpoint
        """
    )
    assert [n.line for n in diagram.nodes] == [2, 4]


def test_a_node_without_a_label_is_labelled_with_its_id() -> None:
    diagram = light("nodes:\n  - {type: start}\n  - {type: endpoint}\nconnections: []\n")
    assert [n.label for n in diagram.nodes] == ["node_0", "node_1"]


def test_labels_keep_their_text_when_yaml_would_read_them_as_other_values() -> None:
    diagram = light(
        """
        nodes:
          - {label: Start, type: start}
          - {label: Yes, type: endpoint}
          - {label: 1.10, type: endpoint}
        connections:
          - {from: Start, to: Yes}
          - {from: Start, to: 1.10}
        """
    )
    assert [n.label for n in diagram.nodes] == ["Start", "Yes", "1.10"]
    assert [a.written_as for a in diagram.arrows] == ["'Start' -> 'Yes'", "'Start' -> '1.10'"]


def test_shorthand_keys_and_props_are_merged_and_props_wins() -> None:
    diagram = light(
        """
        nodes:
          - label: Job
            type: code_job
            position: {x: 10, y: 20}
            code: old
            language: python
            props:
              code: new
              timeout: 5
        connections: []
        """
    )
    node = diagram.nodes[0]
    assert node.props == {"code": "new", "language": "python", "timeout": 5}
    assert (node.position.x, node.position.y) == (10, 20)


def test_dotted_keys_become_nested_dicts_and_internal_keys_are_stripped() -> None:
    diagram = light(
        """
        $schema: https://dipeo.dev/schemas/light-v1.json
        nodes:
          - label: Start
            type: start
            custom_data.topic: cats
            custom_data.depth.max: 2
            __internal: drop me
            props:
              $schema: drop me too
              __hidden: 1
        connections: []
        """
    )
    assert diagram.nodes[0].props == {"custom_data": {"topic": "cats", "depth": {"max": 2}}}


def test_blank_list_items_are_ignored() -> None:
    diagram = light(
        """
        nodes:
          - {label: Start, type: start}
          -
          - {label: End, type: endpoint}
        connections:
          -
          - {from: Start, to: End}
        """
    )
    assert [n.id for n in diagram.nodes] == ["node_0", "node_2"]
    assert len(diagram.arrows) == 1


def test_persons_are_keyed_by_label_with_llm_settings() -> None:
    diagram = light(
        """
        persons:
          writer:
            service: anthropic
            model: claude-x
            api_key_id: KEY_1
            system_prompt: Be terse.
            base_url: http://127.0.0.1:9999/v1
            temperature: 0.2
          reviewer:
            id: rev
        nodes:
          - {label: Start, type: start}
          - {label: Draft, type: person_job, person: writer}
        connections:
          - {from: Start, to: Draft}
        """
    )
    writer = diagram.persons["writer"]
    assert (writer.id, writer.label, writer.service, writer.model) == (
        "writer",
        "writer",
        "anthropic",
        "claude-x",
    )
    assert writer.api_key_id == "KEY_1"
    assert writer.system_prompt == "Be terse."
    assert writer.base_url == "http://127.0.0.1:9999/v1"
    assert writer.extra == {"temperature": 0.2}
    reviewer = diagram.persons["rev"]
    assert (reviewer.label, reviewer.service) == ("reviewer", "openai")
    assert diagram.nodes[1].props["person"] == "writer"  # still the label; graph resolves it


def test_bracket_handles_set_source_and_target_handles() -> None:
    diagram = light(
        """
        nodes:
          - {label: Start, type: start}
          - {label: Check, type: condition}
          - {label: Ask, type: person_job}
        connections:
          - {from: Start, to: "Ask[first]"}
          - {from: "Check[condfalse]", to: Ask, label: feedback}
        """
    )
    first = arrow_between(diagram, "Start", "Ask")
    assert (first.source_handle, first.target_handle) == ("default", "first")
    back = arrow_between(diagram, "Check", "Ask")
    assert (back.source_handle, back.target_handle, back.label) == (
        "condfalse",
        "default",
        "feedback",
    )
    assert back.written_as == "'Check[condfalse]' -> 'Ask'"
    assert back.where == "connection 'Check[condfalse]' -> 'Ask'"


def test_legacy_underscore_handles_are_split_from_the_right() -> None:
    diagram = light(
        """
        nodes:
          - {label: Start, type: start}
          - {label: Check Valid, type: condition}
          - {label: load_csv, type: db}
          - {label: Generate Prompt, type: person_job}
        connections:
          - {from: Start, to: load_csv}
          - {from: load_csv, to: Check Valid}
          - {from: Check Valid_condtrue, to: Generate Prompt_first}
          - {from: Check_Valid_condfalse, to: Generate Prompt}
        """
    )
    assert arrow_between(diagram, "Start", "load_csv").source_handle == "default"
    arrows = [a for a in diagram.arrows if a.source == "node_1"]
    assert [(a.source_handle, a.target_handle) for a in arrows] == [
        ("condtrue", "first"),
        ("condfalse", "default"),
    ]


def test_colon_handles_of_mid_2025_files() -> None:
    diagram = light(
        """
        nodes:
          - {label: Start, type: start}
          - {label: Check, type: condition}
          - {label: End, type: endpoint}
        connections:
          - {from: "Start:default", to: Check}
          - {from: "Check:true", to: "End:input"}
        """
    )
    arrow = arrow_between(diagram, "Check", "End")
    assert (arrow.source_handle, arrow.target_handle) == ("condtrue", "default")


def test_branch_key_picks_the_condition_output() -> None:
    diagram = light(
        """
        nodes:
          - {label: Start, type: start}
          - {label: Check, type: condition}
          - {label: Big, type: endpoint}
          - {label: Small, type: endpoint}
        connections:
          - {from: Start, to: Check}
          - {from: Check, to: Big, branch: true}
          - {from: Check, to: Small, branch: "false"}
          - {from: Start, to: Big, branch: true}
        """
    )
    assert arrow_between(diagram, "Check", "Big").source_handle == "condtrue"
    assert arrow_between(diagram, "Check", "Small").source_handle == "condfalse"
    assert arrow_between(diagram, "Start", "Big").source_handle == "default"  # not a condition


def test_connection_content_type_label_data_and_id() -> None:
    diagram = light(
        """
        nodes:
          - {label: A, type: start}
          - {label: B, type: endpoint}
          - {label: C, type: endpoint}
          - {label: D, type: endpoint}
        connections:
          - {from: A, to: B, content_type: object, label: x}
          - {from: A, to: C, type: conversation_state, priority: 2, data: {id: custom}}
          - {from: A, to: D, data: {label: y, contentType: raw_text}}
        """
    )
    ab, ac, ad = diagram.arrows
    assert (ab.id, ab.content_type, ab.label, ab.data) == ("arrow_0", "object", "x", {})
    assert (ac.id, ac.content_type, ac.label) == ("custom", "conversation_state", None)
    assert ac.data == {"id": "custom", "priority": 2}
    assert (ad.label, ad.content_type) == ("y", "raw_text")


def test_content_type_is_left_unset_when_the_file_gives_none() -> None:
    diagram = light(
        "nodes: [{label: A, type: start}, {label: B, type: endpoint}]\n"
        "connections: [{from: A, to: B}]\n"
    )
    assert diagram.arrows[0].content_type is None
    assert diagram.arrows[0].label is None


def test_every_problem_is_reported_at_once_with_file_line_and_name() -> None:
    error = problems_of(
        """\
        nodes:
          - label: Start
            type: start
          - label: Check
          - label: Start
            type: code_job
          - label: End
            type: endpoint
        connections:
          - from: Start
            to: Ned
          - to: End
          - from: Chekc[condfalse]
            to: End
        """
    )
    rendered = [str(p.render(error.file)) for p in error.problems]
    assert rendered == [
        "bad.yaml:4: node 'Check': node has no type (add `type: ...`)",
        "bad.yaml:5: node 'Start': duplicate label 'Start' (nodes node_0 and node_2); "
        "labels must be unique",
        "bad.yaml:10: connection 'Start' -> 'Ned': no node labelled 'Ned'; did you mean 'End'?",
        "bad.yaml:12: connection #2: connection has no 'from'",
        "bad.yaml:13: connection 'Chekc[condfalse]' -> 'End': no node labelled 'Chekc'; "
        "did you mean 'Check'?",
    ]
    assert str(error).splitlines() == rendered


def test_unknown_label_without_a_close_match_has_no_suggestion() -> None:
    error = problems_of("nodes: [{label: A, type: start}]\nconnections: [{from: A, to: Zzzzzz}]\n")
    assert [p.message for p in error.problems] == ["no node labelled 'Zzzzzz'"]


def test_malformed_sections_are_problems_not_crashes() -> None:
    error = problems_of(
        """\
        nodes:
          - just a string
          - {label: X, type: [1, 2]}
          - {label: Y, type: start, position: here, props: 3}
        connections: {from: X}
        persons:
          api_key_id: APIKEY_1
        """
    )
    messages = [(p.where, p.message.split(",")[0].split(";")[0]) for p in error.problems]
    assert messages == [
        ("node #1", "must be a mapping with label and type"),
        ("node 'X'", "type must be a text"),
        ("node 'Y'", "props must be a mapping"),
        ("node 'Y'", "position must be {x: number"),
        (None, "'connections' must be a list of {from"),
        ("person 'api_key_id'", "must be a mapping of settings (service"),
    ]
    assert error.problems[-1].line == 7


def test_yaml_syntax_error_reports_its_line() -> None:
    error = problems_of("nodes:\n  - label: A\n   type: start\n")
    assert str(error) == (
        "bad.yaml:3: invalid YAML: did not find expected '-' indicator "
        "(while parsing a block collection started on line 2)"
    )
    error = problems_of("a: b\n---\nc: d\n")
    assert error.problems[0].message == (
        "invalid YAML: expected a single document in the stream but found another document"
    )
    assert error.problems[0].line == 2


def test_yaml_that_would_run_code_is_rejected() -> None:
    error = problems_of("nodes: !!python/object/apply:os.system [echo hi]\n")
    assert "could not determine a constructor" in error.problems[0].message
    assert error.problems[0].line == 1


def test_absurdly_nested_input_is_rejected_not_crashed() -> None:
    error = problems_of("nodes: " + "[" * 60_000)
    assert error.problems[0].message == "invalid YAML: nested more than 5000 levels deep"
    with pytest.raises(DiagramError, match="nested too deeply"):
        parse_diagram("[" * 200_000, file="deep.json")


def test_top_level_that_is_not_a_mapping_is_rejected() -> None:
    error = problems_of("- a\n- b\n")
    assert error.problems[0].message == "the top level must be a mapping with 'nodes', got a list"


def test_content_that_is_not_a_diagram_is_rejected() -> None:
    error = problems_of("name: hello\n")
    assert "not a DiPeO diagram" in error.problems[0].message


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("  \n")
    with pytest.raises(DiagramError) as info:
        load_diagram(path)
    assert str(info.value) == f"{path}: the file is empty"
    comments_only = tmp_path / "comments.yaml"
    comments_only.write_text("# nothing here\n")
    with pytest.raises(DiagramError, match="the file is empty"):
        load_diagram(comments_only)


def test_missing_file_and_directory_are_diagram_errors(tmp_path: Path) -> None:
    with pytest.raises(DiagramError) as info:
        load_diagram(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: file not found"
    with pytest.raises(DiagramError, match="is a directory"):
        load_diagram(tmp_path)


def test_binary_file_is_a_diagram_error(tmp_path: Path) -> None:
    path = tmp_path / "blob.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DiagramError, match="not a UTF-8 text file"):
        load_diagram(path)


def test_load_diagram_keeps_the_path_as_given(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("version: light\nnodes:\n  - {label: Start, type: start}\n")
    diagram = load_diagram(str(path))
    assert (diagram.file, diagram.format) == (str(path), "light")
    assert load_diagram(path).file == str(path)


def test_format_can_be_forced_and_unknown_formats_are_rejected() -> None:
    text = "nodes:\n  - {label: Start, type: start}\n"
    assert parse_diagram(text, format="light").format == "light"
    with pytest.raises(DiagramError, match="unknown diagram format 'xml'"):
        parse_diagram(text, format="xml")


def test_fixture_file_loads() -> None:
    diagram = load_diagram(FIXTURES / "loop.light.yaml")
    assert [n.label for n in diagram.nodes] == ["Start", "Count", "Check", "Done"]
    back = arrow_between(diagram, "Check", "Count")
    assert back.source_handle == "condfalse"
    assert back.written_as == "'Check[condfalse]' -> 'Count'"
