from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.test_handlers_props import run_one


def test_one_input_is_the_value() -> None:
    assert run_one("endpoint", {}, inputs={"default": "text"}).value == {"default": "text"}


def test_several_inputs_are_a_dict_by_label() -> None:
    output = run_one("endpoint", {}, inputs={"tpl": "hi", "ask": ""})
    assert output.value == {"default": {"tpl": "hi", "ask": ""}}
    assert output.metadata == {}


def test_saves_json_indented_with_parents_created(tmp_path: Path) -> None:
    props = {"save_to_file": True, "file_path": "files/results/out.json"}
    output = run_one("endpoint", props, inputs={"payload": {"name": "é"}}, base_dir=tmp_path)
    text = (tmp_path / "files/results/out.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"payload": {"name": "é"}}  # one labelled input keeps its label
    assert text == '{\n  "payload": {\n    "name": "é"\n  }\n}\n'
    assert output.metadata["saved_to"] == "files/results/out.json"
    assert [p.name for p in (tmp_path / "files/results").iterdir()] == ["out.json"]  # no temp files


def test_only_a_single_unlabelled_input_is_unwrapped(tmp_path: Path) -> None:
    assert run_one("endpoint", {}, inputs={"default": {"a": 1}}).value["default"] == {"a": 1}
    labelled = run_one("endpoint", {}, inputs={"payload": 5}).value["default"]
    assert labelled == {"payload": 5}


def test_file_format_beats_the_extension(tmp_path: Path) -> None:
    props = {"save_to_file": True, "file_name": "out.txt", "file_format": "yaml"}
    run_one("endpoint", props, inputs={"default": {"b": 1, "a": [1, 2]}}, base_dir=tmp_path)
    text = (tmp_path / "out.txt").read_text()
    assert yaml.safe_load(text) == {"b": 1, "a": [1, 2]}
    assert text.startswith("b: 1")  # keys keep their order


def test_txt_writes_strings_as_they_are_and_data_as_json(tmp_path: Path) -> None:
    run_one(
        "endpoint",
        {"save_to_file": True, "filePath": "a.txt"},
        inputs={"default": "plain"},
        base_dir=tmp_path,
    )
    assert (tmp_path / "a.txt").read_text() == "plain"
    run_one(
        "endpoint",
        {"save_to_file": True, "fileName": "b.md"},
        inputs={"default": {"k": 1}},
        base_dir=tmp_path,
    )
    assert json.loads((tmp_path / "b.md").read_text()) == {"k": 1}


def test_format_comes_from_the_extension_else_txt(tmp_path: Path) -> None:
    run_one(
        "endpoint",
        {"save_to_file": True, "file_path": "d.yml"},
        inputs={"default": {"k": 1}},
        base_dir=tmp_path,
    )
    assert (tmp_path / "d.yml").read_text() == "k: 1\n"
    output = run_one(
        "endpoint",
        {"save_to_file": True, "file_path": "d.out"},
        inputs={"default": "x"},
        base_dir=tmp_path,
    )
    assert output.metadata["file_format"] == "txt"


def test_json_file_of_json_text_is_not_double_encoded(tmp_path: Path) -> None:
    run_one(
        "endpoint",
        {"save_to_file": True, "file_path": "o.json"},
        inputs={"default": '{"a": 1}'},
        base_dir=tmp_path,
    )
    assert json.loads((tmp_path / "o.json").read_text()) == {"a": 1}


def test_not_saving_writes_nothing(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    run_one(
        "endpoint",
        {"save_to_file": False, "file_path": "x.txt"},
        inputs={"default": 1},
        base_dir=base,
    )
    assert list(base.iterdir()) == []
