"""Compiling a Diagram: loops, back edges, handle and property validation."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from dipeo_cli.compiler import compile_graph
from dipeo_cli.diagram import parse_diagram
from dipeo_cli.errors import DiagramError
from dipeo_cli.registry import HandlerRegistry, HandlerSpec, load_builtin_handlers


def compile_text(text: str):
    return compile_graph(parse_diagram(text, "t.light.yaml", strict=False), load_builtin_handlers())


LOOP = """
nodes:
  - {label: Start, type: start}
  - {label: Init, type: code_job, code: "result = 0"}
  - {label: Step, type: code_job, code: "result = default + 1"}
  - {label: Check, type: condition, expression: "default > 3"}
  - {label: Log, type: template_job, template_content: "{{ default }}"}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Init}
  - {from: Init, to: Step}
  - {from: Step, to: Check}
  - {from: Step, to: Log}
  - {from: "Check[condfalse]", to: Step}
  - {from: "Check[condtrue]", to: End}
"""


def test_loops_and_the_arrows_that_close_them_are_found():
    g = compile_text(LOOP)
    label = {nid: n.label for nid, n in g.nodes.items()}
    closing = [(label[e.source], label[e.target]) for e in g.edges if e.closes_loop]
    assert closing == [("Check", "Step")]
    assert {label[n] for n in g.in_a_loop} == {"Step", "Check"}
    assert {label[n] for n in g.repeating} == {"Step", "Check", "Log", "End"}
    in_loop = {(label[e.source], label[e.target]) for e in g.edges if e.in_loop}
    assert in_loop == {("Step", "Check"), ("Check", "Step")}


def test_self_loop_is_a_loop():
    g = compile_text(
        "nodes:\n  - {label: Start, type: start}\n  - {label: A, type: code_job, code: 'result=1', max_iteration: 3}\n"
        "connections:\n  - {from: Start, to: A}\n  - {from: A, to: A}\n"
    )
    a = g.node_by_label("A")
    assert a.id in g.in_a_loop
    assert a.max_iteration == 3


def test_compile_handles_a_long_chain_without_recursion():
    n = 5000
    nodes = ["  - {label: Start, type: start}"] + [
        f"  - {{label: N{i}, type: code_job, code: 'result=1'}}" for i in range(n)
    ]
    conns = ["  - {from: Start, to: N0}"] + [
        f"  - {{from: N{i}, to: N{i + 1}}}" for i in range(n - 1)
    ]
    g = compile_text("nodes:\n" + "\n".join(nodes) + "\nconnections:\n" + "\n".join(conns) + "\n")
    assert len(g.nodes) == n + 1 and not g.in_a_loop


@pytest.mark.parametrize(
    "text, message",
    [
        ("nodes: []\n", "the diagram has no nodes"),
        ("nodes:\n  - {label: A, type: code_job, code: 'x=1'}\n", "no start node"),
        (
            "nodes:\n  - {label: S, type: start}\n  - {label: C, type: condition, expression: 'x'}\nconnections:\n  - {from: 'C[sideways]', to: S}\n",
            "'sideways' is not an output of 'C' (condition); available: condtrue, condfalse, error",
        ),
        (
            "nodes:\n  - {label: S, type: start}\n  - {label: T, type: template_job}\nconnections:\n  - {from: S, to: T}\n",
            "node 'T'",
        ),
        (
            "nodes:\n  - {label: S, type: start}\n  - {label: E, type: endpoint}\nconnections:\n  - {from: S, to: E, content_type: poetry}\n",
            "unknown content_type 'poetry'",
        ),
        (
            "nodes:\n  - {label: S, type: start}\n  - {label: A, type: code_job, code: 'x=1', max_iteration: 0}\nconnections:\n  - {from: S, to: A}\n",
            "property 'max_iteration' must be greater than 0",
        ),
        (
            "nodes:\n  - {label: S, type: start}\n  - {label: A, type: code_job, code: 'x=1', timeout: soon}\nconnections:\n  - {from: S, to: A}\n",
            "node 'A': property 'timeout'",
        ),
    ],
)
def test_compile_problems_name_the_culprit(text, message):
    with pytest.raises(DiagramError) as info:
        compile_text(text)
    assert message in str(info.value)
    assert "t.light.yaml" in str(info.value)


def test_props_are_validated_with_the_handler_schema_and_given_to_the_handler():
    class Props(BaseModel):
        size: int

    async def fn(node, ctx):
        return None

    registry = HandlerRegistry()
    registry.register(HandlerSpec("start", fn, inputs=()))
    registry.register(HandlerSpec("sized", fn, props=Props))
    ok = parse_diagram(
        "nodes:\n  - {label: S, type: start}\n  - {label: A, type: sized, size: '3'}\nconnections:\n  - {from: S, to: A}\n"
    )
    g = compile_graph(ok, registry)
    assert g.node_by_label("A").config.size == 3
    bad = parse_diagram(
        "nodes:\n  - {label: S, type: start}\n  - {label: A, type: sized}\nconnections:\n  - {from: S, to: A}\n"
    )
    with pytest.raises(
        DiagramError, match="node 'A': property 'size': required property is missing"
    ):
        compile_graph(bad, registry)
