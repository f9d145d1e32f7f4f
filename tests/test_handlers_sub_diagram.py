"""sub_diagram: child executions recorded with their parent, mappings, batch mode, failures."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app

CHILD = """\
nodes:
  - {label: Start, type: start}
  - {label: Double, type: code_job, code: "result = {'doubled': n * 2, 'who': who}"}
  - {label: Out, type: endpoint}
connections:
  - {from: Start, to: Double, label: vars}
  - {from: Double, to: Out}
"""
# the child's code sees its variables through the start node's output (label `vars`)
CHILD = CHILD.replace("n * 2, 'who': who", "vars['n'] * 2, 'who': vars.get('who')")


def write(path: str, text: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def parent(props: str, custom_data: str = "{n: 21, who: ada}") -> str:
    return f"""\
nodes:
  - {{label: Start, type: start, custom_data: {custom_data}}}
  - {{label: Child, type: sub_diagram, {props}}}
  - {{label: End, type: endpoint}}
connections:
  - {{from: Start, to: Child}}
  - {{from: Child, to: End}}
"""


def test_child_runs_with_the_parent_input_and_is_linked_both_ways():
    write("flows/child.light.yaml", CHILD)
    write("flows/parent.light.yaml", parent("diagram_name: child"))  # found next to the parent
    result = cli("run", "flows/parent.light.yaml", "--json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["result"] == {"doubled": 42, "who": "ada"}
    history = json.loads(cli("history", "--json").stdout)
    assert len(history) == 2
    shown = json.loads(cli("show", run["id"], "--json").stdout)
    child_id = next(
        o["metadata"]["child_execution_id"]
        for o in shown["node_outputs"].values()
        if "child_execution_id" in o["metadata"]
    )
    assert shown["children"] == [child_id]
    child = json.loads(cli("show", child_id, "--json").stdout)
    assert child["parent_id"] == run["id"]
    assert child["status"] == "COMPLETED"
    text = cli("show", run["id"]).stdout
    assert child_id[:12] in text
    assert run["id"][:12] in cli("show", child_id).stdout


def test_input_and_output_mappings():
    write("child.light.yaml", CHILD)
    write(
        "parent.light.yaml",
        parent(
            "diagram_name: child.light.yaml, input_mapping: {n: default.count}, output_mapping: {answer: doubled, node: Double.who}",
            custom_data="{count: 5, who: bob}",
        ),
    )
    run = json.loads(cli("run", "parent.light.yaml", "--json").stdout)
    assert run["result"] == {"answer": 10, "node": "bob"}


def test_batch_runs_once_per_item_in_input_order():
    write(
        "item.light.yaml",
        """\
        nodes:
          - {label: Start, type: start}
          - {label: Square, type: code_job, code: "result = v['item'] * v['item']"}
          - {label: Out, type: endpoint}
        connections:
          - {from: Start, to: Square, label: v}
          - {from: Square, to: Out}
        """,
    )
    write(
        "batch.light.yaml",
        parent(
            "diagram_name: item, batch: true, max_concurrent: 2",
            custom_data="{items: [1, 2, 3, 4, 5]}",
        ),
    )
    result = cli("run", "batch.light.yaml", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == [1, 4, 9, 16, 25]
    assert len(json.loads(cli("history", "--json").stdout)) == 6


def test_failing_child_fails_the_node_with_the_childs_error():
    write(
        "bad_child.light.yaml",
        """\
        nodes:
          - {label: Start, type: start}
          - {label: Boom, type: code_job, code: "raise ValueError('deep trouble')"}
        connections:
          - {from: Start, to: Boom}
        """,
    )
    write("parent.light.yaml", parent("diagram_name: bad_child"))
    result = cli("run", "parent.light.yaml", "--json")
    assert result.exit_code == 1
    run = json.loads(result.stdout)
    assert "deep trouble" in run["error"] and "Child" in run["error"]
    statuses = sorted(h["status"] for h in json.loads(cli("history", "--json").stdout))
    assert statuses == ["FAILED", "FAILED"]


def test_recursion_is_capped():
    write("loop.light.yaml", parent("diagram_name: loop.light.yaml"))
    result = cli("run", "loop.light.yaml", "--json")
    assert result.exit_code == 1
    assert "nested more than 10 deep" in json.loads(result.stdout)["error"]


@pytest.mark.parametrize(
    "props, message",
    [
        ("diagram_name: nowhere", "sub-diagram 'nowhere' not found"),
        ("diagram_name: broken", "sub-diagram broken is not valid"),
        ("{}", "exactly one of diagram_name"),
    ],
)
def test_a_missing_or_broken_child_is_a_validation_error(props, message):
    write(
        "broken.light.yaml",
        "nodes:\n  - {label: Start, type: start}\n  - {label: X, type: teleport}\n",
    )
    write("parent.light.yaml", parent(props).replace("type: sub_diagram, {}", "type: sub_diagram"))
    result = cli("validate", "parent.light.yaml")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "node 'Child'" in result.stderr


def test_inline_diagram_data():
    inline = json.dumps(
        {
            "nodes": [
                {"label": "Start", "type": "start"},
                {"label": "Out", "type": "endpoint"},
            ],
            "connections": [{"from": "Start", "to": "Out"}],
        }
    )
    write("inline.light.yaml", parent(f"diagram_data: {inline}"))
    run = json.loads(cli("run", "inline.light.yaml", "--json").stdout)
    assert run["status"] == "COMPLETED"
    assert run["result"] == {"n": 21, "who": "ada"}


def test_latest_is_the_newest_run_the_user_started_not_a_child():
    write("child.light.yaml", CHILD)
    write("parent.light.yaml", parent("diagram_name: child"))
    run = json.loads(cli("run", "parent.light.yaml", "--json").stdout)
    assert json.loads(cli("show", "latest", "--json").stdout)["id"] == run["id"]
