"""The CLI contract (DESIGN.md §5) through Typer's CliRunner, on a temporary data directory."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "diagrams" / "hello.light.yaml")


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def write(path: str, text: str) -> str:
    Path(path).write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def history(cli) -> list[dict]:
    result = cli("history", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_run_prints_the_result_and_records_the_execution(cli):
    result = cli("run", HELLO)
    assert result.exit_code == 0, result.output
    assert "Hello, world!" in result.stdout
    [entry] = history(cli)
    assert entry["status"] == "COMPLETED"
    assert entry["id"] in result.stdout


def test_run_json_is_one_object_with_the_documented_fields(cli):
    result = cli("run", HELLO, "--json", "-i", "name=Ada")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == {
        "schema_version",
        "id",
        "status",
        "diagram_id",
        "started_at",
        "ended_at",
        "duration_seconds",
        "error",
        "result",
        "result_from",
        "token_usage",
    }
    assert data["status"] == "COMPLETED"
    assert data["result"] == "Hello, Ada!"
    assert data["error"] is None
    assert data["schema_version"] == 2
    assert data["token_usage"] == {"input": 0, "output": 0, "cached": 0, "total": 0}


def test_variables_come_from_file_json_and_pairs_later_winning(cli):
    write("vars.yaml", "name: FromFile\nother: 1\n")
    result = cli(
        "run", HELLO, "--json", "--inputs", "vars.yaml", "--input-data", '{"name": "FromJson"}'
    )
    assert json.loads(result.stdout)["result"] == "Hello, FromJson!"
    result = cli(
        "run", HELLO, "--json", "--input-data", '{"name": "FromJson"}', "-i", "name=FromPair"
    )
    assert json.loads(result.stdout)["result"] == "Hello, FromPair!"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input-data", "{not json"], "--input-data: not valid JSON"),
        (["--input-data", "[1, 2]"], "expected an object"),
        (["-i", "novalue"], "-i expects key=value"),
        (["--inputs", "missing.json"], "cannot read missing.json"),
        (["--timeout", "0"], "--timeout must be greater than 0"),
        (["--light", "--native"], "only one of"),
    ],
)
def test_bad_usage_exits_2_and_records_nothing(cli, args, message):
    result = cli("run", HELLO, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert history(cli) == []


BROKEN = """\
version: light
nodes:
  - label: Start
    type: start
  - label: Mystery
    type: teleport
  - label: Tpl
    type: template_job
  - label: End
    type: endpoint
connections:
  - {from: Start, to: Nowhere}
  - {from: "Start[sideways]", to: End}
  - {from: End, to: Start}
"""


def test_invalid_diagram_reports_every_problem_exits_2_and_records_nothing(cli):
    write("broken.light.yaml", BROKEN)
    result = cli("run", "broken.light.yaml")
    assert result.exit_code == 2
    err = result.stderr
    assert "broken.light.yaml" in err
    assert "teleport" in err and "Mystery" in err  # unknown type, named by label
    assert "Nowhere" in err  # connection to a missing label
    assert "sideways" in err  # invalid handle
    assert "Tpl" in err  # missing required property
    assert "start node cannot have inputs" in err
    assert "Traceback" not in result.output
    assert history(cli) == []


def test_yaml_syntax_error_names_the_line(cli):
    write("bad.light.yaml", "version: light\nnodes:\n  - label: Start\n    type: [start\n")
    result = cli("validate", "bad.light.yaml")
    assert result.exit_code == 2
    assert "bad.light.yaml:" in result.stderr
    assert (
        "line" in result.stderr
        or "bad.light.yaml:4" in result.stderr
        or "bad.light.yaml:5" in result.stderr
    )


def test_unsupported_node_type_is_rejected_at_validation(cli):
    write(
        "llm.light.yaml",
        "nodes:\n  - {label: Start, type: start}\n  - {label: Ask, type: integrated_api}\nconnections:\n  - {from: Start, to: Ask}\n",
    )
    result = cli("validate", "llm.light.yaml")
    assert result.exit_code == 2
    assert "node 'Ask'" in result.stderr and "is not supported" in result.stderr


def test_validate_ok_and_json(cli):
    result = cli("validate", HELLO)
    assert result.exit_code == 0
    assert "3 nodes" in result.stdout
    data = json.loads(cli("validate", HELLO, "--json").stdout)
    assert data["valid"] is True and data["node_count"] == 3
    write("broken.light.yaml", BROKEN)
    result = cli("validate", "broken.light.yaml", "--json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["valid"] is False and len(data["problems"]) >= 5
    assert all({"message", "where", "line"} <= set(p) for p in data["problems"])


FAILING = """\
version: light
nodes:
  - {label: Start, type: start, custom_data: {x: 1}}
  - label: Fine
    type: code_job
    code: |
      print("about to succeed")
      result = default["x"] + 1
  - label: Boom
    type: code_job
    code: |
      print("about to fail")
      raise RuntimeError("kaboom")
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Fine}
  - {from: Fine, to: Boom}
  - {from: Boom, to: End}
"""


def test_failing_node_exits_1_and_history_keeps_every_output_so_far(cli):
    write("failing.light.yaml", FAILING)
    result = cli("run", "failing.light.yaml", "--json")
    assert result.exit_code == 1
    run = json.loads(result.stdout)
    assert run["status"] == "FAILED"
    assert "node 'Boom' failed: RuntimeError: kaboom" in run["error"]
    shown = json.loads(cli("show", run["id"], "--json").stdout)
    by_label = {s["label"]: (nid, s) for nid, s in shown["node_states"].items()}
    fine_id, fine = by_label["Fine"]
    assert fine["status"] == "COMPLETED"
    assert shown["node_outputs"][fine_id]["value"] == {"default": 2}
    boom_id, boom = by_label["Boom"]
    assert boom["status"] == "FAILED" and "kaboom" in boom["error"]
    assert "about to fail" in shown["node_outputs"][boom_id]["metadata"]["stdout"]
    assert by_label["End"][1]["status"] == "SKIPPED"
    assert by_label["End"][1]["skip_reason"] == "upstream node 'Boom' failed"


def test_timeout_exits_124_and_records_failed(cli):
    write(
        "slow.light.yaml",
        """\
        nodes:
          - {label: Start, type: start}
          - {label: Nap, type: code_job, language: bash, code: "sleep 5"}
        connections:
          - {from: Start, to: Nap}
        """,
    )
    result = cli("run", "slow.light.yaml", "--timeout", "0.5", "--json")
    assert result.exit_code == 124
    data = json.loads(result.stdout)
    assert data["status"] == "FAILED" and data["error"] == "timed out after 0.5 s"


def test_history_filters_and_order(cli):
    write("failing.light.yaml", FAILING)
    cli("run", HELLO)
    cli("run", "failing.light.yaml")
    cli("run", HELLO)
    entries = history(cli)
    assert [e["status"] for e in entries] == ["COMPLETED", "FAILED", "COMPLETED"]
    assert entries[0]["started_at"] >= entries[1]["started_at"] >= entries[2]["started_at"]
    assert [
        e["status"] for e in json.loads(cli("history", "--json", "--status", "failed").stdout)
    ] == ["FAILED"]
    assert len(json.loads(cli("history", "--json", "--diagram", "hello").stdout)) == 2
    assert len(json.loads(cli("history", "--json", "--limit", "1").stdout)) == 1
    assert cli("history", "--status", "bogus").exit_code == 2
    table = cli("history").stdout
    assert "FAILED" in table and "\x1b[" not in table


def test_show_by_prefix_latest_and_node(cli):
    run = json.loads(cli("run", HELLO, "--json").stdout)
    assert cli("show", run["id"][:6]).exit_code == 0
    latest = json.loads(cli("show", "latest", "--json").stdout)
    assert latest["id"] == run["id"]
    for node_state in latest["node_states"].values():
        assert {
            "status",
            "started_at",
            "ended_at",
            "error",
            "skip_reason",
            "token_usage",
            "label",
            "type",
        } <= set(node_state)
    for output in latest["node_outputs"].values():
        assert set(output) == {"value", "metadata"}
    [node] = json.loads(cli("show", "latest", "--node", "Greet", "--json").stdout)
    assert node["output"]["value"] == {"default": "Hello, world!"}
    assert (node["label"], node["iteration"], node["status"]) == ("Greet", 1, "COMPLETED")
    text = cli("show", "latest", "--node", "Greet").stdout
    assert "Hello, world!" in text
    missing = cli("show", "latest", "--node", "Nope")
    assert missing.exit_code == 2 and "Greet" in missing.stderr


def test_show_unknown_id_exits_2(cli):
    result = cli("show", "doesnotexist")
    assert result.exit_code == 2
    assert "doesnotexist" in result.stderr


def test_plugin_handler_in_the_original_style_runs(cli, tmp_path):
    from tests.test_public_api import PLUGIN

    plugin = tmp_path / "shout.py"
    plugin.write_text(PLUGIN)
    write(
        "shout.light.yaml",
        """\
        nodes:
          - {label: Start, type: start}
          - {label: Loud, type: shout}
          - {label: End, type: endpoint}
        connections:
          - {from: Start, to: Loud, content_type: raw_text}
          - {from: Loud, to: End}
        """,
    )
    result = cli("run", "shout.light.yaml", "--plugin", str(plugin), "--json", "-i", "word=hey")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == {"WORD": "HEY"}
    assert cli("run", "shout.light.yaml").exit_code == 2  # without the plugin: unknown type


def test_secrets_from_the_environment_never_reach_output_or_history(cli, monkeypatch):
    secret = "sk-test-0123456789abcdefSECRET"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    write(
        "leak.light.yaml",
        """\
        nodes:
          - {label: Start, type: start}
          - label: Leak
            type: code_job
            code: |
              import os
              print(os.environ["OPENAI_API_KEY"])
              result = "key=" + os.environ["OPENAI_API_KEY"]
          - {label: End, type: endpoint}
        connections:
          - {from: Start, to: Leak}
          - {from: Leak, to: End}
        """,
    )
    from dipeo_cli import redact

    redact.refresh_secrets()
    outputs = [cli("run", "leak.light.yaml").output, cli("run", "leak.light.yaml", "--json").output]
    outputs += [
        cli("show", "latest").output,
        cli("show", "latest", "--json").output,
        cli("history").output,
    ]
    assert all(secret not in text for text in outputs)
    from dipeo_cli.paths import default_db_path

    for path in default_db_path().parent.glob("history.db*"):
        assert secret.encode() not in path.read_bytes()


def test_help_lists_the_commands(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("run", "history", "show", "validate"):
        assert command in result.stdout


def test_every_example_diagram_runs_offline(cli):
    """diagrams/ holds one runnable example per node type; each completes (api_call sends its
    failure out of an error port when nothing listens, ask needs its --answer)."""
    extra = {"ask.light.yaml": ["--answer", "Name=Ada"]}
    for path in sorted((REPO / "diagrams").glob("*.light.yaml")):
        if path.name == "code_languages.light.yaml" and shutil.which("node") is None:
            continue  # its javascript node needs node (tests/test_jsrunner.py runs it)
        result = cli("run", str(path), "--json", *extra.get(path.name, []))
        assert result.exit_code == 0, (path.name, result.output)
