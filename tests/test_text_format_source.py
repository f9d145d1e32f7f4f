"""text_format as Python source (DiPeO's Pydantic models), and text_format_file pointing at a
.py file: the schema is derived in the python worker and used as structured output."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from tests.conftest import DIPEO_EXAMPLES, needs_examples

MODELS = """\
class PersonInfo(BaseModel):
    name: str
    age: int
    skills: List[str] = []

class Response(BaseModel):
    person: PersonInfo
    note: Optional[str] = None
"""


def diagram(props: str) -> str:
    text = f"""
    persons:
      P: {{service: mock, model: any}}
    nodes:
      - {{label: Start, type: start}}
      - {{label: Ask, type: person_job, person: P, default_prompt: "Who?", {props}}}
      - {{label: End, type: endpoint}}
    connections:
      - {{from: Start, to: Ask}}
      - {{from: Ask, to: End}}
    """
    Path("tf.light.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return "tf.light.yaml"


def run(path: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["run", path, "--json", "--db", ":memory:"])
    return result.exit_code, json.loads(result.stdout)


def test_pydantic_source_gives_the_schema_of_its_response_model():
    code, out = run(diagram(f"text_format: {json.dumps(MODELS)}"))
    assert code == 0, out
    assert out["result"] == {"person": {"name": "", "age": 0, "skills": []}, "note": None}


def test_a_py_text_format_file_is_used_the_same_way():
    Path("models.py").write_text(MODELS, encoding="utf-8")
    code, out = run(diagram("text_format_file: models.py"))
    assert code == 0, out
    assert out["result"]["person"] == {"name": "", "age": 0, "skills": []}


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (
            "class A(BaseModel):\n    x: int\n\nraise RuntimeError('no models today')\n",
            "RuntimeError: no models today (line 4: raise RuntimeError('no models today'))",
        ),
        ("class A(BaseModel):\n    x: Missing\n", "NameError: name 'Missing' is not defined"),
        ("import os\nX = 1\n", "defines no Pydantic model"),
    ],
)
def test_a_failing_source_fails_the_node_with_the_python_error_and_line(source, error):
    code, out = run(diagram(f"text_format: {json.dumps(source)}"))
    assert code == 1
    assert "text_format: " in out["error"] and error in out["error"]


def test_the_source_runs_in_the_worker_not_in_the_runner():
    import os

    source = "import os\nclass A(BaseModel):\n    pid: int = os.getpid()\n"
    code, out = run(diagram(f"text_format: {json.dumps(source)}"))
    assert code == 0, out
    # the mock answers a field's default: the pid of the process that ran the source
    assert out["result"]["pid"] > 0 and out["result"]["pid"] != os.getpid()


@needs_examples
def test_dipeos_pydantic_demo_validates_and_runs_with_mock_persons():
    path = DIPEO_EXAMPLES / "examples" / "light_diagrams" / "text_format_pydantic_demo.light.yaml"
    checked = CliRunner().invoke(app, ["validate", str(path), "--llm", "mock"])
    assert checked.exit_code == 0, checked.output
    result = CliRunner().invoke(app, ["run", str(path), "--llm", "mock", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(CliRunner().invoke(app, ["show", "latest", "--json"]).stdout)
    extracted = [o for o in shown["node_outputs"].values() if "person" in str(o["value"])]
    assert extracted and '"years_at_company"' in json.dumps(extracted[0]["value"])
