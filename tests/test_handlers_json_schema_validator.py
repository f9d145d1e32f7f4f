"""json_schema_validator: schema and data from real files or inline/inputs; every error listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.errors import NodeError
from dipeo_cli.handlers.json_schema_validator import close_objects, json_path
from tests.test_handlers_props import compile_problem, make_graph, run_node, run_one

ORDER_SCHEMA = {
    "type": "object",
    "required": ["name", "items"],
    "properties": {
        "name": {"type": "string"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "qty"],
                "properties": {"name": {"type": "string"}, "qty": {"type": "integer"}},
            },
        },
    },
}


def validate(props: dict, base: Path, **kwargs):
    return run_one("json_schema_validator", props, base_dir=base, **kwargs)


def test_valid_input_passes_through_with_valid_metadata(tmp_path: Path) -> None:
    data = {"name": "o1", "items": [{"name": "pen", "qty": 2}]}
    out = validate({"json_schema": ORDER_SCHEMA}, tmp_path, inputs={"default": data})
    assert out.value == {"default": data}
    assert out.metadata["valid"] is True


def test_json_text_input_is_decoded(tmp_path: Path) -> None:
    out = validate(
        {"json_schema": ORDER_SCHEMA}, tmp_path, inputs={"default": '{"name": "x", "items": []}'}
    )
    assert out.value["default"] == {"name": "x", "items": []}


def test_several_inputs_are_validated_as_a_dict_by_label(tmp_path: Path) -> None:
    schema = {"type": "object", "required": ["a", "b"], "properties": {"b": {"type": "integer"}}}
    out = validate({"json_schema": schema}, tmp_path, inputs={"a": "x", "b": 3})
    assert out.value["default"] == {"a": "x", "b": 3}


def test_strict_mode_lists_every_error_with_its_json_path(tmp_path: Path) -> None:
    bad = {"items": [{"name": "a", "qty": 1}, {"name": 5, "qty": 1}, {"qty": "many"}]}
    with pytest.raises(NodeError) as caught:
        validate({"json_schema": ORDER_SCHEMA, "strict": True}, tmp_path, inputs={"default": bad})
    message = str(caught.value)
    assert message.startswith("validation failed: ")
    for part in (
        "$: 'name' is a required property",
        "$.items[1].name: 5 is not of type 'string'",
        "$.items[2]: 'name' is a required property",
        "$.items[2].qty: 'many' is not of type 'integer'",
    ):
        assert part in message, part
    assert message.count("; ") == 3
    assert len(caught.value.metadata["errors"]) == 4  # type: ignore[attr-defined]


def test_without_strict_mode_only_one_error_is_reported(tmp_path: Path) -> None:
    bad = {"items": [{"name": 5, "qty": "x"}]}
    with pytest.raises(NodeError) as caught:
        validate({"json_schema": ORDER_SCHEMA}, tmp_path, inputs={"default": bad})
    assert "; " not in str(caught.value)


def test_schema_path_and_data_path_from_files_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "order.yaml").write_text(
        "type: object\nrequired: [name]\nproperties:\n  name: {type: string}\n"
    )
    (tmp_path / "order.json").write_text(json.dumps({"name": "o7"}))
    out = validate({"schema_path": "schemas/order.yaml", "data_path": "order.json"}, tmp_path)
    assert out.value["default"] == {"name": "o7"}
    assert out.metadata["schema_path"] == "schemas/order.yaml"
    (tmp_path / "bad.yaml").write_text("name: 3\n")
    with pytest.raises(NodeError, match=r"\$\.name: 3 is not of type 'string'"):
        validate({"schema_path": "schemas/order.yaml", "data_path": "bad.yaml"}, tmp_path)


def test_missing_schema_file_and_invalid_schema_file_fail_the_node(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="^file not found: nope.json$"):
        validate({"schema_path": "nope.json"}, tmp_path, inputs={"default": 1})
    (tmp_path / "broken.json").write_text('{"type": 12}')
    with pytest.raises(NodeError, match="broken.json is not a valid JSON Schema"):
        validate({"schema_path": "broken.json"}, tmp_path, inputs={"default": 1})


def test_error_on_extra_closes_top_level_and_nested_objects(tmp_path: Path) -> None:
    data = {"name": "o", "items": [{"name": "a", "qty": 1, "colour": "red"}], "note": "hi"}
    props = {"json_schema": ORDER_SCHEMA, "error_on_extra": True, "strict_mode": True}
    with pytest.raises(NodeError) as caught:
        validate(props, tmp_path, inputs={"default": data})
    message = str(caught.value)
    assert "$: Additional properties are not allowed ('note' was unexpected)" in message
    assert "$.items[0]: Additional properties are not allowed ('colour' was unexpected)" in message
    # Without the flag the same data is fine.
    validate({"json_schema": ORDER_SCHEMA}, tmp_path, inputs={"default": data})


def test_close_objects_respects_explicit_choices_and_leaves_all_of_open() -> None:
    schema = {
        "type": "object",
        "additionalProperties": True,
        "properties": {"x": {"type": "object"}},
        "allOf": [{"type": "object", "properties": {"a": {}}}],
    }
    closed = close_objects(schema)
    assert closed["additionalProperties"] is True
    assert closed["properties"]["x"]["additionalProperties"] is False
    assert "additionalProperties" not in closed["allOf"][0]
    assert "additionalProperties" not in schema["properties"]["x"]  # the original is untouched


def test_validator_class_follows_dollar_schema(tmp_path: Path) -> None:
    # Draft 4's exclusiveMaximum is a boolean; draft 2020-12 (the default) rejects that schema.
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "number",
        "maximum": 5,
        "exclusiveMaximum": True,
    }
    with pytest.raises(NodeError, match=r"\$: 5 is greater than or equal to the maximum of 5"):
        validate({"json_schema": draft4}, tmp_path, inputs={"default": 5})
    assert "is not a valid schema" in compile_problem(
        "json_schema_validator",
        {"json_schema": {k: v for k, v in draft4.items() if k != "$schema"}},
    )


def test_inline_schema_may_be_json_text_and_the_strict_alias_works() -> None:
    graph = make_graph(
        ("V", "json_schema_validator", {"json_schema": '{"type": "integer"}', "strict": True})
    )
    config = graph.node_by_label("V").config  # type: ignore[union-attr]
    assert config.json_schema == {"type": "integer"} and config.strict_mode is True
    with pytest.raises(NodeError, match=r"^validation failed: \$: 'a' is not of type 'integer'$"):
        run_node(graph, "V", inputs={"default": "a"})


def test_validation_time_errors() -> None:
    assert "needs a schema_path or an inline json_schema" in compile_problem(
        "json_schema_validator", {}
    )
    assert "give schema_path or json_schema, not both" in compile_problem(
        "json_schema_validator", {"schema_path": "s.json", "json_schema": {"type": "object"}}
    )
    assert "json_schema is not a valid schema: $.type:" in compile_problem(
        "json_schema_validator", {"json_schema": {"type": "nonsense"}}
    )


def test_no_data_fails_the_node(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="nothing to validate"):
        validate({"json_schema": {"type": "object"}}, tmp_path)


def test_json_path_quotes_keys_that_are_not_identifiers() -> None:
    assert json_path([]) == "$"
    assert json_path(["items", 2, "name"]) == "$.items[2].name"
    assert json_path(["a b", 0]) == '$["a b"][0]'


def test_the_validate_example_accepts_and_rejects_through_the_error_port() -> None:
    diagram = str(Path(__file__).resolve().parents[1] / "diagrams" / "validate.light.yaml")
    ok = CliRunner().invoke(app, ["run", diagram, "--json"], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["result"] == "2 x notebook for ada@example.com"
    bad = CliRunner().invoke(
        app, ["run", diagram, "--json", "-i", "quantity=0", "-i", "colour=red"]
    )
    assert bad.exit_code == 0, bad.output  # the error port handles the failure
    result = json.loads(bad.stdout)["result"]
    assert result.startswith("validation failed: ")
    assert "$.quantity: 0 is less than the minimum of 1" in result
    assert "('colour' was unexpected)" in result
