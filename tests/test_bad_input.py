"""Bad input is always a clean exit 2 from `validate` and `run`: one located error, never a
traceback, whatever exception the bad value provokes inside load or compile."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel, field_validator
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.compiler import compile_graph
from dipeo_cli.diagram import parse_diagram
from dipeo_cli.errors import DiagramError
from dipeo_cli.registry import HandlerSpec, load_builtin_handlers

LONG_NAME = "x" * 300  # longer than any file system allows for one name (ENAMETOOLONG)


def write(name: str, text: str) -> str:
    Path(name).write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def sub_diagram_with_a_long_name() -> str:
    return write(
        "long.light.yaml",
        f"""\
        version: light
        nodes:
        - label: Start
          type: start
        - label: Sub
          type: sub_diagram
          props:
            diagram_name: {LONG_NAME}
        connections:
        - from: Start
          to: Sub
        """,
    )


def endpoint_with_a_mapping_format() -> str:
    return write(
        "format.light.yaml",
        """\
        version: light
        nodes:
        - label: Start
          type: start
        - label: End
          type: endpoint
          props:
            save_to_file: true
            file_name: out.txt
            file_format: {a: 1}
        connections:
        - from: Start
          to: End
        """,
    )


def native_with_a_huge_number() -> str:
    Path("huge.native.json").write_text(
        '{"nodes": [{"id": "n1", "type": "start", "position": {"x": %s, "y": 0},'
        ' "data": {"label": "Start"}}], "arrows": []}' % ("9" * 5000),
        encoding="utf-8",
    )
    return "huge.native.json"


CASES = {
    "sub_diagram name too long": (
        sub_diagram_with_a_long_name,
        "node 'Sub': sub-diagram 'xxxxxxxxxx",
        "cannot be a file name: File name too long",
    ),
    "endpoint file_format mapping": (
        endpoint_with_a_mapping_format,
        "node 'End': property 'file_format'",
        "is not supported (use json, yaml, txt or md)",
    ),
    "native number too long": (
        native_with_a_huge_number,
        "huge.native.json: invalid JSON",
        "Exceeds the limit (4300 digits)",
    ),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_value_is_a_located_problem_and_exit_2(case: str, command: str) -> None:
    make, where, message = CASES[case]
    path = make()
    result = CliRunner().invoke(app, [command, path], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert where in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_values_through_the_real_command_print_no_traceback() -> None:
    for make, _, message in CASES.values():
        path = make()
        for command in ("validate", "run"):
            proc = subprocess.run(
                [sys.executable, "-m", "dipeo_cli", command, path],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 2, proc.stderr
            assert "Traceback" not in proc.stderr
            assert message in proc.stderr


def test_validate_json_reports_the_problem() -> None:
    result = CliRunner().invoke(
        app, ["validate", "--json", native_with_a_huge_number()], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert '"valid": false' in result.stdout and "4300 digits" in result.stdout


# -- the general cause: compile turns whatever a handler's validation raises into a problem ------


class _Props(BaseModel):
    size: object = None

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return {}[value]  # TypeError (unhashable) or KeyError: not a ValueError pydantic wraps


def _registry_with(check) -> object:
    async def fragile(node, ctx):  # pragma: no cover - never run
        return None

    registry = load_builtin_handlers().copy()
    registry.register(HandlerSpec(type="fragile", fn=fragile, props=_Props, check=check))
    return registry


def _diagram(props: str):
    return parse_diagram(
        textwrap.dedent(
            f"""\
            version: light
            nodes:
            - label: Start
              type: start
            - label: F
              type: fragile
              props: {props}
            connections:
            - from: Start
              to: F
            """
        ),
        file="fragile.light.yaml",
    )


def test_a_validator_raising_a_type_error_is_a_problem_with_the_node() -> None:
    registry = _registry_with(None)
    with pytest.raises(DiagramError) as caught:
        compile_graph(_diagram("{size: [1]}"), registry)
    [problem] = caught.value.problems
    assert problem.where == "node 'F'"
    assert problem.message.startswith("invalid properties: TypeError: ")


def test_a_check_raising_os_error_is_a_problem_with_the_node() -> None:
    def check(config, diagram, registry):
        raise OSError(36, "File name too long")

    with pytest.raises(DiagramError) as caught:
        compile_graph(_diagram("{}"), _registry_with(check))
    [problem] = caught.value.problems
    assert problem.where == "node 'F'"
    assert problem.message == "cannot check this node: OSError: [Errno 36] File name too long"


@pytest.mark.parametrize("value", [".nan", str(10**400)], ids=["nan", "400 digits"])
def test_numbers_python_cannot_take_as_a_timeout_are_problems(value: str) -> None:
    with pytest.raises(DiagramError, match="property 'timeout' must be"):
        compile_graph(_diagram(f"{{timeout: {value}}}"), _registry_with(None))


# -- the last resort: a bug of ours while loading is one "internal error" line, exit 2 ----------


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_unexpected_exception_while_loading_is_an_internal_error_line(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dipeo_cli.runner

    def broken(*args, **kwargs):
        raise RuntimeError("something we did not foresee\nsecond line")

    monkeypatch.setattr(dipeo_cli.runner, "prepare", broken)
    path = endpoint_with_a_mapping_format()
    result = CliRunner().invoke(app, [command, path], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: internal error while loading {path}: RuntimeError: something we did not foresee\n"
    )


# -- found by tests/test_fuzz.py: text that is not text ------------------------------------------


def test_a_lone_surrogate_in_a_diagram_is_a_problem_not_a_history_crash() -> None:
    Path("odd.native.json").write_text(
        '{"nodes": [{"id": "n1", "type": "start", "position": {"x": 0, "y": 0},'
        ' "data": {"label": "St\\ud800art"}}], "arrows": []}',
        encoding="utf-8",
    )
    Path("pair.json").write_text(
        '{"version": "light", "nodes": [{"label": "\\ud83d\\ude00", "type": "start"}]}',
        encoding="utf-8",
    )
    for command in ("validate", "run"):
        result = CliRunner().invoke(app, [command, "odd.native.json"], catch_exceptions=False)
        assert result.exit_code == 2, result.output
        assert "'St\\ud800art' holds a lone UTF-16 surrogate" in result.stderr
        # a valid pair is one character, and fine
        assert CliRunner().invoke(app, [command, "pair.json"]).exit_code == 0


def test_variables_that_are_not_text_are_a_usage_error() -> None:
    path = endpoint_with_a_mapping_format().replace("format", "plain")
    Path(path).write_text(
        "version: light\nnodes:\n- {label: Start, type: start}\n", encoding="utf-8"
    )
    result = CliRunner().invoke(
        app, ["run", path, "--input-data", '{"name": "\\ud800"}'], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "a variable is not text" in result.stderr
    # bytes that are not UTF-8 in an argument (Python hands them on as surrogate escapes)
    proc = subprocess.run(
        [sys.executable.encode(), b"-m", b"dipeo_cli", b"run", path.encode(), b"-i", b"x=\xff"],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert b"Traceback" not in proc.stderr and b"a variable is not text" in proc.stderr
