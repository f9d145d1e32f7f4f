"""The compiled graph: what `compile_graph` (compiler.py) builds from a Diagram and the executor
runs. `ExecutableNode` is a node as handlers see it (with its fingerprint), `Edge` an arrow with
its loop facts, `ExecutableGraph` the whole, and `CompileOptions` the per-run settings a
handler's check receives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Generic

from pydantic import BaseModel
from typing_extensions import TypeVar  # TypeVar defaults (PEP 696) before Python 3.13

from dipeo_cli.diagram.model import Diagram
from dipeo_cli.errors import DiagramError, Problem
from dipeo_cli.redact import compact_json
from dipeo_cli.registry import HandlerRegistry, HandlerSpec


@dataclass(frozen=True)
class CompileOptions:
    """Per-run settings that change what a diagram's checks accept. Handlers' `check`
    functions receive them as their fourth argument.

    `llm_mode`: None, or "mock" (`--llm mock`): every person is checked and run as a mock
    person, so a missing API key is no problem."""

    llm_mode: str | None = None


# The node's validated props model; a handler declared with `props=M` gets ExecutableNode[M].
PropsT = TypeVar("PropsT", bound=BaseModel | None, default=BaseModel | None)


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

    @property
    def fingerprint(self) -> str:
        """A hash of the node's definition (type and properties as the file wrote them): the
        same in two runs when the node did not change. Labels are not part of it. Computed when
        asked (a run asks once, for its start event): kept on every node, it was 0.8 MiB of a
        10,000-node run's peak."""
        text = _fingerprint_json({"type": self.type, "props": self.props})
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]

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

    def check_runnable(self) -> None:
        """Raise DiagramError with the run blockers, if any: a run cannot start with them."""
        blockers = self.run_blockers()
        if blockers:
            raise DiagramError(blockers, self.diagram.file)

    def node_by_label(self, label: str) -> ExecutableNode | None:
        for node in self.nodes.values():
            if node.label == label:
                return node
        return None
