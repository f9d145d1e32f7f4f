"""The `dipeo history` table."""

from __future__ import annotations

import os
from typing import Any, TextIO

from dipeo_cli.render.text import (
    NS,
    STATUS_STYLES,
    _cell,
    _local_time,
    _one_line,
    _report_console,
    _table,
    format_duration,
)
from dipeo_cli.state import ExecutionState


def _short_ids(ids: list[str], minimum: int = 12) -> dict[str, str]:
    """Each id cut to `minimum` characters, or longer where that would not tell two apart."""
    ordered = sorted(set(ids))

    def shared(a: str, b: str) -> int:
        return len(os.path.commonprefix((a, b)))

    short: dict[str, str] = {}
    for index, item in enumerate(ordered):
        need = minimum
        if index > 0:
            need = max(need, shared(item, ordered[index - 1]) + 1)
        if index + 1 < len(ordered):
            need = max(need, shared(item, ordered[index + 1]) + 1)
        short[item] = item[:need]
    return short


def _left_cut(text: str, limit: int) -> str:
    """Keep the end of a path-like text, where the file name is."""
    return text if len(text) <= limit else "…" + text[len(text) - limit + 1 :]


def _completed_of(state: ExecutionState) -> str:
    if not state.node_states:
        return ""
    done = sum(1 for node in state.node_states.values() if node.status is NS.COMPLETED)
    return f"{done}/{len(state.node_states)}"


def print_history(
    states: list[ExecutionState],
    stream: TextIO,
    *,
    color: bool,
    width: int | None = None,
    wide: bool = False,
    filtered: bool = False,
) -> None:
    """The `dipeo history` table, newest first. Ids are cut to a prefix `dipeo show` accepts."""
    from rich.text import Text

    console = _report_console(stream, color, 100_000 if wide else width)
    if not states:
        console.print("No executions match." if filtered else "No executions recorded yet.")
        return
    states = sorted(states, key=lambda state: state.started_at, reverse=True)
    short = _short_ids([state.id for state in states])
    names = {name: name for name in (s.diagram_id or "" for s in states)}
    if not wide:
        names = distinct_names(list(names))
    with_tokens = any(state.token_usage.total for state in states)
    with_errors = any(state.error for state in states)
    started_format = "%Y-%m-%d %H:%M:%S" if console.width >= 100 or wide else "%m-%d %H:%M"
    rows: list[list[str]] = []
    for state in states:
        row = [
            short[state.id],
            state.status.value,
            names[state.diagram_id or ""],
            _local_time(state.started_at, started_format),
            format_duration(state.duration_seconds),
            _completed_of(state),
        ]
        if with_tokens:
            row.append(f"{state.token_usage.total:,}" if state.token_usage.total else "")
        rows.append(row)
    headers = ["id", "status", "diagram", "started", "duration", "nodes"]
    headers += ["tokens"] if with_tokens else []
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(headers)]
    # The id column never shrinks (it must stay a usable prefix). Diagram names have lost what
    # they all share; what is still too long is cut on the left, where the file name is. The
    # error takes what is left, wrapped onto more lines rather than cut to nothing.
    room = console.width - (sum(widths) - widths[2]) - 2 * len(headers)
    # On a narrow terminal the errors go under the table, one wrapped paragraph each, rather
    # than into a column a dozen characters wide.
    inline = with_errors and (wide or room - min(widths[2], 40) >= 40)
    spare = room - (40 if inline else 0)
    diagram_width = widths[2] if wide else max(min(widths[2], 40, spare), 7)

    table = _table()
    for header in headers:
        right = header in ("duration", "nodes", "tokens")
        table.add_column(header, no_wrap=True, justify="right" if right else "left")
    if inline:
        table.add_column("error", no_wrap=wide)
    for state, row in zip(states, rows, strict=True):
        cells: list[Any] = list(row)
        cells[1] = Text(row[1], style=STATUS_STYLES.get(row[1], ""))
        cells[2] = _left_cut(row[2], diagram_width)
        if inline:
            error = state.error or ""
            text = _one_line(error, len(error) if wide else 160)
            cells.append(_cell(text, "red") if wide else Text(text, style="red"))
        table.add_row(*cells)
    console.print(table)
    if with_errors and not inline:
        console.print()
        for state in states:
            if state.error:
                line = Text.assemble((short[state.id], "bold"), "  ")
                line.append(_one_line(state.error, 300), style="red")
                console.print(line)


def distinct_names(names: list[str]) -> dict[str, str]:
    """Diagram paths shortened to what tells them apart: each keeps as many of its last path
    parts as make it unique (the file name, or `parts/square`), and the suffix they all end
    with (`.light.yaml`) is cut."""
    found = {name: name for name in names}
    real = sorted({name for name in names if name})
    if not real:
        return found
    parts = {name: name.split("/") for name in real}
    tails: dict[str, str] = {}
    for name in real:
        for count in range(1, len(parts[name]) + 1):
            tail = parts[name][-count:]
            clash = any(other != name and parts[other][-count:] == tail for other in real)
            if not clash:
                break
        tails[name] = "/".join(tail)
    ends = os.path.commonprefix([t[::-1] for t in tails.values()])[::-1]
    dot = ends.find(".")
    suffix = ends[dot:] if dot >= 0 and len(tails) > 1 else ""
    for name, text in tails.items():
        keep = len(text) - len(suffix) if suffix and len(text) > len(suffix) else len(text)
        found[name] = text[:keep]
    return found
