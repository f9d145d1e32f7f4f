"""A template is parsed and compiled once per distinct source, shared by validation, the lint
and the run; a changed template is never served from that cache; the templates rendered from
their parse tree (dipeo_cli/template_tree.py) render as Jinja2's compiled code does and keep
every sandbox check."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import jinja2
import pytest
from typer.testing import CliRunner

from dipeo_cli import sandbox, template_environment
from dipeo_cli.cli import app
from dipeo_cli.errors import NodeError
from dipeo_cli.executor import RunOptions
from dipeo_cli.render import open_progress
from dipeo_cli.runner import execute, prepare
from dipeo_cli.store import open_store
from tests.test_handlers_props import run_one


def write(name: str, text: str) -> str:
    Path(name).write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def test_each_template_is_parsed_and_compiled_once_across_validation_lint_and_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    compiled: list[Any] = []
    real_parse = jinja2.Environment.parse
    real_from_string = jinja2.Environment.from_string

    def parse(self: Any, source: str, *args: Any, **kwargs: Any) -> Any:
        parsed.append(source)
        return real_parse(self, source, *args, **kwargs)

    def from_string(self: Any, source: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(source)
        return real_from_string(self, source, *args, **kwargs)

    # on the class: any environment (the lint's used to be its own) is counted
    monkeypatch.setattr(jinja2.Environment, "parse", parse)
    monkeypatch.setattr(jinja2.Environment, "from_string", from_string)
    sandbox.compiled.cache_clear()
    simple = "reuse-1 {{ x }} got {{ default | length }}"  # rendered from its tree
    looping = "reuse-2 {% for c in x %}{{ c }}{% endfor %}"  # compiled by Jinja2
    diagram = write(
        "reuse.light.yaml",
        f"""\
        nodes:
          - {{label: Start, type: start}}
          - {{label: A, type: template_job, template_content: '{simple}'}}
          - {{label: B, type: template_job, template_content: '{simple}'}}
          - {{label: C, type: template_job, template_content: '{looping}'}}
          - {{label: End, type: endpoint}}
        connections:
          - {{from: Start, to: A}}
          - {{from: A, to: B}}
          - {{from: B, to: C}}
          - {{from: C, to: End}}
        """,
    )

    async def main() -> Any:
        graph = prepare(diagram)  # load, validate (compiles), lint (reads the names)
        assert parsed.count(simple) == 1 and parsed.count(looping) == 1
        store = await open_store(None)
        try:
            return await execute(
                graph,
                store=store,
                progress=open_progress("quiet", sys.stderr),
                variables={"x": "ab"},
                options=RunOptions(),
            )
        finally:
            await store.close()

    outcome = asyncio.run(main())
    assert outcome.state.status.value == "COMPLETED", outcome.state.error
    assert outcome.state.result == "reuse-2 ab"
    assert sorted(parsed) == sorted([simple, looping]), "one parse per distinct source"
    assert len(compiled) == 1, "Jinja2 compiles only the looping template, once"


def test_a_template_file_edited_between_runs_renders_its_new_text() -> None:
    Path("greeting.j2").write_text("first {{ name }}", encoding="utf-8")
    diagram = write(
        "file.light.yaml",
        """\
        nodes:
          - {label: Start, type: start, custom_data: {name: Ada}}
          - {label: Greet, type: template_job, template_path: greeting.j2}
          - {label: End, type: endpoint}
        connections:
          - {from: Start, to: Greet}
          - {from: Greet, to: End}
        """,
    )
    cli = CliRunner()
    first = cli.invoke(app, ["run", diagram, "--json"], catch_exceptions=False)
    assert json.loads(first.stdout)["result"] == "first Ada"
    Path("greeting.j2").write_text("second {{ name }}", encoding="utf-8")
    second = cli.invoke(app, ["run", diagram, "--json"], catch_exceptions=False)
    assert json.loads(second.stdout)["result"] == "second Ada"  # same process, same cache


def test_a_retry_of_an_edited_diagram_renders_the_edited_template() -> None:
    def diagram(template: str, expression: str) -> str:
        return write(
            "retry.light.yaml",
            f"""\
            nodes:
              - {{label: Start, type: start, custom_data: {{name: Ada}}}}
              - {{label: Greet, type: template_job, template_content: '{template}'}}
              - {{label: Check, type: condition, expression: '{expression}'}}
              - {{label: End, type: endpoint}}
            connections:
              - {{from: Start, to: Greet}}
              - {{from: Greet, to: Check}}
              - {{from: 'Check[condtrue]', to: End}}
            """,
        )

    cli = CliRunner()
    path = diagram("old {{ name }}", "not_defined_yet")
    failed = cli.invoke(app, ["run", path, "--json"], catch_exceptions=False)
    assert failed.exit_code == 1
    original = json.loads(failed.stdout)
    shown = cli.invoke(app, ["show", original["id"], "--node", "Greet", "--json"])
    assert "old Ada" in shown.stdout
    diagram("new {{ name }}", "true")
    retried = cli.invoke(app, ["retry", original["id"], "--json"], catch_exceptions=False)
    assert retried.exit_code == 0, retried.stderr
    assert json.loads(retried.stdout)["result"] == "new Ada"


# -- templates rendered from their parse tree ----------------------------------------------------

NAMES: dict[str, Any] = {
    "x": "abc",
    "n": 2.567,
    "d": {"k": "v", "b": 1, "é": [1, 2]},
    "l": ["p", "q", "r"],
}


@pytest.mark.parametrize(
    "template",
    [
        "plain text, no expression\n",
        "a {{ x }} b {{ n }}",
        "{{ d.k }} {{ d['k'] }} {{ l[1] }} {{ l[d.b] }}{{ d['é'] }}",
        "{{ x | upper }} {{ l | join(', ') }} {{ d | to_json }} {{ d | tojson }}",
        "{{ missing | default('dflt') }} {{ none | default('n', true) }}",
        "{{ l | first }} {{ l | last }} {{ l | length }} [{{ 'x' | center(5) }}]",
        "{{ none }} {{ 3.5 }} {{ true }} {{ 'lit' }}",
        "{{ x | replace('b', 'B', 1) }} {{ l | join(d='-') }} {{ n | round(1, 'floor') }}",
        "{{ d | dictsort }} {{ x | truncate(9, killwords=true) }} {{ l | sort | reverse | list }}",
        "{{ d.k | upper | center(7) }}{{ x | indent(2, first=true) }}",
    ],
)
def test_simple_templates_render_from_the_tree_as_jinja2_compiles_them(template: str) -> None:
    assert sandbox.compiled(template).parts is not None, "rendered from the tree"
    expected = template_environment.ENVIRONMENT.from_string(template).render(NAMES)
    assert "".join(sandbox.compiled(template).generate(NAMES)) == expected


@pytest.mark.parametrize(
    "template",
    ["{{ nope }}", "{{ d.nope }}", "{{ d['nope'] }}", "{{ nope | upper }}", "{{ l[7] }}"],
)
def test_tree_rendered_undefined_names_fail_as_in_jinja2(template: str) -> None:
    with pytest.raises(jinja2.UndefinedError) as expected:
        template_environment.ENVIRONMENT.from_string(template).render(NAMES)
    with pytest.raises(jinja2.UndefinedError) as got:
        "".join(sandbox.compiled(template).generate(NAMES))
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize(
    "template",
    [
        "{% if x %}a{% endif %}",
        "{{ x ~ 'a' }}",
        "{{ n * 2 }}",
        "{{ l | map('upper') | join }}",  # a filter that needs the context
        "{{ x[1:] }}",
        "{{ x is defined }}",
        "{{ x.upper() }}",
        "{{ l | join(*l) }}",
    ],
)
def test_other_templates_are_left_to_jinja2(template: str) -> None:
    assert sandbox.compiled(template).parts is None


def test_an_unknown_filter_is_still_a_validation_error() -> None:
    with pytest.raises(jinja2.TemplateSyntaxError, match="No filter named 'nosuch'"):
        sandbox.compiled("{{ x | nosuch }}")


@pytest.mark.parametrize(
    "reach",
    [
        "cycler.__init__.__globals__",
        "cycler.__init__.__globals__.os",
        "lipsum.__globals__['os']",
        "namespace.__init__.__globals__",
        "x.__class__",
        "x['__class__']",
        "x.upper.__self__",
    ],
)
def test_tree_rendered_templates_cannot_reach_python_internals(reach: str) -> None:
    template = f"{{{{ {reach} }}}}"
    assert sandbox.compiled(template).parts is not None, "rendered from the tree"
    with pytest.raises(NodeError, match="template tried something unsafe and was stopped"):
        run_one("template_job", {"template_content": template}, inputs={"x": "s", "d": {}})


def test_tree_rendered_filters_keep_their_size_checks() -> None:
    template = "{{ x | center(10000000000) }}"
    assert sandbox.compiled(template).parts is not None
    with pytest.raises(NodeError, match="template rendering stopped: output larger than 8 MB"):
        run_one("template_job", {"template_content": template}, inputs={"x": "s"})
