"""Warnings: legal diagrams that are almost certainly a mistake (dipeo_cli/lint.py), how
`validate` and `run` show them, and `--strict`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.compiler import compile_graph
from dipeo_cli.diagram import parse_diagram
from dipeo_cli.registry import load_plugins

REPO = Path(__file__).resolve().parent.parent


def write(name: str, text: str) -> str:
    Path(name).write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def compile_text(text: str):
    return compile_graph(parse_diagram(textwrap.dedent(text), file="d.yaml"), load_plugins(()))


def messages(text: str) -> list[str]:
    return [w.render(None) for w in compile_text(text).warnings]


TYPO = """
nodes:
  - {label: Start, type: start}
  - {label: Work, type: code_job, language: python, code: "result = 1", timout: 1}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Work}
  - {from: Work, to: End}
"""


def test_an_unknown_property_is_a_warning_suggesting_the_close_match():
    (message,) = messages(TYPO)
    assert "node 'Work'" in message
    assert "unknown property 'timout'" in message and "did you mean 'timeout'?" in message


def test_validate_prints_warnings_exits_0_and_strict_makes_them_errors():
    path = write("typo.light.yaml", TYPO)
    ok = CliRunner().invoke(app, ["validate", path])
    assert ok.exit_code == 0, ok.output
    assert "warning: typo.light.yaml" in ok.stderr and "'timeout'" in ok.stderr
    assert "1 warning(s)" in ok.stdout
    strict = CliRunner().invoke(app, ["validate", path, "--strict"])
    assert strict.exit_code == 2 and "unknown property 'timout'" in strict.stderr


def test_validate_json_lists_warnings_apart_with_the_same_keys_valid_or_not():
    path = write("typo.light.yaml", TYPO)
    data = json.loads(CliRunner().invoke(app, ["validate", path, "--json"]).stdout)
    assert data["valid"] is True and data["problems"] == []
    assert [w["where"] for w in data["warnings"]] == ["node 'Work'"]
    broken = write("broken.light.yaml", TYPO.replace("type: endpoint", "type: nope"))
    result = CliRunner().invoke(app, ["validate", broken, "--json"])
    data = json.loads(result.stdout)
    assert result.exit_code == 2 and data["valid"] is False
    assert {"problems", "warnings"} <= set(data) and data["warnings"]


def test_run_prints_warnings_on_stderr_before_it_starts():
    path = write("typo.light.yaml", TYPO)
    result = CliRunner().invoke(app, ["run", path, "--json", "--db", ":memory:"])
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "timout" in result.stderr
    assert json.loads(result.stdout)["result"] == 1


TWO_DEFAULTS = """
nodes:
  - {label: Start, type: start, custom_data: {topic: cats}}
  - {label: A, type: code_job, language: python, code: "result = 1"}
  - {label: Join, type: template_job, template_content: "x"}
connections:
  - {from: Start, to: A}
  - {from: Start, to: Join}
  - {from: A, to: Join}
"""


def test_two_unlabelled_arrows_into_one_node_are_a_warning_naming_both():
    (message,) = messages(TWO_DEFAULTS)
    assert "node 'Join'" in message and "'Start', 'A'" in message
    assert "give each arrow a label" in message
    labelled = TWO_DEFAULTS.replace("{from: A, to: Join}", "{from: A, to: Join, label: a}")
    assert messages(labelled) == []


def test_a_loop_back_arrow_and_exclusive_branches_are_not_rivals():
    loop = """
    nodes:
      - {label: Start, type: start, custom_data: {n: 0}}
      - {label: Count, type: code_job, language: python, code: "result = 1", max_iteration: 3}
      - {label: Check, type: condition, condition_type: detect_max_iterations}
      - {label: Yes, type: code_job, language: python, code: "result = 1"}
      - {label: End, type: endpoint}
    connections:
      - {from: Start, to: Count}
      - {from: Count, to: Check}
      - {from: "Check[condfalse]", to: Count}
      - {from: "Check[condtrue]", to: Yes}
      - {from: "Check[condtrue]", to: End, label: a}
      - {from: Yes, to: End, label: b}
    """
    assert messages(loop) == []
    branches = """
    nodes:
      - {label: Start, type: start}
      - {label: Check, type: condition, condition_type: custom, expression: "1 > 2"}
      - {label: End, type: endpoint}
    connections:
      - {from: Start, to: Check}
      - {from: "Check[condtrue]", to: End}
      - {from: "Check[condfalse]", to: End}
    """
    assert messages(branches) == []


PLACEHOLDER = """
persons:
  W: {service: mock, model: any}
nodes:
  - {label: Start, type: start, custom_data: {topic: cats}}
  - {label: Ask, type: person_job, person: W, default_prompt: "On {{topic}}: {{tone}}"}
  - {label: Page, type: template_job, template_content: "{{ title }} {{ topic }}"}
connections:
  - {from: Start, to: Ask}
  - {from: Start, to: Page}
"""


def test_a_placeholder_nothing_fills_is_a_warning_and_a_run_variable_fills_it():
    found = messages(PLACEHOLDER)
    assert len(found) == 2
    assert "node 'Ask'" in found[0] and "'{{tone}}' is filled by nothing" in found[0]
    assert "-i tone=" in found[0]
    assert "node 'Page'" in found[1] and "'{{title}}'" in found[1]
    path = write("p.light.yaml", PLACEHOLDER)
    result = CliRunner().invoke(
        app, ["run", path, "--llm", "mock", "-i", "tone=x", "--db", ":memory:"]
    )
    assert "'{{tone}}'" not in result.stderr and "'{{title}}'" in result.stderr


def test_a_placeholder_fed_by_a_code_job_dict_is_not_reported():
    text = PLACEHOLDER.replace("{from: Start, to: Ask}", "{from: Start, to: Ask, label: s}")
    text = text.replace(
        "  - {label: Page",
        '  - {label: Make, type: code_job, language: python, code: "result = {}"}\n  - {label: Page',
    )
    text += "  - {from: Make, to: Ask}\n"
    assert all("node 'Ask'" not in m for m in messages(text))


def test_validate_reports_every_problem_of_a_node_not_only_the_bad_property():
    path = write(
        "tools.light.yaml",
        """
        nodes:
          - {label: Start, type: start}
          - {label: Ask, type: person_job, at_most: 0}
        connections:
          - {from: Start, to: Ask}
        """,
    )
    result = CliRunner().invoke(app, ["validate", path])
    assert result.exit_code == 2
    assert "property 'at_most'" in result.stderr
    assert "no person given" in result.stderr and "no prompt" in result.stderr


def test_the_shipped_debate_example_has_no_warning_and_renders_the_topic():
    path = str(REPO / "diagrams" / "debate.light.yaml")
    data = json.loads(CliRunner().invoke(app, ["validate", path, "--json"]).stdout)
    assert data["valid"] is True and data["warnings"] == []
    result = CliRunner().invoke(app, ["run", path, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(CliRunner().invoke(app, ["show", "latest", "--json"]).stdout)
    texts = json.dumps(shown["node_outputs"])
    assert "Argue against: Should offices have plants?" in texts
    assert "{{topic}}" not in texts


def test_person_prompts_see_dipeos_conversation_variables():
    path = write(
        "count.light.yaml",
        """
        persons:
          W: {service: mock, model: any}
        nodes:
          - {label: Start, type: start}
          - label: Talk
            type: person_job
            person: W
            default_prompt: "Turn {{global_message_count}}, seen {{global_conversation.length}}"
            max_iteration: 2
          - {label: Check, type: condition, condition_type: detect_max_iterations}
          - {label: End, type: endpoint}
        connections:
          - {from: Start, to: Talk}
          - {from: Talk, to: Check}
          - {from: "Check[condfalse]", to: Talk}
          - {from: "Check[condtrue]", to: End}
        """,
    )
    result = CliRunner().invoke(app, ["run", path, "--llm", "mock", "--json"])
    assert result.exit_code == 0, result.output
    assert "global_message_count" not in result.stderr  # no unfillable-placeholder warning
    assert json.loads(result.stdout)["result"].startswith("mock reply #2 to: Turn 2")
