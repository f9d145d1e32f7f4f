from __future__ import annotations

from pathlib import Path

import pytest

from dipeo_cli.errors import NodeError
from tests.test_handlers_props import run_one


def test_renders_the_dipeo_conformance_case(tmp_path: Path) -> None:
    template = (
        "Hello {{ default.who }}! n={{ default['items']|length }} gen={{ generated_at is defined }}"
    )
    output = run_one(
        "template_job",
        {"template_content": template, "output_path": "t5_tpl.txt"},
        inputs={"default": {"who": "world", "items": [1, 2, 3]}},
        base_dir=tmp_path,
    )
    assert output.value == {"default": "Hello world! n=3 gen=True"}
    assert (tmp_path / "t5_tpl.txt").read_text() == "Hello world! n=3 gen=True"
    assert output.metadata["output_path"] == "t5_tpl.txt"


def test_default_dict_is_spread_and_json_text_is_decoded() -> None:
    output = run_one(
        "template_job",
        {"template_content": "{{ who }}/{{ default.who }}"},
        inputs={"default": '{"who": "w"}'},
    )
    assert output.value["default"] == "w/w"


def test_names_later_in_the_order_win() -> None:
    props = {
        "template_content": "{{ a }} {{ b }} {{ c }} {{ label }}",
        "variables": {"a": "prop", "b": "prop", "c": "prop"},
    }
    output = run_one(
        "template_job",
        props,
        inputs={"b": "input", "c": "input", "label": "x"},
        variables={"c": "var"},
    )
    assert output.value["default"] == "prop input var x"


def test_undefined_name_fails_the_node_naming_it() -> None:
    with pytest.raises(NodeError, match=r"template: 'who' is undefined \(available: x\)"):
        run_one("template_job", {"template_content": "Hi {{ who }}"}, inputs={"x": 1})


def test_template_path_and_output_path_are_templates_relative_to_base(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl/greet.j2").write_text("Hi {{ name }}\n")
    props = {"template_path": "tpl/{{ kind }}.j2", "output_path": "out/{{ name }}.txt"}
    output = run_one(
        "template_job",
        props,
        inputs={"name": "ann"},
        variables={"kind": "greet"},
        base_dir=tmp_path,
    )
    assert output.value["default"] == "Hi ann\n"
    assert (tmp_path / "out/ann.txt").read_text() == "Hi ann\n"
    assert output.metadata["template_path"] == "tpl/greet.j2"


def test_missing_template_file_fails(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="template file not found: none.j2"):
        run_one("template_job", {"template_path": "none.j2"}, base_dir=tmp_path)


def test_to_json_filter_keeps_unicode() -> None:
    output = run_one(
        "template_job", {"template_content": "{{ d | to_json }}"}, inputs={"d": {"k": "é"}}
    )
    assert output.value["default"] == '{"k": "é"}'
