"""Run one diagram end to end: compile, execute, record in the history, show progress.

The CLI calls `prepare` (load + compile: raises DiagramError/PluginError/UsageError before
anything is recorded) and then `execute`, which hosts the execution in a `Run`: the one wiring
of the executor's events to the state, the store and the progress view, and of control requests
back to the executor. It returns once the history holds every event, or says in
`Outcome.history_error` why it does not (a full disk, a damaged file): the run's result is
never lost to a history failure.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dipeo_cli import events as ev
from dipeo_cli.compiler import compile_graph
from dipeo_cli.context import ProcessServices, RunResources
from dipeo_cli.diagram import load_diagram
from dipeo_cli.errors import ControlError, HistoryError, UsageError
from dipeo_cli.executor import Executor, RunOptions
from dipeo_cli.graph import CompileOptions, ExecutableGraph
from dipeo_cli.heap import frozen_for_run
from dipeo_cli.paths import base_dir
from dipeo_cli.registry import load_plugins
from dipeo_cli.state import ExecutionState, apply_event, new_state
from dipeo_cli.store.base import Control

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT, EXIT_INTERRUPTED = 0, 1, 2, 124, 130


class ProgressView(Protocol):
    def start(self, state: ExecutionState) -> None: ...
    def update(self, state: ExecutionState, event: ev.Event) -> None: ...
    def stop(self, state: ExecutionState) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """How a run ended. `history_error` is set when the run could not be recorded in full;
    a completed run then exits 1, because the history CI relies on is missing."""

    state: ExecutionState
    finished: ev.ExecutionFinished
    history_error: HistoryError | None = None

    @property
    def exit_code(self) -> int:
        if self.finished.reason == "timeout":
            return EXIT_TIMEOUT
        if self.finished.reason == "interrupted":
            return EXIT_INTERRUPTED
        if self.state.status.value == "COMPLETED" and self.history_error is None:
            return EXIT_OK
        return EXIT_FAILED


def prepare(
    path: str,
    *,
    format: str | None = None,
    plugins: tuple[str, ...] = (),
    llm_mode: str | None = None,
) -> ExecutableGraph:
    """Load and compile a diagram file; every problem raises before anything runs."""
    registry = load_plugins(plugins)
    diagram = load_diagram(path, format=format, strict=False)
    return compile_graph(diagram, registry, CompileOptions(llm_mode=llm_mode))


def parse_variables(
    input_data: str | None, inputs_file: str | None, pairs: list[str] | None
) -> dict[str, Any]:
    """Execution variables from --inputs FILE, then --input-data JSON, then -i key=value
    (later sources win)."""
    variables: dict[str, Any] = {}
    if inputs_file:
        path = Path(inputs_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--inputs: cannot read {inputs_file}: {exc.strerror}") from None
        variables.update(_parse_object(text, f"--inputs {inputs_file}", yaml_ok=True))
    if input_data:
        variables.update(_parse_object(input_data, "--input-data", yaml_ok=False))
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-i expects key=value, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        variables[key.strip()] = value
    try:  # bytes that are not UTF-8 in an argument, or a "\ud800" in JSON, are not text
        json.dumps(variables, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"a variable is not text: {ascii(exc.object[max(exc.start - 20, 0) : exc.end + 20])} "
            "holds bytes that are not UTF-8 (or a lone surrogate)"
        ) from None
    return variables


def _parse_object(text: str, source: str, *, yaml_ok: bool) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        if not yaml_ok:
            raise UsageError(f"{source}: not valid JSON ({exc})") from None
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as yexc:
            raise UsageError(f"{source}: neither JSON nor YAML ({yexc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected an object of variables, got {type(data).__name__}")
    return data


def new_execution_id() -> str:
    return uuid.uuid4().hex


class Run:
    """One execution hosted in this process, wired once: each executor event goes to the state
    (`apply_event`), then the store, then the progress view. The CLI, sub-diagram nodes and
    the server all host executions through it, so several can run in one process without
    touching each other (nothing process-wide is set here: signal handling belongs to the
    command that owns the process).

    While it runs, the store's watch task hands it the control requests other processes
    leave for it (pause, resume, abort, skip a node), and the same controls are callable
    here: `run.executor.pause()`, ... (`executor` exists from construction on)."""

    def __init__(
        self,
        graph: ExecutableGraph,
        *,
        store: Any,
        resources: RunResources,
        variables: dict[str, Any] | None = None,
        options: RunOptions | None = None,
        progress: ProgressView | None = None,
        execution_id: str | None = None,
        parent_id: str | None = None,
        replay: Any = None,
        retry_of: str | None = None,
        diagram_id: str | None = None,
    ) -> None:
        self.store = store
        self.state: ExecutionState | None = None
        self._progress: ProgressView | None = _Unbreakable(progress) if progress else None
        self.executor = Executor(
            graph,
            execution_id=execution_id or new_execution_id(),
            emit=self._emit,
            variables=variables,
            options=options,
            store=store,
            resources=resources,
            diagram_id=diagram_id if diagram_id is not None else graph.diagram.file,
            parent_id=parent_id,
            replay=replay,
            retry_of=retry_of,
        )

    @property
    def execution_id(self) -> str:
        return self.executor.execution_id

    def _emit(self, event: ev.Event) -> None:
        state: ExecutionState | None  # an annotation only: no cost on this hot path
        if isinstance(event, ev.ExecutionStarted):
            self.state = state = new_state(event)
            if self.store is not None:
                self.store.record(state, event)
            if self._progress is not None:
                self._progress.start(state)
            return
        state = self.state
        assert state is not None
        apply_event(state, event)
        if self.store is not None:
            self.store.record(state, event)
        if self._progress is not None:
            self._progress.update(state, event)

    def _on_control(self, request: Control) -> str:
        try:
            return self.executor.control(request.action, request.node_id, request.reason)
        except ControlError as exc:
            return f"error: {exc}"

    async def run(self) -> Outcome:
        """Run to the end; returns once the history holds every event."""
        watch = getattr(self.store, "watch", None)
        unwatch = watch(self.execution_id, self._on_control) if watch is not None else None
        history_error = None
        try:
            finished = await self.executor.run()
        finally:
            if unwatch is not None:
                unwatch()
            if self.state is not None and self._progress is not None:
                self._progress.stop(self.state)
            if self.store is not None:
                try:
                    await self.store.flush()
                except HistoryError as exc:
                    history_error = exc
        assert self.state is not None
        return Outcome(self.state, finished, history_error)


async def execute(
    graph: ExecutableGraph,
    *,
    store: Any,
    progress: ProgressView | None,
    variables: dict[str, Any],
    options: RunOptions,
    execution_id: str | None = None,
    answers: dict[str, list[str]] | None = None,
    llm_mode: str | None = None,
    on_start: Any = None,
    replay: Any = None,
    retry_of: str | None = None,
    llm_replay: Any = None,
    http_replay: Any = None,
    shared: ProcessServices | None = None,
    diagram_id: str | None = None,
    base: Path | None = None,
) -> Outcome:
    """Run the graph as a top-level execution, recording every event; returns once the
    history holds all of them (or with `history_error` set when writing them failed).
    `on_start(run)` is called before it starts (the CLI wires Ctrl-C to
    `run.executor.abort` there). `replay`/`retry_of` make it a retry (dipeo_cli/retry.py);
    `llm_replay`/`http_replay` answer calls from a recording (dipeo_cli/recording.py).
    `shared` holds the host process's services (the python worker pool), kept across runs.
    `diagram_id` names the diagram in the history when it has no file (read from standard
    input: "<stdin>"). `base` is where the diagram's relative file paths resolve (a worker's
    `--root`; default `paths.base_dir()`). `execution_id` hosts an execution recorded before
    (a queued one): its ExecutionStarted turns that row into this run."""
    diagram = graph.diagram
    diagram_dir = Path(diagram.file).resolve().parent if diagram.file else Path.cwd()
    resources = RunResources(
        base_dir=base if base is not None else base_dir(),
        diagram_dir=diagram_dir,
        answers={node_id: list(texts) for node_id, texts in (answers or {}).items()},
        store=store,
        options=options,
        llm_mode=llm_mode,
        llm_replay=llm_replay,
        http_replay=http_replay,
        shared=shared,
    )
    run = Run(
        graph,
        store=store,
        resources=resources,
        variables=variables,
        options=options,
        progress=progress,
        execution_id=execution_id,
        replay=replay,
        retry_of=retry_of,
        diagram_id=diagram_id,
    )
    resources.pause_progress = getattr(run._progress, "paused", None)
    if on_start is not None:
        on_start(run)
    with frozen_for_run():  # the graph and modules live as long as the run: see dipeo_cli.heap
        return await run.run()


class _Unbreakable:
    """A progress view whose stream can go away (`dipeo run x 2>&1 | head`): the run goes on,
    quietly, and is recorded as usual, instead of failing on a closed pipe."""

    def __init__(self, view: ProgressView) -> None:
        self._view: ProgressView | None = view

    def _call(self, method: str, *args: Any) -> None:
        if self._view is None:
            return
        try:
            getattr(self._view, method)(*args)
        except OSError:  # EPIPE, EIO: nobody is reading any more
            self._view = None

    def start(self, state: ExecutionState) -> None:
        self._call("start", state)

    def update(self, state: ExecutionState, event: ev.Event) -> None:
        # twice per node: no getattr, no extra call
        view = self._view
        if view is not None:
            try:
                view.update(state, event)
            except OSError:
                self._view = None

    def stop(self, state: ExecutionState) -> None:
        self._call("stop", state)

    def __getattr__(self, name: str) -> Any:  # e.g. `paused`, used by user_response
        return getattr(self._view, name)
