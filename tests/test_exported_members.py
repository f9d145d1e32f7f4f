"""The public surface is pinned: `dipeo_cli.__all__` changes only with a CHANGELOG line, every
exported class says what it is, and `dipeo_cli.testing` runs handlers and diagrams in tests."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import pytest

import dipeo_cli
from dipeo_cli.errors import DiagramError, NodeError
from dipeo_cli.state import ExecutionState
from dipeo_cli.testing import RecordingProgress, run_diagram, run_handler

REPO = Path(__file__).resolve().parents[1]

# The surface of 0.1.0, the first release. A name added to or removed from __all__ since then
# must be named (in backticks) in CHANGELOG.md.
RELEASED = {
    "DiagramError",
    "DipeoError",
    "ExecutionState",
    "ExecutionStatus",
    "NodeExecutionStatus",
    "NodeOutput",
    "NodeState",
    "TokenUsage",
    "create_node_output",
    "node_handler",
}
EXPECTED = sorted(RELEASED)  # today's surface


def test_public_surface_is_pinned():
    assert sorted(dipeo_cli.__all__) == EXPECTED, (
        "dipeo_cli.__all__ changed: add a line to CHANGELOG.md under [Unreleased] naming the "
        "added or removed names, then update EXPECTED in tests/test_exported_members.py"
    )


def test_changes_since_the_release_are_in_the_changelog():
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    changed = set(dipeo_cli.__all__) ^ RELEASED
    missing = sorted(name for name in changed if f"`{name}`" not in changelog)
    assert not missing, f"CHANGELOG.md does not mention {missing} (public API change)"


def test_every_public_name_imports_and_classes_have_docstrings():
    for name in dipeo_cli.__all__:
        value = getattr(dipeo_cli, name)
        doc = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        assert doc and len(doc.split()) >= 5, f"{name} needs a docstring stating its contract"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dipeo_cli.nope  # noqa: B018


SHOUT = textwrap.dedent(
    """
    from pydantic import BaseModel
    from dipeo_cli import node_handler, create_node_output

    class ShoutProps(BaseModel):
        suffix: str = ""

    @node_handler("shout", props=ShoutProps)
    async def shout(node, ctx):
        text = str(ctx.inputs.get("default", ctx.variables.get("text", "")))
        return create_node_output(text.upper() + node.config.suffix + "." * (ctx.iteration - 1))
    """
)


@pytest.fixture
def shout(tmp_path: Path) -> str:
    plugin = tmp_path / "shout_plugin.py"
    plugin.write_text(SHOUT, encoding="utf-8")
    return str(plugin)


def test_run_handler_calls_a_plugin_handler_with_inputs_and_variables(shout: str):
    output = run_handler("shout", {"suffix": "!"}, inputs={"default": "hi"}, plugins=(shout,))
    assert output.value == {"default": "HI!"}
    output = run_handler("shout", variables={"text": "yo"}, iteration=3, plugins=(shout,))
    assert output.value == {"default": "YO.."}
    with pytest.raises(DiagramError, match="property 'suffix'"):
        run_handler("shout", {"suffix": ["not", "text"]}, plugins=(shout,))


def test_run_handler_runs_builtin_handlers_and_raises_their_errors(tmp_path: Path):
    output = run_handler(
        "template_job", {"template_content": "{{ a }}+{{ b }}"}, inputs={"a": 1}, variables={"b": 2}
    )
    assert output.value["default"] == "1+2"
    output = run_handler("code_job", {"code": "result = default * 2"}, inputs={"default": 21})
    assert output.value["default"] == 42
    with pytest.raises(NodeError):
        run_handler("code_job", {"code": "raise ValueError('no')"})


def test_run_diagram_returns_the_final_state_from_text_or_a_path(shout: str):
    text = """
        nodes:
          - {label: Start, type: start, custom_data: {text: hi}}
          - {label: Shout, type: shout}
          - {label: End, type: endpoint}
        connections: [{from: Start, to: Shout, label: text}, {from: Shout, to: End}]
    """
    progress = RecordingProgress()
    state = run_diagram(text, variables={"text": "hey"}, plugins=(shout,), progress=progress)
    assert isinstance(state, ExecutionState)
    assert (
        state.status.value == "COMPLETED" and state.result == "HEY"
    )  # no `default` input: the variable
    assert [type(e).__name__ for e in progress.events][-1] == "ExecutionFinished"
    state = run_diagram(REPO / "diagrams" / "debate.light.yaml", llm_mode="mock")
    assert state.status.value == "COMPLETED" and state.token_usage.total > 0
    failed = run_diagram(
        "nodes:\n  - {label: Start, type: start}\n  - {label: Boom, type: code_job, code: 'raise ValueError(1)'}\n"
        "connections: [{from: Start, to: Boom}]\n"
    )
    assert failed.status.value == "FAILED" and "ValueError" in (failed.error or "")
    with pytest.raises(DiagramError, match="unknown node type 'nope'"):
        run_diagram("nodes:\n  - {label: Start, type: start}\n  - {label: X, type: nope}\n")


def test_the_testing_module_is_documented():
    import dipeo_cli.testing as testing

    assert re.search(r"run_handler\(", testing.__doc__ or "")
    for name in testing.__all__:
        assert getattr(testing, name).__doc__, name
