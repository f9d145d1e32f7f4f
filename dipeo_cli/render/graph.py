"""Pictures of a diagram or an execution as text: a Mermaid flowchart or a Graphviz DOT graph.

    picture = picture_of_graph(graph, state)    # compiled diagram, optionally with a run's state
    picture = picture_of_diagram(diagram, state) # loaded only: no loop detection
    picture = picture_of_state(state)           # nodes only, when the diagram source is gone
    print(to_mermaid(picture))                  # or to_dot(picture)

Nodes are drawn by label with their type (start and endpoints as stadiums, conditions as
diamonds); arrows carry their label, the branch they leave from (condtrue/condfalse, error)
and the `first` handle; arrows that close a loop are dashed, so loops are visible. With a
state, each node is coloured by its status and shows how many times it ran.

Pure text, no Rich. Every label is user data: it is escaped for each grammar (Mermaid's
`#entity;` codes inside quoted labels, DOT's backslash escapes inside double quotes), so no
label can break out of its string or inject markup. Node ids in the output are `n0`, `n1`, ...
(diagram order), never the diagram's own ids.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from dipeo_cli.diagram.model import Diagram
    from dipeo_cli.graph import ExecutableGraph
    from dipeo_cli.state import ExecutionState

GraphKind = Literal["mermaid", "dot"]
KINDS: tuple[GraphKind, ...] = ("mermaid", "dot")

# status -> (fill, stroke): the same colours in both grammars
STATUS_COLOURS = {
    "PENDING": ("#f5f5f5", "#9e9e9e"),
    "RUNNING": ("#dbeafe", "#2563eb"),
    "PAUSED": ("#fef9c3", "#ca8a04"),
    "COMPLETED": ("#dcfce7", "#16a34a"),
    "FAILED": ("#fee2e2", "#dc2626"),
    "SKIPPED": ("#e5e7eb", "#6b7280"),
    "MAXITER_REACHED": ("#ffedd5", "#ea580c"),
    "ABORTED": ("#fee2e2", "#991b1b"),
}


@dataclass(frozen=True)
class PictureNode:
    label: str
    type: str
    status: str | None = None  # None: a diagram, not an execution
    iterations: int = 0
    node_id: str = ""  # the diagram's id: the web monitor finds a drawn node by it


@dataclass(frozen=True)
class PictureArrow:
    source: int  # index into Picture.nodes
    target: int
    text: str  # what the arrow says: branch, label, handle ("" for a plain arrow)
    closes_loop: bool = False


@dataclass
class Picture:
    """What both grammars draw; built by `picture_of_graph` or `picture_of_state`."""

    title: str
    nodes: list[PictureNode] = field(default_factory=list)
    arrows: list[PictureArrow] = field(default_factory=list)


def arrow_text(source_port: str, target_handle: str, label: str | None) -> str:
    """`condtrue`, `condfalse: n`, `n (first)`, `error`: what an arrow says, or ""."""
    text = label or ""
    if source_port != "default":
        text = f"{source_port}: {text}" if text else source_port
    if target_handle != "default":
        text = f"{text} ({target_handle})" if text else f"({target_handle})"
    return text


def picture_of_graph(graph: ExecutableGraph, state: ExecutionState | None = None) -> Picture:
    """A compiled diagram: arrows that close a loop (back edges, self-loops) are marked."""
    # a compiled graph keeps every arrow, so an edge's index is its arrow's index
    loops = {
        edge.index for edge in graph.edges if edge.closes_loop
    }  # self-loops: picture_of_diagram
    return picture_of_diagram(graph.diagram, state, loops)


def picture_of_diagram(
    diagram: Diagram,
    state: ExecutionState | None = None,
    loop_arrows: Collection[int] = (),
) -> Picture:
    """A diagram as loaded (not compiled: a run's diagram that no longer compiles still draws);
    `loop_arrows` are the indexes (in `diagram.arrows`) of the arrows drawn dashed."""
    # the file's name, not its path: the picture does not depend on where it was run from
    title = str(diagram.metadata.get("name") or PurePath(diagram.file or "diagram").name)
    index = {dnode.id: i for i, dnode in enumerate(diagram.nodes)}
    nodes = []
    for dnode in diagram.nodes:
        node_state = state.node_states.get(dnode.id) if state is not None else None
        if state is None:
            nodes.append(PictureNode(dnode.label, dnode.type, node_id=dnode.id))
        elif node_state is None:
            nodes.append(PictureNode(dnode.label, dnode.type, "PENDING", 0, dnode.id))
        else:
            status = node_state.status.value
            nodes.append(
                PictureNode(dnode.label, dnode.type, status, node_state.iterations, dnode.id)
            )
    arrows = [
        PictureArrow(
            index[arrow.source],
            index[arrow.target],
            arrow_text(arrow.source_handle, arrow.target_handle, arrow.label),
            number in loop_arrows or arrow.source == arrow.target,
        )
        for number, arrow in enumerate(diagram.arrows)
        if arrow.source in index and arrow.target in index
    ]
    return Picture(title, nodes, arrows)


def picture_of_state(state: ExecutionState) -> Picture:
    """Nodes only (no arrows): for an execution whose diagram source was not recorded."""
    nodes = [
        PictureNode(s.label or nid, s.type, s.status.value, s.iterations, nid)
        for nid, s in state.node_states.items()
    ]
    return Picture(state.diagram_id or state.id, nodes, [])


def render_picture(picture: Picture, kind: GraphKind | str) -> str:
    """`kind` "mermaid" or "dot" (anything else: DOT)."""
    return to_mermaid(picture) if kind == "mermaid" else to_dot(picture)


# -- Mermaid ---------------------------------------------------------------------------------

# Inside a quoted Mermaid label, `#name;` / `#123;` are entity codes: everything that could end
# the string, open HTML or start an entity is written as one. `#` goes first.
_MERMAID_CODES = (
    ("#", "#35;"),
    ('"', "#quot;"),
    ("&", "#amp;"),
    ("<", "#lt;"),
    (">", "#gt;"),
    ("`", "#96;"),
    ("|", "#124;"),
)


def mermaid_text(text: str) -> str:
    """`text` made safe inside a Mermaid quoted label; line breaks become `<br/>`."""
    for raw, code in _MERMAID_CODES:
        text = text.replace(raw, code)
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    # control characters would end the statement; tabs are only spacing
    cleaned = ["".join(ch if ch.isprintable() else " " for ch in line) for line in lines]
    return "<br/>".join(cleaned)


_MERMAID_SHAPES = {"start": ('(["', '"])'), "endpoint": ('(["', '"])'), "condition": ('{"', '"}')}


def _node_text(node: PictureNode) -> list[str]:
    lines = [node.label, node.type]
    if node.status is not None:
        runs = f" x{node.iterations}" if node.iterations > 1 else ""
        lines.append(f"{node.status}{runs}")
    return lines


def to_mermaid(picture: Picture) -> str:
    """A `flowchart TD` that GitHub renders (```mermaid fenced block)."""
    out = ["flowchart TD"]
    for i, node in enumerate(picture.nodes):
        opening, closing = _MERMAID_SHAPES.get(node.type, ('["', '"]'))
        text = "<br/>".join(mermaid_text(line) for line in _node_text(node))
        out.append(f"    n{i}{opening}{text}{closing}")
    for arrow in picture.arrows:
        link = "-.->" if arrow.closes_loop else "-->"
        said = f'|"{mermaid_text(arrow.text)}"|' if arrow.text else ""
        out.append(f"    n{arrow.source} {link}{said} n{arrow.target}")
    statuses = {node.status for node in picture.nodes if node.status is not None}
    for status in (s for s in STATUS_COLOURS if s in statuses):
        fill, stroke = STATUS_COLOURS[status]
        out.append(f"    classDef {status.lower()} fill:{fill},stroke:{stroke},color:#111")
    for status in (s for s in STATUS_COLOURS if s in statuses):
        ids = ",".join(f"n{i}" for i, n in enumerate(picture.nodes) if n.status == status)
        out.append(f"    class {ids} {status.lower()}")
    return "\n".join(out) + "\n"


# -- Graphviz DOT ----------------------------------------------------------------------------


def dot_text(text: str) -> str:
    """`text` made safe inside a DOT double-quoted string; line breaks become `\\n`."""
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return "".join(ch if ch.isprintable() else " " for ch in text)


_DOT_SHAPES = {"start": "oval", "endpoint": "oval", "condition": "diamond"}


def to_dot(picture: Picture) -> str:
    """A `digraph` for `dot -Tsvg`."""
    out = [
        f'digraph "{dot_text(picture.title)}" {{',
        "    rankdir=TB;",
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
    ]
    for i, node in enumerate(picture.nodes):
        label = "\\n".join(dot_text(line) for line in _node_text(node))
        attrs = [f'label="{label}"']
        shape = _DOT_SHAPES.get(node.type)
        if shape:
            attrs.append(f"shape={shape}")
        if node.status is not None:
            fill, stroke = STATUS_COLOURS.get(node.status, ("#ffffff", "#000000"))
            attrs.append(f'fillcolor="{fill}", color="{stroke}"')
        out.append(f"    n{i} [{', '.join(attrs)}];")
    for arrow in picture.arrows:
        attrs = []
        if arrow.text:
            attrs.append(f'label="{dot_text(arrow.text)}"')
        if arrow.closes_loop:
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        out.append(f"    n{arrow.source} -> n{arrow.target}{suffix};")
    out.append("}")
    return "\n".join(out) + "\n"
