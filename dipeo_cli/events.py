"""Typed, frozen events: what the executor reports, in the order it happens.

The executor emits them; `state.apply_event`, the history store and the live view consume them.
Times are `time.time()` floats; the state turns them into ISO strings.

Each event carries everything `apply_event` needs, so that folding an execution's stored event
log rebuilds its state (`store/codec.py` writes and reads them). Terminal node events carry the
iteration they end, the output and the token usage.

They behave as frozen, slotted dataclasses (assigning raises FrozenInstanceError; equal when of
one type with equal fields; hashable; copyable), written out by hand: generating the methods of
twelve dataclasses cost a `dipeo run` 7 ms of its start (48 M instructions, Python 3.11 compiles
each generated method separately). The fields are each class's `__slots__`, in order.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from dipeo_cli.state import ExecutionStatus, NodeOutput, TokenUsage

_set = object.__setattr__  # how __init__ fills a frozen instance


class Frozen:
    """What the events share: their fields are their `__slots__`; `_hidden` ones are left out
    of comparison and repr (bulky, and not what makes two events the same)."""

    __slots__: tuple[str, ...] = ()
    _hidden: ClassVar[frozenset[str]] = frozenset()

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__ if name not in self._hidden)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frozen) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        shown = (f"{n}={getattr(self, n)!r}" for n in self.__slots__ if n not in self._hidden)
        return f"{type(self).__qualname__}({', '.join(shown)})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle, without __setattr__
        return (type(self), tuple(getattr(self, name) for name in self.__slots__))


class NodeInfo(Frozen):
    __slots__ = ("id", "label", "type", "fingerprint")
    id: str
    label: str
    type: str
    fingerprint: str

    def __init__(self, id: str, label: str, type: str, fingerprint: str = "") -> None:
        _set(self, "id", id)
        _set(self, "label", label)
        _set(self, "type", type)
        # of the node's definition (type and properties), for retry
        _set(self, "fingerprint", fingerprint)


class ExecutionStarted(Frozen):
    __slots__ = (
        "execution_id",
        "diagram_id",
        "variables",
        "nodes",
        "at",
        "parent_id",
        "diagram_source",
        "retry_of",
    )
    execution_id: str
    diagram_id: str | None
    variables: dict[str, Any]
    nodes: tuple[NodeInfo, ...]
    at: float
    parent_id: str | None
    diagram_source: str | None
    retry_of: str | None

    def __init__(
        self,
        execution_id: str,
        diagram_id: str | None,
        variables: dict[str, Any],
        nodes: tuple[NodeInfo, ...],
        at: float,
        parent_id: str | None = None,  # the execution that ran this one as a sub-diagram
        diagram_source: str | None = None,  # the diagram text that ran, kept with the execution
        retry_of: str | None = None,  # the execution this one retries
    ) -> None:
        _set(self, "execution_id", execution_id)
        _set(self, "diagram_id", diagram_id)
        _set(self, "variables", variables)
        _set(self, "nodes", nodes)
        _set(self, "at", at)
        _set(self, "parent_id", parent_id)
        _set(self, "diagram_source", diagram_source)
        _set(self, "retry_of", retry_of)


class NodeStarted(Frozen):
    __slots__ = ("node_id", "iteration", "at", "inputs", "sources")
    _hidden = frozenset({"inputs"})
    node_id: str
    iteration: int
    at: float
    inputs: dict[str, Any] | None
    sources: tuple[tuple[str, str, int], ...]

    def __init__(
        self,
        node_id: str,
        iteration: int,  # 1 for the first execution of the node
        at: float,
        # what the node received: its inputs by label, and for each label the (source node id,
        # source iteration) that delivered it; recorded (as a fingerprint) for retry and replay
        inputs: dict[str, Any] | None = None,
        sources: tuple[tuple[str, str, int], ...] = (),
    ) -> None:
        _set(self, "node_id", node_id)
        _set(self, "iteration", iteration)
        _set(self, "at", at)
        _set(self, "inputs", inputs)
        _set(self, "sources", sources)


class NodeCompleted(Frozen):
    __slots__ = ("node_id", "output", "at", "token_usage", "iteration")
    node_id: str
    output: NodeOutput
    at: float
    token_usage: TokenUsage | None
    iteration: int

    def __init__(
        self,
        node_id: str,
        output: NodeOutput,
        at: float,
        token_usage: TokenUsage | None = None,
        iteration: int = 0,  # the iteration this ends; 0: the node's latest (the executor sets it)
    ) -> None:
        _set(self, "node_id", node_id)
        _set(self, "output", output)
        _set(self, "at", at)
        _set(self, "token_usage", token_usage)
        _set(self, "iteration", iteration)


class NodeFailed(Frozen):
    __slots__ = ("node_id", "error", "at", "output", "token_usage", "iteration", "aborted")
    node_id: str
    error: str
    at: float
    output: NodeOutput | None
    token_usage: TokenUsage | None
    iteration: int
    aborted: bool

    def __init__(
        self,
        node_id: str,
        error: str,
        at: float,
        output: NodeOutput | None = None,  # what flows out of the `error` port, if anything
        token_usage: TokenUsage | None = None,
        iteration: int = 0,  # the iteration this ends; 0: the node's latest (the executor sets it)
        aborted: bool = False,  # cancelled by an abort while it ran: the node ends ABORTED
    ) -> None:
        _set(self, "node_id", node_id)
        _set(self, "error", error)
        _set(self, "at", at)
        _set(self, "output", output)
        _set(self, "token_usage", token_usage)
        _set(self, "iteration", iteration)
        _set(self, "aborted", aborted)


class NodeSkipped(Frozen):
    __slots__ = ("node_id", "reason", "at")
    node_id: str
    reason: str
    at: float

    def __init__(self, node_id: str, reason: str, at: float) -> None:
        _set(self, "node_id", node_id)
        _set(self, "reason", reason)
        _set(self, "at", at)


class NodeCapped(Frozen):
    """The node reached its own `max_iteration` and was triggered again: it does not run."""

    __slots__ = ("node_id", "max_iteration", "at")
    node_id: str
    max_iteration: int
    at: float

    def __init__(self, node_id: str, max_iteration: int, at: float) -> None:
        _set(self, "node_id", node_id)
        _set(self, "max_iteration", max_iteration)
        _set(self, "at", at)


class ExecutionPaused(Frozen):
    """No node starts until the execution is resumed; running nodes finish."""

    __slots__ = ("at", "reason")
    at: float
    reason: str | None

    def __init__(self, at: float, reason: str | None = None) -> None:
        _set(self, "at", at)
        _set(self, "reason", reason)


class ExecutionResumed(Frozen):
    __slots__ = ("at",)
    at: float

    def __init__(self, at: float) -> None:
        _set(self, "at", at)


class NodeStatusChanged(Frozen):
    """A status set directly through `StateStore.update_node_status` that no executor event
    describes (PAUSED, PENDING)."""

    __slots__ = ("node_id", "status", "at", "error")
    node_id: str
    status: str
    at: float
    error: str | None

    def __init__(self, node_id: str, status: str, at: float, error: str | None = None) -> None:
        _set(self, "node_id", node_id)
        _set(self, "status", status)
        _set(self, "at", at)
        _set(self, "error", error)


class ExecutionStatusChanged(Frozen):
    """A status set directly through `StateStore.update_execution_status` (not final)."""

    __slots__ = ("status", "at", "error")
    status: ExecutionStatus
    at: float
    error: str | None

    def __init__(self, status: ExecutionStatus, at: float, error: str | None = None) -> None:
        _set(self, "status", status)
        _set(self, "at", at)
        _set(self, "error", error)


class ExecutionFinished(Frozen):
    __slots__ = ("status", "error", "at", "result", "reason")
    status: ExecutionStatus
    error: str | None
    at: float
    result: Any
    reason: str | None

    def __init__(
        self,
        status: ExecutionStatus,
        error: str | None,
        at: float,
        result: Any = None,
        # "timeout" / "interrupted" / None: lets the CLI pick the exit code without parsing text
        reason: str | None = None,
    ) -> None:
        _set(self, "status", status)
        _set(self, "error", error)
        _set(self, "at", at)
        _set(self, "result", result)
        _set(self, "reason", reason)


Event = (
    ExecutionStarted
    | NodeStarted
    | NodeCompleted
    | NodeFailed
    | NodeSkipped
    | NodeCapped
    | NodeStatusChanged
    | ExecutionPaused
    | ExecutionResumed
    | ExecutionStatusChanged
    | ExecutionFinished
)
