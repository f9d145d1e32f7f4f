"""user_response: answers from --answer (in order), the failure without a terminal, and a real
pseudo-terminal where the question is answered by typing."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.context import RunResources
from dipeo_cli.errors import NodeError
from tests.test_e2e import run_in_terminal, terminal_env
from tests.test_handlers_props import compile_problem, make_graph, run_node

REPO = Path(__file__).resolve().parents[1]
ASK = str(REPO / "diagrams" / "ask.light.yaml")

LOOP = """\
nodes:
  - {label: Start, type: start}
  - {label: Ask, type: user_response, prompt: "Again?"}
  - {label: Done?, type: condition, expression: 'default == "stop"'}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Ask}
  - {from: Ask, to: Done?}
  - {from: "Done?[condfalse]", to: Ask}
  - {from: "Done?[condtrue]", to: End}
"""


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_answer_option_supplies_the_answer():
    result = cli("run", ASK, "--answer", "Name=Ada", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == "Welcome to the DiPeO meetup, Ada!"


def test_answers_for_one_label_are_used_in_order_across_iterations():
    Path("loop.light.yaml").write_text(LOOP)
    args = ["run", "loop.light.yaml", "--json"]
    result = cli(*args, "--answer", "Ask=go", "--answer", "Ask=again", "--answer", "Ask=stop")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == "stop"
    shown = json.loads(cli("show", "latest", "--json").stdout)
    [ask] = [s for s in shown["node_states"].values() if s["label"] == "Ask"]
    assert ask["iterations"] == 3


def test_without_a_terminal_or_an_answer_the_node_says_how_to_pass_one():
    result = cli("run", ASK, "--json")
    assert result.exit_code == 1
    message = "node 'Name' needs an answer: pass --answer 'Name=...' (stdin is not a terminal)"
    assert json.loads(result.stdout)["error"].endswith(message)
    shown = json.loads(cli("show", "latest", "--json").stdout)
    [ask] = [s for s in shown["node_states"].values() if s["label"] == "Name"]
    assert ask["status"] == "FAILED" and ask["error"] == message


def test_an_answer_for_an_unknown_label_is_a_usage_error():
    result = cli("run", ASK, "--answer", "Nmae=Ada")
    assert result.exit_code == 2
    assert "--answer 'Nmae': no user_response node has that label" in result.stderr
    assert "'Name'" in result.stderr
    assert "expects LABEL=TEXT" in cli("run", ASK, "--answer", "Ada").stderr


def test_the_question_carries_the_input_as_context_and_the_last_answer_is_reused():
    from dipeo_cli.handlers.user_response import question

    assert question("Name?", {}) == "Name?"
    assert question("Name?", {"default": {"a": 1}}) == 'Name?\n\nContext: {"a": 1}'
    graph = make_graph(("Ask", "user_response", {"prompt": "Name?"}))
    resources = RunResources(answers={"Ask": ["Ada", "Bob"]})
    answers = [run_node(graph, "Ask", resources=resources).value["default"] for _ in range(3)]
    assert answers == ["Ada", "Bob", "Bob"]


def test_no_terminal_in_a_handler_call_fails_without_reading_stdin():
    graph = make_graph(("Ask", "user_response", {"prompt": "Name?"}))
    with pytest.raises(NodeError, match=r"pass --answer 'Ask=\.\.\.' \(stdin is not a terminal\)"):
        run_node(graph, "Ask")


def test_validation_needs_a_prompt_and_a_positive_timeout():
    assert "a user_response needs a prompt" in compile_problem("user_response", {"prompt": " "})
    assert "property 'prompt': required property is missing" in compile_problem("user_response", {})
    assert "timeout must be greater than 0" in compile_problem(
        "user_response", {"prompt": "x", "timeout": 0}
    )


def _run_in_pty(args: list[str], answer: bytes | None, deadline_s: float = 15) -> tuple[int, str]:
    """Run the installed dipeo in a pseudo-terminal (the live table runs, and pauses for the
    question); type `answer` once the question shows."""
    sent = False

    def type_the_answer(screen: bytes) -> bytes | None:
        nonlocal sent
        if answer is None or sent or b"> " not in screen.split(b"Name:")[-1]:
            return None
        sent = True
        return answer

    return run_in_terminal(
        args, terminal_env(), watch=type_the_answer, poll=0.2, timeout=deadline_s
    )


@pytest.mark.e2e
def test_a_question_answered_in_a_real_terminal():
    code, screen = _run_in_pty(["run", ASK], b"Grace\n")
    assert code == 0, screen
    assert "What is your name?" in screen
    assert "Welcome to the DiPeO meetup, Grace!" in screen


@pytest.mark.e2e
def test_an_unanswered_question_times_out_in_a_real_terminal():
    Path("ask.light.yaml").write_text(
        textwrap.dedent(
            """\
            nodes:
              - {label: Start, type: start}
              - {label: Name, type: user_response, prompt: "Name?", timeout: 0.5}
              - {label: End, type: endpoint}
            connections:
              - {from: Start, to: Name}
              - {from: Name, to: End}
            """
        )
    )
    code, screen = _run_in_pty(["run", "ask.light.yaml"], None)
    assert code == 1, screen
    assert "timed out after 0.5 s" in screen
