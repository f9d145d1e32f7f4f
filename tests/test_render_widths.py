"""Output that fits the terminal: the history table, the live table's preview, piped reports."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from dipeo_cli import events as ev
from dipeo_cli import render
from dipeo_cli.render.history import distinct_names
from dipeo_cli.state import ExecutionStatus, apply_event, create_node_output, new_state
from tests.test_e2e import run_in_terminal, terminal_env

T = 1_700_000_000.0
LONG_ERROR = "node 'Exploder' failed: RuntimeError: " + "quartz meltdown " * 12 + "THE END"


def execution(eid: str, diagram: str, error: str | None = None):
    start = ev.ExecutionStarted(eid, diagram, {}, (ev.NodeInfo("n1", "Start", "start"),), T)
    state = new_state(start)
    status = ExecutionStatus.FAILED if error else ExecutionStatus.COMPLETED
    apply_event(state, ev.ExecutionFinished(status, error, T + 1))
    return state


def test_distinct_names_keep_the_name_and_drop_what_all_share():
    names = distinct_names(
        [
            "/home/ada/projects/flows/diagrams/countdown.light.yaml",
            "/home/ada/projects/flows/diagrams/parts/square.light.yaml",
            "/home/ada/other/square.light.yaml",
            "hello.light.yaml",
            "",
        ]
    )
    assert names["/home/ada/projects/flows/diagrams/countdown.light.yaml"] == "countdown"
    assert names["/home/ada/projects/flows/diagrams/parts/square.light.yaml"] == "parts/square"
    assert names["/home/ada/other/square.light.yaml"] == "other/square"
    assert names["hello.light.yaml"] == "hello"
    assert names[""] == ""
    assert distinct_names(["/a/b/only.light.yaml"]) == {"/a/b/only.light.yaml": "only.light.yaml"}


def test_history_at_80_columns_tells_diagrams_apart_and_shows_errors_whole():
    base = "/home/ada/a-rather-long-folder-name/projects/dipeo-diagrams"
    states = [
        execution("a" * 32, f"{base}/customer_onboarding.light.yaml", LONG_ERROR),
        execution("b" * 32, f"{base}/customer_offboarding.light.yaml"),
    ]
    out = io.StringIO()
    render.print_history(states, out, color=False, width=80)
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "customer_onboarding" in text and "customer_offboarding" in text
    assert "…" not in text.split("\n\n")[0]  # nothing in the table is cut
    flat = " ".join(text.split())
    assert "quartz meltdown quartz" in flat and "THE END" in flat  # the error, readable


def test_history_wide_cuts_nothing():
    states = [execution("c" * 32, "/very/long/path/" + "x" * 60 + ".light.yaml", LONG_ERROR)]
    out = io.StringIO()
    render.print_history(states, out, color=False, width=80, wide=True)
    row = [line for line in out.getvalue().splitlines() if line.startswith("cccc")][0]
    assert "/very/long/path/" + "x" * 60 in row and LONG_ERROR in row


def test_piped_reports_use_columns_when_known(monkeypatch):
    states = [execution("d" * 32, "flow.light.yaml", LONG_ERROR)]
    monkeypatch.setenv("COLUMNS", "200")
    out = io.StringIO()
    render.print_history(states, out, color=False)
    assert max(len(line) for line in out.getvalue().splitlines()) > 150
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    render.print_history(states, out, color=False)
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80


def live_preview(width: int) -> str:
    start = ev.ExecutionStarted("e" * 32, "flow", {}, (ev.NodeInfo("n1", "Make", "code_job"),), T)
    state = new_state(start)
    apply_event(state, ev.NodeStarted("n1", 1, T))
    value = "word " * 60 + "TAIL"
    apply_event(state, ev.NodeCompleted("n1", create_node_output(value), T + 1))
    console = Console(
        file=io.StringIO(),
        width=width,
        height=40,
        force_terminal=True,
        color_system=None,
        _environ={},
    )
    progress = render.LiveProgress(console, clock=lambda: T + 2)
    progress._state = state
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=True, color_system=None, _environ={}).print(
        progress.renderable()
    )
    row = [line for line in out.getvalue().splitlines() if line.startswith("Make")][0]
    return row[row.index("word") :].rstrip()


def test_live_preview_uses_the_width_it_has():
    assert len(live_preview(80)) <= 45
    wide = live_preview(200)
    assert len(wide) > 100  # not 40 characters at 200 columns
    assert len(live_preview(200)) < 200


def test_no_color_keeps_the_live_table(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "1")
    assert render.choose_mode(Terminal(), quiet=False) == "live"


LONG_OUTPUT = """\
nodes:
  - {label: Start, type: start}
  - {label: Say, type: template_job, template_content: "{{ 'word ' * 30 }}TAIL"}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Say}
  - {from: Say, to: End}
"""


def test_live_table_in_a_pty_at_200_columns_with_no_color(isolated):
    Path("long.light.yaml").write_text(LONG_OUTPUT, encoding="utf-8")
    code, screen = run_in_terminal(["run", "long.light.yaml"], terminal_env(200, color=False))
    assert code == 0, screen
    assert "\x1b[" in screen  # the live table redraws (cursor movement)...
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", screen)  # ...without colour
    rows = [line for line in screen.splitlines() if "Say" in line and "COMPLETED" in line]
    assert rows, screen
    preview = rows[-1][rows[-1].index("word") :]
    assert len(preview.rstrip()) > 100  # the preview uses the width it has
