"""Execution semantics (DESIGN.md §2), one rule per test, on test handlers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from dipeo_cli import events as ev
from dipeo_cli.state import ExecutionStatus, NodeExecutionStatus, create_node_output
from tests.executor_kit import build, run

S = ("start", {})


def value(v: Any):
    return ("fn", {"fn": lambda ctx: v})


def inputs_of(seen: list):
    def fn(ctx):
        seen.append(dict(ctx.inputs))
        return ctx.inputs.get("default")

    return ("fn", {"fn": fn})


def test_chain_runs_in_order_and_endpoint_value_is_the_result():
    g = build(
        {
            "Start": S,
            "A": ("fn", {"fn": lambda c: c.inputs["default"]["x"] + 1}),
            "End": ("endpoint", {}),
        },
        ["Start -> A", "A -> End"],
    )
    finished, rec = run(g, {"x": 41})
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.result == 42
    assert rec.started(g) == ["Start", "A", "End"]


def test_independent_nodes_run_concurrently():
    async def slow(ctx):
        await asyncio.sleep(0.2)
        return 1

    nodes = {"Start": S, **{f"W{i}": ("fn", {"fn": slow}) for i in range(20)}}
    g = build(nodes, [f"Start -> W{i}" for i in range(20)])
    t0 = time.perf_counter()
    finished, _ = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert time.perf_counter() - t0 < 2.0  # 20 x 0.2 s sequentially would be 4 s


def test_siblings_that_become_ready_together_start_in_diagram_order():
    # Arrows written in another order than the nodes: the diagram's node order decides.
    nodes = {"Start": S, **{f"N{i}": ("fn", {"fn": lambda ctx: 1}) for i in range(6)}}
    g = build(nodes, [f"Start -> N{i}" for i in (3, 0, 5, 1, 4, 2)])
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert rec.started(g) == ["Start", "N0", "N1", "N2", "N3", "N4", "N5"]


def test_join_waits_for_every_input_and_sees_them_by_label():
    seen: list = []
    g = build(
        {"Start": S, "A": value(1), "B": value(2), "C": inputs_of(seen)},
        ["Start -> A", "Start -> B", "A -> C : left", "B -> C : right"],
    )
    finished, _ = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert seen == [{"left": 1, "right": 2}]


def test_loop_entered_from_a_non_start_node_iterates_until_the_condition_holds():
    # simple_iter_code's shape: Start -> Init -> Count; Count -> Check; Check[condfalse] -> Count
    g = build(
        {
            "Start": S,
            "Init": value(0),
            "Count": ("fn", {"fn": lambda c: c.inputs["default"] + 1}),
            "Check": ("branch", {"test": lambda c: c.inputs["default"] >= 5}),
            "End": ("endpoint", {}),
        },
        [
            "Start -> Init",
            "Init -> Count",
            "Count -> Check",
            "Check[condfalse] -> Count",
            "Check[condtrue] -> End",
        ],
    )
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.result == 5
    assert rec.node(g, "Count").iterations == 5
    assert rec.node(g, "Init").iterations == 1


def test_loop_entered_straight_from_start_reuses_the_start_value():
    seen: list = []

    def count(ctx):
        seen.append(dict(ctx.inputs))
        return len(seen)

    g = build(
        {
            "Start": S,
            "Count": ("fn", {"fn": count}),
            "Check": ("branch", {"test": lambda c: c.inputs["default"] >= 3}),
            "End": ("endpoint", {}),
        },
        [
            "Start -> Count : seed",
            "Count -> Check",
            "Check[condfalse] -> Count",
            "Check[condtrue] -> End",
        ],
    )
    finished, _ = run(g, {"k": 1})
    assert finished.result == 3
    assert seen[0] == {"seed": {"k": 1}}
    assert seen[1] == {"seed": {"k": 1}, "default": 1}


def test_endpoint_on_untaken_branch_is_skipped_and_the_run_completes():
    g = build(
        {
            "Start": S,
            "Cond": ("branch", {"test": lambda c: False}),
            "EndA": ("endpoint", {}),
            "EndB": ("endpoint", {}),
        },
        ["Start -> Cond", "Cond[condtrue] -> EndA", "Cond[condfalse] -> EndB"],
    )
    finished, rec = run(g, {"v": 1})
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.result == {"v": 1}
    end_a = rec.node(g, "EndA")
    assert end_a.status is NodeExecutionStatus.SKIPPED
    assert "branch not taken" in end_a.skip_reason


def test_node_with_one_input_on_an_untaken_branch_runs_with_the_others():
    # reference §9.5: End gets tpl, ask and Check[condtrue]; Check decides false.
    seen: list = []
    g = build(
        {
            "Start": S,
            "Tpl": value("t"),
            "Ask": value(""),
            "Check": ("branch", {"test": lambda c: False}),
            "End": inputs_of(seen),
        },
        [
            "Start -> Tpl",
            "Start -> Ask",
            "Start -> Check",
            "Tpl -> End : tpl",
            "Ask -> End : ask",
            "Check[condtrue] -> End : ct",
        ],
    )
    finished, _ = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert seen == [{"tpl": "t", "ask": ""}]


def test_skip_propagates_down_an_untaken_branch_with_reasons():
    g = build(
        {
            "Start": S,
            "Cond": ("branch", {"test": lambda c: True}),
            "A": value(1),
            "B": value(2),
            "End": ("endpoint", {}),
        },
        ["Start -> Cond", "Cond[condfalse] -> A", "A -> B", "Cond[condtrue] -> End"],
    )
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert "branch not taken" in rec.node(g, "A").skip_reason
    assert rec.node(g, "B").skip_reason == "upstream node 'A' was skipped"


def test_failing_node_fails_the_run_and_skips_its_descendants():
    def boom(ctx):
        raise RuntimeError("kaboom")

    g = build(
        {"Start": S, "Boom": ("fn", {"fn": boom}), "After": value(1), "End": ("endpoint", {})},
        ["Start -> Boom", "Boom -> After", "After -> End"],
    )
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.FAILED
    assert finished.error == "node 'Boom' failed: RuntimeError: kaboom"
    assert rec.node(g, "Boom").status is NodeExecutionStatus.FAILED
    assert rec.node(g, "Boom").error == "RuntimeError: kaboom"
    assert rec.node(g, "After").skip_reason == "upstream node 'Boom' failed"
    assert rec.node(g, "End").status is NodeExecutionStatus.SKIPPED


def test_failure_lets_running_nodes_finish_and_starts_nothing_new():
    async def slow(ctx):
        await asyncio.sleep(0.1)
        return "slow done"

    def boom(ctx):
        raise ValueError("bad")

    g = build(
        {"Start": S, "Slow": ("fn", {"fn": slow}), "Boom": ("fn", {"fn": boom}), "Next": value(1)},
        ["Start -> Slow", "Start -> Boom", "Slow -> Next"],
    )
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.FAILED
    assert rec.node(g, "Slow").status is NodeExecutionStatus.COMPLETED
    assert rec.output(g, "Slow") == "slow done"
    assert rec.node(g, "Next").status is NodeExecutionStatus.SKIPPED


def test_nodes_ending_in_the_same_turn_are_all_handled_before_anything_starts():
    # Fast and Boom end in the same turn of the event loop, Fast first. Their ends are handled
    # together (executor._drain_done) before any launch, so Boom's failure stops Next from
    # starting although Fast's end made it ready first.
    def boom(ctx):
        raise ValueError("bad")

    g = build(
        {"Start": S, "Fast": value(1), "Boom": ("fn", {"fn": boom}), "Next": value(2)},
        ["Start -> Fast", "Start -> Boom", "Fast -> Next"],
    )
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.FAILED
    assert rec.node(g, "Fast").status is NodeExecutionStatus.COMPLETED
    assert rec.node(g, "Next").status is NodeExecutionStatus.SKIPPED
    assert not any(
        isinstance(e, ev.NodeStarted) and e.node_id == g.node_by_label("Next").id
        for e in rec.events
    )


def test_error_port_carries_the_error_and_the_run_goes_on():
    def boom(ctx):
        raise RuntimeError("kaboom")

    g = build(
        {"Start": S, "Boom": ("fn", {"fn": boom}), "Ok": value(1), "Handler": ("endpoint", {})},
        ["Start -> Boom", "Boom -> Ok", "Boom[error] -> Handler"],
    )
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert finished.result == "RuntimeError: kaboom"
    assert rec.node(g, "Boom").status is NodeExecutionStatus.FAILED
    assert rec.node(g, "Ok").status is NodeExecutionStatus.SKIPPED


def test_continue_on_error_passes_errors_on_and_still_reports_failure():
    def boom(ctx):
        raise RuntimeError("kaboom")

    g = build(
        {"Start": S, "Boom": ("fn", {"fn": boom}), "End": ("endpoint", {})},
        ["Start -> Boom", "Boom -> End"],
    )
    finished, rec = run(g, continue_on_error=True)
    assert finished.status is ExecutionStatus.FAILED
    assert rec.output(g, "End") == "RuntimeError: kaboom"
    assert rec.node(g, "End").status is NodeExecutionStatus.COMPLETED


def test_max_iteration_stops_a_node_without_failing():
    g = build(
        {
            "Start": S,
            "Count": ("fn", {"fn": lambda c: c.iteration, "max_iteration": 3}),
            "Check": ("branch", {"test": lambda c: False}),
        },
        ["Start -> Count", "Count -> Check", "Check[condfalse] -> Count"],
    )
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    count = rec.node(g, "Count")
    assert count.iterations == 3
    assert count.status is NodeExecutionStatus.MAXITER_REACHED


def test_endless_loop_fails_at_the_run_wide_cap_naming_the_node():
    g = build(
        {"Start": S, "Spin": value(1), "Check": ("branch", {"test": lambda c: False})},
        ["Start -> Spin", "Spin -> Check", "Check[condfalse] -> Spin"],
    )
    finished, rec = run(g, max_iterations=7)
    assert finished.status is ExecutionStatus.FAILED
    assert "node 'Spin' would run more than 7 times" in finished.error
    assert rec.node(g, "Spin").iterations == 8


def test_node_timeout_fails_the_node():
    async def hang(ctx):
        await asyncio.sleep(10)

    g = build({"Start": S, "Hang": ("fn", {"fn": hang, "timeout": 0.1})}, ["Start -> Hang"])
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.FAILED
    assert rec.node(g, "Hang").error == "timed out after 0.1 s"


def test_execution_timeout_cancels_running_nodes_and_records_the_reason():
    async def hang(ctx):
        await asyncio.sleep(10)

    g = build(
        {"Start": S, "Hang": ("fn", {"fn": hang}), "End": ("endpoint", {})},
        ["Start -> Hang", "Hang -> End"],
    )
    t0 = time.perf_counter()
    finished, rec = run(g, timeout=0.2)
    assert time.perf_counter() - t0 < 2
    assert finished.status is ExecutionStatus.FAILED
    assert finished.reason == "timeout"
    assert finished.error == "timed out after 0.2 s"
    assert rec.node(g, "Hang").status is NodeExecutionStatus.FAILED
    assert rec.node(g, "End").skip_reason == "execution timed out"


def test_abort_records_aborted():
    from dipeo_cli.executor import Executor, RunOptions
    from tests.executor_kit import Recorder

    async def hang(ctx):
        await asyncio.sleep(10)

    g = build({"Start": S, "Hang": ("fn", {"fn": hang})}, ["Start -> Hang"])
    rec = Recorder()

    async def main():
        executor = Executor(g, execution_id="x", emit=rec, options=RunOptions())
        asyncio.get_running_loop().call_later(0.1, executor.abort, "interrupted")
        return await executor.run()

    finished = asyncio.run(main())
    assert finished.status is ExecutionStatus.ABORTED
    assert finished.reason == "interrupted"
    assert rec.node(g, "Hang").error == "interrupted"


def test_latest_delivery_wins_when_arrows_share_a_label():
    seen: list = []

    async def later(ctx):
        await asyncio.sleep(0.05)
        return "late"

    g = build(
        {
            "Start": S,
            "Early": value("early"),
            "Late": ("fn", {"fn": later}),
            "Sink": inputs_of(seen),
        },
        ["Start -> Early", "Start -> Late", "Early -> Sink : x", "Late -> Sink : x"],
    )
    run(g)
    assert seen == [{"x": "late"}]


def test_first_handle_is_used_on_the_first_execution_only():
    seen: list = []
    g = build(
        {
            "Start": S,
            "Seed": value("topic"),
            "Talk": ("fn", {"fn": lambda c: (seen.append(dict(c.inputs)), c.iteration)[1]}),
            "Check": ("branch", {"test": lambda c: c.inputs["default"] >= 3}),
        },
        [
            "Start -> Seed",
            "Seed -> Talk[first] : topic",
            "Talk -> Check",
            "Check[condfalse] -> Talk",
        ],
    )
    finished, _ = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert seen[0] == {"topic": "topic"}
    assert seen[1] == {"default": 1}
    assert len(seen) == 3


def test_unconnected_node_is_skipped_with_a_reason():
    g = build({"Start": S, "Lonely": value(1)}, [])
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert rec.node(g, "Lonely").skip_reason == "no arrow leads to this node"


def test_ten_thousand_node_chain_runs_without_recursion():
    n = 10_000
    nodes = {
        "Start": S,
        **{
            f"N{i}": (
                "fn",
                {
                    "fn": lambda c: (
                        c.inputs["default"].get("n", 0) + 1
                        if isinstance(c.inputs["default"], dict)
                        else c.inputs["default"] + 1
                    )
                },
            )
            for i in range(n)
        },
    }
    arrows = ["Start -> N0"] + [f"N{i} -> N{i + 1}" for i in range(n - 1)]
    g = build(nodes, arrows)
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert rec.output(g, f"N{n - 1}") == n


def test_loop_of_many_iterations_runs_without_recursion():
    g = build(
        {
            "Start": S,
            "Count": ("fn", {"fn": lambda c: c.iteration}),
            "Check": ("branch", {"test": lambda c: c.inputs["default"] >= 5000}),
            "End": ("endpoint", {}),
        },
        ["Start -> Count", "Count -> Check", "Check[condfalse] -> Count", "Check[condtrue] -> End"],
    )
    finished, _ = run(g, max_iterations=10_000)
    assert finished.result == 5000


def test_handler_in_the_original_style_produces_the_same_history():
    from dipeo_cli.state import NodeExecutionStatus as S_

    async def original(ctx):
        await ctx.state_store.update_node_status(ctx.execution_id, ctx.node_id, S_.RUNNING)
        out = create_node_output({"default": "hi"}, {"note": "x"})
        await ctx.state_store.update_node_status(
            ctx.execution_id, ctx.node_id, S_.COMPLETED, output=out
        )
        return out

    async def modern(ctx):
        return create_node_output({"default": "hi"}, {"note": "x"})

    def kinds(fn):
        g = build({"Start": S, "H": ("fn", {"fn": fn})}, ["Start -> H"])
        _, rec = run(g)
        return [(type(e).__name__, getattr(e, "node_id", None)) for e in rec.events], rec.output(
            g, "H"
        )

    assert kinds(original) == kinds(modern)


def test_events_are_typed_and_ordered():
    g = build({"Start": S, "A": value(1)}, ["Start -> A"])
    _, rec = run(g)
    names = [type(e).__name__ for e in rec.events]
    assert names == [
        "ExecutionStarted",
        "NodeStarted",
        "NodeCompleted",
        "NodeStarted",
        "NodeCompleted",
        "ExecutionFinished",
    ]
    assert isinstance(rec.events[-1], ev.ExecutionFinished)


@pytest.mark.parametrize(
    "content_type,expected",
    [
        ("raw_text", '{"a": 1}'),
        ("object", {"a": 1}),
        (None, {"a": 1}),
    ],
)
def test_content_type_converts_the_value_on_the_arrow(content_type, expected):
    from dipeo_cli.arrows import convert

    assert convert({"a": 1}, content_type) == expected
    assert convert('{"a": 1}', "object") == {"a": 1}
    assert convert("plain", "object") == {"text": "plain"}
    assert convert("hi", "conversation_state") == {
        "messages": [{"role": "assistant", "content": "hi"}]
    }


def test_a_crashing_event_consumer_still_ends_the_execution_failed():
    from dipeo_cli.executor import Executor, RunOptions
    from tests.executor_kit import Recorder

    g = build({"Start": S, "A": value(1)}, ["Start -> A"])
    rec = Recorder()

    def emit(event):
        rec(event)
        if isinstance(event, ev.NodeCompleted):
            raise RuntimeError("view broke")

    async def main():
        return await Executor(g, execution_id="x", emit=emit, options=RunOptions()).run()

    with pytest.raises(RuntimeError, match="view broke"):
        asyncio.run(main())
    assert rec.state.status is ExecutionStatus.FAILED
    assert rec.state.error == "internal error: RuntimeError: view broke"


def test_capped_node_passes_its_last_output_on_while_its_loop_has_turns_left():
    # DiPeO's debate shape: A (max 2) -> B (max 3) -> Check -> A; Check exits once both are done.
    calls: list[str] = []

    def turn(name):
        def fn(ctx):
            calls.append(name)
            return f"{name}{ctx.iteration}"

        return fn

    g = build(
        {
            "Start": S,
            "A": ("fn", {"fn": turn("A"), "max_iteration": 2}),
            "B": ("fn", {"fn": turn("B"), "max_iteration": 3}),
            "Check": (
                "branch",
                {"test": lambda c: c.execution_count(c.graph.node_by_label("B").id) >= 3},
            ),
            "End": ("endpoint", {}),
        },
        ["Start -> A", "A -> B", "B -> Check", "Check[condfalse] -> A", "Check[condtrue] -> End"],
    )
    finished, rec = run(g)
    assert finished.status is ExecutionStatus.COMPLETED
    assert calls == ["A", "B", "A", "B", "B"]
    assert finished.result == "B3"
    assert rec.node(g, "A").status is NodeExecutionStatus.MAXITER_REACHED


def test_tokens_spent_before_a_failure_are_counted():
    from dipeo_cli.errors import NodeError

    def spend_then_fail(ctx):
        error = NodeError("1 of 2 items failed")
        error.metadata = {"token_usage": {"input": 7, "output": 3, "total": 10}}
        raise error

    g = build({"Start": S, "Batch": ("fn", {"fn": spend_then_fail})}, ["Start -> Batch"])
    _, rec = run(g)
    assert rec.node(g, "Batch").token_usage.total == 10
    assert rec.state.token_usage.total == 10


def test_raw_text_of_a_conversation_is_its_last_reply():
    from dipeo_cli.arrows import convert

    conversation = {"messages": [{"role": "assistant", "content": "hi"}], "last_message": "hi"}
    assert convert(conversation, "raw_text") == "hi"
    assert convert(conversation, "conversation_state") is conversation
