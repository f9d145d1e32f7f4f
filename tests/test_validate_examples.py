"""Every DiPeO example diagram either validates or is rejected with a clear, located message —
never a traceback (issue: "a test walks the folder")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from tests.conftest import DIPEO_EXAMPLES, needs_examples

pytestmark = needs_examples


def diagram_files() -> list[Path]:
    files = []
    for path in sorted(DIPEO_EXAMPLES.rglob("*")):
        if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if "nodes" in text:  # data files (api keys, fixtures) are not diagrams
                files.append(path)
    return files


FILES = diagram_files()


def test_the_shared_examples_are_there():
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DIPEO_EXAMPLES)))
def test_example_validates_or_is_rejected_clearly(path: Path):
    result = CliRunner().invoke(app, ["validate", str(path), "--json"], catch_exceptions=False)
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    data = json.loads(result.stdout)
    if result.exit_code == 0:
        assert data["valid"] is True and data["node_count"] > 0
    else:
        assert data["valid"] is False and data["problems"]
        for problem in data["problems"]:
            assert problem["message"]


def test_offline_example_simple_iter_code_validates():
    path = DIPEO_EXAMPLES / "examples" / "simple_diagrams" / "simple_iter_code.light.yaml"
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def test_llm_example_without_a_key_validates_with_a_warning_and_run_refuses(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = DIPEO_EXAMPLES / "examples" / "simple_diagrams" / "simple_iter.light.yaml"
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "person 'person 1'" in result.stderr and "set OPENAI_API_KEY" in result.stderr
    data = json.loads(CliRunner().invoke(app, ["validate", str(path), "--json"]).stdout)
    assert data["valid"] is True and data["problems"] == []
    assert any("OPENAI_API_KEY" in w["message"] for w in data["warnings"])
    refused = CliRunner().invoke(app, ["run", str(path), "--db", ":memory:"])
    assert refused.exit_code == 2
    assert "set OPENAI_API_KEY" in refused.stderr
    assert "RUNNING" not in refused.output  # nothing ran
    mocked = CliRunner().invoke(app, ["validate", str(path), "--llm", "mock", "--json"])
    assert json.loads(mocked.stdout)["warnings"] == []


READABLE = DIPEO_EXAMPLES / "examples" / "readable_diagrams"


@pytest.mark.parametrize("name", ["debate", "debatev1", "image_example", "simple_iter_code"])
def test_untyped_readable_examples_validate(name, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["validate", str(READABLE / f"{name}.readable.yaml")])
    assert result.exit_code == 0, result.output


def test_readable_debate_runs_like_the_light_debate_with_mock_persons():
    Path("files/uploads").mkdir(parents=True)
    Path("files/uploads/questions.txt").write_text("Should cats rule?\n")
    runs = {}
    for name in ("light_diagrams/debate.light.yaml", "readable_diagrams/debate.readable.yaml"):
        result = CliRunner().invoke(
            app, ["run", str(DIPEO_EXAMPLES / "examples" / name), "--llm", "mock", "--json"]
        )
        assert result.exit_code == 0, result.output
        shown = json.loads(CliRunner().invoke(app, ["show", "latest", "--json"]).stdout)
        statuses = sorted(
            (n["type"], n["status"], n["iterations"]) for n in shown["node_states"].values()
        )
        runs[name] = (json.loads(result.stdout)["result"], statuses)
        assert Path("files/results/output.txt").read_text().startswith("mock reply #1 to: Judge")
    light, readable = runs.values()
    assert light == readable
