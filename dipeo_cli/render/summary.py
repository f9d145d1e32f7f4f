"""The report printed after `dipeo run`. Without colour it is written as plain text and Rich
stays unloaded."""

from __future__ import annotations

from typing import TextIO

from dipeo_cli.render.text import (
    NS,
    STATUS_STYLES,
    _clip_lines,
    _glyphs,
    _name,
    _one_line,
    _pretty,
    _report_console,
    _result_sections,
    _status_counts,
    _tokens_text,
    format_duration,
    handled_failures,
)
from dipeo_cli.state import ExecutionState, ExecutionStatus

SUMMARY_MAX_LINES = 40
SUMMARY_MAX_CHARS = 4000

# A line of the summary: pieces of text with a Rich style ("" for none).
_Line = list[tuple[str, str]]


def _write_lines(stream: TextIO, lines: list[_Line], color: bool, width: int | None) -> None:
    """Plain text straight to the stream without colour (Rich stays unloaded); Rich with it."""
    if not color:
        stream.write("".join("".join(text for text, _ in line) + "\n" for line in lines))
        stream.flush()
        return
    from rich.text import Text

    console = _report_console(stream, True, width)
    for line in lines:
        console.print(Text.assemble(*line), soft_wrap=True)


def print_summary(
    state: ExecutionState,
    stream: TextIO,
    *,
    color: bool,
    width: int | None = None,
    recorded: bool = True,
) -> None:
    """The report after `dipeo run`: status, endpoint result(s), failures, tokens, the id.

    `recorded=False` (the history does not hold the run) leaves out the `dipeo show` hints."""
    glyphs = _glyphs(stream)
    status = state.status.value
    handled = handled_failures(state)
    ok = state.status is ExecutionStatus.COMPLETED and not handled
    # a run that completed through its error ports is not a plain success: no green tick
    style = STATUS_STYLES.get(status, "") if not handled else "bold yellow"
    mark = glyphs["ok"] if ok else glyphs["fail"]
    head: _Line = [(f"{mark} {status}{handled}", "bold " + style)]
    if state.duration_seconds is not None:
        head.append((f" in {format_duration(state.duration_seconds)}", ""))
    counts = _status_counts(list(state.node_states.values()))
    if counts:
        head.append((f" ({counts})", "dim"))
    if state.error:
        head.append((f": {_one_line(state.error, 200, glyphs['more'])}", style))
    lines: list[_Line] = [head]

    for heading, value in _result_sections(state):
        text, hidden = _clip_lines(_pretty(value), SUMMARY_MAX_LINES, SUMMARY_MAX_CHARS)
        lines += [[], [(f"{heading}:", "bold")]]
        lines += [[(line, "")] for line in (text if text else '""').split("\n")]
        if hidden:
            note = f"{glyphs['more']} truncated, {hidden} more line{'s' * (hidden != 1)}"
            where = f"dipeo show {state.id} --json" if recorded else "dipeo run --json"
            lines.append([(f"{note} (full result: {where})", "dim")])

    failed = [
        (node_id, node) for node_id, node in state.node_states.items() if node.status is NS.FAILED
    ]
    interrupted = [
        _name(node_id, node)
        for node_id, node in state.node_states.items()
        if node.status is NS.ABORTED
    ]
    if interrupted:
        lines += [[], [("Interrupted nodes: ", "bold"), (", ".join(interrupted), "")]]
    if failed:
        lines += [[], [("Failed nodes:", "bold")]]
        for node_id, node in failed:
            error_lines, hidden = _clip_lines(node.error or "failed", 20, 2000)
            first, *rest = error_lines.split("\n")
            lines.append([(f"  {glyphs['fail']} {_name(node_id, node)}: ", "red"), (first, "")])
            lines += [[(f"      {line}", "")] for line in rest]
            if hidden:
                lines.append([(f"      {glyphs['more']} {hidden} more lines", "dim")])

    tokens = _tokens_text(state.token_usage)
    if tokens:
        lines += [[], [("Tokens: ", "bold"), (tokens, "")]]

    lines += [[], [("execution id: ", "bold"), (state.id, "")]]
    if recorded:
        lines.append([(f"details: dipeo show {state.id}", "dim")])
    _write_lines(stream, lines, color, width)
