"""Run one diagram end to end: compile, execute, record in the history, show progress.

The CLI calls `prepare` (load + compile: raises DiagramError/PluginError/UsageError before
anything is recorded) and then `execute`, which wires the executor's events to the state, the
store and the progress view, turns Ctrl-C and SIGTERM into an ABORTED execution, and makes sure
the history holds every event when it returns, or says in `Outcome.history_error` why it does
not (a full disk, a damaged file): the run's result is never lost to a history failure.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dipeo_cli import events as ev
from dipeo_cli.context import RunResources
from dipeo_cli.diagram import load_diagram
from dipeo_cli.errors import HistoryError, UsageError
from dipeo_cli.executor import Executor, RunOptions
from dipeo_cli.graph import CompileOptions, ExecutableGraph, compile_graph
from dipeo_cli.paths import base_dir
from dipeo_cli.registry import load_plugins
from dipeo_cli.state import ExecutionState, apply_event, new_state

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


async def execute(
    graph: ExecutableGraph,
    *,
    store: Any,
    progress: ProgressView,
    variables: dict[str, Any],
    options: RunOptions,
    execution_id: str | None = None,
    answers: dict[str, list[str]] | None = None,
    llm_mode: str | None = None,
) -> Outcome:
    """Run the graph, recording every event; returns once the history holds all of them, or
    with `history_error` set when writing them failed."""
    holder: list[ExecutionState] = []
    progress = _Unbreakable(progress)
    diagram = graph.diagram

    def emit(event: ev.Event) -> None:
        if isinstance(event, ev.ExecutionStarted):
            state = new_state(event)
            holder.append(state)
            store.record(state, event)
            progress.start(state)
            return
        state = holder[0]
        apply_event(state, event)
        store.record(state, event)
        progress.update(state, event)

    diagram_dir = Path(diagram.file).resolve().parent if diagram.file else Path.cwd()
    executor = Executor(
        graph,
        execution_id=execution_id or new_execution_id(),
        emit=emit,
        variables=variables,
        options=options,
        store=store,
        resources=RunResources(
            base_dir=base_dir(),
            diagram_dir=diagram_dir,
            answers={node_id: list(texts) for node_id, texts in (answers or {}).items()},
            pause_progress=getattr(progress, "paused", None),
            store=store,
            options=options,
            llm_mode=llm_mode,
        ),
        diagram_id=diagram.file,
    )
    loop = asyncio.get_running_loop()
    handled = []
    for sig, reason in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated (SIGTERM)")):
        try:
            loop.add_signal_handler(sig, executor.abort, reason)
            handled.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread, or a platform without signal support
    history_error = None
    try:
        finished = await executor.run()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        if holder:
            progress.stop(holder[0])
        try:
            await store.flush()
        except HistoryError as exc:
            history_error = exc
    return Outcome(holder[0], finished, history_error)


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
        self._call("update", state, event)

    def stop(self, state: ExecutionState) -> None:
        self._call("stop", state)

    def __getattr__(self, name: str) -> Any:  # e.g. `paused`, used by user_response
        return getattr(self._view, name)


def run_json(state: ExecutionState) -> dict[str, Any]:
    """The `run --json` object (a stable contract: see README)."""
    return {
        "id": state.id,
        "status": state.status.value,
        "diagram_id": state.diagram_id,
        "started_at": state.started_at,
        "ended_at": state.ended_at,
        "duration_seconds": state.duration_seconds,
        "error": state.error,
        "result": state.result,
        "token_usage": state.token_usage.model_dump(),
    }


def history_json(state: ExecutionState) -> dict[str, Any]:
    data = run_json(state)
    data.pop("result")
    return data


def show_json(state: ExecutionState, children: list[ExecutionState] = ()) -> dict[str, Any]:
    """The whole state, plus the ids of the executions it ran as sub-diagrams (oldest first)."""
    data = state.model_dump(mode="json")
    data["children"] = [child.id for child in children]
    return data
