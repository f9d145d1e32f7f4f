"""Models dipeo builds from its own values (dipeo_cli.prebuilt): equal to validated ones, and
without a fields set each (a fifth of what a 10,000-node run held)."""

from __future__ import annotations

from dipeo_cli.diagram import parse_diagram
from dipeo_cli.diagram.model import DiagramArrow, DiagramNode, Position

TEXT = """\
version: light
nodes:
- {label: Start, type: start}
- {label: A, type: code_job, code: 'x = 1', position: {x: 3, y: 4}}
- {label: B, type: endpoint}
connections:
- {from: Start, to: A}
- {from: A, to: B, label: got, content_type: raw_text}
"""


def test_loaded_nodes_and_arrows_equal_validated_ones_and_share_one_fields_set() -> None:
    diagram = parse_diagram(TEXT, "d.light.yaml")
    start, a, b = diagram.nodes
    assert start.__pydantic_fields_set__ is a.__pydantic_fields_set__
    first, second = diagram.arrows
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    assert a == DiagramNode.model_validate(a.model_dump())
    assert second == DiagramArrow.model_validate(second.model_dump())
    assert (second.label, second.content_type) == ("got", "raw_text")
    assert a.position == Position(x=3, y=4)
    # nodes without a position share the origin (nothing changes a position in place)
    assert start.position is b.position and start.position == Position()
    assert diagram.model_dump()["nodes"][1]["position"] == {"x": 3.0, "y": 4.0}
