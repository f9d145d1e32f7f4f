"""user_response reads its answers from standard input when stdin is a pipe or a file, one line
per answer in the order asked; --answer still wins (real `dipeo run` processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

TWO_QUESTIONS = """
nodes:
  - {label: Start, type: start}
  - {label: Name, type: user_response, prompt: Your name?}
  - {label: Colour, type: user_response, prompt: Your colour?}
  - {label: Card, type: template_job, template_content: "{{ name }} likes {{ colour }}"}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Name}
  - {from: Name, to: Colour}
  - {from: Name, to: Card, label: name}
  - {from: Colour, to: Card, label: colour}
  - {from: Card, to: End}
"""


def dipeo(*args: str, stdin: str | None = None, file: Path | None = None):
    Path("ask.light.yaml").write_text(textwrap.dedent(TWO_QUESTIONS), encoding="utf-8")
    command = [sys.executable, "-m", "dipeo_cli", "run", "ask.light.yaml", "--json", *args]
    if file is not None:
        with file.open("rb") as handle:
            return subprocess.run(command, stdin=handle, capture_output=True, text=True, timeout=60)
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)


def test_piped_lines_answer_the_questions_in_order():
    out = dipeo(stdin="Ada\nblue\n")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"] == "Ada likes blue"


def test_a_file_on_stdin_answers_too_and_answer_wins_over_it(tmp_path: Path):
    answers = tmp_path / "answers.txt"
    answers.write_text("Ada\r\ngreen\r\n", encoding="utf-8")
    out = dipeo(file=answers)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"] == "Ada likes green"
    out = dipeo("--answer", "Name=Grace", stdin="red\n")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"] == "Grace likes red"


def test_end_of_input_fails_the_node_that_asked():
    out = dipeo(stdin="Ada\n")
    assert out.returncode == 1
    assert "node 'Colour' needs an answer: stdin reached end of input" in out.stdout
