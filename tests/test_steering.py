"""The executor can be steered: a launch gate (pause/resume), skip on request, abort, and a
replay seam whose completions keep their original order; controls reach it through the store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli import events as ev
from dipeo_cli.context import RunResources
from dipeo_cli.errors import ControlError
from dipeo_cli.executor import Executor, RunOptions
from dipeo_cli.replay import Recorded
from dipeo_cli.runner import Run
from dipeo_cli.state import ExecutionStatus, NodeExecutionStatus, create_node_output
from dipeo_cli.store import open_store
from tests.executor_kit import Recorder, build


async def _sleep_then(value: Any, seconds: float = 0.05) -> Any:
    await asyncio.sleep(seconds)
    return value


def chain(n: int, seconds: float = 0.05) -> Any:
    nodes: dict[str, tuple[str, dict[str, Any]]] = {"Start": ("start", {})}
    arrows = []
    previous = "Start"
    for i in range(1, n + 1):
        label = f"N{i}"
        nodes[label] = ("fn", {"fn": lambda ctx, i=i: _sleep_then(i, seconds)})
        arrows.append(f"{previous} -> {label}")
        previous = label
    nodes["End"] = ("endpoint", {})
    arrows.append(f"{previous} -> End")
    return build(nodes, arrows)


async def until_started(recorder: Recorder, graph: Any, label: str) -> None:
    while label not in recorder.started(graph):
        await asyncio.sleep(0.005)


def executor_for(graph: Any, recorder: Recorder, **kwargs: Any) -> Executor:
    return Executor(graph, execution_id="steered", emit=recorder, **kwargs)


def test_pause_lets_running_nodes_finish_and_starts_nothing_until_resume() -> None:
    graph = chain(4, seconds=0.05)
    recorder = Recorder()

    async def main() -> Any:
        executor = executor_for(graph, recorder)
        task = asyncio.ensure_future(executor.run())
        await until_started(recorder, graph, "N1")
        assert executor.pause("maintenance") == "paused"
        assert executor.pause() == "already paused"
        assert recorder.state is not None and recorder.state.status is ExecutionStatus.PAUSED
        await asyncio.sleep(0.4)  # N1 finishes; nothing else may start meanwhile
        assert recorder.started(graph) == ["Start", "N1"]
        assert recorder.node(graph, "N1").status is NodeExecutionStatus.COMPLETED
        assert not task.done(), "a paused execution must not end"
        assert executor.resume() == "resumed"
        finished = await task
        with pytest.raises(ControlError, match="already finished"):
            executor.pause()
        return finished

    finished = asyncio.run(main())
    assert finished.status is ExecutionStatus.COMPLETED
    assert recorder.started(graph) == ["Start", "N1", "N2", "N3", "N4", "End"]
    assert recorder.output(graph, "End") == 4
    kinds = [type(e).__name__ for e in recorder.events]
    assert kinds.index("ExecutionPaused") < kinds.index("ExecutionResumed")
    paused = next(e for e in recorder.events if isinstance(e, ev.ExecutionPaused))
    assert paused.reason == "maintenance"


def test_a_paused_execution_can_be_aborted() -> None:
    graph = chain(3, seconds=0.02)
    recorder = Recorder()

    async def main() -> Any:
        executor = executor_for(graph, recorder)
        task = asyncio.ensure_future(executor.run())
        await until_started(recorder, graph, "N1")
        executor.pause()
        await asyncio.sleep(0.1)
        executor.abort("stopped by the operator")
        return await task

    finished = asyncio.run(main())
    assert finished.status is ExecutionStatus.ABORTED
    assert finished.error == "stopped by the operator"
    assert recorder.node(graph, "N3").status is NodeExecutionStatus.SKIPPED


def test_skip_on_request_skips_the_node_and_its_downstream() -> None:
    graph = build(
        {
            "Start": ("start", {}),
            "Slow": ("fn", {"fn": lambda ctx: _sleep_then("slow", 0.2)}),
            "Later": ("fn", {"fn": lambda ctx: "later"}),
            "After": ("fn", {"fn": lambda ctx: "after"}),
            "Side": ("fn", {"fn": lambda ctx: "side"}),
        },
        ["Start -> Slow", "Slow -> Later", "Later -> After", "Start -> Side"],
    )
    recorder = Recorder()

    async def main() -> Any:
        executor = executor_for(graph, recorder)
        task = asyncio.ensure_future(executor.run())
        await until_started(recorder, graph, "Slow")
        assert executor.skip("Later") == "skipped node 'Later'"
        with pytest.raises(ControlError, match="is running"):
            executor.skip("Slow")
        with pytest.raises(ControlError, match="no node 'Nope'"):
            executor.skip("Nope")
        finished = await task
        with pytest.raises(ControlError):
            executor.skip("After")
        return finished

    finished = asyncio.run(main())
    assert finished.status is ExecutionStatus.COMPLETED
    later = recorder.node(graph, "Later")
    assert (later.status, later.skip_reason) == (NodeExecutionStatus.SKIPPED, "skipped on request")
    after = recorder.node(graph, "After")
    assert after.status is NodeExecutionStatus.SKIPPED
    assert after.skip_reason == "upstream node 'Later' was skipped"
    assert recorder.output(graph, "Side") == "side"


def test_a_node_that_already_ran_cannot_be_skipped() -> None:
    graph = chain(2, seconds=0.1)
    recorder = Recorder()

    async def main() -> None:
        executor = executor_for(graph, recorder)
        task = asyncio.ensure_future(executor.run())
        await until_started(recorder, graph, "N2")
        with pytest.raises(ControlError, match="'N1' already ran"):
            executor.skip("N1")
        await task

    asyncio.run(main())


class Replayed:
    """A replay that answers the listed labels with recorded outputs, in a given order."""

    def __init__(self, answers: dict[str, tuple[Any, int]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    def recorded(self, node: Any, iteration: int, inputs: Any, sources: Any) -> Recorded | None:
        self.asked.append((node.label, iteration))
        if node.label not in self.answers:
            return None
        value, order = self.answers[node.label]
        return Recorded(create_node_output(value, {"replayed_from": "old"}), order)


def test_replayed_nodes_do_not_run_and_complete_in_their_original_order() -> None:
    calls: list[str] = []

    def live(name: str) -> Any:
        def fn(ctx: Any) -> Any:
            calls.append(name)
            return name

        return fn

    # A and B feed Join on the same label: the value delivered last wins, so the order in
    # which their recorded completions are applied decides what Join sees.
    graph = build(
        {
            "Start": ("start", {}),
            "A": ("fn", {"fn": live("A")}),
            "B": ("fn", {"fn": live("B")}),
            "Join": ("fn", {"fn": lambda ctx: ctx.inputs["x"]}),
        },
        ["Start -> A", "Start -> B", "A -> Join : x", "B -> Join : x"],
    )

    def run_with(order_a: int, order_b: int) -> Any:
        recorder = Recorder()
        replay = Replayed({"A": ("from A", order_a), "B": ("from B", order_b)})
        executor = executor_for(graph, recorder, replay=replay)
        finished = asyncio.run(executor.run())
        assert finished.status is ExecutionStatus.COMPLETED
        completed = [
            graph.nodes[e.node_id].label for e in recorder.events if isinstance(e, ev.NodeCompleted)
        ]
        return recorder.output(graph, "Join"), completed, recorder

    seen, completed, recorder = run_with(order_a=5, order_b=9)
    assert (seen, completed) == ("from B", ["Start", "A", "B", "Join"])
    seen, completed, _ = run_with(order_a=9, order_b=5)
    assert (seen, completed) == ("from A", ["Start", "B", "A", "Join"])
    assert calls == []  # the replayed handlers never ran
    out = recorder.state.node_outputs[graph.node_by_label("A").id]  # type: ignore[union-attr]
    assert out.metadata["replayed_from"] == "old"


def test_controls_from_another_process_reach_the_running_execution(tmp_path: Path) -> None:
    """A second store on the same file stands for another process: its requests are rows, the
    running execution's watch task picks them up within the poll interval."""
    graph = chain(6, seconds=0.05)
    db = tmp_path / "history.db"

    async def main() -> Any:
        async with await open_store(db) as store, await open_store(db) as remote:
            run = Run(graph, store=store, resources=RunResources(store=store))
            task = asyncio.ensure_future(run.run())
            while (
                run.state is None
                or run.state.node_states[
                    graph.node_by_label("N1").id  # type: ignore[union-attr]
                ].status
                is not NodeExecutionStatus.COMPLETED
            ):
                await asyncio.sleep(0.01)
            asked = time.monotonic()
            pause = await remote.request_control(run.execution_id, "PAUSE")
            while (await remote.control_outcome(pause))[1] is None:
                await asyncio.sleep(0.02)
            assert time.monotonic() - asked < 0.5 + 0.3  # the poll interval, plus a commit
            assert (await remote.control_outcome(pause))[1] == "paused"
            paused = await remote.get_execution(run.execution_id)
            assert paused is not None and paused.status is ExecutionStatus.PAUSED
            started_then = sum(1 for n in paused.node_states.values() if n.iterations)
            await asyncio.sleep(0.6)
            during = await remote.get_execution(run.execution_id)
            assert during is not None
            assert sum(1 for n in during.node_states.values() if n.iterations) == started_then
            skip = await remote.request_control(run.execution_id, "skip_node", node_id="N1")
            resume = await remote.request_control(run.execution_id, "resume")
            abort = await remote.request_control(run.execution_id, "abort", reason="enough")
            outcome = await task
            for request in (skip, resume, abort):
                while (await remote.control_outcome(request))[1] is None:
                    await asyncio.sleep(0.02)
            assert (await remote.control_outcome(skip))[1].startswith("error: node 'N1' already")
            assert (await remote.control_outcome(resume))[1] == "resumed"
            assert (await remote.control_outcome(abort))[1] == "aborting"
            return outcome

    outcome = asyncio.run(main())
    assert outcome.state.status is ExecutionStatus.ABORTED
    assert outcome.state.error == "enough"
    assert outcome.exit_code == 130


def test_a_paused_run_whose_process_died_reads_back_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "history.db"

    async def write() -> str:
        async with await open_store(db) as store:
            graph = chain(1)
            recorder: list[Any] = []
            run = Run(graph, store=store, resources=RunResources(store=store))
            task = asyncio.ensure_future(run.run())
            while run.state is None:
                await asyncio.sleep(0.005)
            run.executor.pause()
            await store.flush()
            recorder.append(run.execution_id)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return run.execution_id

    execution_id = asyncio.run(write())

    async def read() -> Any:
        import sqlite3

        connection = sqlite3.connect(db)
        # the run stays PAUSED in the file, written by a process that no longer exists
        connection.execute(
            "UPDATE executions SET status = 'PAUSED', pid = 999999999, ended_at = NULL "
            "WHERE id = ?",
            (execution_id,),
        )
        connection.commit()
        connection.close()
        async with await open_store(db) as store:
            return await store.get_execution(execution_id)

    state = asyncio.run(read())
    assert state.status is ExecutionStatus.FAILED
    assert "interrupted" in state.error
    assert ExecutionStatus.PAUSED.is_active and not ExecutionStatus.ABORTED.is_active


def test_options_are_per_run_and_runs_do_not_share_gates() -> None:
    first, second = chain(2, seconds=0.05), chain(2, seconds=0.05)
    one, two = Recorder(), Recorder()

    async def main() -> Any:
        a = Executor(first, execution_id="a", emit=one, options=RunOptions(max_parallel=1))
        b = Executor(second, execution_id="b", emit=two)
        ta, tb = asyncio.ensure_future(a.run()), asyncio.ensure_future(b.run())
        await until_started(one, first, "N1")
        a.pause()
        finished_b = await tb
        assert not ta.done()
        a.resume()
        return await ta, finished_b

    fa, fb = asyncio.run(main())
    assert fa.status is fb.status is ExecutionStatus.COMPLETED
