from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli import sandbox, template_budget
from dipeo_cli.compiler import compile_graph
from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode
from dipeo_cli.errors import NodeError
from dipeo_cli.template_budget import RenderStoppedError
from tests import executor_kit
from tests.test_handlers_props import REGISTRY, run_one


def test_renders_the_dipeo_conformance_case(tmp_path: Path) -> None:
    template = (
        "Hello {{ default.who }}! n={{ default['items']|length }} gen={{ generated_at is defined }}"
    )
    output = run_one(
        "template_job",
        {"template_content": template, "output_path": "t5_tpl.txt"},
        inputs={"default": {"who": "world", "items": [1, 2, 3]}},
        base_dir=tmp_path,
    )
    assert output.value == {"default": "Hello world! n=3 gen=True"}
    assert (tmp_path / "t5_tpl.txt").read_text() == "Hello world! n=3 gen=True"
    assert output.metadata["output_path"] == "t5_tpl.txt"


def test_default_dict_is_spread_and_json_text_is_decoded() -> None:
    output = run_one(
        "template_job",
        {"template_content": "{{ who }}/{{ default.who }}"},
        inputs={"default": '{"who": "w"}'},
    )
    assert output.value["default"] == "w/w"


def test_names_later_in_the_order_win() -> None:
    props = {
        "template_content": "{{ a }} {{ b }} {{ c }} {{ label }}",
        "variables": {"a": "prop", "b": "prop", "c": "prop"},
    }
    output = run_one(
        "template_job",
        props,
        inputs={"b": "input", "c": "input", "label": "x"},
        variables={"c": "var"},
    )
    assert output.value["default"] == "prop input var x"


def test_undefined_name_fails_the_node_naming_it() -> None:
    with pytest.raises(NodeError, match=r"template: 'who' is undefined \(available: x\)"):
        run_one("template_job", {"template_content": "Hi {{ who }}"}, inputs={"x": 1})


def test_template_path_and_output_path_are_templates_relative_to_base(tmp_path: Path) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl/greet.j2").write_text("Hi {{ name }}\n")
    props = {"template_path": "tpl/{{ kind }}.j2", "output_path": "out/{{ name }}.txt"}
    output = run_one(
        "template_job",
        props,
        inputs={"name": "ann"},
        variables={"kind": "greet"},
        base_dir=tmp_path,
    )
    assert output.value["default"] == "Hi ann\n"
    assert (tmp_path / "out/ann.txt").read_text() == "Hi ann\n"
    assert output.metadata["template_path"] == "tpl/greet.j2"


def test_missing_template_file_fails(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="template file not found: none.j2"):
        run_one("template_job", {"template_path": "none.j2"}, base_dir=tmp_path)


def test_to_json_filter_keeps_unicode() -> None:
    output = run_one(
        "template_job", {"template_content": "{{ d | to_json }}"}, inputs={"d": {"k": "é"}}
    )
    assert output.value["default"] == '{"k": "é"}'


# -- the sandbox (DESIGN.md §7): no way out, no runaway ------------------------------------------


@pytest.mark.parametrize(
    "reach",
    [
        "cycler.__init__.__globals__.os",
        "lipsum.__globals__['os']",
        "namespace.__init__.__globals__.os",
        "(''.__class__.__mro__[1].__subclasses__() | first).__init__.__globals__['os']",
    ],
)
def test_template_cannot_reach_python_internals(tmp_path: Path, reach: str) -> None:
    marker = tmp_path / "ran"
    template = f"{{{{ {reach}.popen('touch {marker}').read() }}}}"
    with pytest.raises(NodeError, match="template tried something unsafe and was stopped"):
        run_one("template_job", {"template_content": template})
    assert not marker.exists()


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'x' * 10**10 }}",
        "{{ 10 ** (10 ** 10) }}",
        "{{ 'x' | center(10**9) }}",
        "{{ 'x'.ljust(10**10) }}",
        "{{ 'x' | indent(10**10) }}",
        "{{ '%10000000000s' % 'x' }}",
        "{{ '%*s' | format(10**10, 'x') }}",
        "{{ '{:>10000000000}'.format('x') }}",
        "{{ '{:>{}}'.format('x', 10**10) }}",
        "{{ lipsum(10**8) }}",
        "{{ ('x' * 5000000) | replace('x', 'xx') }}",
        "{{ ('x' * 5000000).replace('x', 'xx') }}",
        "{{ ([('x' * 5000000)] * 2) | join }}",
        "{{ [1] | batch(10**10, 0) | list }}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s }}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
        "{% endfor %}{{ ns.s }}",
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",  # stopped while streaming
        "{% set b = 'x' * 100000 %}{% set ns = namespace(l=[]) %}{% for i in range(1000) %}"
        "{% set _ = ns.l.append(b) %}{% endfor %}{{ ns.l | map('upper') | join }}",
    ],
)
def test_huge_output_is_refused_before_it_is_built(template: str) -> None:
    memory_before = _peak_memory_mb()
    started = time.monotonic()
    with pytest.raises(NodeError, match="template rendering stopped: output larger than 8 MB"):
        run_one("template_job", {"template_content": template})
    assert time.monotonic() - started < 2
    assert _peak_memory_mb() - memory_before < 200


def _peak_memory_mb() -> float:
    resource = pytest.importorskip("resource")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def test_values_kept_alive_past_the_memory_limit_stop_the_render(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(template_budget, "MEMORY_LIMIT", 64 * 1024 * 1024)
    template = (
        "{% set ns = namespace(chain=[]) %}{% for i in range(100000) %}"
        "{% set ns.chain = [ns.chain, ('x' * 1000000) ~ i] %}{% endfor %}done"
    )
    with pytest.raises(NodeError, match="rendering stopped: it used more than 64 MB of memory"):
        run_one("template_job", {"template_content": template})


def test_loops_and_filters_behave_as_in_jinja() -> None:
    template = (
        "{% for x in items %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}"
        "{% endfor %} {{ items | join('-') }} {{ 'ab' | center(6) }}|"
        " {{ items | sum }} {{ [[1], [2]] | sum(start=[]) }} {{ '{:>3}'.format(7) }}"
        " {% for x in items if x > 1 %}{{ x }}{% else %}none{% endfor %}"
        " {% for x in items recursive %}{{ x }}{% endfor %} {{ 'a' ~ 1 ~ 'b' }} {{ 2 ** 10 }}"
    )
    output = run_one("template_job", {"template_content": template}, inputs={"items": [1, 2, 3]})
    assert output.value["default"] == "1/3,2/3,3/3 1-2-3   ab  | 6 [1, 2]   7 23 123 a1b 1024"


# 3e8 empty iterations: about 6 s in plain Jinja2
SPIN = "{% for i in range(100000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}"


def _run_graph(
    *nodes: tuple[str, str, dict[str, Any]], arrows: tuple[tuple[str, str], ...], **options: Any
):
    registry = executor_kit.registry()
    registry.register(REGISTRY.get("template_job"))  # type: ignore[arg-type]
    graph = compile_graph(
        Diagram(
            nodes=[
                DiagramNode(id=label, type=kind, label=label, props=props)
                for label, kind, props in nodes
            ],
            arrows=[
                DiagramArrow(id=f"a{i}", source=s, target=t) for i, (s, t) in enumerate(arrows)
            ],
        ),
        registry,
    )
    return graph, executor_kit.run(graph, **options)


def test_runaway_template_fails_at_its_node_timeout_while_other_nodes_go_on() -> None:
    lags: list[float] = []

    async def heartbeat(ctx: Any) -> str:
        for _ in range(10):
            before = time.monotonic()
            await asyncio.sleep(0.02)
            lags.append(time.monotonic() - before - 0.02)
        return "beat"

    started = time.monotonic()
    graph, (finished, recorder) = _run_graph(
        ("Start", "start", {}),
        ("Spin", "template_job", {"template_content": SPIN, "timeout": 0.5}),
        ("Beat", "fn", {"fn": heartbeat}),
        arrows=(("Start", "Spin"), ("Start", "Beat")),
        continue_on_error=True,
    )
    assert time.monotonic() - started < 1.5
    assert recorder.node(graph, "Spin").error == "timed out after 0.5 s"
    assert recorder.output(graph, "Beat") == "beat"
    assert max(lags) < 0.1  # the event loop never waited on the render
    labels = [
        getattr(e, "node_id", None)
        for e in recorder.events
        if type(e).__name__ in ("NodeCompleted", "NodeFailed")
    ]
    assert labels.index("Beat") < labels.index("Spin")


def test_run_timeout_stops_a_runaway_template_and_its_render_thread() -> None:
    started = time.monotonic()
    graph, (finished, _) = _run_graph(
        ("Start", "start", {}),
        ("Spin", "template_job", {"template_content": SPIN}),
        arrows=(("Start", "Spin"),),
        timeout=0.3,
    )
    assert time.monotonic() - started < 1.5
    assert finished.error == "timed out after 0.3 s"
    deadline = time.monotonic() + 1
    while _busy_render_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _busy_render_threads() == 0


def _busy_render_threads() -> int:
    frames = sys._current_frames()
    return sum(
        1
        for thread in threading.enumerate()
        if thread.name == "dipeo-template"
        and thread.ident in frames
        and any(f.f_code.co_name == "render_sync" for f in _stack(frames[thread.ident]))
    )


def _stack(frame: Any) -> list[Any]:
    stack = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    return stack


def test_straight_line_templates_render_on_the_loop_and_loops_in_a_render_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    submitted: list[object] = []
    real_submit = sandbox._THREADS.submit

    def submit(job: Any) -> None:
        submitted.append(job)
        real_submit(job)

    monkeypatch.setattr(sandbox._THREADS, "submit", submit)
    straight = "a {{ x }} {{ x | upper }}{% if x %}!{% endif %}"
    assert asyncio.run(sandbox.render_template(straight, {"x": "b"})) == "a b B!"
    assert submitted == []
    looping = "{% for i in range(2) %}{{ i }}{% endfor %}"
    assert asyncio.run(sandbox.render_template(looping, {})) == "01"
    assert len(submitted) == 1
    with pytest.raises(RenderStoppedError):  # the size checks still hold on the loop
        asyncio.run(sandbox.render_template("{{ 'x' * 10**9 }}", {}))
