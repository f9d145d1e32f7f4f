"""CLI conventions: help text independent of the Typer version, shell completion."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.cli.helptext import plain_name, plain_usage

REPO = Path(__file__).resolve().parents[1]
DIPEO = Path(sys.executable).with_name("dipeo")
HELLO = str(REPO / "diagrams" / "hello.light.yaml")
COMMANDS = [
    [],
    ["run"],
    ["validate"],
    ["show"],
    ["history"],
    ["history", "rm"],
    ["history", "prune"],
    ["history", "stats"],
    ["history", "path"],
]


def help_of(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "dipeo")
def test_help_has_no_typer_type_placeholders(command):
    text = help_of(*command)
    assert not re.search(r"<[a-z][^<>]*>", text), text  # <str>, <list[str]>, <int range>
    assert not re.search(r"\{[A-Za-z_.]+\}", text), text  # {diagram}
    assert "x>=" not in text  # click's range notation varies too


def test_help_names_what_each_value_is():
    run = help_of("run")
    for metavar in (
        "DIAGRAM",
        "--inputs FILE",
        "--input-data JSON",
        "KEY=VALUE",
        "--timeout SECONDS",
        "--max-iterations N",
        "--answer LABEL=TEXT",
        "--db PATH",
        "--llm MODE",
        "one of: mock",
    ):
        assert metavar in run, metavar
    assert "Usage: dipeo run [OPTIONS] DIAGRAM" in run
    history = help_of("history")
    for metavar in ("--status STATUS", "-n, --limit N", "--since WHEN", "--parent ID"):
        assert metavar in history, metavar
    assert "COMPLETED, FAILED, ABORTED" in " ".join(history.split())  # the choices, listed
    for command in ("rm", "prune", "stats", "path"):
        assert command in history
    assert "Usage: dipeo history rm [OPTIONS] ID..." in help_of("history", "rm")
    assert "ID" in help_of("show") and "--node LABEL" in help_of("show")


def test_plain_forms():
    assert plain_name("DIAGRAM <str>") == "DIAGRAM"
    assert plain_name("ID <list[str]>") == "ID"
    assert plain_name("--db PATH") == "--db PATH"
    assert plain_usage("{DIAGRAM}") == "DIAGRAM"
    assert plain_usage("{ID}...") == "ID..."
    assert plain_usage("[ID]") == "[ID]"


def test_pyproject_pins_a_typer_range():
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    [typer] = [d for d in data["project"]["dependencies"] if d.startswith("typer")]
    assert ">=" in typer and "<" in typer.replace("<=", "")


def test_completion_is_offered():
    text = help_of()
    assert "--install-completion" in text and "--show-completion" in text


def complete(words: str, cwd: Path) -> list[str]:
    """What bash completion offers for `words` (the last one being completed)."""
    env = {
        **os.environ,
        "_DIPEO_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    out = subprocess.run([str(DIPEO)], env=env, cwd=cwd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return out.stdout.split()


def test_completion_of_commands_options_files_and_ids(isolated):
    assert "history" in complete("dipeo hi", isolated)
    assert "--status" in complete("dipeo history --st", isolated)
    assert complete("dipeo history --status FA", isolated) == ["FAILED"]
    assert set(complete("dipeo history ", isolated)) >= {"rm", "prune", "stats", "path"}
    (isolated / "flow.light.yaml").write_text("x", encoding="utf-8")
    (isolated / "data.json").write_text("{}", encoding="utf-8")
    (isolated / "notes.txt").write_text("x", encoding="utf-8")
    (isolated / "more").mkdir()
    assert complete("dipeo run ", isolated) == ["data.json", "flow.light.yaml", "more/"]
    # no history yet: only "latest", and no database was created by asking
    assert complete("dipeo show ", isolated) == ["latest"]
    assert not Path(os.environ["DIPEO_HOME"]).exists()
    run = subprocess.run(
        [str(DIPEO), "run", HELLO, "--json"], capture_output=True, text=True, timeout=60
    )
    execution_id = __import__("json").loads(run.stdout)["id"]
    assert complete("dipeo show ", isolated) == ["latest", execution_id]
    assert complete(f"dipeo history rm {execution_id[:4]}", isolated) == [execution_id]
    assert complete("dipeo show zzz", isolated) == []


def test_completion_never_fails_on_a_damaged_history(isolated):
    home = Path(os.environ["DIPEO_HOME"])
    home.mkdir(parents=True)
    (home / "history.db").write_text("not a database", encoding="utf-8")
    assert complete("dipeo show ", isolated) == ["latest"]


@pytest.mark.parametrize(
    "command",
    [
        ["run", "hello.light.yaml"],
        ["submit", "hello.light.yaml"],
        ["retry", "abc"],
        ["pause", "abc"],
        ["history"],
        ["show", "abc"],
        ["serve", "--port", "0"],
    ],
    ids=lambda c: c[0],
)
def test_an_unknown_history_url_is_one_line_and_exit_2(command):
    """Every command that opens the history says what is wrong with `--db`, no traceback."""
    Path("hello.light.yaml").write_text(Path(HELLO).read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        [str(DIPEO), *command, "--db", "ftp://example.org/h"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --db ftp://example.org/h: unsupported history URL scheme 'ftp' (use a file path, "
        "sqlite:///PATH, :memory: or postgresql://...)"
    ]
