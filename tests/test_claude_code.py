"""`service: claude-code` persons run Claude Code's `claude -p` (dipeo_cli/llm/claude_code_service.py).

A fake `claude` (a small Python script put first on PATH) records its arguments and standard
input and answers as the real program does with `--output-format json`."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from tests.conftest import DIPEO_EXAMPLES, needs_examples

FAKE = """\
#!{python}
import json, os, sys
record = {{"argv": sys.argv[1:], "stdin": sys.stdin.read()}}
with open(os.environ["FAKE_CLAUDE_LOG"], "a") as log:
    log.write(json.dumps(record) + "\\n")
if os.environ.get("FAKE_CLAUDE_FAIL"):
    print(json.dumps({{"type": "result", "subtype": "error", "is_error": True,
                       "result": "Credit balance is too low"}}))
    sys.exit(1)
answer = os.environ.get("FAKE_CLAUDE_ANSWER") or "claude says hi"
print(json.dumps({{
    "type": "result", "subtype": "success", "is_error": False, "duration_ms": 12,
    "num_turns": 1, "result": answer, "session_id": "s-1", "total_cost_usd": 0.001,
    "usage": {{"input_tokens": 7, "cache_creation_input_tokens": 0,
               "cache_read_input_tokens": 3, "output_tokens": 5}},
}}))
"""

DIAGRAM = """\
persons:
  Coder:
    service: claude-code
    model: sonnet
    system_prompt: Be brief.
nodes:
  - {label: Start, type: start, custom_data: {topic: tests}}
  - {label: Ask, type: person_job, person: Coder, default_prompt: "Write about {{topic}}"}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Ask}
  - {from: Ask, to: End}
"""


@pytest.fixture
def fake_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "claude"
    program.write_text(FAKE.format(python=sys.executable), encoding="utf-8")
    program.chmod(0o755)
    log = tmp_path / "claude.log"
    monkeypatch.setenv("FAKE_CLAUDE_LOG", str(log))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def write(text: str) -> str:
    Path("cc.light.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return "cc.light.yaml"


def test_a_claude_code_person_runs_claude_in_print_mode(fake_claude: Path):
    result = CliRunner().invoke(app, ["run", write(DIAGRAM), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["result"] == "claude says hi"
    assert out["token_usage"] == {"input": 10, "output": 5, "cached": 3, "total": 15}
    (call,) = calls(fake_claude)
    argv = call["argv"]
    assert argv[:3] == ["-p", "--output-format", "json"]
    assert argv[argv.index("--model") + 1] == "sonnet"
    assert argv[argv.index("--system-prompt") + 1] == "Be brief."
    assert call["stdin"] == "Write about tests"  # the prompt on stdin, rendered


def test_structured_output_through_claude_is_parsed(fake_claude: Path, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_ANSWER", '{"name": "Ada"}')
    text = DIAGRAM.replace(
        'default_prompt: "Write about {{topic}}"',
        'default_prompt: "Who?", text_format: {type: object, properties: {name: {type: string}}}',
    )
    result = CliRunner().invoke(app, ["run", write(text), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == {"name": "Ada"}
    (call,) = calls(fake_claude)
    assert "JSON schema" in call["stdin"] and '"name"' in call["stdin"]


def test_an_error_answer_fails_the_node_with_claudes_message(fake_claude: Path, monkeypatch):
    monkeypatch.setenv("FAKE_CLAUDE_FAIL", "1")
    result = CliRunner().invoke(app, ["run", write(DIAGRAM), "--json"])
    assert result.exit_code == 1
    assert "Credit balance is too low" in json.loads(result.stdout)["error"]


def test_without_claude_validate_warns_and_run_refuses_naming_what_to_install(
    tmp_path: Path, monkeypatch
):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    path = write(DIAGRAM)
    checked = CliRunner().invoke(app, ["validate", path])
    assert checked.exit_code == 0, checked.output
    assert "warning:" in checked.stderr and "install Claude Code" in checked.stderr
    refused = CliRunner().invoke(app, ["run", path])
    assert refused.exit_code == 2
    assert "install Claude Code" in refused.stderr and "`claude`" in refused.stderr
    mocked = CliRunner().invoke(app, ["run", path, "--llm", "mock", "--db", ":memory:"])
    assert mocked.exit_code == 0, mocked.output


@needs_examples
@pytest.mark.parametrize(
    "name",
    [
        "examples/simple_diagrams/test_cc.light.yaml",
        "examples/simple_diagrams/simple_iter_cc.light.yaml",
    ],
)
def test_the_corpus_claude_code_diagrams_validate(fake_claude: Path, name: str):
    result = CliRunner().invoke(app, ["validate", str(DIPEO_EXAMPLES / name), "--strict"])
    assert result.exit_code == 0, result.output
