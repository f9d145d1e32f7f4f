from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dipeo_cli.errors import NodeError
from tests.test_handlers_props import compile_problem, run_one


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


# -- lines, keys, globs, templates, DiPeO's dbs folder ------------------------------------------


def test_read_lines_forms_are_one_based_and_inclusive(tmp_path: Path) -> None:
    (tmp_path / "l.txt").write_text("1\n2\n3\n4\n5")  # no newline at the end
    cases = {
        "2": "2\n",
        "4:": "4\n5",
        ":2": "1\n2\n",
        "1:120": "1\n2\n3\n4\n5",
        "5,1": "5\n1\n",
        "2:3, 2:3 ,5": "2\n3\n5",
    }
    for spec, expected in cases.items():
        assert db({"file": "l.txt", "lines": spec}, tmp_path).value["default"] == expected, spec
    output = db({"file": "l.txt", "lines": ["1:2", 4]}, tmp_path)
    assert output.value["default"] == "1\n2\n4\n"
    assert output.metadata["total_lines"] == 5
    assert db({"file": "l.txt", "lines": 3}, tmp_path).value["default"] == "3\n"


def test_lines_are_cut_before_parsing(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    rows = db({"file": "t.csv", "format": "csv", "lines": "1,3:"}, tmp_path).value["default"]
    assert rows == [{"id": "2", "name": "b"}, {"id": "3", "name": "c"}]


def test_bad_lines_are_validation_errors() -> None:
    assert "line numbers start at 1 ('0:3')" in compile_problem("db", {"file": "f", "lines": "0:3"})
    assert "lines range '5:3' ends before it starts" in compile_problem(
        "db", {"file": "f", "lines": "5:3"}
    )
    assert "lines must look like '1:120'" in compile_problem("db", {"file": "f", "lines": "a-b"})


def test_keys_read_json_held_in_text_and_list_indexes(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text('{"users": [{"name": "ada"}, {"name": "bob"}]}')
    props = {"file": "d.txt", "keys": "users.1.name, users.0"}
    assert db(props, tmp_path).value["default"] == {
        "users.1.name": "bob",
        "users.0": {"name": "ada"},
    }


def test_update_several_keys_from_a_dict(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("stats: {runs: 1}\n")
    props = {"operation": "update", "file": "s.yaml", "keys": ["stats.runs", "meta.owner"]}
    out = db(props, tmp_path, inputs={"default": {"stats.runs": 2, "owner": "ada"}})
    assert out.value["default"] == {"stats": {"runs": 2}, "meta": {"owner": "ada"}}
    assert yaml.safe_load((tmp_path / "s.yaml").read_text()) == out.value["default"]
    with pytest.raises(
        NodeError, match=r"no value for key 'meta.owner' in the input \(it has: x, runs\)"
    ):
        db(props, tmp_path, inputs={"default": {"x": 1, "runs": 3}})
    with pytest.raises(NodeError, match="needs a dict of values, got int"):
        db(props, tmp_path, inputs={"default": 5})


def test_several_glob_patterns_skip_the_ones_that_match_nothing(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "a" / "one.json").write_text('{"n": 1}')
    (tmp_path / "a" / "deep" / "two.json").write_text('{"n": 2}')
    out = db({"file": ["a/**/*.json", "b/*.json"], "keys": "n"}, tmp_path)
    assert out.value["default"] == {"a/deep/two.json": 2, "a/one.json": 1}
    assert out.metadata["unmatched"] == ["b/*.json"]
    with pytest.raises(NodeError, match=r"^no file matches b/\*\.json or c/\*$"):
        db({"file": ["b/*.json", "c/*"]}, tmp_path)


def test_path_templates_take_dot_paths_and_the_default_dict(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ada-2.txt").write_text("found")
    props = {"file": "out/{user.name}-{n}.txt"}
    output = db(props, tmp_path, inputs={"default": {"user": {"name": "ada"}}}, variables={"n": 2})
    assert output.value["default"] == "found"


def test_a_bare_name_uses_dipeos_dbs_folder_when_only_there(tmp_path: Path) -> None:
    (tmp_path / "dbs").mkdir()
    (tmp_path / "dbs" / "users.json").write_text('["ada"]')
    assert db({"file": "users"}, tmp_path).value["default"] == ["ada"]
    db({"operation": "append", "file": "users"}, tmp_path, inputs={"default": "bob"})
    assert json.loads((tmp_path / "dbs" / "users.json").read_text()) == ["ada", "bob"]
    (tmp_path / "users").write_text("here")  # a file in the base directory wins
    assert db({"file": "users"}, tmp_path).value["default"] == "here"


def test_db_files_example_diagram(isolated: Path) -> None:
    from typer.testing import CliRunner

    from dipeo_cli.cli import app
    from tests.conftest import REPO

    path = str(REPO / "diagrams" / "db_files.light.yaml")
    for run in (1, 2):
        result = CliRunner().invoke(app, ["run", path, "--json"])
        assert result.exit_code == 0, result.output
        value = json.loads(result.stdout)["result"]
        assert value["last_rows"] == [{"day": "tue", "temp": "21"}, {"day": "wed", "temp": "19"}]
        assert value["picked"] == {
            "readings.1.temp": 21,
            "stats": {"runs": run, "by": "db_files.light.yaml"},
        }
        assert value["files"]["results/db_files/runs.txt"].count("tuesday was 21") == run
        assert set(value["files"]) == {"results/db_files/lisbon.json", "results/db_files/runs.txt"}
    assert (isolated / "results" / "db_files" / "readings.csv").read_text().startswith("day,temp\n")
