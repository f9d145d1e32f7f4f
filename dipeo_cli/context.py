"""What a handler receives as `ctx`, and the run-wide resources handlers share.

ctx.execution_id      the execution's id
ctx.node_id           the node being run
ctx.inputs            dict keyed by arrow label ("default" for unlabelled arrows)
ctx.variables         the execution variables (--input-data, --inputs, -i)
ctx.iteration         1 on the node's first execution, 2 on its second, ...
ctx.get_node_output(node_id)   latest NodeOutput of another node, or None
ctx.execution_count(node_id)   how often that node has started
ctx.state_store       the StateStore; see NodeScopedStore for what writes do
ctx.base_dir          where relative file paths are resolved (DIPEO_BASE_DIR or the cwd)
ctx.resources         run-wide services (python worker pool, --answer values, ...)
ctx.calls             the LLM and HTTP calls this node execution made, by kind ("llm_calls",
                      "http_calls"), as dipeo_cli.llm.call and dipeo_cli.http_calls record them
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from dipeo_cli.graph import ExecutableGraph, ExecutableNode
    from dipeo_cli.state import NodeExecutionStatus, NodeOutput

T = TypeVar("T")


class ProcessServices:
    """Services that one process shares among all the executions it hosts (the python worker
    pool: warm workers are worth keeping across runs), created on first use and closed by the
    host (the CLI command, the server) when it is done: `await services.close()`. Per-run
    services (LLM conversations, HTTP clients, person configs) stay in RunResources."""

    def __init__(self) -> None:
        self._services: dict[str, Any] = {}
        self._closers: list[Callable[[], Any]] = []

    def get(self, name: str, factory: Callable[[], Any], closer: Callable[[Any], Any]) -> Any:
        if name not in self._services:
            instance = factory()
            self._services[name] = instance
            self._closers.append(lambda: closer(instance))
        return self._services[name]

    async def close(self) -> None:
        """Close every service (one failing closer does not skip the others)."""
        errors: list[BaseException] = []
        while self._closers:
            try:
                result = self._closers.pop()()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                errors.append(exc)
        self._services.clear()
        if errors:
            raise errors[0]


@dataclass
class RunResources:
    """Services shared by every node of one run, created lazily, closed at the end."""

    base_dir: Path = field(default_factory=Path.cwd)
    diagram_dir: Path = field(default_factory=Path.cwd)
    # `--answer LABEL=TEXT`: node id -> answers for its user_response, in order
    answers: dict[str, list[str]] = field(default_factory=dict)
    # pauses the live progress view while a node uses the terminal (None: nothing to pause)
    pause_progress: Callable[[], AbstractContextManager[Any]] | None = None
    store: Any = None  # the history store (None: not recorded); sub-diagram runs record into it
    options: Any = None  # the run's RunOptions, for sub-diagram runs
    depth: int = 0  # 0 for the run the user started, 1 for its sub-diagrams, ...
    # the run's LLM mode: None (persons call their services) or "mock" (`--llm mock`)
    llm_mode: str | None = None
    # replay seams (None: calls go out): see dipeo_cli.llm.call and dipeo_cli.http_calls
    llm_replay: Any = None
    http_replay: Any = None
    # where user_response nodes wait for an answer given through an API instead of the
    # terminal (`dipeo serve` sets it; None: the terminal, as on the command line). It has
    # `async ask(execution_id, node_id, label, question, timeout) -> str`.
    prompts: Any = None
    # the host process's shared services (None: process-wide services live for this run only)
    shared: ProcessServices | None = None
    _parent: RunResources | None = None
    _closers: list[Callable[[], Any]] = field(default_factory=list)
    _services: dict[str, Any] = field(default_factory=dict)

    def child(self, diagram_dir: Path) -> RunResources:
        """Resources for a sub-diagram run, one level deeper: the same base directory, store,
        options and services (created and closed by the top-level run). `--answer` values are
        keyed by the parent's node ids, so they are not passed down."""
        return RunResources(
            base_dir=self.base_dir,
            diagram_dir=diagram_dir,
            pause_progress=self.pause_progress,
            store=self.store,
            options=self.options,
            depth=self.depth + 1,
            llm_mode=self.llm_mode,
            llm_replay=self.llm_replay,
            http_replay=self.http_replay,
            prompts=self.prompts,
            shared=self.shared,
            _parent=self,
        )

    def service(self, name: str, factory: Callable[[], T], closer: Callable[[T], object]) -> T:
        """The run's one instance of a service, created by `factory` on first use."""
        if self._parent is not None:
            return self._parent.service(name, factory, closer)
        if name not in self._services:
            instance = factory()
            self._services[name] = instance
            self._closers.append(lambda: closer(instance))
        service: T = self._services[name]  # the name's factory made it
        return service

    def process_service(
        self, name: str, factory: Callable[[], Any], closer: Callable[[Any], Any]
    ) -> Any:
        """The host process's one instance of a service (shared by every execution it runs),
        or the run's own when the host shares none."""
        if self.shared is not None:
            return self.shared.get(name, factory, closer)
        return self.service(name, factory, closer)

    async def close(self) -> None:
        while self._closers:
            result = self._closers.pop()()
            if asyncio.iscoroutine(result):
                await result


class NodeScopedStore:
    """The StateStore as a handler sees it.

    Handlers written in DiPeO's original style call
    `await ctx.state_store.update_node_status(execution_id, node_id, status, output=None)`
    themselves. The executor already records RUNNING before and COMPLETED/FAILED after every
    handler call, so these calls are accepted and change nothing: a handler that makes them and
    one that does not produce the same history. Reads go to the real store.
    """

    def __init__(self, store: Any | None) -> None:
        self._store = store

    async def update_node_status(
        self,
        execution_id: str,
        node_id: str,
        status: NodeExecutionStatus,
        output: NodeOutput | None = None,
        **_: Any,
    ) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        if self._store is None:
            raise AttributeError(f"no history store in this run (ctx.state_store.{name})")
        return getattr(self._store, name)


class NodeContext:
    __slots__ = (
        "execution_id",
        "node_id",
        "node",
        "inputs",
        "variables",
        "iteration",
        "state_store",
        "resources",
        "graph",
        "calls",
        "_outputs",
        "_counts",
    )

    def __init__(
        self,
        *,
        execution_id: str,
        node: ExecutableNode,
        inputs: dict[str, Any],
        variables: dict[str, Any],
        iteration: int,
        state_store: NodeScopedStore,
        resources: RunResources,
        graph: ExecutableGraph,
        outputs: dict[str, NodeOutput],
        counts: dict[str, int],
    ) -> None:
        self.execution_id = execution_id
        self.node_id = node.id
        self.node = node
        self.inputs = inputs
        self.variables = variables
        self.iteration = iteration
        self.state_store = state_store
        self.resources = resources
        self.graph = graph
        self.calls: dict[str, list[dict[str, Any]]] = {}
        self._outputs = outputs
        self._counts = counts

    @property
    def base_dir(self) -> Path:
        return self.resources.base_dir

    def get_node_output(self, node_id: str) -> NodeOutput | None:
        return self._outputs.get(node_id)

    def execution_count(self, node_id: str) -> int:
        return self._counts.get(node_id, 0)


def node_calls(ctx: Any, key: str) -> list[dict[str, Any]]:
    """The records of kind `key` ("llm_calls", "http_calls") of this node execution (a fresh
    list for a context that cannot keep them)."""
    calls = getattr(ctx, "calls", None)
    if not isinstance(calls, dict):
        return []
    records: list[dict[str, Any]] = calls.setdefault(key, [])
    return records
