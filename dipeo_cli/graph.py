"""Compile a Diagram into an ExecutableGraph: handlers bound, properties validated, loops found.

A diagram that compiles can run; one that does not raises DiagramError with every problem.
Loops are found without recursion (10,000-node chains compile): strongly connected components
(Tarjan, iterative) tell which arrows stay inside a loop, and the back edges of a depth-first walk
from the start nodes tell which arrows close a loop (a node's first execution does not wait for
those).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Generic

from pydantic import BaseModel, ValidationError
from typing_extensions import TypeVar  # TypeVar defaults (PEP 696) before Python 3.13

from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode
from dipeo_cli.errors import DiagramError, Problem
from dipeo_cli.heap import collection_paused
from dipeo_cli.lint import shared_default_inputs, unfilled_placeholders, unknown_properties
from dipeo_cli.redact import compact_json
from dipeo_cli.registry import HandlerRegistry, HandlerSpec

# DiPeO node types this version cannot run yet, and why: rejected at validation, never at run time.
_PLUGIN_HINT = "write a plugin handler for it (README: Writing a handler)"
NOT_SUPPORTED_YET = {
    "integrated_api": f"is not supported; {_PLUGIN_HINT}",
    "typescript_ast": f"is only used by DiPeO's own code generator; {_PLUGIN_HINT}",
    "ir_builder": f"is only used by DiPeO's own code generator; {_PLUGIN_HINT}",
    "job": "is DiPeO's old name for code jobs and has no handler; use code_job",
}

CONTENT_TYPES = ("raw_text", "object", "conversation_state", "variable", "json", "binary")


@dataclass(frozen=True)
class CompileOptions:
    """Per-run settings that change what a diagram's checks accept. Handlers' `check`
    functions receive them as their fourth argument.

    `llm_mode`: None, or "mock" (`--llm mock`): every person is checked and run as a mock
    person, so a missing API key is no problem."""

    llm_mode: str | None = None


# The node's validated props model; a handler declared with `props=M` gets ExecutableNode[M].
PropsT = TypeVar("PropsT", bound=BaseModel | None, default=BaseModel | None)

NumberT = TypeVar("NumberT", int, float)


_fingerprint_json = compact_json(str, sort_keys=True)


class ExecutableNode(Generic[PropsT]):
    """A node as handlers see it: `id`, `label`, `type`, `props` (the raw properties as the file
    wrote them), `config` (the validated props model, if the handler declares one), and the two
    limits the executor enforces, `max_iteration` and `timeout`."""

    __slots__ = (
        "id",
        "label",
        "type",
        "props",
        "config",
        "spec",
        "max_iteration",
        "timeout",
        "_fingerprint",
    )

    def __init__(
        self,
        id: str,
        label: str,
        type: str,
        props: dict[str, Any],
        config: PropsT,
        spec: HandlerSpec,
        max_iteration: int | None,
        timeout: float | None,
    ) -> None:
        self.id = id
        self.label = label
        self.type = type
        self.props = props
        self.config = config
        self.spec = spec
        self.max_iteration = max_iteration
        self.timeout = timeout
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """A hash of the node's definition (type and properties as the file wrote them): the
        same in two runs when the node did not change. Labels are not part of it."""
        if self._fingerprint is None:
            text = _fingerprint_json({"type": self.type, "props": self.props})
            digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
            self._fingerprint = digest[:32]
        return self._fingerprint

    @property
    def data(self) -> dict[str, Any]:
        """DiPeO's name for the properties; kept so that ported handlers read naturally."""
        return self.props

    def __repr__(self) -> str:
        return f"ExecutableNode({self.label!r}, type={self.type!r})"


@dataclass(frozen=True, slots=True)
class Edge:
    index: int
    id: str
    source: str
    source_port: str
    target: str
    target_handle: str  # "default" or "first"
    variable: str  # the input name at the target (arrow label, else "default")
    content_type: str | None
    closes_loop: bool  # a back edge: the target's first execution does not wait for it
    in_loop: bool  # source and target are in the same loop (strongly connected component)


@dataclass
class ExecutableGraph:
    nodes: dict[str, ExecutableNode]
    edges: list[Edge]
    incoming: dict[str, tuple[Edge, ...]]  # in arrow order; tuples: one per node, kept all run
    outgoing: dict[str, tuple[Edge, ...]]
    loop_of: dict[str, int]  # node id -> component id; nodes in one loop share it
    in_a_loop: set[str]  # nodes that can run more than once because they sit on a loop
    repeating: set[str]  # nodes in a loop or downstream of one (may produce several values)
    start_nodes: list[str]
    diagram: Diagram
    order: list[str] = field(default_factory=list)  # node ids in diagram order
    registry: HandlerRegistry | None = None  # what compiled it (sub-diagrams compile with it)
    # legal but almost certainly a mistake, or needing the machine (a key): see lint.py
    warnings: list[Problem] = field(default_factory=list)

    def run_blockers(self) -> list[Problem]:
        """The warnings `dipeo run` refuses (a missing key, a missing program), as errors."""
        return [w.as_error() for w in self.warnings if w.blocks_run]

    def node_by_label(self, label: str) -> ExecutableNode | None:
        for node in self.nodes.values():
            if node.label == label:
                return node
        return None


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
        node = _compile_node(dnode, registry, problems, diagram, options)
        spec = registry.get(dnode.type)
        if spec is not None:
            warnings.extend(unknown_properties(dnode, spec))
        if node is not None:
            nodes[dnode.id] = node
            _collect(
                _check_node(node.spec, node.config, diagram, registry, options),
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
        if _check_arrow(arrow, by_id, nodes, problems):
            raw_edges.append(arrow)

    if problems:
        raise DiagramError(problems, diagram.file, warnings)

    order = [n.id for n in diagram.nodes]
    successors: dict[str, list[str]] = {nid: [] for nid in order}
    for arrow in raw_edges:
        successors[arrow.source].append(arrow.target)
    loop_of = _strongly_connected(order, successors)
    component_size: dict[int, int] = {}
    for comp in loop_of.values():
        component_size[comp] = component_size.get(comp, 0) + 1
    in_a_loop = {nid for nid, comp in loop_of.items() if component_size[comp] > 1}
    in_a_loop |= {a.source for a in raw_edges if a.source == a.target}
    start_nodes = [n.id for n in diagram.nodes if n.type == "start"]
    back = _back_edges(order, start_nodes, raw_edges)

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
        repeating=_downstream_of(in_a_loop, successors),
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


def _collect(
    found: list[Any],
    dnode: DiagramNode,
    problems: list[Problem],
    warnings: list[Problem],
) -> None:
    """A check's findings: strings are errors; Problems keep their severity, located here."""
    for item in found:
        if isinstance(item, Problem):
            located = replace(item, where=item.where or dnode.where, line=item.line or dnode.line)
            (warnings if located.is_warning else problems).append(located)
        else:
            problems.append(Problem(str(item), dnode.where, dnode.line))


def _compile_node(
    dnode: DiagramNode,
    registry: HandlerRegistry,
    problems: list[Problem],
    diagram: Diagram,
    options: CompileOptions,
) -> ExecutableNode | None:
    spec = registry.get(dnode.type)
    if spec is None:
        if not dnode.type:
            return None  # the loader already reported the missing type
        if dnode.type in NOT_SUPPORTED_YET:
            problems.append(
                Problem(
                    f"node type '{dnode.type}' {NOT_SUPPORTED_YET[dnode.type]}",
                    dnode.where,
                    dnode.line,
                )
            )
        else:
            known = ", ".join(registry.types())
            problems.append(
                Problem(
                    f"unknown node type '{dnode.type}' (known types: {known})",
                    dnode.where,
                    dnode.line,
                )
            )
        return None

    config: BaseModel | None = None
    if spec.props is not None:
        try:
            config = spec.props.model_validate(dnode.props)
        except ValidationError as exc:
            for err in exc.errors():
                field_path = ".".join(str(p) for p in err["loc"]) or "properties"
                message = err["msg"]
                if err["type"] == "missing":
                    message = "required property is missing"
                problems.append(
                    Problem(f"property '{field_path}': {message}", dnode.where, dnode.line)
                )
            # the node's other problems too, not only the first property's (a bad `tools`
            # must not hide "no person"): check what validates without the failing fields
            partial = _without_failing_fields(spec.props, dnode.props, exc)
            if partial is not None:
                _collect(
                    _check_node(spec, partial, diagram, registry, options),
                    dnode,
                    problems,
                    [],  # warnings come once the errors above are fixed
                )
            return None
        except Exception as exc:  # a validator that raised something else (TypeError, ...)
            problems.append(Problem(f"invalid properties: {_describe(exc)}", dnode.where))
            return None

    max_iteration = _positive_number(dnode, "max_iteration", int, problems)
    timeout = _positive_number(dnode, "timeout", float, problems)
    return ExecutableNode(
        id=dnode.id,
        label=dnode.label,
        type=dnode.type,
        props=dnode.props,
        config=config,
        spec=spec,
        max_iteration=max_iteration,
        timeout=timeout,
    )


def _without_failing_fields(
    model: type, props: dict[str, Any], exc: ValidationError
) -> BaseModel | None:
    """The props model validated without the top-level fields that failed, or None."""
    failing = {err["loc"][0] for err in exc.errors() if err["loc"]}
    if not failing:
        return None
    kept = {k: v for k, v in props.items() if k not in failing}
    try:
        partial = model.model_validate(kept)  # type: ignore[attr-defined]
    except Exception:
        return None
    if hasattr(partial, "_source"):  # checks that find their node by its properties
        partial._source = props
    return partial  # type: ignore[no-any-return]


def _check_node(
    spec: HandlerSpec,
    config: BaseModel | None,
    diagram: Diagram,
    registry: HandlerRegistry,
    options: CompileOptions,
) -> list[Any]:
    """The handler's compile-time check; anything else it raises (a file-system error while
    looking for a file, ...) is a problem with this node, never an escaping exception."""
    check = spec.check
    try:
        if check is None:
            return []
        if _takes_options(check):
            return list(check(config, diagram, registry, options))
        # a plugin written before options: _takes_options found three parameters, which
        # HandlerSpec.check's type (the current four) cannot say
        return list(check(config, diagram, registry))  # type: ignore[call-arg]
    except DiagramError:
        raise
    except Exception as exc:
        return [f"cannot check this node: {_describe(exc)}"]


@functools.lru_cache(maxsize=256)
def _takes_options(check: Any) -> bool:
    """Whether a handler's check takes the fourth argument (CompileOptions)."""
    try:
        parameters = list(inspect.signature(check).parameters.values())
    except (TypeError, ValueError):
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    return len(parameters) >= 4


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def _positive_number(
    dnode: DiagramNode, key: str, kind: type[NumberT], problems: list[Problem]
) -> NumberT | None:
    raw = dnode.props.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except (TypeError, ValueError, OverflowError):
        problems.append(Problem(f"property '{key}' must be a number, got {raw!r}", dnode.where))
        return None
    if not value > 0:  # NaN too
        problems.append(
            Problem(f"property '{key}' must be greater than 0, got {raw!r}", dnode.where)
        )
        return None
    return value


def _check_arrow(
    arrow: DiagramArrow,
    by_id: dict[str, DiagramNode],
    nodes: dict[str, ExecutableNode],
    problems: list[Problem],
) -> bool:
    ok = True
    for end in (arrow.source, arrow.target):
        if end not in by_id:
            problems.append(Problem(f"refers to a node that does not exist ('{end}')", arrow.where))
            ok = False
    if not ok:
        return False
    source, target = by_id[arrow.source], by_id[arrow.target]
    if target.type == "start":
        problems.append(
            Problem(
                f"a start node cannot have inputs ('{target.label}' is a start node)", arrow.where
            )
        )
        ok = False
    if source.type == "endpoint":
        problems.append(
            Problem(f"an endpoint has no outputs ('{source.label}' is an endpoint)", arrow.where)
        )
        ok = False
    source_node, target_node = nodes.get(arrow.source), nodes.get(arrow.target)
    if source_node is not None and source.type != "endpoint":
        ports = (*source_node.spec.outputs, "error")
        if arrow.source_handle not in ports:
            problems.append(
                Problem(
                    f"'{arrow.source_handle}' is not an output of '{source.label}' "
                    f"({source.type}); available: {', '.join(ports)}",
                    arrow.where,
                )
            )
            ok = False
    if target_node is not None and target.type != "start":
        if arrow.target_handle not in target_node.spec.inputs:
            problems.append(
                Problem(
                    f"'{arrow.target_handle}' is not an input of '{target.label}' "
                    f"({target.type}); available: {', '.join(target_node.spec.inputs)}",
                    arrow.where,
                )
            )
            ok = False
    if arrow.content_type is not None and arrow.content_type not in CONTENT_TYPES:
        problems.append(
            Problem(
                f"unknown content_type '{arrow.content_type}' "
                f"(use one of: raw_text, object, conversation_state)",
                arrow.where,
            )
        )
        ok = False
    return ok


def _strongly_connected(order: list[str], successors: dict[str, list[str]]) -> dict[str, int]:
    """Tarjan's algorithm without recursion: node id -> component number."""
    index_of: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    components = 0
    for root in order:
        if root in index_of:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child_pos = work.pop()
            if child_pos == 0:
                index_of[node] = lowlink[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = successors[node]
            descended = False
            while child_pos < len(children):
                child = children[child_pos]
                child_pos += 1
                if child not in index_of:
                    work.append((node, child_pos))
                    work.append((child, 0))
                    descended = True
                    break
                if child in on_stack:
                    lowlink[node] = min(lowlink[node], index_of[child])
            if descended:
                continue
            if lowlink[node] == index_of[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = components
                    if member == node:
                        break
                components += 1
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
    return component


def _back_edges(order: list[str], roots: list[str], arrows: list[DiagramArrow]) -> set[int]:
    """Indexes of the arrows that close a loop: back edges of a depth-first walk that starts
    from the start nodes (then from any node not reached), without recursion."""
    out: dict[str, list[int]] = {nid: [] for nid in order}
    for index, arrow in enumerate(arrows):
        out[arrow.source].append(index)
    visited: set[str] = set()
    on_path: set[str] = set()
    back: set[int] = set()
    for root in [*roots, *order]:
        if root in visited:
            continue
        visited.add(root)
        on_path.add(root)
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, pos = work[-1]
            edges = out[node]
            if pos == len(edges):
                work.pop()
                on_path.discard(node)
                continue
            work[-1] = (node, pos + 1)
            index = edges[pos]
            child = arrows[index].target
            if child in on_path:
                back.add(index)
            elif child not in visited:
                visited.add(child)
                on_path.add(child)
                work.append((child, 0))
    return back


def _downstream_of(seeds: set[str], successors: dict[str, list[str]]) -> set[str]:
    seen = set(seeds)
    todo = list(seeds)
    while todo:
        for child in successors[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen
