from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dipeo_cli.errors import NodeError
from tests.test_handlers_props import run_one


def db(props: dict, base: Path, **kwargs):
    return run_one("db", props, base_dir=base, **kwargs)


# -- read ----------------------------------------------------------------------------------------


def test_read_json_and_yaml_by_extension(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"a": {"b": [1, 2]}}')
    (tmp_path / "d.yaml").write_text("a: 1\n")
    assert db({"file": "d.json"}, tmp_path).value == {"default": {"a": {"b": [1, 2]}}}
    assert db({"source_details": "d.yaml"}, tmp_path).value == {"default": {"a": 1}}


def test_read_text_keeps_the_content(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text('{"not": "parsed"}\n')
    assert db({"file": "q.txt"}, tmp_path).value["default"] == '{"not": "parsed"}\n'


def test_read_csv_is_text_unless_format_csv(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,name\n1,a\n2,b\n")
    assert db({"file": "t.csv"}, tmp_path).value["default"] == "id,name\n1,a\n2,b\n"
    rows = db({"file": "t.csv", "format": "csv"}, tmp_path).value["default"]
    assert rows == [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}]


def test_read_missing_file_fails_the_node(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="^file not found: nope.json$"):
        db({"file": "nope.json"}, tmp_path)


def test_read_invalid_json_fails_the_node(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(NodeError, match="bad.json is not valid json"):
        db({"file": "bad.json"}, tmp_path)


def test_read_keys_extracts_dot_paths(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"a": {"b": [10, 20]}, "c": 3}')
    assert db({"file": "d.json", "keys": "a.b.1"}, tmp_path).value["default"] == 20
    assert db({"file": "d.json", "keys": ["a.b", "c"]}, tmp_path).value["default"] == {
        "a.b": [10, 20],
        "c": 3,
    }
    with pytest.raises(NodeError, match="key 'a.x' not found in d.json"):
        db({"file": "d.json", "keys": "a.x"}, tmp_path)


def test_read_several_files_or_a_glob_gives_a_dict_by_path(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.txt").write_text("A")
    (tmp_path / "in/b.txt").write_text("B")
    assert db({"file": "in/*.txt"}, tmp_path).value["default"] == {"in/a.txt": "A", "in/b.txt": "B"}
    assert db({"file": ["in/b.txt", "in/a.txt"]}, tmp_path).value["default"] == {
        "in/b.txt": "B",
        "in/a.txt": "A",
    }
    with pytest.raises(NodeError, match="no file matches"):
        db({"file": "in/*.json"}, tmp_path)


def test_path_placeholders_come_from_inputs_and_variables(tmp_path: Path) -> None:
    (tmp_path / "temp_section_2.tsx").write_text("code")
    props = {"file": "temp_section_{current_index}.tsx", "format": "text"}
    assert db(props, tmp_path, variables={"current_index": 2}).value["default"] == "code"
    with pytest.raises(
        NodeError, match=r"uses \{current_index\}, which is neither an input nor a variable"
    ):
        db(props, tmp_path)


def test_read_lines_selects_line_ranges(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("1\n2\n3\n4\n5\n")
    assert db({"file": "l.txt", "lines": "2:3,5"}, tmp_path).value["default"] == "2\n3\n5\n"


def test_serialize_json_gives_text(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('{"a": 1}')
    out = db({"file": "d.json", "serialize_json": True}, tmp_path).value["default"]
    assert isinstance(out, str) and json.loads(out) == {"a": 1}


# -- write ---------------------------------------------------------------------------------------


def test_write_dict_as_json_and_report_path_and_bytes(tmp_path: Path) -> None:
    output = db(
        {"operation": "write", "file": "out/r.json"},
        tmp_path,
        inputs={"default": {"left": {"a": 1}}},
    )
    text = (tmp_path / "out/r.json").read_text()
    assert json.loads(text) == {"left": {"a": 1}}
    assert output.value == {"default": {"left": {"a": 1}}}
    assert output.metadata == {
        "operation": "write",
        "path": "out/r.json",
        "format": "json",
        "bytes": len(text),
    }


def test_write_text_verbatim_to_text_and_yaml_files(tmp_path: Path) -> None:
    db({"operation": "write", "file": "n.md"}, tmp_path, inputs={"default": "# Title\n"})
    assert (tmp_path / "n.md").read_text() == "# Title\n"
    db({"operation": "write", "file": "d.yaml"}, tmp_path, inputs={"default": "a: 1\n"})
    assert (tmp_path / "d.yaml").read_text() == "a: 1\n"


def test_write_prefers_generated_code_content_value(tmp_path: Path) -> None:
    db(
        {"operation": "write", "file": "o.txt"},
        tmp_path,
        inputs={"other": "x", "content": "chosen"},
    )
    assert (tmp_path / "o.txt").read_text() == "chosen"


def test_write_rows_as_csv(tmp_path: Path) -> None:
    rows = [{"id": 1, "name": "a"}, {"id": 2, "extra": "e"}]
    db({"operation": "write", "file": "t.csv"}, tmp_path, inputs={"default": rows})
    assert (tmp_path / "t.csv").read_text() == "id,name,extra\n1,a,\n2,,e\n"


def test_write_without_input_fails(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="nothing to write"):
        db({"operation": "write", "file": "o.txt"}, tmp_path)


# -- append / update -----------------------------------------------------------------------------


def test_append_to_json_list_creating_and_wrapping(tmp_path: Path) -> None:
    first = db({"operation": "append", "file": "l.json"}, tmp_path, inputs={"default": {"n": 1}})
    assert first.value["default"] == [{"n": 1}]
    (tmp_path / "w.json").write_text('{"old": true}')
    second = db({"operation": "append", "file": "w.json"}, tmp_path, inputs={"default": 2})
    assert second.value["default"] == [{"old": True}, 2]
    assert json.loads((tmp_path / "w.json").read_text()) == [{"old": True}, 2]


def test_append_yaml_list(tmp_path: Path) -> None:
    db({"operation": "append", "file": "l.yaml"}, tmp_path, inputs={"default": "a"})
    db({"operation": "append", "file": "l.yaml"}, tmp_path, inputs={"default": "b"})
    assert yaml.safe_load((tmp_path / "l.yaml").read_text()) == ["a", "b"]


def test_append_csv_rows_under_the_existing_header(tmp_path: Path) -> None:
    db(
        {"operation": "append", "file": "t.csv"},
        tmp_path,
        inputs={"default": {"id": 1, "name": "a"}},
    )
    out = db(
        {"operation": "append", "file": "t.csv"},
        tmp_path,
        inputs={"default": [{"name": "b", "id": 2}]},
    )
    assert (tmp_path / "t.csv").read_text() == "id,name\n1,a\n2,b\n"
    assert out.value["default"] == [{"id": "1", "name": "a"}, {"id": "2", "name": "b"}]
    with pytest.raises(NodeError, match="column zzz is not in the csv header"):
        db({"operation": "append", "file": "t.csv"}, tmp_path, inputs={"default": {"zzz": 1}})


def test_append_text_lines(tmp_path: Path) -> None:
    (tmp_path / "log.txt").write_text("first")
    out = db({"operation": "append", "file": "log.txt"}, tmp_path, inputs={"default": "second"})
    assert (tmp_path / "log.txt").read_text() == "first\nsecond\n"
    assert out.value["default"] == "first\nsecond\n"


def test_update_sets_a_nested_key(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text('{"stats": {"runs": 1}, "keep": true}')
    out = db(
        {"operation": "update", "file": "s.json", "keys": "stats.count"},
        tmp_path,
        inputs={"value": 5},
    )
    expected = {"stats": {"runs": 1, "count": 5}, "keep": True}
    assert out.value["default"] == expected
    assert json.loads((tmp_path / "s.json").read_text()) == expected


def test_update_creates_a_missing_yaml_file(tmp_path: Path) -> None:
    db(
        {"operation": "update", "file": "c.yaml", "keys": ["a.b"]},
        tmp_path,
        inputs={"default": [1]},
    )
    assert yaml.safe_load((tmp_path / "c.yaml").read_text()) == {"a": {"b": [1]}}


def test_update_refuses_text_files(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="update works on json or yaml files"):
        db({"operation": "update", "file": "c.txt", "keys": "a"}, tmp_path, inputs={"default": 1})
