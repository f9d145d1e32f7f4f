"""The executions `dipeo serve` starts and steers, on the server's history store.

`ExecutionHost` is what the GraphQL resolvers call:

- `start(...)`: find the diagram (a file under the root, or inline text when allowed), compile
  it (every problem comes back as the error; nothing runs), then host the execution in a `Run`
  on the server's store and return as soon as it has started;
- `control(...)`: pause / resume / abort / skip_node. A run hosted here is steered through its
  executor; a run in another process (a `dipeo run` on the same history) through a control
  request in the store, whose outcome is awaited for up to CONTROL_WAIT seconds;
- `answer(...)`: the answer to a waiting user_response node of a hosted run;
- `stop(...)`: abort every hosted run (Ctrl-C) and wait until each is recorded.

A request refused raises UsageError, its message meant for the client (nothing was done).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dipeo_cli.context import ProcessServices, RunResources
from dipeo_cli.errors import ControlError, DiagramError, DipeoError, UsageError
from dipeo_cli.server.prompts import PromptBoard
from dipeo_cli.state import ExecutionState

CONTROL_WAIT = 2.0  # seconds a control of a run elsewhere waits for that process's answer
START_WAIT = 5.0  # seconds `start` waits for the execution's first event
ACTIONS = ("pause", "resume", "abort", "skip_node")
# How DiPeO named diagrams: a path, or a name with one of its format suffixes, also under
# files/diagrams/ (where DiPeO kept them).
SUFFIXES = (".light.yaml", ".native.json", ".readable.yaml", ".yaml", ".yml", ".json")


@dataclass
class Hosted:
    run: Any  # dipeo_cli.runner.Run
    task: asyncio.Task[Any]


class ExecutionHost:
    def __init__(
        self,
        store: Any,
        *,
        root: Path,
        allow_inline: bool = False,
        llm_mode: str | None = None,
    ) -> None:
        self.store = store
        self.root = root.resolve()
        self.allow_inline = allow_inline
        self.llm_mode = llm_mode
        self.prompts = PromptBoard()
        self.hosted: dict[str, Hosted] = {}
        # what the runs share (the warm python worker pool), closed by `stop`
        self.services = ProcessServices()

    # -- starting ------------------------------------------------------------------------------

    async def start(
        self,
        *,
        diagram_id: str | None,
        diagram_data: Any,
        variables: Any,
        max_iterations: int,
        timeout_seconds: float | None,
        queue: bool = False,
    ) -> ExecutionState:
        """Validate and start an execution; returns its state right after it started.
        With `queue`, record it QUEUED for a `dipeo worker` instead (returns that state)."""
        from dipeo_cli.executor import RunOptions

        if max_iterations < 1:
            raise UsageError("max_iterations must be at least 1")
        if timeout_seconds is not None and timeout_seconds <= 0:
            raise UsageError("timeout_seconds must be greater than 0")
        graph, diagram_dir = self._compile(diagram_id, diagram_data)
        if queue:
            return await self._queue(graph, diagram_id if diagram_data is None else None, variables)
        options = RunOptions(max_iterations=max_iterations, timeout=timeout_seconds)
        return await self._launch(graph, diagram_dir, _variables(variables), options)

    async def _queue(self, graph: Any, diagram_id: str | None, variables: Any) -> ExecutionState:
        """Record a QUEUED execution: its text, its path under the root (None when inline)."""
        from dipeo_cli.runner import new_execution_id

        if graph.run_blockers():
            raise UsageError(f"cannot queue this diagram: {graph.run_blockers()[0]}")
        relative = None
        if diagram_id is not None:
            relative = self.find_diagram(diagram_id).relative_to(self.root).as_posix()
        execution_id = new_execution_id()
        try:
            await self.store.submit(
                execution_id,
                diagram_source=graph.diagram.source or "",
                diagram_path=relative,
                diagram_id=relative or "diagram_data",
                variables=_variables(variables),
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return await self.find(execution_id)

    def _compile(self, diagram_id: str | None, diagram_data: Any) -> tuple[Any, Path]:
        from dipeo_cli.compiler import compile_graph
        from dipeo_cli.diagram import load_diagram, parse_diagram
        from dipeo_cli.graph import CompileOptions
        from dipeo_cli.registry import load_plugins

        text: str | None = None
        path: Path | None = None
        if diagram_data is not None:
            if not self.allow_inline:
                raise UsageError(
                    "inline diagram_data is refused: start the server with --allow-inline, "
                    "or pass diagram_id (a file under the server's root)"
                )
            text = diagram_data if isinstance(diagram_data, str) else json.dumps(diagram_data)
            where, diagram_dir = "diagram_data", self.root
        elif diagram_id:
            path = self.find_diagram(diagram_id)
            where, diagram_dir = diagram_id, path.parent
        else:
            raise UsageError("execute_diagram needs diagram_id or diagram_data")
        try:
            if text is not None:
                diagram = parse_diagram(text, strict=False)
            else:
                assert path is not None
                diagram = load_diagram(path, strict=False)
            return compile_graph(
                diagram, load_plugins(()), CompileOptions(llm_mode=self.llm_mode)
            ), diagram_dir
        except DiagramError as exc:
            raise UsageError(
                f"{where} is not valid ({len(exc.problems)} problem(s)):\n{exc}"
            ) from None
        except DipeoError as exc:
            raise UsageError(str(exc)) from None
        except Exception as exc:  # a loader bug: one line, never a traceback to the client
            raise UsageError(
                f"internal error while loading {where}: {type(exc).__name__}: {exc}"
            ) from None

    def find_diagram(self, name: str) -> Path:
        """The file `name` names under the root; UsageError outside the root or when none."""
        given = Path(name).expanduser()
        first = (given if given.is_absolute() else self.root / given).resolve()
        if not first.is_relative_to(self.root):
            raise UsageError(f"diagram_id {name!r} is outside the server's root {self.root}")
        candidates = [first]
        if not given.is_absolute():
            for base in (self.root, self.root / "files" / "diagrams"):
                candidates += [(base / f"{name}{suffix}").resolve() for suffix in SUFFIXES]
                candidates.append((base / name).resolve())
        for path in candidates:
            if path.is_relative_to(self.root) and path.is_file():
                return path
        raise UsageError(f"no diagram {name!r} under the server's root {self.root}")

    async def _launch(
        self, graph: Any, diagram_dir: Path, variables: dict[str, Any], options: Any
    ) -> ExecutionState:
        from dipeo_cli.paths import base_dir
        from dipeo_cli.runner import Run

        resources = RunResources(
            base_dir=base_dir(),
            diagram_dir=diagram_dir,
            store=self.store,
            options=options,
            llm_mode=self.llm_mode,
            prompts=self.prompts,
            shared=self.services,
        )
        started = asyncio.Event()
        run = Run(
            graph,
            store=self.store,
            resources=resources,
            variables=variables,
            options=options,
            progress=_StartSignal(started),
        )
        task = asyncio.create_task(self._host(run), name=f"dipeo-serve-{run.execution_id}")
        self.hosted[run.execution_id] = Hosted(run, task)
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({waiter, task}, timeout=START_WAIT, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if run.state is None:
            raise UsageError("the execution did not start")
        return run.state.model_copy(deep=True)

    async def _host(self, run: Any) -> None:
        import sys

        try:
            await run.run()
        except Exception as exc:  # the executor recorded FAILED; the server goes on
            print(
                f"execution {run.execution_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr
            )
        finally:
            self.hosted.pop(run.execution_id, None)

    # -- steering ------------------------------------------------------------------------------

    async def control(
        self, execution: str, action: str, node_id: str | None
    ) -> tuple[str, ExecutionState]:
        """Apply `action`; returns (what was done, the state after). UsageError otherwise."""
        action = (action or "").strip().lower()
        if action == "skip":
            action = "skip_node"
        if action not in ACTIONS:
            raise UsageError(f"unknown action {action!r} (pause, resume, abort, skip_node)")
        if action == "skip_node" and not node_id:
            raise UsageError("skip_node needs node_id")
        state = await self.find(execution)
        if state.status.is_final:
            raise UsageError(f"execution {state.id} has already finished ({state.status.value})")
        hosted = self.hosted.get(state.id)
        if hosted is not None:
            try:
                done = hosted.run.executor.control(action, node_id)
            except ControlError as exc:
                raise UsageError(str(exc)) from None
        else:
            done = await self._request(state.id, action, node_id)
        return done, await self.find(state.id)

    async def _request(self, execution_id: str, action: str, node_id: str | None) -> str:
        request = await self.store.request_control(execution_id, action, node_id=node_id)
        deadline = time.monotonic() + CONTROL_WAIT
        while time.monotonic() < deadline:
            taken, outcome = await self.store.control_outcome(request)
            if outcome is not None:
                if outcome.startswith("error: "):
                    raise UsageError(outcome.removeprefix("error: "))
                return str(outcome)
            await asyncio.sleep(0.05)
        raise UsageError(
            f"no process running execution {execution_id} took the request within "
            f"{CONTROL_WAIT:g} s (it stays queued for it)"
        )

    async def answer(self, execution: str, node: str, response: str) -> tuple[str, ExecutionState]:
        state = await self.find(execution)
        if state.status.is_final:
            raise UsageError(f"execution {state.id} has already finished ({state.status.value})")
        if state.id not in self.hosted:
            raise UsageError(
                f"execution {state.id} is not run by this server; only its runs take answers"
            )
        try:
            done = self.prompts.answer(state.id, node, response)
        except ControlError as exc:
            raise UsageError(str(exc)) from None
        return done, await self.find(state.id)

    async def find(self, execution: str) -> ExecutionState:
        from dipeo_cli.errors import HistoryError

        try:
            state: ExecutionState = await self.store.find_execution(execution)
        except HistoryError as exc:
            raise UsageError(str(exc)) from None
        return state

    async def stop(self, reason: str = "the server stopped") -> None:
        """Abort every hosted run and wait until each is recorded (ABORTED)."""
        tasks = []
        for hosted in list(self.hosted.values()):
            try:
                hosted.run.executor.abort(reason)
            except ControlError:
                pass  # finishing anyway
            tasks.append(hosted.task)
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await self.services.close()


def _variables(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise UsageError("variables: not valid JSON") from None
    if not isinstance(value, dict):
        raise UsageError(f"variables must be an object, got {type(value).__name__}")
    return value


class _StartSignal:
    """The progress view of a hosted run: it only says when the run has started."""

    def __init__(self, started: asyncio.Event) -> None:
        self._started = started

    def start(self, state: ExecutionState) -> None:
        self._started.set()

    def update(self, state: ExecutionState, event: Any) -> None:
        pass

    def stop(self, state: ExecutionState) -> None:
        self._started.set()
