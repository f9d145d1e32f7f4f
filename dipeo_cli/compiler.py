"""Compile a Diagram into an ExecutableGraph: handlers bound, properties validated, loops found.

A diagram that compiles can run; one that does not raises DiagramError with every problem. The
per-node and per-arrow checks are in compile_checks.py, the loop analysis in loops.py.
"""

from __future__ import annotations

from dipeo_cli.compile_checks import check_arrow, check_node, collect, compile_node
from dipeo_cli.diagram.model import Diagram, DiagramArrow
from dipeo_cli.errors import DiagramError, Problem
from dipeo_cli.graph import CompileOptions, Edge, ExecutableGraph, ExecutableNode
from dipeo_cli.heap import collection_paused
from dipeo_cli.lint import shared_default_inputs, unfilled_placeholders, unknown_properties
from dipeo_cli.loops import back_edges, downstream_of, strongly_connected
from dipeo_cli.registry import HandlerRegistry


@collection_paused
def compile_graph(
    diagram: Diagram, registry: HandlerRegistry, options: CompileOptions | None = None
) -> ExecutableGraph:
    """Validate `diagram` against the registry and build the graph; raise DiagramError with every
    problem found. Handlers' checks are called as `check(config, diagram, registry, options)`."""
    options = options or CompileOptions()
    problems: list[Problem] = [p for p in diagram.problems if not p.is_warning]
    warnings: list[Problem] = [p for p in diagram.problems if p.is_warning]
    nodes: dict[str, ExecutableNode] = {}

    seen_ids: set[str] = set()
    for dnode in diagram.nodes:
        if dnode.id in seen_ids:
            problems.append(Problem(f"duplicate node id '{dnode.id}'", dnode.where, dnode.line))
            continue
        seen_ids.add(dnode.id)
        node = compile_node(dnode, registry, problems, diagram, options)
        spec = registry.get(dnode.type)
        if spec is not None:
            warnings.extend(unknown_properties(dnode, spec))
        if node is not None:
            nodes[dnode.id] = node
            collect(
                check_node(node.spec, node.config, diagram, registry, options),
                dnode,
                problems,
                warnings,
            )

    if any(not p.is_warning for p in diagram.problems):
        pass  # a node the loader could not read may be the start node: don't guess
    elif not diagram.nodes:
        problems.append(Problem("the diagram has no nodes"))
    elif not any(n.type == "start" for n in diagram.nodes):
        problems.append(Problem("the diagram has no start node (add a node with type: start)"))

    edges: list[Edge] = []
    raw_edges: list[DiagramArrow] = []
    by_id = diagram.node_by_id()
    for arrow in diagram.arrows:
        if check_arrow(arrow, by_id, nodes, problems):
            raw_edges.append(arrow)

    if problems:
        raise DiagramError(problems, diagram.file, warnings)

    order = [n.id for n in diagram.nodes]
    successors: dict[str, list[str]] = {nid: [] for nid in order}
    for arrow in raw_edges:
        successors[arrow.source].append(arrow.target)
    loop_of = strongly_connected(order, successors)
    component_size: dict[int, int] = {}
    for comp in loop_of.values():
        component_size[comp] = component_size.get(comp, 0) + 1
    in_a_loop = {nid for nid, comp in loop_of.items() if component_size[comp] > 1}
    in_a_loop |= {a.source for a in raw_edges if a.source == a.target}
    start_nodes = [n.id for n in diagram.nodes if n.type == "start"]
    back = back_edges(order, start_nodes, raw_edges)

    for index, arrow in enumerate(raw_edges):
        edges.append(
            Edge(
                index=index,
                id=arrow.id,
                source=arrow.source,
                source_port=arrow.source_handle,
                target=arrow.target,
                target_handle=arrow.target_handle,
                variable=arrow.label or "default",
                content_type=arrow.content_type,
                closes_loop=index in back,
                in_loop=loop_of[arrow.source] == loop_of[arrow.target]
                and (arrow.source in in_a_loop),
            )
        )
    incoming = _grouped(order, edges, "target")
    outgoing = _grouped(order, edges, "source")

    graph = ExecutableGraph(
        nodes=nodes,
        edges=edges,
        incoming=incoming,
        outgoing=outgoing,
        loop_of=loop_of,
        in_a_loop=in_a_loop,
        repeating=downstream_of(in_a_loop, successors),
        start_nodes=start_nodes,
        diagram=diagram.outline(),
        order=order,
        registry=registry,
    )
    graph.warnings = [*warnings, *shared_default_inputs(graph), *unfilled_placeholders(graph)]
    return graph


def _grouped(order: list[str], edges: list[Edge], end: str) -> dict[str, tuple[Edge, ...]]:
    """Node id -> its edges by `end` ("source" or "target"), in arrow order. Tuples, and one
    shared empty tuple, rather than lists: a 10,000-node graph holds two of these all run."""
    lists: dict[str, list[Edge]] = {}
    for edge in edges:
        lists.setdefault(getattr(edge, end), []).append(edge)
    return {nid: tuple(lists[nid]) if nid in lists else () for nid in order}
