"""Summaries that say what happened: failures sent out of error ports, and which endpoints
produced the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "diagrams" / "hello.light.yaml")

CAUGHT = """\
nodes:
  - {label: Start, type: start}
  - {label: Boom, type: code_job, code: raise RuntimeError("kaboom")}
  - {label: Bang, type: code_job, code: raise ValueError("bang")}
  - {label: Recovered, type: endpoint}
  - {label: Also, type: endpoint}
connections:
  - {from: Start, to: Boom}
  - {from: Start, to: Bang}
  - {from: "Boom[error]", to: Recovered}
  - {from: "Bang[error]", to: Also}
"""


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def test_a_run_completed_through_error_ports_says_so(cli):
    Path("caught.light.yaml").write_text(CAUGHT, encoding="utf-8")
    result = cli("run", "caught.light.yaml")
    assert result.exit_code == 0, result.output
    head = result.stdout.splitlines()[0]
    assert "COMPLETED, 2 nodes failed into error ports" in head
    assert not head.startswith("✔")  # not a bare green tick
    plain = cli("run", "caught.light.yaml", "--quiet")
    assert "2 nodes failed into error ports" in plain.stdout


def test_plain_progress_final_line_says_so(cli):
    Path("caught.light.yaml").write_text(CAUGHT, encoding="utf-8")
    result = cli("run", "caught.light.yaml")
    final = [line for line in result.stderr.splitlines() if " execution " in f" {line}"][-1]
    assert "COMPLETED, 2 nodes failed into error ports" in final


def test_a_clean_run_keeps_its_tick(cli):
    result = cli("run", HELLO)
    assert result.stdout.splitlines()[0].startswith("✔ COMPLETED in")
    assert "error ports" not in result.output


def test_run_json_names_the_endpoints_behind_the_result(cli):
    data = json.loads(cli("run", HELLO, "--json").stdout)
    assert data["result_from"] == ["End"]
    Path("caught.light.yaml").write_text(CAUGHT, encoding="utf-8")
    data = json.loads(cli("run", "caught.light.yaml", "--json").stdout)
    assert data["result_from"] == ["Recovered", "Also"]
    assert set(data["result"]) == {"Recovered", "Also"}
    listed = json.loads(cli("history", "--json").stdout)[0]
    assert "result_from" not in listed
