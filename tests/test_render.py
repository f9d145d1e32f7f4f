"""The renderer: plain progress lines, the live table, and the run / history / show reports.

States are built from real events with fixed times; local time is UTC for every test. Reports
without colour are compared byte for byte (tables with trailing blanks stripped per line).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dipeo_cli import events as ev
from dipeo_cli import render
from dipeo_cli.state import (
    ExecutionState,
    ExecutionStatus,
    TokenUsage,
    apply_event,
    create_node_output,
    new_state,
)

REPO = Path(__file__).resolve().parent.parent
T = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
EXEC_ID = "0123456789abcdef0123456789abcdef"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(autouse=True)
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = old
    time.tzset()


def build(
    nodes: list[tuple[str, str, str]],
    events: list[Any],
    *,
    execution_id: str = EXEC_ID,
    diagram: str | None = "flows/demo.yaml",
    variables: dict[str, Any] | None = None,
) -> ExecutionState:
    started = ev.ExecutionStarted(
        execution_id, diagram, variables or {}, tuple(ev.NodeInfo(*n) for n in nodes), T
    )
    state = new_state(started)
    for event in events:
        apply_event(state, event)
    return state


NODES = [
    ("n1", "Start", "start"),
    ("n2", "Check", "condition"),
    ("n3", "Boom", "code_job"),
    ("n4", "End", "endpoint"),
]

FAILED_RUN: list[ev.Event] = [
    ev.NodeStarted("n1", 1, T + 0.001),
    ev.NodeCompleted("n1", create_node_output({"default": {"n": 1}}), T + 0.002),
    ev.NodeStarted("n2", 1, T + 0.003),
    ev.NodeCompleted("n2", create_node_output({"condtrue": {"n": 2}}), T + 0.007),
    ev.NodeStarted("n2", 2, T + 0.010),
    ev.NodeCompleted(
        "n2",
        create_node_output({"condtrue": {"n": 3}}),
        T + 0.012,
        TokenUsage(input=100, output=50, total=150),
    ),
    ev.NodeStarted("n3", 1, T + 0.013),
    ev.NodeFailed("n3", "RuntimeError: kaboom\n  at line 3", T + 0.023),
    ev.NodeSkipped("n4", "upstream node Boom failed", T + 0.024),
    ev.ExecutionFinished(
        ExecutionStatus.FAILED, "Boom (code_job): RuntimeError: kaboom", T + 0.025
    ),
]


def failed_state() -> ExecutionState:
    return build(NODES, FAILED_RUN, variables={"topic": "cats"})


def completed_state(result: Any = "All done.\nBye.", endpoints: int = 1) -> ExecutionState:
    nodes = [("n1", "Start", "start"), ("n2", "Work", "code_job")]
    nodes += [(f"e{i}", f"End {i}", "endpoint") for i in range(1, endpoints + 1)]
    events: list[Any] = [
        ev.NodeStarted("n1", 1, T + 0.001),
        ev.NodeCompleted("n1", create_node_output({"default": {"topic": "cats"}}), T + 0.002),
        ev.NodeStarted("n2", 1, T + 0.003),
        ev.NodeCompleted("n2", create_node_output("ok", {"stdout": "hi\n"}), T + 0.103),
    ]
    for i in range(1, endpoints + 1):
        events += [
            ev.NodeStarted(f"e{i}", 1, T + 0.104),
            ev.NodeCompleted(f"e{i}", create_node_output(f"result {i}"), T + 0.105),
        ]
    events.append(ev.ExecutionFinished(ExecutionStatus.COMPLETED, None, T + 0.120, result=result))
    return build(nodes, events, diagram="examples/simple.light.yaml")


def text_of(write: Any, **kwargs: Any) -> str:
    stream = io.StringIO()
    write(stream, **kwargs)
    out = stream.getvalue()
    if not kwargs.get("color"):
        assert "\x1b" not in out
    return out


def stripped(text: str) -> str:
    """Rich pads table cells to the column width: compare without trailing blanks."""
    return "\n".join(line.rstrip() for line in text.split("\n"))


# --------------------------------------------------------------------------- modes


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_choose_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert render.choose_mode(FakeTerminal(), quiet=True) == "quiet"
    assert render.choose_mode(FakeTerminal(), quiet=False) == "live"
    monkeypatch.setenv("NO_COLOR", "1")  # no colour, but the live table stays
    assert render.choose_mode(FakeTerminal(), quiet=False) == "live"
    monkeypatch.delenv("NO_COLOR")
    assert render.choose_mode(io.StringIO(), quiet=False) == "plain"
    monkeypatch.setenv("TERM", "dumb")
    assert render.choose_mode(FakeTerminal(), quiet=False) == "plain"
    closed = io.StringIO()
    closed.close()
    assert render.choose_mode(closed, quiet=False) == "plain"


def test_open_progress_modes() -> None:
    assert isinstance(render.open_progress("quiet", io.StringIO()), render.QuietProgress)
    assert isinstance(render.open_progress("plain", io.StringIO()), render.PlainProgress)
    assert isinstance(render.open_progress("live", FakeTerminal()), render.LiveProgress)
    with pytest.raises(ValueError, match="unknown progress mode 'fancy'"):
        render.open_progress("fancy", io.StringIO())


def test_quiet_progress_writes_nothing() -> None:
    stream = io.StringIO()
    progress = render.open_progress("quiet", stream)
    state = build(NODES, [])
    progress.start(state)
    for event in FAILED_RUN:
        apply_event(state, event)
        progress.update(state, event)
    progress.stop(state)
    assert stream.getvalue() == ""


# --------------------------------------------------------------------------- plain progress


def run_plain(state: ExecutionState, events: list[Any], stream: io.StringIO | None = None) -> str:
    stream = stream or io.StringIO()
    progress = render.open_progress("plain", stream)
    progress.start(state)
    for event in events:
        apply_event(state, event)
        progress.update(state, event)
    progress.stop(state)
    return stream.getvalue()


def test_plain_progress_prints_one_line_per_status_change() -> None:
    out = run_plain(build(NODES, []), FAILED_RUN)
    assert "\x1b" not in out
    assert out == textwrap.dedent(
        f"""\
        22:13:20.000 execution {EXEC_ID} started: flows/demo.yaml (4 nodes)
        22:13:20.001 RUNNING   Start (start)
        22:13:20.002 COMPLETED Start (start) 0.001s → {{"n": 1}}
        22:13:20.003 RUNNING   Check (condition)
        22:13:20.007 COMPLETED Check (condition) 0.004s → condtrue: {{"n": 2}}
        22:13:20.010 RUNNING   Check (condition) #2
        22:13:20.012 COMPLETED Check (condition) 0.002s → condtrue: {{"n": 3}}
        22:13:20.013 RUNNING   Boom (code_job)
        22:13:20.023 FAILED    Boom (code_job) 0.010s: RuntimeError: kaboom at line 3
        22:13:20.024 SKIPPED   End (endpoint): upstream node Boom failed
        22:13:20.025 execution {EXEC_ID} FAILED in 0.025s: Boom (code_job): RuntimeError: kaboom
        """
    )


def test_plain_progress_collapses_and_cuts_long_outputs() -> None:
    long_text = "line one\nline two\n" + "x" * 500
    events = [
        ev.NodeStarted("n1", 1, T),
        ev.NodeCompleted("n1", create_node_output(long_text), T + 1.5),
        ev.NodeCapped("n1", 3, T + 2),
    ]
    out = run_plain(build([("n1", "Loop", "person_job")], []), events)
    lines = out.splitlines()
    assert lines[2] == "22:13:21.500 COMPLETED Loop (person_job) 1.50s → line one line two " + (
        "x" * 41 + "…"
    )
    assert lines[3] == "22:13:22.000 MAXITER_REACHED Loop (person_job): max_iteration 3 reached"
    # no ExecutionFinished came (e.g. the process is going down): stop still ends the log
    assert re.fullmatch(rf"\d\d:\d\d:\d\d\.\d{{3}} execution {EXEC_ID} RUNNING", lines[4])


def test_plain_progress_falls_back_to_ascii_symbols() -> None:
    stream = io.TextIOWrapper(io.BytesIO(), encoding="cp1252", errors="strict")
    state = build(NODES, [])
    progress = render.open_progress("plain", stream)
    progress.start(state)
    for event in FAILED_RUN[:2]:
        apply_event(state, event)
        progress.update(state, event)
    stream.seek(0)
    assert (
        stream.read().splitlines()[-1] == '22:13:20.002 COMPLETED Start (start) 0.001s -> {"n": 1}'
    )


def test_plain_progress_and_uncoloured_summary_do_not_load_rich() -> None:
    code = textwrap.dedent(
        """
        import io, sys
        from dipeo_cli import events as ev, render
        from dipeo_cli.state import ExecutionStatus, apply_event, new_state
        nodes = (ev.NodeInfo("a", "A", "start"),)
        state = new_state(ev.ExecutionStarted("x", None, {}, nodes, 1.0))
        progress = render.open_progress(render.choose_mode(io.StringIO(), False), io.StringIO())
        progress.start(state)
        finished = ev.ExecutionFinished(ExecutionStatus.COMPLETED, None, 1.2)
        for event in (ev.NodeStarted("a", 1, 1.1), finished):
            apply_event(state, event)
            progress.update(state, event)
        progress.stop(state)
        render.print_summary(state, io.StringIO(), color=False)
        print(sorted(m for m in sys.modules if m == "rich" or m.startswith("rich.")))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --------------------------------------------------------------------------- previews


def test_output_preview_is_one_bounded_line() -> None:
    preview = render._output_preview
    assert preview(create_node_output("a\n\n  b\tc"), 40) == "a b c"
    assert preview(create_node_output("y" * 100), 40) == "y" * 39 + "…"
    assert preview(create_node_output({"condfalse": None}), 40) == "condfalse"
    assert preview(create_node_output({"success": 1, "error": 2}), 40) == "success, error"
    assert preview(create_node_output(None), 40) == ""
    assert preview(None, 40) == ""
    # a huge or deeply nested value is never serialised whole
    deep: Any = "end"
    for _ in range(5000):
        deep = [deep]
    # 10**6 strings of 400 characters: 400 MB of JSON, over a second to serialise whole
    huge = create_node_output(["x" * 400] * 10**6)
    started = time.perf_counter()
    assert preview(huge, 40).endswith("…")
    assert preview(create_node_output(deep), 40) == "[" * 39 + "…"
    assert time.perf_counter() - started < 0.25


def test_format_duration() -> None:
    assert [render.format_duration(s) for s in (None, -1, 0.0042, 12.345, 123.4, 3723)] == [
        "",
        "0.000s",
        "0.004s",
        "12.35s",
        "2m03.4s",
        "1h02m03s",
    ]


# --------------------------------------------------------------------------- live table


def live_console(out: io.StringIO, width: int = 100, height: int = 40) -> Console:
    return Console(
        file=out, width=width, height=height, force_terminal=True, color_system=None, _environ={}
    )


def render_live(progress: render.LiveProgress) -> str:
    out = io.StringIO()
    live_console(out, progress.console.width).print(progress.renderable())
    return stripped(out.getvalue())


def test_live_table_shows_every_node_with_status_iteration_time_and_preview() -> None:
    state = build(NODES, FAILED_RUN)
    progress = render.LiveProgress(live_console(io.StringIO(), width=120), clock=lambda: T + 60)
    progress._state = state
    assert render_live(progress) == textwrap.dedent(
        f"""\
        execution {EXEC_ID}  flows/demo.yaml  FAILED  0.025s  4/4 nodes done  150 tokens
        node   type       status     iter    time  tokens  output
        ─────────────────────────────────────────────────────────────────────────────────
        Start  start      COMPLETED     1  0.001s          {{"n": 1}}
        Check  condition  COMPLETED     2  0.002s     150  condtrue: {{"n": 3}}
        Boom   code_job   FAILED        1  0.010s          RuntimeError: kaboom at line 3
        End    endpoint   SKIPPED                          upstream node Boom failed
        """
    )


def test_live_table_shows_running_time_so_far_and_total_elapsed() -> None:
    state = build(NODES, FAILED_RUN[:5])  # Check is running its second iteration
    progress = render.LiveProgress(live_console(io.StringIO()), clock=lambda: T + 2.5)
    progress.start(state)
    try:
        table = render_live(progress)
    finally:
        progress.stop(state)
    lines = table.splitlines()
    assert lines[0] == f"execution {EXEC_ID}  flows/demo.yaml  RUNNING  2.50s  1/4 nodes done"
    assert lines[4].split() == ["Check", "condition", "RUNNING", "2", "2.49s"]
    assert lines[6].split() == ["End", "endpoint", "PENDING"]


def test_live_header_counts_interrupted_nodes_apart() -> None:
    """After Ctrl-C the node the abort cancelled is ABORTED: not done, counted as interrupted,
    its reason shown in red like an error."""
    events = [
        *FAILED_RUN[:7],
        ev.NodeFailed("n3", "interrupted", T + 0.020, aborted=True),
        ev.NodeSkipped("n4", "execution interrupted", T + 0.021),
    ]
    state = build(NODES, events)
    progress = render.LiveProgress(live_console(io.StringIO(), width=140), clock=lambda: T + 1)
    progress._state = state
    lines = render_live(progress).splitlines()
    assert lines[0].endswith("3/4 nodes done, 1 interrupted  150 tokens"), lines[0]
    assert lines[5].split() == ["Boom", "code_job", "ABORTED", "1", "0.007s", "interrupted"]


def test_live_progress_leaves_the_final_table_on_screen() -> None:
    out = io.StringIO()
    state = build(NODES, [])
    progress = render.open_progress("live", FakeTerminal())
    assert isinstance(progress, render.LiveProgress)
    progress.console = live_console(out)
    progress.start(state)
    for event in FAILED_RUN:
        apply_event(state, event)
        progress.update(state, event)
    progress.stop(state)
    final = ANSI.sub("", out.getvalue()).split("execution ")[-1]
    assert final.startswith(f"{EXEC_ID}  flows/demo.yaml  FAILED  0.025s")
    for row in (
        "Start  start      COMPLETED",
        "Boom   code_job   FAILED",
        "End    endpoint   SKIPPED",
    ):
        assert row in final
    assert "RuntimeError: kaboom at line 3" in final


def test_live_table_of_a_large_diagram_keeps_running_failed_and_recent_rows() -> None:
    nodes = [(f"n{i}", f"Step {i}", "code_job") for i in range(100)]
    events: list[Any] = []
    for i in range(60):
        events += [
            ev.NodeStarted(f"n{i}", 1, T + i),
            ev.NodeCompleted(f"n{i}", create_node_output(i), T + i + 0.5),
        ]
    events += [ev.NodeStarted("n60", 1, T + 60), ev.NodeFailed("n60", "bad", T + 60.5)]
    events += [ev.NodeStarted("n61", 1, T + 61), ev.NodeStarted("n62", 1, T + 61)]
    state = build(nodes, [])
    progress = render.LiveProgress(live_console(io.StringIO(), height=30), clock=lambda: T + 62)
    progress.start(state)
    try:
        for event in events:
            apply_event(state, event)
            progress.update(state, event)
        lines = render_live(progress).splitlines()
    finally:
        progress.stop(state)
    rows = [line.split()[1] for line in lines[3:-1]]
    assert len(lines) == 1 + 2 + 23 + 1  # header, table head, height - 7 rows, "more" line
    assert rows[-3:] == ["60", "61", "62"]  # failed and running, in diagram order
    assert rows[:20] == [str(i) for i in range(40, 60)]  # the latest changed
    assert lines[-1] == "… 77 more: 37 pending, 40 completed"
    # the final draw may scroll, so it shows up to max_rows
    assert len(render_live(progress).splitlines()) == 1 + 2 + 39 + 1


def test_live_table_never_parses_markup_in_labels() -> None:
    state = build([("n1", "[bold]x[/bold]", "start")], [])
    progress = render.LiveProgress(live_console(io.StringIO()), clock=lambda: T)
    progress._state = state
    assert "[bold]x[/bold]" in render_live(progress)


# --------------------------------------------------------------------------- summary


def test_summary_of_a_completed_run_with_one_endpoint() -> None:
    out = text_of(lambda s, **k: render.print_summary(completed_state(), s, **k), color=False)
    assert out == textwrap.dedent(
        f"""\
        ✔ COMPLETED in 0.120s (3 completed)

        Result:
        All done.
        Bye.

        execution id: {EXEC_ID}
        details: dipeo show {EXEC_ID}
        """
    )


def test_summary_shows_each_endpoint_result_when_there_are_several() -> None:
    state = completed_state({"End 1": {"a": 1}, "End 2": "two"}, endpoints=2)
    out = text_of(lambda s, **k: render.print_summary(state, s, **k), color=False)
    assert out == textwrap.dedent(
        f"""\
        ✔ COMPLETED in 0.120s (4 completed)

        Result (End 1):
        {{
          "a": 1
        }}

        Result (End 2):
        two

        execution id: {EXEC_ID}
        details: dipeo show {EXEC_ID}
        """
    )


def test_summary_of_a_failed_run_lists_failures_and_tokens() -> None:
    out = text_of(lambda s, **k: render.print_summary(failed_state(), s, **k), color=False)
    assert out == textwrap.dedent(
        f"""\
        ✘ FAILED in 0.025s (2 completed, 1 failed, 1 skipped): Boom (code_job): RuntimeError: kaboom

        Failed nodes:
          ✘ Boom (code_job): RuntimeError: kaboom
                at line 3

        Tokens: 150 (input 100, output 50)

        execution id: {EXEC_ID}
        details: dipeo show {EXEC_ID}
        """
    )


def test_summary_cuts_a_long_result_and_says_where_the_rest_is() -> None:
    state = completed_state({"rows": list(range(100))})
    out = text_of(lambda s, **k: render.print_summary(state, s, **k), color=False)
    lines = out.splitlines()
    assert lines[3:5] == ["{", '  "rows": [']
    assert lines[3 + 40] == (
        f"… truncated, 64 more lines (full result: dipeo show {EXEC_ID} --json)"
    )


def test_summary_in_colour_has_the_same_text() -> None:
    plain = text_of(lambda s, **k: render.print_summary(failed_state(), s, **k), color=False)
    coloured = text_of(lambda s, **k: render.print_summary(failed_state(), s, **k), color=True)
    assert "\x1b[" in coloured
    assert ANSI.sub("", coloured) == plain


# --------------------------------------------------------------------------- history


def test_history_table_newest_first() -> None:
    older = failed_state()
    newer = completed_state()
    newer.id = "0123456789abff00"  # shares 12 characters with the other id: cut longer
    newer.started_at = "2023-11-14T22:20:00+00:00"
    out = text_of(lambda s, **k: render.print_history([older, newer], s, **k), color=False)
    assert stripped(out) == textwrap.dedent(
        """\
        id             status     diagram       started              duration  nodes  tokens
        ────────────────────────────────────────────────────────────────────────────────────
        0123456789abf  COMPLETED  simple.light  2023-11-14 22:20:00    0.120s    3/3
        0123456789abc  FAILED     demo          2023-11-14 22:13:20    0.025s    2/4     150

        0123456789abc  Boom (code_job): RuntimeError: kaboom
        """
    )


def test_history_of_nothing() -> None:
    out = text_of(lambda s, **k: render.print_history([], s, **k), color=False)
    assert out == "No executions recorded yet.\n"


def test_history_ids_stay_whole_prefixes_on_a_narrow_terminal() -> None:
    state = failed_state()
    state.diagram_id = "a/very/long/path/to/some/diagram/file.light.yaml"
    out = text_of(lambda s, **k: render.print_history([state], s, **k), color=False, width=80)
    assert out.splitlines()[2].startswith("0123456789ab  FAILED  file.light.yaml  11-14 22:13 ")
    assert max(len(line) for line in out.splitlines()) <= 80


# --------------------------------------------------------------------------- show


def test_show_execution() -> None:
    state = failed_state()
    out = text_of(
        lambda s, **k: render.print_execution(state, s, **k), color=False, events=[{}, {}]
    )
    assert stripped(out) == textwrap.dedent(
        f"""\
        execution  {EXEC_ID}
        status     FAILED
        diagram    flows/demo.yaml
        started    2023-11-14 22:13:20
        ended      2023-11-14 22:13:20
        duration   0.025s
        error      Boom (code_job): RuntimeError: kaboom
        variables  {{"topic": "cats"}}
        tokens     150 (input 100, output 50)
        events     2 recorded

        node   type       status     iter  duration  tokens  error / skip reason
        ───────────────────────────────────────────────────────────────────────────────────
        Start  start      COMPLETED     1    0.001s
        Check  condition  COMPLETED     2    0.002s     150
        Boom   code_job   FAILED        1    0.010s          RuntimeError: kaboom at line 3
        End    endpoint   SKIPPED                            upstream node Boom failed

        ▸ Start (start)  COMPLETED
        value:
        {{
          "default": {{
            "n": 1
          }}
        }}

        ▸ Check (condition)  COMPLETED  2 iterations
        value:
        {{
          "condtrue": {{
            "n": 3
          }}
        }}

        ▸ Boom (code_job)  FAILED
        error:
        RuntimeError: kaboom
          at line 3
        """
    )


def test_show_execution_result_and_metadata() -> None:
    out = text_of(lambda s, **k: render.print_execution(completed_state(), s, **k), color=False)
    assert "\nResult:\nAll done.\nBye.\n" in out
    assert 'value:\n{\n  "default": "ok"\n}\nmetadata:\n{\n  "stdout": "hi\\n"\n}\n' in out


def test_show_cuts_long_values_and_names_the_command_for_the_rest() -> None:
    long_output = {"text": "z" * 1000, "items": list(range(50))}
    state = build(
        [("n1", "Big one", "code_job")],
        [
            ev.NodeStarted("n1", 1, T),
            ev.NodeCompleted("n1", create_node_output(long_output), T + 1),
        ],
    )
    out = text_of(lambda s, **k: render.print_execution(state, s, **k), color=False)
    assert '"text": "' + "z" * 300 + '… (700 more characters)",' in out
    assert out.endswith(f'… 25 more lines (dipeo show {EXEC_ID} --node "Big one")\n')


def test_show_one_node_in_full_with_its_events() -> None:
    long_output = {"text": "z" * 1000, "items": list(range(50))}
    state = build(
        [("n1", "Big one", "code_job"), ("n2", "Other", "start")],
        [
            ev.NodeStarted("n1", 1, T),
            ev.NodeCompleted("n1", create_node_output(long_output), T + 1),
        ],
    )
    events = [
        {"at": T, "type": "NodeStarted", "node_id": "n1", "iteration": 1},
        {"at": T + 0.5, "type": "NodeStarted", "node_id": "n2", "iteration": 1},
        {"at": "2023-11-14T22:13:21+00:00", "type": "NodeCompleted", "node_id": "n1"},
    ]
    out = text_of(
        lambda s, **k: render.print_execution(state, s, **k),
        color=False,
        node="big ONE",
        events=events,
    )
    assert "z" * 1000 + '",' in out
    assert "    49\n" in out and "more lines" not in out
    assert "▸ Other" not in out and "node   type" not in out
    assert out.startswith(f"execution  {EXEC_ID}\nstatus     RUNNING\n")
    assert "\nid          n1\ntype        code_job\nstatus      COMPLETED\niterations  1\n" in out
    assert out.endswith(
        'events:\n22:13:20.000 NodeStarted      {"iteration": 1}\n22:13:21.000 NodeCompleted\n'
    )


def test_show_unknown_node_lists_the_labels() -> None:
    with pytest.raises(KeyError) as info:
        render.print_execution(failed_state(), io.StringIO(), color=False, node="Nope")
    assert info.value.args[0] == (
        f"no node 'Nope' in execution {EXEC_ID} (nodes: Start, Check, Boom, End)"
    )


def test_show_in_colour_has_the_same_text() -> None:
    plain = text_of(lambda s, **k: render.print_execution(failed_state(), s, **k), color=False)
    coloured = text_of(lambda s, **k: render.print_execution(failed_state(), s, **k), color=True)
    assert "\x1b[" in coloured
    assert ANSI.sub("", coloured) == plain


def test_live_table_shows_tokens_per_node_once_an_llm_answered() -> None:
    from dipeo_cli.state import TokenUsage

    state = new_state(
        ev.ExecutionStarted(
            "e-tok", "d.yaml", {}, (ev.NodeInfo("n1", "Ask", "person_job"),), 1000.0
        )
    )
    console = Console(
        file=io.StringIO(), width=120, force_terminal=True, color_system=None, _environ={}
    )
    progress = render.LiveProgress(console, clock=lambda: 1001.0)
    progress.start(state)
    usage = TokenUsage(input=120, output=30, total=150)
    for event in (
        ev.NodeStarted("n1", 1, 1000.1),
        ev.NodeCompleted("n1", create_node_output({"default": "hi"}), 1000.5, usage),
    ):
        apply_event(state, event)
        progress.update(state, event)
    console.print(progress.renderable())
    text = console.file.getvalue()
    assert "tokens" in text and "150" in text
